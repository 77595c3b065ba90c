"""The MLflow parent run of a study says what the study is doing: RUNNING while a `run` works on it,
FINISHED once every trial has ended (failed and pruned ones included; a failed trial's retry, which
waits for the next `run`, does not keep it open), KILLED when the `run` was interrupted, and KILLED
with ``ablations.status=partial`` when a `run` stopped early (``--max-trials``) with trials left
that no process works on: a study is never RUNNING unless some process runs one of its trials.

The Optuna study is the source of truth for trial states; this module only mirrors it onto the
parent run, with the counts and the best value as metrics and the study's description as the run's
note (``mlflow.note.content``, what `mlflow ui` shows first), and the study's axes as params
(``axis.<path>``: the values a grid/zip varies, ``search.<path>``: a searched range), so the parent
run alone says what was compared. The per-point means are the report's ``tables/summary.csv``,
which the report logs to the same run.

A study worked on from several machines: each `run` marks the parent RUNNING when it starts and, when
it ends, FINISHED only if no trial is still waiting or running, so the last one to finish closes it.
"""

from __future__ import annotations

import time
from typing import Any

import optuna
from mlflow.entities import Metric, Param, RunTag
from optuna.trial import TrialState

from ablations.engine import NOT_BEFORE

__all__ = ["mark_running", "close_study_run", "study_params"]
_PARAM_MAX = 6000  # MLflow's limit on a param value

_OPEN = (TrialState.WAITING, TrialState.RUNNING)


def study_params(study: Any) -> dict[str, str]:
    """What the study compares, as MLflow params: its axes, repeats, scale and metric."""
    from ablations.study import format_value

    params = {
        f"axis.{k}": "[" + ", ".join(format_value(v) for v in values) + "]"
        for k, values in {**study.grid, **study.zip}.items()
    }
    if study.search is not None:
        for k, p in study.search.params.items():
            span = f"{p.choices}" if p.type == "categorical" else f"[{p.low}, {p.high}]{' log' if p.log else ''}"
            params[f"search.{k}"] = f"{p.type} {span}"
        params["search.n_trials"] = str(study.search.n_trials)
    params.update(repeats=str(study.repeats), scale=study.scale or "full", metric=f"{study.metric} ({study.direction})")
    return {k: v if len(v) <= _PARAM_MAX else v[: _PARAM_MAX - 3] + "..." for k, v in params.items()}


def mark_running(client: Any, parent_run_id: str, study: Any) -> None:
    """A `run` is working on the study (again): RUNNING, its description as the note, its axes as params.

    The axes are the same on every run of one study (its fingerprint fixes them); the metric is
    not, and MLflow refuses to change a param, so only params the run does not have yet are logged.
    """
    client.update_run(parent_run_id, status="RUNNING")
    if study.description:
        client.set_tag(parent_run_id, "mlflow.note.content", study.description)
    have = client.get_run(parent_run_id).data.params
    new = [Param(k, v) for k, v in study_params(study).items() if k not in have]
    if new:
        client.log_batch(parent_run_id, params=new)


def summary(opt: optuna.Study) -> dict[str, float]:
    """Trial counts by outcome and, when a trial completed, the best value and its trial number."""
    trials = opt.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    # a failed trial's retry waits for the next `run` (engine.NOT_BEFORE): the study has ended until then
    deferred = sum(1 for t in trials if t.state == TrialState.WAITING and NOT_BEFORE in t.user_attrs)
    counts = {
        "trials_finished": states.count(TrialState.COMPLETE),
        "trials_failed": states.count(TrialState.FAIL),
        "trials_pruned": states.count(TrialState.PRUNED),
        "trials_open": sum(states.count(s) for s in _OPEN) - deferred,
        "trials_running": states.count(TrialState.RUNNING),
        "retries_waiting": deferred,
    }
    metrics = {k: float(v) for k, v in counts.items()}
    if counts["trials_finished"]:
        best = opt.best_trial
        metrics["best_value"] = float(best.value)  # type: ignore[arg-type]
        metrics["best_trial"] = float(best.number)
    return metrics


def close_study_run(client: Any, opt: optuna.Study, parent_run_id: str, interrupted: bool) -> str:
    """Log the summary, then end the parent run as what the study now is, and return that:

    - ``killed``: this `run` was interrupted (Ctrl-C, SIGTERM); MLflow status KILLED;
    - ``finished``: no trial is left to run; FINISHED;
    - ``running``: another process still runs a trial of it; the run stays RUNNING for that one to close;
    - ``partial``: trials are left but no process works on them (``--max-trials``); KILLED, since
      MLflow has no partial state, with the tag ``ablations.status=partial``.
    """
    metrics = summary(opt)
    if interrupted:
        state, status = "killed", "KILLED"
    elif not metrics["trials_open"]:
        state, status = "finished", "FINISHED"
    elif metrics["trials_running"]:
        state, status = "running", None
    else:
        state, status = "partial", "KILLED"
    client.log_batch(parent_run_id, metrics=[Metric(k, v, int(time.time() * 1000), 0) for k, v in metrics.items()],
                     tags=[RunTag("ablations.open_trials", str(int(metrics["trials_open"]))),
                           RunTag("ablations.status", state)])
    if status is not None:
        client.set_terminated(parent_run_id, status=status)
    return state
