"""Any study: one row per point of its grid, no paper to compare with; also the fallback of :func:`build`."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import seaborn as sns

from reports.layouts.common import Figure, KindReport, cell_text
from reports.layouts.plotting import new_fig
from reports.trials import aggregate, axis_columns
from reports.verdicts import from_row


def layout(df: pd.DataFrame, metric: str, cfg: dict[str, Any]) -> KindReport:
    """One row per point: the metric, then every metric ``cfg["also"]`` lists (report: {also: [...]}),
    each mean ± std over seeds."""
    axes = axis_columns(df)
    summary = aggregate(df, metric, axes)
    main = summary[axes].copy() if axes else pd.DataFrame(index=range(len(summary)))
    for column in [metric, *[m for m in cfg.get("also", []) if m != metric]]:
        per_point = summary if column == metric else aggregate(df, column, axes)
        main[column] = [cell_text(from_row("", row), float(row["std"]) if row["n"] > 1 else math.nan)
                        for _, row in per_point.iterrows()]

    def draw() -> Any:
        fig, axes_ = new_fig(1, 7.0)
        ax = axes_[0]
        tidy = df[df["status"] == "finished"].copy() if metric in df else df.iloc[0:0]
        if axes and len(tidy):
            x = axes[0]
            numeric = pd.api.types.is_numeric_dtype(tidy[x])
            tidy[x] = tidy[x].astype(str)
            hue = axes[1] if len(axes) > 1 else None
            if hue:
                tidy[hue] = tidy[hue].astype(str)
            # names (recipes, op lists) are categories: no line joins them, and their labels turn
            sns.pointplot(data=tidy, x=x, y=metric, hue=hue, errorbar="sd", ax=ax, capsize=0.1,
                          linestyle="-" if numeric else "none")
            if not numeric:
                ax.tick_params(axis="x", labelrotation=25)
                for label in ax.get_xticklabels():
                    label.set_horizontalalignment("right")
        ax.set_title(f"{metric} against {axes[0] if axes else '(no axis)'}")
        fig.tight_layout()
        return fig

    return KindReport(kind="generic", title=f"{metric} per point of the grid", main=main,
                      figures=[Figure("metric_vs_axis", f"{metric} against the first axis (mean ± std over seeds).",
                                      draw)])
