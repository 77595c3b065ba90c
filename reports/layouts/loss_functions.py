"""Table 4: linear evaluation per contrastive loss, with and without semi-hard negative mining."""

from __future__ import annotations

from typing import Any

import pandas as pd

from reports import reference
from reports.layouts.common import (
    Cell,
    Figure,
    KindReport,
    accuracy_metric,
    as_bool,
    cells_by,
    est,
    match,
    need,
    ours_vs_paper,
    paper_report,
    paper_twin,
)
from reports.layouts.plotting import bars_beside_paper
from reports.verdicts import Verdict, best_of, check_greater, with_paper


def layout(df: pd.DataFrame, metric: str, cfg: dict[str, Any]) -> KindReport:
    """The paper's columns in its order, then any loss it has not; a study without ``loss.semi_hard``
    runs every loss without mining."""
    l_axis, s_axis = "loss.name", "loss.semi_hard"
    need(df, [l_axis])
    sec = reference.section("loss_functions") or {}
    has_sh = s_axis in df.columns
    cells = cells_by(df, metric, [l_axis, s_axis] if has_sh else [l_axis],
                     lambda row: (str(row[l_axis]), as_bool(row[s_axis]) if has_sh else False))
    paper = {(c["loss"], bool(c["semi_hard"])): reference.value_of(c["value"], sec) for c in sec.get("cells", [])}
    names = {(c["loss"], bool(c["semi_hard"])): c["label"] for c in sec.get("cells", [])}
    keys = list(paper) + [k for k in cells if k not in paper]
    label = {k: names.get(k, f"{k[0]}{' (sh)' if k[1] else ''}") for k in keys}
    matched, ours_only, paper_only = match(cells, paper, label)
    main = ours_vs_paper(cells, paper, keys, label, (f"ours ({metric})", "paper (Table 4)"), "loss")

    def judge(cells: dict[Any, Cell]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        if not accuracy_metric(metric):
            return verdicts
        xent = [k for k in cells if k[0] == "nt_xent"]
        others = [cells[k].est for k in cells if k[0] != "nt_xent"]
        if xent and others:
            verdicts.append(check_greater("NT-Xent beats the other losses",
                                          best_of("NT-Xent", [cells[k].est for k in xent]),
                                          best_of("best other loss", others)))
        for loss, text in (("margin_triplet", "margin triplet"), ("nt_logistic", "NT-Logistic")):
            if (loss, True) in cells and (loss, False) in cells:
                verdicts.append(check_greater(f"semi-hard negative mining helps {text}",
                                              est(cells, (loss, True), f"{text} (sh)"),
                                              est(cells, (loss, False), text)))
        return verdicts

    verdicts = with_paper(judge(cells), judge(paper_twin(cells, paper)))

    def draw() -> Any:
        return bars_beside_paper(cells, paper, keys, label, metric, "paper (Table 4)", "loss", rotation=20)

    figure = Figure("loss_functions", "Linear evaluation per loss, ours beside Table 4.", draw)
    return paper_report("loss_functions", sec, "loss functions", main, (matched, ours_only, paper_only), verdicts,
                        figure, main_index=True)
