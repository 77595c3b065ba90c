"""Table 5: linear evaluation (and contrastive accuracy) per temperature, with and without l2 normalisation."""

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
    as_bool,
    cells_by,
    match,
    need,
    ours_text,
    paper_report,
    paper_text,
    paper_twin,
)
from reports.layouts.plotting import bars, new_fig, paper_tidy, tidy
from reports.verdicts import Verdict, best_of, check_greater, mean_of, not_checked, with_paper

CONTRASTIVE_METRICS = ("contrastive_acc", "contrastive_accuracy", "contrastive_top1")
"""Names a trial may log its contrastive accuracy under; the first one the trials have is used."""


def layout(df: pd.DataFrame, metric: str, cfg: dict[str, Any]) -> KindReport:
    """One row per (l2 norm, τ), normalised first: contrastive accuracy and top-1, ours then the
    paper's; a study without ``loss.normalize`` normalises (the default)."""
    n_axis, t_axis = "loss.normalize", "loss.temperature"
    need(df, [t_axis])
    sec = reference.section("temperature") or {}
    has_norm = n_axis in df.columns
    axes = [n_axis, t_axis] if has_norm else [t_axis]
    key = lambda row: (as_bool(row[n_axis]) if has_norm else True, float(row[t_axis]))  # noqa: E731
    cells = cells_by(df, metric, axes, key)
    contrastive = next((m for m in CONTRASTIVE_METRICS if m in df.columns), None)
    ccells = cells_by(df, contrastive, axes, key) if contrastive else {}
    paper = {(bool(c["normalize"]), float(c["temperature"])): reference.value_of(c["top1"], sec)
             for c in sec.get("cells", [])}
    pcontr = {(bool(c["normalize"]), float(c["temperature"])): float(c["contrastive_acc"])
              for c in sec.get("cells", [])}
    pcontr_cells = {k: (v, "", "") for k, v in pcontr.items()}  # the (value, source, confidence) form of paper
    matched, ours_only, paper_only = match(cells, paper)
    keys = sorted(set(cells) | set(paper), key=lambda k: (not k[0], k[1]))
    rows = []
    for k in keys:
        rows.append({
            "l2 norm": "yes" if k[0] else "no",
            "τ": f"{k[1]:g}",
            "contrastive acc. (ours)": ours_text(ccells, k) if contrastive else
            ("not measured" if k in cells else "not run"),
            f"top-1 (ours, {metric})": ours_text(cells, k),
            "contrastive acc. (paper)": paper_text(pcontr_cells, k),
            "top-1 (paper)": paper_text(paper, k),
        })
    main = pd.DataFrame(rows)

    def judge(cells: dict[Any, Cell], ccells: dict[Any, Cell]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        norm = sorted(k for k in cells if k[0])
        raw = sorted(k for k in cells if not k[0])
        if accuracy_metric(metric):
            if norm and raw:
                verdicts.append(check_greater("l2 normalization beats none (each at its best temperature)",
                                              best_of("l2 norm", [cells[k].est for k in norm]),
                                              best_of("no l2 norm", [cells[k].est for k in raw])))
            else:
                verdicts.append(not_checked("l2 normalization beats none (each at its best temperature)",
                                            "the study does not run both with and without l2 normalisation"))
            if len(norm) >= 3:
                mid = [cells[k].est for k in norm[1:-1]]
                ends = [cells[norm[0]].est, cells[norm[-1]].est]
                verdicts.append(check_greater("with l2 norm, a moderate temperature beats the extremes",
                                              best_of("moderate τ", mid), best_of("extreme τ", ends)))
        claim = "without l2 norm the contrastive accuracy is higher"
        if not contrastive:
            verdicts.append(not_checked(claim, "contrastive accuracy is not measured by this study's trials"))
        elif norm and raw:
            verdicts.append(check_greater(claim, mean_of("no l2 norm", [ccells[k].est for k in raw if k in ccells]),
                                          mean_of("l2 norm", [ccells[k].est for k in norm if k in ccells])))
        return verdicts

    verdicts = with_paper(judge(cells, ccells), judge(paper_twin(cells, paper), paper_twin(ccells, pcontr_cells)))

    def draw() -> Any:
        fig, axes_ = new_fig(2)
        ours = tidy(cells, ["l2 norm", "τ"])
        theirs = paper_tidy(paper, ["l2 norm", "τ"])
        bars(axes_[0], ours, "τ", "l2 norm", "value", "std", f"ours ({metric})", order=sorted(set(ours["τ"])),
             hue_order=[True, False])
        mark(axes_[0], metric)
        bars(axes_[1], theirs, "τ", "l2 norm", "value", None, "paper (Table 5)", order=sorted(set(theirs["τ"])),
             hue_order=[True, False])
        fig.tight_layout()
        return fig

    figure = Figure("temperature", "Linear evaluation per temperature, with and without l2 normalisation, "
                    "ours beside Table 5.", draw)
    notes = ["cells are matched by (l2 norm, τ) value (the paper ran its unnormalised rows at τ 10 and 100)"]
    return paper_report("temperature", sec, "temperature", main, (matched, ours_only, paper_only), verdicts, figure,
                        notes=notes)
