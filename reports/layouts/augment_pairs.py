"""Figure 5: linear evaluation under every ordered pair of transformations (diagonal: one alone)."""

from __future__ import annotations

import math
from typing import Any, Callable

import pandas as pd
import seaborn as sns

from reports import reference
from reports.layouts.common import (
    OPS,
    Cell,
    Figure,
    KindReport,
    accuracy_metric,
    cells_by,
    match,
    need,
    ops_list,
    ours_paper,
    paper_report,
    paper_twin,
    paper_value,
)
from reports.layouts.plotting import new_fig
from reports.verdicts import Verdict, best_of, check_greater, mean_of, not_checked, with_paper

CROP_COLOR = (("crop", "color"), ("color", "crop"))


def _pair(row: pd.Series) -> tuple[str, str] | None:
    """A trial's (1st, 2nd) transformation; one alone sits on the diagonal; more than two: no cell."""
    ops = ops_list(row[OPS])
    if len(ops) == 1:
        return (ops[0], ops[0])
    if len(ops) == 2:
        return (ops[0], ops[1])
    return None


def _mean_text(ours: float, paper: float) -> str:
    """A row or column mean of both grids, ``—`` for ours where no cell of it finished."""
    left = f"{ours:.2f}" if ours == ours else "—"
    return f"{left} ({paper:.1f})" if paper == paper else left


def layout(df: pd.DataFrame, metric: str, cfg: dict[str, Any]) -> KindReport:
    """The paper's grid (its order of transformations first, then any others the study runs), each
    cell ``ours (paper)``, with row and column means of each side over the cells it has."""
    need(df, [OPS])
    sec = reference.section("augment_pairs") or {}
    order = [str(o) for o in (cfg.get("order") or sec.get("order") or [])]
    cells = cells_by(df, metric, [OPS], _pair)
    for first, second in cells:
        for op in (first, second):
            if op not in order:
                order.append(op)
    paper = {(r, c): reference.value_of(v, sec) for r, cols in sec.get("cells", {}).items() for c, v in cols.items()}
    matched, ours_only, paper_only = match(cells, paper)

    def grid(values: Callable[[str, str], float]) -> pd.DataFrame:
        frame = pd.DataFrame([[values(r, c) for c in order] for r in order], index=order, columns=order, dtype=float)
        frame["row mean"] = frame.mean(axis=1)
        frame.loc["column mean"] = frame[order].mean(axis=0)
        return frame

    ours_grid = grid(lambda r, c: cells[(r, c)].est.mean if (r, c) in cells else math.nan)
    paper_grid = grid(lambda r, c: paper[(r, c)][0] if (r, c) in paper else math.nan)
    main = pd.DataFrame(index=[*order, "column mean"], columns=[*order, "row mean"], dtype=object)
    for r in order:
        for c in order:
            main.loc[r, c] = ours_paper(cells.get((r, c)), paper_value(paper, (r, c))) if (
                (r, c) in cells or (r, c) in paper) else ""
    for r in order:
        main.loc[r, "row mean"] = _mean_text(ours_grid.loc[r, "row mean"], paper_grid.loc[r, "row mean"])
    for c in order:
        main.loc["column mean", c] = _mean_text(ours_grid.loc["column mean", c], paper_grid.loc["column mean", c])
    main.loc["column mean", "row mean"] = ""
    main.index.name = "1st \\ 2nd"

    def judge(cells: dict[Any, Cell]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        if not accuracy_metric(metric):
            return verdicts
        pair = [k for k in CROP_COLOR if k in cells]
        others = [c.est for k, c in cells.items() if k[0] != k[1] and k not in CROP_COLOR]
        if pair and others:
            verdicts.append(check_greater(
                "crop+color is the best pair",
                best_of("crop+color", [cells[k].est for k in pair]), best_of("best other pair", others)))
        else:
            verdicts.append(not_checked("crop+color is the best pair",
                                        "the study has no crop/color pair or no other pair"))
        diag = [c.est for k, c in cells.items() if k[0] == k[1]]
        off = [c.est for k, c in cells.items() if k[0] != k[1]]
        if diag and off:
            verdicts.append(check_greater("compositions beat single transformations (mean over cells)",
                                          mean_of("pairs", off), mean_of("singles", diag)))
        return verdicts

    verdicts = with_paper(judge(cells), judge(paper_twin(cells, paper)))

    def heatmaps() -> Any:
        fig, axes = new_fig(2, 7.0, 6.0)
        for ax, frame, title in ((axes[0], ours_grid, f"ours ({metric})"), (axes[1], paper_grid, "paper (Figure 5)")):
            sns.heatmap(frame, annot=True, fmt=".1f", cmap="Greens", cbar=False, ax=ax, annot_kws={"fontsize": 8})
            ax.set_xlabel("2nd transformation")
            ax.set_ylabel("1st transformation")
            ax.set_title(title)
        for i, r in enumerate(order):  # seaborn leaves a cell without a value blank: say which failed
            for j, c in enumerate(order):
                if (r, c) in cells and cells[(r, c)].est.missing and cells[(r, c)].est.failed:
                    axes[0].text(j + 0.5, i + 0.5, "failed", ha="center", va="center", fontsize=8, color="firebrick")
        fig.tight_layout()
        return fig

    figure = Figure("augment_pairs_heatmap", "Linear evaluation per pair of transformations (rows first, "
                    "columns second; diagonal = single), ours beside Figure 5.", heatmaps)
    return paper_report("augment_pairs", sec, "augment pairs", main, (matched, ours_only, paper_only), verdicts, figure,
                        main_index=True, extra_tables={"ours": ours_grid.round(2), "paper": paper_grid.round(1)},
                        notes=["cells read `ours (paper)`; row/column means over the cells present"])
