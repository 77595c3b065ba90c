"""The floor in a report: what an untrained encoder reaches, read from MLflow or a report folder.

``ablations.baseline`` computes it (``core.baseline``) and logs each seed as a run tagged
``ablations.role=baseline``; the study's parent run lists the keys. Here it is read back, summarised
for a metric, stated in the Findings and drawn as a line on the figures of that metric.
"""

from __future__ import annotations

import math
from typing import Any

ROLE = "baseline"
KEY_TAG = "ablations.baseline_key"
KEYS_TAG = "ablations.baseline_keys"
LABEL = "untrained encoder (floor)"


def finished_floor_run(client: Any, key: str) -> Any | None:
    """A finished floor run of ``key`` in any experiment of the store (floors are shared), or None."""
    ids = [e.experiment_id for e in client.search_experiments()]
    if not ids:
        return None
    runs = client.search_runs(ids, f"tags.`{KEY_TAG}` = '{key}' and attributes.status = 'FINISHED'", max_results=1)
    return runs[0] if runs else None


def read_floor(client: Any, keys: list[str]) -> dict[str, Any] | None:
    """The floor as a report keeps it (summary.json ``floor``): how it was computed and each seed's
    metrics; None when none of ``keys`` has a finished run."""
    by_seed: dict[str, dict[str, float]] = {}
    protocol = ""
    for key in keys:
        run = finished_floor_run(client, key)
        if run is not None:
            by_seed[run.data.tags.get("seed", "0")] = dict(run.data.metrics)
            protocol = run.data.tags.get("protocol", protocol)
    if not by_seed:
        return None
    return {"protocol": protocol, "of": "the study's base config at each of its seeds", "by_seed": by_seed}


def floor_stats(floor: dict[str, Any] | None, metric: str) -> tuple[float, float, int] | None:
    """(mean, std over seeds (nan for one), n) of ``metric`` in ``floor``; None without it."""
    if not floor:
        return None
    values = [float(m[metric]) for m in floor.get("by_seed", {}).values() if metric in m]
    if not values:
        return None
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return mean, std, n


def floor_text(floor: dict[str, Any] | None, metric: str) -> str:
    """'29.08 ± 0.31 (n=3)', or '' without a floor for ``metric``."""
    stats = floor_stats(floor, metric)
    if stats is None:
        return ""
    mean, std, n = stats
    return f"{mean:.2f}" + (f" ± {std:.2f}" if n > 1 else "") + f" (n={n})"


METRIC_GID = "metric:"
"""An axes whose y axis is a metric says which with ``ax.set_gid(METRIC_GID + metric)`` (``mark``)."""


def mark(ax: Any, metric: str) -> None:
    """Say that ``ax``'s y axis is ``metric`` of our own trials (not the paper's), so the floor is drawn on it."""
    ax.set_gid(METRIC_GID + metric)


def axis_metric(ax: Any) -> str:
    """The metric ``ax`` shows: the one ``mark`` named, else its y label (a metric's name, or anything)."""
    gid = ax.get_gid() or ""
    return gid[len(METRIC_GID):] if gid.startswith(METRIC_GID) else ax.get_ylabel()


def draw_floor(fig: Any, floor: dict[str, Any] | None) -> int:
    """A dotted line at the floor on every axes of ``fig`` that shows a metric the floor has (each at
    its own metric's floor: the learning curves' kNN panel at the kNN floor); returns how many."""
    drawn = 0
    for ax in fig.axes:
        stats = floor_stats(floor, axis_metric(ax))
        if stats is None:
            continue
        lo, hi = ax.get_ylim()
        ax.axhline(stats[0], color="0.45", linestyle=":", linewidth=1.2, label=LABEL)
        if not lo <= stats[0] <= hi:  # an axis fitted to the trials: widen it so the floor shows
            pad = 0.05 * (max(hi, stats[0]) - min(lo, stats[0]))
            ax.set_ylim(min(lo, stats[0] - pad), max(hi, stats[0] + pad))
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles, labels, fontsize="small")  # the floor's label, beside any the figure had
        drawn += 1
    return drawn
