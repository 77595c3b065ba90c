"""Table 1: linear evaluation against the strength of the colour distortion, without and with blur."""

from __future__ import annotations

from typing import Any

import pandas as pd

from reports import reference
from reports.layouts.common import (
    OPS,
    Cell,
    Figure,
    KindReport,
    accuracy_metric,
    cells_by,
    est,
    match,
    need,
    ops_list,
    ours_vs_paper,
    paper_report,
    paper_twin,
)
from reports.layouts.plotting import bars_beside_paper
from reports.verdicts import Verdict, check_greater, not_checked, with_paper


def layout(df: pd.DataFrame, metric: str, cfg: dict[str, Any]) -> KindReport:
    """One column per (strength, blur) cell, ours above the paper's; a trial whose ops include blur is
    the paper's ``(+Blur)`` column."""
    axis = "augment.color.strength"
    need(df, [axis])
    sec = reference.section("color_strength") or {}
    has_ops = OPS in df.columns
    axes = [axis, OPS] if has_ops else [axis]
    cells = cells_by(df, metric, axes,
                     lambda row: (float(row[axis]), "blur" in ops_list(row[OPS]) if has_ops else False))
    paper = {(float(c["strength"]), bool(c["blur"])): reference.value_of(c["value"], sec) for c in sec.get("cells", [])}
    names = {(float(c["strength"]), bool(c["blur"])): c["label"] for c in sec.get("cells", [])}
    keys = sorted(set(cells) | set(paper))
    label = {k: names.get(k) or (f"{k[0]:g}" + (" (+Blur)" if k[1] else "")) for k in keys}
    matched, ours_only, paper_only = match(cells, paper, label)
    main = ours_vs_paper(cells, paper, keys, label, (f"ours ({metric})", "paper (Table 1, SimCLR)"), "colour strength")

    def judge(cells: dict[Any, Cell]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        if not accuracy_metric(metric):
            return verdicts
        plain = sorted(k for k in cells if not k[1])
        if len(plain) >= 2:
            verdicts.append(check_greater("accuracy increases with color strength",
                                          est(cells, plain[-1], f"strength {plain[-1][0]:g}"),
                                          est(cells, plain[0], f"strength {plain[0][0]:g}")))
        else:
            verdicts.append(not_checked("accuracy increases with color strength",
                                        "fewer than 2 strengths without blur"))
        blur = [k for k in cells if k[1] and (k[0], False) in cells]
        if blur:
            k = max(blur)
            verdicts.append(check_greater(f"adding blur helps (strength {k[0]:g})", est(cells, k, f"{k[0]:g} (+Blur)"),
                                          est(cells, (k[0], False), f"{k[0]:g}")))
        return verdicts

    verdicts = with_paper(judge(cells), judge(paper_twin(cells, paper)))

    def draw() -> Any:
        return bars_beside_paper(cells, paper, keys, label, metric, "paper (Table 1)", "colour distortion strength")

    figure = Figure("color_strength", "Linear evaluation versus colour distortion strength, ours beside Table 1.", draw)
    return paper_report("color_strength", sec, "colour strength", main, (matched, ours_only, paper_only), verdicts,
                        figure, main_index=True, notes=["the paper's AutoAugment column is not part of this study"])
