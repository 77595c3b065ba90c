"""One study trial over K processes (``devices_per_trial: K``), launched with torchrun.

The worker that claimed the trial (ablations.engine) keeps the claim and its heartbeats; it writes a
spec file and starts ``torchrun --standalone --nproc-per-node K -m ablations.distributed_trial
SPEC``. Every rank trains (core.trainer handles the process group); rank 0 alone logs to the
trial's MLflow run, reports to the Optuna trial (so pruning works as in one process) and writes
the outcome file the worker reads back. The worker then records the outcome exactly as for a
one-process trial: a failure inside the group becomes an ordinary failed trial with its reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from core.atomic import write_atomic
from core.config import RunConfig
from core.evaluate import Accuracy
from core.trainer import TrainingDiverged, TrainResult

OUTCOME = "outcome.json"
LOG = "torchrun.log"


@dataclass
class TrialSpec:
    """What the group needs to run and record one trial (written as JSON for the ranks)."""

    config: dict[str, Any]
    run_dir: str
    tracking_uri: str
    run_id: str
    storage: str
    study_name: str
    trial_id: int
    prune: bool
    tracking_timeout_s: float = 300.0


def devices_env(devices: list[str]) -> dict[str, str]:
    """Environment that gives the group its devices: CUDA_VISIBLE_DEVICES for ``cuda:i`` lists
    (rank r then takes cuda:r of those), nothing for CPU."""
    indices = [d.split(":", 1)[1] for d in devices if d.startswith("cuda:")]
    return {"CUDA_VISIBLE_DEVICES": ",".join(indices)} if indices else {}


def launch(spec: TrialSpec, procs: int, devices: list[str]) -> TrainResult:
    """Run the trial over ``procs`` processes; return rank 0's result, or raise what stopped it
    (optuna.TrialPruned, TrainingDiverged, RuntimeError with the group's last output)."""
    folder = Path(spec.run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    outcome_path = folder / OUTCOME
    outcome_path.unlink(missing_ok=True)
    fd, spec_path = tempfile.mkstemp(prefix="trial-", suffix=".json", dir=folder)
    with os.fdopen(fd, "w") as f:
        json.dump(spec.__dict__, f)
    env = {**os.environ, **devices_env(devices)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}",
               "-m", "ablations.distributed_trial", spec_path]
    try:
        with (folder / LOG).open("w") as log:
            status = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    finally:
        Path(spec_path).unlink(missing_ok=True)
    if not outcome_path.exists():
        tail = (folder / LOG).read_text(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(
            f"torchrun group of {procs} exited with status {status} before rank 0 reported: " + " | ".join(tail)
        )
    return _result(json.loads(outcome_path.read_text()))


def _result(outcome: dict[str, Any]) -> TrainResult:
    status = outcome["status"]
    if status == "pruned":
        raise optuna.TrialPruned(outcome["reason"])
    if status == "diverged":
        raise TrainingDiverged(outcome["epoch"], outcome["step"], outcome["value"])
    if status != "complete":
        raise RuntimeError(outcome["reason"])
    accuracies = [Accuracy(**a) for a in outcome["accuracies"]]
    checkpoint = Path(outcome["checkpoint"]) if outcome["checkpoint"] else None
    return TrainResult(outcome["metrics"], accuracies, outcome["history"], checkpoint)


def rank_main(spec_path: str) -> int:
    """What every rank runs; rank 0 records."""
    from ablations import tracking
    from ablations.optuna_access import live_trial
    from ablations.pruning import PruningCallback
    from core import distributed
    from core.trainer import StoppedByMain, train

    spec = TrialSpec(**json.loads(Path(spec_path).read_text()))
    info = distributed.env_info()
    config = RunConfig.model_validate(spec.config)
    callbacks: list[Any] = []
    outcome: dict[str, Any]
    try:
        with contextlib.ExitStack() as stack:
            if info.is_main:
                client = tracking.connect(spec.tracking_uri)
                callbacks.append(
                    stack.enter_context(tracking.MlflowCallback(client, spec.run_id, spec.tracking_timeout_s))
                )
                if spec.prune:
                    study = optuna.load_study(study_name=spec.study_name, storage=spec.storage)
                    callbacks.append(PruningCallback(live_trial(study, spec.trial_id)))
            result = train(config, run_dir=Path(spec.run_dir), callbacks=callbacks)
        outcome = {
            "status": "complete",
            "metrics": result.metrics,
            "accuracies": [a.__dict__ for a in result.accuracies],
            "history": result.history,
            "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        }
    except optuna.TrialPruned as exc:
        outcome = {"status": "pruned", "reason": str(exc)}
    except TrainingDiverged as exc:
        outcome = {"status": "diverged", "epoch": exc.epoch, "step": exc.step, "value": exc.value}
    except StoppedByMain:
        return 1  # rank 0 reports why
    except Exception as exc:
        outcome = {"status": "failed", "reason": f"rank {info.rank}: {type(exc).__name__}: {exc}"}
    finally:
        distributed.shutdown()
    if info.is_main:
        write_atomic(Path(spec.run_dir) / OUTCOME, lambda f: f.write(json.dumps(outcome).encode()))
    return 0 if outcome["status"] == "complete" else 1


if __name__ == "__main__":
    sys.exit(rank_main(sys.argv[1]))
