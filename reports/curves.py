"""Learning curves: the per-epoch ``loss`` and ``knn_top1`` each trial logged, one line per point.

The history is read from MLflow (:func:`reports.trials.load_curves`) and kept in the report folder
as ``tables/curves.csv`` (axis columns, point, seed, epoch, metric, value), so ``report --from``
draws the same figure without MLflow. A line is the mean over a point's seeds at each epoch, its
band the min-max over those seeds (n >= 2). Up to :data:`LEGEND_MAX` points each get a colour and
a legend entry; more are coloured by the first axis and the best point is drawn over them in black.
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from reports.layouts.common import value_text
from reports.trials import CURVE_METRICS, axis_columns

CURVES_CSV = "curves.csv"
LEGEND_MAX = 12
CAPTION = ("Learning curves: per-epoch pretraining loss and kNN top-1, one line per point (mean over seeds; "
           "band: min-max over seeds).")
NO_HISTORY = ("This report folder holds no per-epoch history (no tables/curves.csv: it was written before "
              "reports kept learning curves), so it has no learning-curve figure.")
NO_CURVES = "The trials logged no per-epoch loss or kNN top-1, so the report has no learning-curve figure."
PANEL_TITLES = {"loss": "pretraining loss (per epoch)", "knn_top1": "kNN top-1 (%, per epoch)"}


def point_label(row: pd.Series | dict[str, Any], axes: list[str], searched: set[str] | frozenset[str] = frozenset(),
                names: bool = True) -> str:
    """``temperature=0.1, ops=crop+color``: the point's axis values, each under its last dotted part."""
    if not axes:
        return "all trials"
    parts = []
    for a in axes:
        text = value_text(row[a], 3 if a in searched else None)
        parts.append(f"{a.rsplit('.', 1)[-1]}={text}" if names and len(axes) > 1 else text)
    return ", ".join(parts)


def _per_point(curves: pd.DataFrame, axes: list[str]) -> list[tuple[str, dict[str, Any], pd.DataFrame]]:
    """(key, axis values, rows) per point of the axes (its seeds together), in the order points first appear."""
    if not axes:
        return [("all", {}, curves)] if len(curves) else []
    out = []
    for key, rows in curves.groupby(axes, sort=False, dropna=False):
        parts = key if isinstance(key, tuple) else (key,)
        out.append((repr(parts), dict(zip(axes, parts)), rows))
    return out


def _colours(points: list[tuple[str, dict[str, Any], pd.DataFrame]], axes: list[str],
             log_axes: set[str]) -> tuple[dict[str, Any], Any]:
    """A colour per point: its own (few points), else by the first axis (a colour bar for numbers)."""
    n = len(points)
    if n <= LEGEND_MAX:
        cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
        return {p: cmap(i) for i, (p, _, _) in enumerate(points)}, None
    first = axes[0] if axes else None
    values = [v[first] if first else 0 for _, v, _ in points]
    numeric = first is not None and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    cmap = plt.get_cmap("viridis")
    if numeric and len(set(values)) > 1:
        from matplotlib.colors import LogNorm, Normalize

        lo, hi = min(values), max(values)
        norm = LogNorm(lo, hi) if first in log_axes and lo > 0 else Normalize(lo, hi)
        return {p: cmap(norm(v)) for (p, _, _), v in zip(points, values)}, (cmap, norm, first)
    order = list(dict.fromkeys(values))
    steps = max(len(order) - 1, 1)
    return {p: cmap(0.9 * order.index(v) / steps) for (p, _, _), v in zip(points, values)}, None


