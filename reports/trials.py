"""A study's trials, read back from MLflow into pandas: one row per trial, repeats aggregated on demand.

MLflow is the record: reports are rebuilt from it, never from a worker's memory, so a table
printed after a crash or on another machine says the same as one printed at the end of `run`.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

ROLE_TAG = "ablations.role"
CURVE_METRICS = ("loss", "knn_top1")
"""The per-epoch metrics a report draws as learning curves (logged by the trainer's ``on_epoch_end``)."""
STATUS_ORDER = {"FINISHED": 0, "RUNNING": 1, "KILLED": 2, "FAILED": 3}
STRING_COLUMNS = ("status", "failure_reason", "point", "run_id", "device", "numerics", "git_commit", "plugins")
"""Text however it looks: a point key ``1234e56789`` or a commit ``0123456`` must not turn into a number."""
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?inf")


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


PARENT_ID_TAG = "mlflow.parentRunId"
FINGERPRINT_TAG = "fingerprint"
"""The study run's tag naming its definition (``ablations.plan.fingerprint``): trials under a study
run of another fingerprint belong to an older definition of the study."""


def _all_runs(client: Any, exp_id: str, filter_string: str, order_by: list[str] | None = None) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs([exp_id], filter_string=filter_string, max_results=1000, page_token=token,
                                  order_by=order_by)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def study_runs(client: Any, exp_id: str, fingerprint: str | None = None) -> tuple[str | None, list[Any]]:
    """The study (parent) runs of the current definition, latest first, and that definition's fingerprint.

    ``fingerprint`` None: the fingerprint of the most recently started study run of the experiment
    (what the study file now defines). Study runs without a fingerprint tag (made before the engine
    recorded one) count as one definition whose fingerprint is None.
    """
    return _current(_study_runs_latest_first(client, exp_id), fingerprint)


def _study_runs_latest_first(client: Any, exp_id: str) -> list[Any]:
    return _all_runs(client, exp_id, f"tags.`{ROLE_TAG}` = 'study'", ["attributes.start_time DESC"])


def _current(runs: list[Any], fingerprint: str | None) -> tuple[str | None, list[Any]]:
    if fingerprint is None and runs:
        fingerprint = runs[0].data.tags.get(FINGERPRINT_TAG)
    return fingerprint, [r for r in runs if r.data.tags.get(FINGERPRINT_TAG) == fingerprint]


def load_trials(tracking_uri: str, study_name: str, fingerprint: str | None = None) -> pd.DataFrame:
    """Every trial run of ``study_name``'s current definition: the latest attempt per point, finished attempts first.

    Only trials whose parent run (tag ``mlflow.parentRunId``) is a study run carrying the tag
    ``fingerprint`` equal to ``fingerprint`` are read; ``fingerprint`` None means the fingerprint of
    the most recently started study run (:func:`study_runs`), so the runs of an older definition
    never mix into a table. An experiment without any study run (a store made by hand) has every
    trial read.

    Columns: one per varied axis (dotted path), ``seed``, ``status`` (finished / failed / killed /
    running / pruned (epoch k)), ``failure_reason``, ``trial``, ``point``, ``run_id`` and one per final metric.
    """
    from mlflow import MlflowClient  # here: a report rebuilt from its folder needs no MLflow

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(study_name)
    if exp is None:
        return pd.DataFrame()
    parents = _study_runs_latest_first(client, exp.experiment_id)
    runs = _all_runs(client, exp.experiment_id, f"tags.`{ROLE_TAG}` = 'trial'")
    if parents:
        ids = {p.info.run_id for p in _current(parents, fingerprint)[1]}
        runs = [r for r in runs if r.data.tags.get(PARENT_ID_TAG) in ids]
    rows = []
    for run in runs:
        tags = run.data.tags
        row: dict[str, Any] = {
            k[len("axis.") :]: axis_text(_decode(v)) for k, v in tags.items() if k.startswith("axis.")
        }
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
        if tags.get("plugins"):  # a column only in studies that use plugins
            row["plugins"] = tags["plugins"]
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


def load_curves(tracking_uri: str, trials: pd.DataFrame, metrics: tuple[str, ...] = CURVE_METRICS) -> pd.DataFrame:
    """The per-epoch history of ``metrics`` of every trial in ``trials`` (a :func:`load_trials` frame).

    One row per (trial, metric, epoch): the axis columns, ``point``, ``seed``, ``epoch`` (the MLflow
    step: epochs count from 1), ``metric`` and ``value``. The final metrics are logged again at the
    last epoch's step: the later entry of a step wins. Non-finite values (a diverged loss) are left out.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    axes = axis_columns(trials)
    columns = [*axes, "point", "seed", "epoch", "metric", "value"]
    rows = []
    for _, trial in trials.iterrows():
        if not isinstance(trial.get("run_id"), str) or not trial["run_id"]:
            continue
        for metric in metrics:
            try:
                history = client.get_metric_history(trial["run_id"], metric)
            except Exception:  # a run removed meanwhile: no curve, the tables still hold
                continue
            by_step: dict[int, float] = {}
            for entry in sorted(history, key=lambda e: (e.step, e.timestamp)):
                if entry.step >= 1 and math.isfinite(entry.value):
                    by_step[int(entry.step)] = float(entry.value)
            for step, value in sorted(by_step.items()):
                rows.append({**{a: trial[a] for a in axes}, "point": trial["point"], "seed": int(trial["seed"]),
                             "epoch": step, "metric": metric, "value": value})
    return pd.DataFrame(rows, columns=columns)


def _cell(value: Any) -> Any:
    """One CSV cell as :func:`load_trials` had it: True/False, int, float or text (NaN stays NaN)."""
    if not isinstance(value, str):
        return value
    if value in ("True", "False"):
        return value == "True"
    if _INT.fullmatch(value):
        return int(value)
    return float(value) if _FLOAT.fullmatch(value) else value


def read_trials_csv(path: Path | str) -> pd.DataFrame:
    """A report's ``tables/trials.csv`` back as the frame :func:`load_trials` gave, types included.

    The layouts key cells by value (``float`` temperatures, ``bool`` loss.normalize, ``crop+color``
    ops), so a rebuilt report must see the same types: booleans and numbers in mixed or partly
    empty columns are restored cell by cell, the text columns stay text, an empty cell of a text
    column is ``""`` and of any other column NaN, and floats are read back to the last bit.
    """
    # exact by default from 3
    exact = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
    df = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={c: str for c in STRING_COLUMNS}, **exact)
    for col in df.columns:
        if col in STRING_COLUMNS:
            df[col] = df[col].fillna("")
        elif not (pd.api.types.is_numeric_dtype(df[col]) or pd.api.types.is_bool_dtype(df[col])):
            df[col] = pd.Series([_cell(v) for v in df[col]], index=df.index)  # infers the dtype as load_trials did
    return df


def _device_text(tags: dict[str, str]) -> str:
    """'cpu (AMD EPYC)' from the resolved device tags a trial logs at its start ('' if none)."""
    device, name = tags.get("device", ""), tags.get("device_name", "")
    return f"{device} ({name})" if device and name else device


RECIPE_AXIS = "recipe"
"""A study that varies the named recipe (core.recipes) has this axis, the one axis without a dot."""


def axis_columns(df: pd.DataFrame) -> list[str]:
    """The varied axes: the dotted-path columns, and ``recipe`` when the recipe is varied."""
    return [c for c in df.columns if (c == RECIPE_AXIS or "." in c) and not c.startswith(("step_", "protocol"))]


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
