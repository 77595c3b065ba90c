"""An Optuna search: no paper table to match, so the trials ranked by the metric and two figures."""

from __future__ import annotations

from typing import Any

import pandas as pd
import seaborn as sns

from reports.layouts.common import Figure, KindReport
from reports.layouts.plotting import new_fig
from reports.trials import axis_columns


def _short(value: Any) -> str:
    """A searched value in the best-trial note: floats to 4 significant digits, as a sampler draws them."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def layout(df: pd.DataFrame, metric: str, cfg: dict[str, Any], direction: str = "maximize") -> KindReport:
    """Finished trials best first (``direction`` says which way is better), then the rest in trial
    order; a pruned or failed trial shows its status where the metric would be."""
    params = axis_columns(df)
    frame = df.sort_values("trial")
    cols = (["trial", *params, "seed", "status", metric] if metric in df.columns
            else ["trial", *params, "seed", "status"])
    table = frame[cols].copy()
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
        ax.set_ylabel(metric)
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
                if (xs > 0).all() and xs.max() / xs.min() > 10:
                    ax.set_xscale("log")
                fig.colorbar(sc, ax=ax, label="trial")
            else:
                sns.stripplot(x=done[p].astype(str), y=done[metric], ax=ax)
            ax.set_xlabel(p)
            ax.set_ylabel(metric)
        fig.tight_layout()
        return fig

    return KindReport(
        kind="search", title="Optuna search: trials ranked by the metric", main=ranked, notes=notes,
        figures=[Figure("search_history", "Optimization history: each finished trial and the best so far.", history),
                 Figure("search_params", "Each searched parameter against the metric (colour: trial number).",
                        scatter)],
    )
