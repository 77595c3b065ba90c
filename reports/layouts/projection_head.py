"""Figure 8: linear evaluation of h per projection head (none, linear, nonlinear) and output dimension."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from reports import reference
from reports.floor import mark
from reports.layouts.common import (
    Cell,
    Figure,
    KindReport,
    PaperCells,
    accuracy_metric,
    cells_by,
    match,
    matched_frame,
    need,
    ours_paper,
    paper_report,
    paper_twin,
    paper_value,
)
from reports.layouts.plotting import min_span, new_fig
from reports.verdicts import Estimate, Verdict, check_greater, estimate, mean_of, missing, with_paper


def pooled_over_seeds(df: pd.DataFrame, metric: str, label: str, where: tuple[tuple[str, Any], ...] = ()) -> Cell:
    """Trials of one configuration repeated under several axis values: mean per seed first, then over seeds
    (no head is the same model at every output dimension: its n is its seeds, not its trials).
    ``where``: the axis values that select these trials, the points the cell reads."""
    points = frozenset({where}) if where else frozenset()
    done = df[df["status"] == "finished"]
    if metric not in done or done.empty:
        return Cell(Estimate(label, math.nan, math.nan, 0, int((df["status"] == "failed").sum()), points=points),
                    math.nan)
    per_seed = done.groupby("seed")[metric].mean()
    n = len(per_seed)
    std = float(per_seed.std()) if n > 1 else math.nan
    se = std / math.sqrt(n) if n > 1 else math.nan
    return Cell(Estimate(label, float(per_seed.mean()), se, n, df=float(n - 1) if n > 1 else math.nan,
                         points=points), std)


def layout(df: pd.DataFrame, metric: str, cfg: dict[str, Any]) -> KindReport:
    """Heads by output dimension, each cell ``ours (paper)``; no head has one cell, pooled over the
    dimensions it ran with, shown in the last column."""
    head_axis, dim_axis = "model.head", "model.head_dim"
    need(df, [head_axis])
    sec = reference.section("projection_head") or {}
    has_dim = dim_axis in df.columns
    heads_with_dim = df[df[head_axis] != "none"]
    cells = cells_by(heads_with_dim, metric, [head_axis, dim_axis] if has_dim else [head_axis],
                     lambda row: (str(row[head_axis]), int(row[dim_axis]) if has_dim else None))
    none_rows = df[df[head_axis] == "none"]
    none_cell = pooled_over_seeds(none_rows, metric, "none", ((head_axis, "none"),)) if len(none_rows) else None
    paper: PaperCells = {}
    for head, dims in sec.get("cells", {}).items():
        for dim, v in dims.items():
            paper[(head, int(dim))] = reference.value_of(v, sec)
    paper_none = paper.pop(("none", 2048), None)
    matched, ours_only, paper_only = match(cells, paper)
    if none_cell is not None and paper_none is not None and not none_cell.est.missing:
        matched = pd.concat([matched, matched_frame([dict(
            cell="none", ours=none_cell.est.mean, ours_std=none_cell.std, n=none_cell.est.n, paper=paper_none[0],
            source=paper_none[1], confidence=paper_none[2])])], ignore_index=True)
    elif paper_none is not None:
        paper_only.append("none")
    dims = sorted({k[1] for k in cells if k[1] is not None} | {k[1] for k in paper})
    heads = [h for h in ("none", "linear", "nonlinear") if h in set(df[head_axis]) or h in {k[0] for k in paper}]
    heads += [h for h in dict.fromkeys(df[head_axis]) if h not in heads]
    main = pd.DataFrame(index=heads, columns=dims, dtype=object)
    for h in heads:
        for d in dims:
            if h == "none":
                main.loc[h, d] = ""
            else:
                main.loc[h, d] = ours_paper(cells.get((h, d)), paper_value(paper, (h, d))) if (
                    (h, d) in cells or (h, d) in paper) else ""
    if "none" in heads:
        text = ours_paper(none_cell, paper_none[0] if paper_none else None) if none_cell else (
            f"not run ({paper_none[0]:.1f})" if paper_none else "")
        main.loc["none", :] = ""
        main.loc["none", dims[-1] if dims else "any"] = f"{text} [any dim]" if none_cell else text
    main.index.name = "head \\ output dim"

    def judge(cells: dict[Any, Cell], none_est: Estimate) -> list[Verdict]:
        if not accuracy_metric(metric):
            return []
        common = sorted({d for (h, d) in cells if h == "linear"} & {d for (h, d) in cells if h == "nonlinear"})
        lin = (mean_of("linear (mean over dims)", [cells[("linear", d)].est for d in common]) if common
               else missing("linear"))
        non = (mean_of("nonlinear (mean over dims)", [cells[("nonlinear", d)].est for d in common]) if common
               else missing("nonlinear"))
        return [
            check_greater("nonlinear head beats linear by more than 3 points", non, lin, margin=3.0),
            check_greater("linear head beats no head", lin, none_est),
            check_greater("nonlinear head beats no head by more than 10 points", non, none_est, margin=10.0),
        ]

    paper_none_est = estimate("none", paper_none[0], math.nan, 1) if paper_none else missing("none")
    verdicts = with_paper(judge(cells, none_cell.est if none_cell else missing("none")),
                          judge(paper_twin(cells, paper), paper_none_est))

    def draw() -> Any:
        fig, axes_ = new_fig(2)
        for ax, source, title in ((axes_[0], "ours", f"ours ({metric})"), (axes_[1], "paper", "paper (Figure 8)")):
            for h, color in (("linear", "tab:blue"), ("nonlinear", "tab:orange")):
                if source == "ours":
                    pts = sorted((d, c.est.mean, c.std) for (hh, d), c in cells.items() if hh == h and d is not None)
                else:
                    pts = sorted((d, v[0], math.nan) for (hh, d), v in paper.items() if hh == h)
                if pts:
                    xs, ys, es = zip(*pts)
                    ax.errorbar(xs, ys, yerr=[e if e == e else 0 for e in es], marker="o", capsize=3, label=h,
                                color=color)
            none_value = (none_cell.est.mean if none_cell else math.nan) if source == "ours" else (
                paper_none[0] if paper_none else math.nan)
            if none_value == none_value:
                ax.axhline(none_value, color="tab:gray", linestyle="--", label="none")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("projection output dimensionality")
            ax.set_title(title)
            if source == "ours":
                mark(ax, metric)
            ax.legend(fontsize=8)
            min_span(ax)
        fig.tight_layout()
        return fig

    figure = Figure("projection_head", "Linear evaluation of h versus the output dimension of z, one line per "
                    "head; dashed: no head. Ours beside Figure 8.", draw)
    return paper_report("projection_head", sec, "projection head", main, (matched, ours_only, paper_only), verdicts,
                        figure, main_index=True, notes=["`none` pools its trials over the output dimension (the head "
                                                        "is the identity): mean per seed, then over seeds"])
