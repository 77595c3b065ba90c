"""Drawing helpers shared by the layouts: ours beside the paper's, as grouped bars with error bars.

matplotlib's backend is chosen (Agg) by the package's ``__init__``, before anything imports pyplot.
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from reports.floor import mark
from reports.layouts.common import Cell, PaperCells, label_of


def new_fig(ncols: int = 2, width: float = 6.0, height: float = 4.2) -> tuple[Any, Any]:
    """One row of ``ncols`` panels, each ``width`` wide: ours on the left, the paper's on the right."""
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, axes[0]


def bars(ax: Any, frame: pd.DataFrame, x: str, hue: str | None, y: str, err: str | None, title: str,
         order: list[Any] | None = None, hue_order: list[Any] | None = None) -> None:
    """Grouped bars with error bars (our std over seeds), from a tidy frame."""
    order = order if order is not None else list(dict.fromkeys(frame[x]))
    hues = (hue_order if hue_order is not None else list(dict.fromkeys(frame[hue]))) if hue else [None]
    palette = sns.color_palette("viridis", max(len(hues), 1))
    shown = frame[np.isfinite(frame[y])]
    # one bar per x (a zip study: each temperature has one normalisation) is centred, not dodged
    single = hue is None or int(shown.groupby(x)[hue].nunique().max() if len(shown) else 1) <= 1
    width = 0.8 if single else 0.8 / max(len(hues), 1)
    for j, h in enumerate(hues):
        sub = frame if hue is None else frame[frame[hue] == h]
        xs, ys, es = [], [], []
        for i, xv in enumerate(order):
            hit = sub[sub[x] == xv]
            if hit.empty or not np.isfinite(hit[y].iloc[0]):
                continue
            xs.append(i if single else i - 0.4 + width * (j + 0.5))
            ys.append(hit[y].iloc[0])
            es.append(hit[err].iloc[0] if err and np.isfinite(hit[err].iloc[0]) else 0.0)
        ax.bar(xs, ys, width=width * 0.95, yerr=es if any(es) else None, capsize=3, color=palette[j],
               label=label_of(h) if hue else None)
        narrow = not single and len(hues) > 4  # side by side, the values would run into each other: turned
        for xi, yi, ei in zip(xs, ys, es):  # above the error bar, so the two do not overlap
            ax.text(xi, yi + ei, f" {yi:.1f}" if narrow else f"{yi:.1f}", ha="center", va="bottom",
                    fontsize=6 if narrow else 7, rotation=90 if narrow else 0)
    ax.set_xticks(range(len(order)), [label_of(v) for v in order])
    ax.set_xlabel(x)
    ax.set_title(title)
    if hue:  # in a row above the bars, in the head room left for it
        ax.legend(title=hue, fontsize=8, title_fontsize=8, loc="upper center", ncol=max(len(hues), 1),
                  frameon=False)
    # bars start at zero: a bar's height is its value, so a truncated axis would turn a gap of a
    # tenth of a point into a cliff; the printed values and the error bars carry the detail
    spread = frame[err].fillna(0.0) if err else 0.0
    tops = (frame[y] + spread).replace([np.inf, -np.inf], np.nan).dropna()
    hi = float(tops.max()) if len(tops) else 0.0
    ax.set_ylim(0.0, hi * (1.3 if hue else 1.12) if hi > 0 else 1.0)


def min_span(ax: Any, span: float = 2.0) -> None:
    """Widen the y axis of a point or line plot (which need not start at zero) to at least ``span``
    (points of accuracy), centred on the data: two cells 0.05 apart must not fill the whole axis."""
    lo, hi = ax.get_ylim()
    if hi - lo < span:
        mid = (lo + hi) / 2
        ax.set_ylim(mid - span / 2, mid + span / 2)


def tidy(cells: dict[Any, Cell], names: list[str]) -> pd.DataFrame:
    """Our cells as a tidy frame for :func:`bars`: one column per part of the key, then value and std."""
    rows = []
    for key, cell in cells.items():
        parts = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(names, parts)), "value": cell.est.mean, "std": cell.std})
    return pd.DataFrame(rows, columns=[*names, "value", "std"])


def paper_tidy(paper: PaperCells, names: list[str]) -> pd.DataFrame:
    """The paper's cells as :func:`tidy` lays ours out, without spread (the paper gives none)."""
    rows = []
    for key, (value, _, _) in paper.items():
        parts = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(names, parts)), "value": value, "std": math.nan})
    return pd.DataFrame(rows, columns=[*names, "value", "std"])


def bars_beside_paper(cells: dict[Any, Cell], paper: PaperCells, keys: list[Any], labels: dict[Any, str],
                      metric: str, paper_title: str, xlabel: str, rotation: float = 0.0) -> Any:
    """The figure of a :func:`reports.layouts.common.ours_vs_paper` table: our bars (std over seeds)
    on the left, the paper's on the right, one bar per key in ``keys`` order on both; ``rotation``
    tilts long x labels (the losses' names)."""
    fig, axes = new_fig(2)
    order = [labels[k] for k in keys]
    ours = pd.DataFrame([dict(x=labels[k], value=cells[k].est.mean, std=cells[k].std) for k in keys if k in cells])
    theirs = pd.DataFrame([dict(x=labels[k], value=paper[k][0], std=math.nan) for k in keys if k in paper])
    bars(axes[0], ours, "x", None, "value", "std", f"ours ({metric})", order=order)
    mark(axes[0], metric)
    bars(axes[1], theirs, "x", None, "value", None, paper_title, order=order)
    for ax in axes:
        ax.set_xlabel(xlabel)
        if rotation:
            ax.tick_params(axis="x", labelrotation=rotation)
    fig.tight_layout()
    return fig