def draw_curves(curves: pd.DataFrame, summary: pd.DataFrame | None = None, metric: str = "",
                direction: str = "maximize", searched: set[str] | frozenset[str] = frozenset(),
                log_axes: set[str] | frozenset[str] = frozenset()) -> Any:
    """The figure: one panel per metric of :data:`reports.trials.CURVE_METRICS` the curves hold; a
    point is a combination of the axes' values (its trials are its seeds, as in the tables)."""
    axes = axis_columns(curves)
    points = _per_point(curves, axes)
    colours, bar = _colours(points, axes, set(log_axes))
    many = len(points) > LEGEND_MAX
    best = best_point(summary, metric, direction) if many and summary is not None else None
    best_key = None
    if best is not None:
        for p, values, _ in points:
            if all(values[a] == best[a] for a in axes if a in best):
                best_key = p
                break
    panels = [m for m in CURVE_METRICS if (curves["metric"] == m).any()] or list(CURVE_METRICS)
    fig, grid = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.6), squeeze=False, layout="constrained")
    handles: dict[str, Any] = {}
    for ax, m in zip(grid[0], panels):
        for p, values, rows in points:
            sub = rows[rows["metric"] == m]
            if sub.empty:
                continue
            by_epoch = sub.groupby("epoch")["value"]
            epochs = np.asarray(sorted(sub["epoch"].unique()), dtype=float)
            mean, lo, hi = by_epoch.mean().to_numpy(), by_epoch.min().to_numpy(), by_epoch.max().to_numpy()
            seeds = int(sub["seed"].nunique())
            is_best = p == best_key
            colour = "black" if is_best else colours[p]
            width = 2.2 if is_best else (1.6 if not many else 0.9)
            marker = "o" if len(epochs) <= 12 else None
            label = point_label(values, axes, searched)
            (line,) = ax.plot(epochs, mean, color=colour, lw=width, marker=marker, ms=3 if not many else 2,
                              alpha=1.0 if (is_best or not many) else 0.7, zorder=3 if is_best else 2)
            if seeds >= 2 and (not many or is_best):
                ax.fill_between(epochs, lo, hi, color=colour, alpha=0.15, lw=0)
            if not many:
                handles.setdefault(label, line)
            elif is_best:
                handles.setdefault(f"best ({metric}): {label}", line)
        ax.set_title(PANEL_TITLES.get(m, m))
        ax.set_xlabel("epoch")
        ax.set_ylabel(m)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if not len(ax.lines):
            ax.text(0.5, 0.5, f"{m} not logged per epoch", ha="center", va="center", transform=ax.transAxes)
    if bar is not None:
        from matplotlib.cm import ScalarMappable

        cmap, norm, name = bar
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=list(grid[0]), label=name, shrink=0.9)
    if handles:
        title = (f"{len(points)} points, coloured by {axes[0] if axes else 'point'}" if many
                 else (axes[0] if len(axes) == 1 else None))
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", fontsize=8, title=title,
                   title_fontsize=8, ncol=min(len(handles), 3), frameon=False)
    elif many and axes:
        fig.suptitle(f"{len(points)} points, coloured by {axes[0]}", fontsize=9)
    return fig


def best_point(summary: pd.DataFrame | None, metric: str, direction: str) -> dict[str, Any] | None:
    """The row of :func:`reports.trials.aggregate` with the best mean (None when no point finished)."""
    if summary is None or not len(summary) or "mean" not in summary:
        return None
    done = summary[summary["n"] > 0].dropna(subset=["mean"])
    if done.empty:
        return None
    idx = done["mean"].idxmax() if direction != "minimize" else done["mean"].idxmin()
    return done.loc[idx].to_dict()


def pooled_std(summary: pd.DataFrame) -> tuple[float, int, int]:
    """The seed std pooled over the points with n >= 2, how many such points, and their typical n
    (the median, rounded down); NaN and 0 when no point has two seeds."""
    if summary is None or not len(summary) or "std" not in summary:
        return math.nan, 0, 0
    rep = summary[(summary["n"] >= 2) & summary["std"].notna()]
    if rep.empty:
        return math.nan, 0, 0
    dof = (rep["n"] - 1).sum()
    s = math.sqrt(float(((rep["n"] - 1) * rep["std"] ** 2).sum()) / float(dof))
    return s, len(rep), int(np.median(rep["n"].to_numpy()))


def describe_history(curves: pd.DataFrame | None) -> str:
    """One sentence when the report has no learning-curve figure ('' when it has one)."""
    if curves is None:
        return NO_HISTORY
    if curves.empty:
        return NO_CURVES
    return ""


__all__ = ["CAPTION", "CURVES_CSV", "LEGEND_MAX", "NO_HISTORY", "best_point", "describe_history", "draw_curves",
           "point_label", "pooled_std"]
