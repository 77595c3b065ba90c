"""The MLflow parent run of a study says what the study is doing: RUNNING while a `run` works on it,
FINISHED once every trial has ended (failed and pruned ones included), KILLED when the `run` was
interrupted. The Optuna study is the source of truth for trial states; this module only mirrors it
onto the parent run, with the counts and the best value as metrics and the study's description as
the run's note (``mlflow.note.content``, what `mlflow ui` shows first).

A study worked on from several machines: each `run` marks the parent RUNNING when it starts and, when
it ends, FINISHED only if no trial is still waiting or running, so the last one to finish closes it.
"""

from __future__ import annotations

import time
from typing import Any

import optuna
from mlflow.entities import Metric, RunTag
from optuna.trial import TrialState

__all__ = ["mark_running", "close_study_run"]

_OPEN = (TrialState.WAITING, TrialState.RUNNING)


def mark_running(client: Any, parent_run_id: str, description: str) -> None:
    """A `run` is working on the study (again): RUNNING, with the study's description as its note."""
    client.update_run(parent_run_id, status="RUNNING")
    if description:
        client.set_tag(parent_run_id, "mlflow.note.content", description)


def summary(opt: optuna.Study) -> dict[str, float]:
    """Trial counts by outcome and, when a trial completed, the best value and its trial number."""
    states = [t.state for t in opt.get_trials(deepcopy=False)]
    counts = {
        "trials_finished": states.count(TrialState.COMPLETE),
        "trials_failed": states.count(TrialState.FAIL),
        "trials_pruned": states.count(TrialState.PRUNED),
        "trials_open": sum(states.count(s) for s in _OPEN),
    }
    metrics = {k: float(v) for k, v in counts.items()}
    if counts["trials_finished"]:
        best = opt.best_trial
        metrics["best_value"] = float(best.value)  # type: ignore[arg-type]
        metrics["best_trial"] = float(best.number)
    return metrics


def close_study_run(client: Any, opt: optuna.Study, parent_run_id: str, interrupted: bool) -> str:
    """Log the summary; then KILLED if interrupted, FINISHED if no trial is open, else stay RUNNING.
    Returns the status the parent run is left in."""
    metrics = summary(opt)
    client.log_batch(parent_run_id, metrics=[Metric(k, v, int(time.time() * 1000), 0) for k, v in metrics.items()],
                     tags=[RunTag("ablations.open_trials", str(int(metrics["trials_open"])))])
    if interrupted:
        status = "KILLED"
    elif metrics["trials_open"]:
        return "RUNNING"
    else:
        status = "FINISHED"
    client.set_terminated(parent_run_id, status=status)
    return status
