"""Figure 9: linear evaluation per batch size and training length."""

from __future__ import annotations

from typing import Any

import pandas as pd

from reports import reference
from reports.floor import mark
from reports.layouts.common import (
    Cell,
    Figure,
    KindReport,
    accuracy_metric,
    cells_by,
    est,
    match,
    need,
    ours_paper,
    paper_cells,
    paper_report,
    paper_value,
)
from reports.layouts.plotting import bars, new_fig, paper_tidy, tidy
from reports.verdicts import Verdict, check_greater, mean_of, not_checked, with_paper


def layout(df: pd.DataFrame, metric: str, cfg: dict[str, Any]) -> KindReport:
    """Our grid, epochs by batch size, each cell ``ours (paper)`` where the paper ran the same point."""
    b_axis, e_axis = "train.batch_size", "train.epochs"
    need(df, [b_axis, e_axis])
    sec = reference.section("batch_size_epochs") or {}
    cells = cells_by(df, metric, [b_axis, e_axis], lambda row: (int(row[b_axis]), int(row[e_axis])))
    paper = {(int(b), int(e)): reference.value_of(v, sec)
             for b, eps in sec.get("cells", {}).items() for e, v in eps.items()}
    matched, ours_only, paper_only = match(cells, paper)
    batches = sorted({k[0] for k in cells})
    epochs = sorted({k[1] for k in cells})
    main = pd.DataFrame(index=epochs, columns=batches, dtype=object)
    for e in epochs:
        for b in batches:
            main.loc[e, b] = ours_paper(cells.get((b, e)), paper_value(paper, (b, e)))
    main.index.name = "epochs \\ batch size"

    def judge(cells: dict[Any, Cell]) -> list[Verdict]:
        """The claims on a grid's own corners (ours, or the paper's, whose grid is another one)."""
        if not accuracy_metric(metric):
            return []
        batches = sorted({k[0] for k in cells})
        epochs = sorted({k[1] for k in cells})
        if len(batches) < 2 or len(epochs) < 2:
            return [not_checked("larger batches help at few epochs",
                                "needs at least 2 batch sizes and 2 epoch budgets")]
        b0, b1, e0, e1 = batches[0], batches[-1], epochs[0], epochs[-1]
        big_short, small_short = (est(cells, (b1, e0), f"batch {b1} @ {e0} ep"),
                                  est(cells, (b0, e0), f"batch {b0} @ {e0} ep"))
        verdicts = [
            check_greater("with the fewest epochs the largest batch beats the smallest", big_short, small_short),
            check_greater("training longer helps (mean over batch sizes)",
                          mean_of(f"{e1} epochs", [est(cells, (b, e1)) for b in batches]),
                          mean_of(f"{e0} epochs", [est(cells, (b, e0)) for b in batches])),
        ]
        gap_short = big_short.minus(small_short, f"gap @ {e0} ep")
        gap_long = est(cells, (b1, e1)).minus(est(cells, (b0, e1)), f"gap @ {e1} ep")
        claim = "the large-batch advantage shrinks with more epochs"
        if gap_short.missing or gap_long.missing:
            verdicts.append(not_checked(claim, "a corner cell has no finished trial"))
        else:
            verdicts.append(check_greater(claim, gap_short, gap_long))
        return verdicts

    # our grid (64-512 x 10-40 at the cpu scale) need not overlap the paper's (256-8192 x 100-800):
    # the paper's side of each claim is the same comparison on the corners of its own grid
    verdicts = with_paper(judge(cells), judge(paper_cells(paper)))

    def draw() -> Any:
        fig, axes_ = new_fig(2)
        ours = tidy(cells, ["batch size", "epochs"])
        theirs = paper_tidy(paper, ["batch size", "epochs"])
        bars(axes_[0], ours, "epochs", "batch size", "value", "std", f"ours ({metric})",
             order=epochs, hue_order=batches)
        mark(axes_[0], metric)
        bars(axes_[1], theirs, "epochs", "batch size", "value", None, "paper (Figure 9 / Table B.1)",
             order=sorted(set(theirs["epochs"])), hue_order=sorted(set(theirs["batch size"])))
        fig.tight_layout()
        return fig

    figure = Figure("batch_size_epochs", "Linear evaluation per batch size (bars) and training length "
                    "(groups), ours beside Figure 9.", draw)
    return paper_report("batch_size_epochs", sec, "batch size x epochs", main, (matched, ours_only, paper_only),
                        verdicts, figure, main_index=True)
