"""A study's trials, read back from MLflow into pandas: one row per trial, repeats aggregated on demand.

MLflow is the record: reports are rebuilt from it, never from a worker's memory, so a table
printed after a crash or on another machine says the same as one printed at the end of `run`.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from mlflow import MlflowClient

ROLE_TAG = "ablations.role"
STATUS_ORDER = {"FINISHED": 0, "RUNNING": 1, "KILLED": 2, "FAILED": 3}


def axis_text(value: Any) -> Any:
    """Axis values as table cells: lists of ops read ``crop+color``; scalars stay scalars."""
    if isinstance(value, list):
        return "+".join(str(v) for v in value) if value else "(none)"
    return value


def _decode(raw: str) -> Any:
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw


def load_trials(tracking_uri: str, study_name: str) -> pd.DataFrame:
    """Every trial run of ``study_name``: the latest attempt per point, finished attempts first.

    Columns: one per varied axis (dotted path), ``seed``, ``status`` (finished / failed / killed /
    running / pruned (epoch k)), ``failure_reason``, ``trial``, ``point``, ``run_id`` and one per final metric.
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(study_name)
    if exp is None:
        return pd.DataFrame()
    runs, token = [], None
    while True:
        page = client.search_runs(
            [exp.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'trial'", max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            break
    rows = []
    for run in runs:
        tags = run.data.tags
        row: dict[str, Any] = {k[len("axis.") :]: axis_text(_decode(v)) for k, v in tags.items() if k.startswith("axis.")}
        row.update(
            seed=int(tags.get("seed", 0)),
            status=run.info.status,
            failure_reason=tags.get("failure_reason", ""),
            trial=int(tags.get("trial", -1)),
            point=tags.get("point", run.info.run_id),
            run_id=run.info.run_id,
            start_time=run.info.start_time,
            pruned_epoch=tags.get("pruned_epoch") if tags.get("ablations.status") == "pruned" else None,
            device=_device_text(tags),
            numerics=tags.get("numerics", ""),
            git_commit=tags.get("git_commit", ""),
        )
        row.update(run.data.metrics)
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows)
    df["_rank"] = df["status"].map(STATUS_ORDER).fillna(9)
    df = df.sort_values(["_rank", "start_time"], ascending=[True, False]).drop_duplicates("point")
    df["status"] = df["status"].str.lower()
    # a pruned trial is not a killed one: "pruned (epoch k)"
    pruned = df["pruned_epoch"].notna()
    df.loc[pruned, "status"] = "pruned (epoch " + df.loc[pruned, "pruned_epoch"].astype(str) + ")"
    df = df.drop(columns=["pruned_epoch"])
    return df.drop(columns=["_rank"]).sort_values("trial").reset_index(drop=True)


def _device_text(tags: dict[str, str]) -> str:
    """'cpu (AMD EPYC)' from the resolved device tags a trial logs at its start ('' if none)."""
    device, name = tags.get("device", ""), tags.get("device_name", "")
    return f"{device} ({name})" if device and name else device


def axis_columns(df: pd.DataFrame) -> list[str]:
    """The varied axes: the dotted-path columns."""
    return [c for c in df.columns if "." in c and not c.startswith(("step_", "protocol"))]


def aggregate(df: pd.DataFrame, metric: str, axes: list[str] | None = None) -> pd.DataFrame:
    """Mean, std and n of ``metric`` over repeats (finished trials only) per point of the axes.

    A point whose every attempt failed keeps a row with n = 0, ``failed`` > 0 and no mean, so a
    diverged trial shows up as failed, never as 0% accuracy.
    """
    axes = axis_columns(df) if axes is None else axes
    if df.empty:
        return pd.DataFrame(columns=[*axes, "mean", "std", "n", "failed"])
    done = df["status"] == "finished"
    values = df[metric].where(done) if metric in df else pd.Series(float("nan"), index=df.index)
    work = df.assign(_value=values, _failed=(df["status"] == "failed").astype(int))
    keys = axes if axes else [lambda _: "all"]
    grouped = work.groupby(keys, sort=False, dropna=False)
    out = grouped.agg(mean=("_value", "mean"), std=("_value", "std"), n=("_value", "count"), failed=("_failed", "sum"))
    return out.reset_index() if axes else out.reset_index(drop=True)


def markdown_table(summary: pd.DataFrame, metric: str) -> str:
    """The comparison table as Markdown: one row per point, ``mean ± std (n)`` of the metric."""
    if summary.empty:
        return "(no trials recorded yet)"
    axes = [c for c in summary.columns if c not in ("mean", "std", "n", "failed")]

    def cell(row: pd.Series) -> str:
        if row["n"] == 0:
            return f"failed ({int(row['failed'])})" if row["failed"] else "not run"
        text = f"{row['mean']:.2f}"
        if row["n"] > 1:
            text += f" ± {row['std']:.2f} (n={int(row['n'])})"
        return text

    table = summary[axes].copy()
    table[metric] = summary.apply(cell, axis=1)
    return table.to_markdown(index=False)
