"""An Optuna search: no paper table to match, so the trials ranked by the metric and two figures."""

from __future__ import annotations

from typing import Any, Iterable

import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from reports.layouts.common import Figure, KindReport, accuracy_metric, value_text
from reports.layouts.plotting import min_span, new_fig
from reports.trials import axis_columns

SEARCHED_DIGITS = 3
"""Significant digits of a searched value: a sampler draws 0.250413, a reader wants 0.25."""


def _short(value: Any) -> str:
    """A searched value as tables and notes print it: floats to 3 significant digits."""
    return value_text(value, SEARCHED_DIGITS)


def layout(df: pd.DataFrame, metric: str, cfg: dict[str, Any], direction: str = "maximize",
           log_axes: Iterable[str] | None = None) -> KindReport:
    """Finished trials best first (``direction`` says which way is better), then the rest in trial
    order; a pruned or failed trial shows its status where the metric would be. ``log_axes``: the
    parameters the study searched with ``log: true``, drawn on a log scale (None: not known, so a
    positive parameter spanning more than a factor 10 is)."""
    params = axis_columns(df)
    frame = df.sort_values("trial")
    cols = (["trial", *params, "seed", "status", metric] if metric in df.columns
            else ["trial", *params, "seed", "status"])
    table = frame[cols].copy()
    for p in params:
        table[p] = [_short(v) for v in table[p]]
    done = (frame[(frame["status"] == "finished") & frame.get(metric, pd.Series(dtype=float)).notna()]
            if metric in frame else frame.iloc[0:0])
    notes = []
    if len(done):
        best = done.loc[done[metric].idxmax() if direction == "maximize" else done[metric].idxmin()]
        notes.append("best trial: " + f"#{int(best['trial'])}, " + ", ".join(f"{p}={_short(best[p])}" for p in params)
                     + f", {metric} = {best[metric]:.2f}")
    if metric in table:
        table[metric] = [f"{v:.2f}" if s == "finished" and v == v else s
                         for v, s in zip(table[metric], table["status"])]
    ranked = table.copy()
    if len(done):
        order = done.sort_values(metric, ascending=direction != "maximize")["trial"].tolist()
        ranked = pd.concat([table.set_index("trial").loc[order].reset_index(),
                            table[~table["trial"].isin(order)]], ignore_index=True)

    logs = set(log_axes) if log_axes is not None else None

    def history() -> Any:
        fig, axes_ = new_fig(1, 7.0)
        ax = axes_[0]
        if len(done):
            ax.scatter(done["trial"], done[metric], label="trial", color="tab:blue")
            running = done[metric].cummax() if direction == "maximize" else done[metric].cummin()
            ax.step(done["trial"], running, where="post", color="tab:red", label="best so far")
        other = frame[frame["status"] != "finished"]
        for _, row in other.iterrows():
            ax.axvline(row["trial"], color="tab:gray", alpha=0.3, linestyle=":")
        ax.set_xlabel("trial")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        if accuracy_metric(metric) and len(done):
            min_span(ax)
        ax.set_title("optimization history (dotted: pruned/failed trials)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    def scatter() -> Any:
        fig, axes_ = new_fig(max(len(params), 1), 5.0)
        for ax, p in zip(axes_, params or [None]):
            if p is None or not len(done):
                continue
            xs = pd.to_numeric(done[p], errors="coerce")
            if xs.notna().all():
                sc = ax.scatter(xs, done[metric], c=done["trial"], cmap="viridis")
                log = p in logs if logs is not None else bool((xs > 0).all() and xs.max() / xs.min() > 10)
                if log and (xs > 0).all():
                    ax.set_xscale("log")
                bar = fig.colorbar(sc, ax=ax, label="trial")
                bar.locator = MaxNLocator(integer=True)
                bar.update_ticks()
            else:
                sns.stripplot(x=done[p].astype(str), y=done[metric], ax=ax)
            ax.set_xlabel(p + (" (log scale, as searched)" if logs is not None and p in logs else ""))
            ax.set_ylabel(metric)
            if accuracy_metric(metric):
                min_span(ax)
        fig.tight_layout()
        return fig

    return KindReport(
        kind="search", title="Optuna search: trials ranked by the metric", main=ranked, notes=notes,
        figures=[Figure("search_history", "Optimization history: each finished trial and the best so far.", history),
                 Figure("search_params", "Each searched parameter against the metric (colour: trial number).",
                        scatter)],
    )
