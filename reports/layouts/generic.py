"""Any study: one row per point of its grid, no paper to compare with; also the fallback of :func:`build`."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import seaborn as sns

from reports.layouts.common import Figure, KindReport, accuracy_metric, cell_text, value_text
from reports.layouts.plotting import min_span, new_fig
from reports.trials import aggregate, axis_columns
from reports.verdicts import from_row


def layout(df: pd.DataFrame, metric: str, cfg: dict[str, Any]) -> KindReport:
    """One row per point: the metric, then every metric ``cfg["also"]`` lists (report: {also: [...]}),
    each mean ± std over seeds."""
    axes = axis_columns(df)
    summary = aggregate(df, metric, axes)
    main = summary[axes].copy() if axes else pd.DataFrame(index=range(len(summary)))
    for a in axes:  # 0.125 reads 0.125, not to_markdown's rounding of a float column
        if pd.api.types.is_float_dtype(main[a]):
            main[a] = [value_text(v) for v in main[a]]
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
            hue = axes[1] if len(axes) > 1 else None
            shown = [x] + ([hue] if hue else [])
            if len(tidy.drop_duplicates(shown)) < len(tidy.drop_duplicates(axes)):
                # the first two axes do not tell the points apart (a third axis, a zip of three):
                # one category per point, named by every axis, rather than points pooled into one
                x, hue = "point", None
                tidy[x] = [", ".join(value_text(r[a]) for a in axes) for _, r in tidy.iterrows()]
            numeric = pd.api.types.is_numeric_dtype(tidy[x]) and not pd.api.types.is_bool_dtype(tidy[x])

            def categories(column: str) -> list[str]:  # numbers in numeric order, as value_text prints them
                values = list(dict.fromkeys(tidy[column]))
                if pd.api.types.is_numeric_dtype(tidy[column]) and not pd.api.types.is_bool_dtype(tidy[column]):
                    values = sorted(values)
                return [value_text(v) for v in values]

            order, hue_order = categories(x), categories(hue) if hue else None
            tidy[x] = [value_text(v) for v in tidy[x]]
            if hue:
                tidy[hue] = [value_text(v) for v in tidy[hue]]
            # names (recipes, op lists) are categories: no line joins them, and their labels turn
            sns.pointplot(data=tidy, x=x, y=metric, hue=hue, errorbar="sd", ax=ax, capsize=0.1,
                          linestyle="-" if numeric else "none", order=order, hue_order=hue_order)
            if accuracy_metric(metric):
                min_span(ax)
            if not numeric:
                ax.tick_params(axis="x", labelrotation=25)
                for label in ax.get_xticklabels():
                    label.set_horizontalalignment("right")
        per_point = bool(axes) and ax.get_xlabel() == "point"
        ax.set_title(f"{metric} per point" if per_point else f"{metric} against {axes[0] if axes else '(no axis)'}")
        fig.tight_layout()
        return fig

    return KindReport(kind="generic", title=f"{metric} per point of the grid", main=main,
                      figures=[Figure("metric_vs_axis", f"{metric} against the first axis (mean ± std over seeds).",
                                      draw)])
