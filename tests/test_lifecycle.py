"""A study's whole life through the real CLI: change and refusal, delete and rerun, SIGTERM, the
study's progress lines, the experiment as `mlflow ui` shows it, and run directories named by config."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from tests.test_engine import (
    cli,
    final_metrics,
    one_point_study,
    optuna_trials,
    popen,
    study_run,
    trial_runs,
    uninterrupted_metrics,
    wait_for_epoch,
    write_study,
)


def _client(folder: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")


def _two_point_study(folder: Path) -> Path:
    """The tiny study with one axis of two values: two trials of one epoch."""
    path = write_study(folder, epochs=1)
    path.write_text(path.read_text().split("grid:")[0] + "grid:\n  loss.temperature: [0.2, 0.5]\n")
    return path


@pytest.mark.slow
def test_change_delete_rerun_holds_only_the_new_definition(tmp_path):
    study = _two_point_study(tmp_path)
    part = cli(tmp_path, "run", str(study), "--max-trials", "1", "--no-progress")
    assert part.returncode == 0, part.stderr
    # the experiment opens on its runs in `mlflow ui`, and says what the study is
    exp = _client(tmp_path).get_experiment_by_name("tiny")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert exp.tags["mlflow.note.content"] == "A 2x2 grid on synthetic stripes, for tests."
    assert "workflowType=machine_learning" in part.stdout
    plan = cli(tmp_path, "plan", str(study))
    assert "2 trials, 1 done, 1 to run; about" in plan.stdout and "a trial (mean of 1 finished)" in plan.stdout
    first = cli(tmp_path, "run", str(study), "--no-progress")
    assert first.returncode == 0, first.stderr
    lines = [line for line in part.stderr.splitlines() + first.stderr.splitlines() if "study: " in line]
    assert len(lines) == 2 and all(") finished: linear_top1 " in line for line in lines)
    assert {line.split("trial ")[1].split(" (")[0] for line in lines} == {"1/2", "2/2"}
    assert "study: 1 done, 0 running, 1 to run, about" in lines[0]
    assert "study: 2 done, 0 running, 0 to run, nothing left" in lines[-1]
    old_dirs = sorted(p.name for p in (tmp_path / "runs" / "tiny").iterdir())

    refused = cli(tmp_path, "run", str(study), "--set", "train.epochs=2", "--no-progress")
    assert refused.returncode == 2
    assert "base.train.epochs: 1 -> 2" in refused.stderr  # the field that changed, with both values
    assert "python -m ablations delete tiny" in refused.stderr and "optuna delete-study" not in refused.stderr

    listed = cli(tmp_path, "delete", "tiny")  # no terminal to ask and no --yes: refuses, removes nothing
    assert listed.returncode == 2 and "Optuna study 'tiny' (2 trials)" in listed.stdout
    assert "4 MLflow runs of experiment 'tiny' (1 study run(s), 2 trial runs, 1 floor run(s))" in listed.stdout
    assert len(optuna_trials(tmp_path)) == 2
    deleted = cli(tmp_path, "delete", str(study), "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert not (tmp_path / "runs" / "tiny").exists() and not (tmp_path / "reports_out" / "tiny").exists()
    client = _client(tmp_path)
    exp = client.get_experiment_by_name("tiny")
    assert client.search_runs([exp.experiment_id]) == []  # in MLflow's trash, for `mlflow gc`
    assert len(client.search_runs([exp.experiment_id], run_view_type=2)) == 4  # DELETED_ONLY: study, trials, floor

    rerun = cli(tmp_path, "run", str(study), "--set", "train.epochs=2", "--no-progress")
    assert rerun.returncode == 0, rerun.stderr
    assert "this run: 2 trials finished, 0 failed" in rerun.stdout
    runs = trial_runs(tmp_path)
    assert len(runs) == 2 and {r.data.params["train.epochs"] for r in runs} == {"2"}
    assert {r.info.status for r in runs} == {"FINISHED"}  # none failed on a stale checkpoint
    assert study_run(tmp_path).info.status == "FINISHED"  # exactly one study run, and it ended
    new_dirs = sorted(p.name for p in (tmp_path / "runs" / "tiny").iterdir())
    assert len(new_dirs) == 2 and not set(new_dirs) & set(old_dirs)  # the config is in the name
    assert cli(tmp_path, "delete", "nothing-here", "--yes").returncode == 2


@pytest.mark.slow
def test_sigterm_requeues_the_trial_kills_the_study_run_and_the_next_run_resumes_at_once(tmp_path):
    study = one_point_study(tmp_path, epochs=12)
    proc = popen(tmp_path, "run", str(study), "--grace-period", "600", "--no-progress", log=tmp_path / "term.log")
    wait_for_epoch(tmp_path, 1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    log = (tmp_path / "term.log").read_text()
    assert "terminated (SIGTERM): the running trial is queued again" in log
    run = study_run(tmp_path)
    assert run.info.status == "KILLED" and run.data.tags["ablations.status"] == "killed"
    trials = optuna_trials(tmp_path)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]  # re-queued, claimable now
    assert trials[0].user_attrs["failure_reason"].startswith("terminated (SIGTERM)")
    # the floor came before the first trial: a report of the stopped study already weighs against it
    interim = cli(tmp_path, "report", "tiny")
    assert interim.returncode == 0, interim.stderr
    summary = json.loads((tmp_path / "reports_out" / "tiny" / "summary.json").read_text())
    assert (summary.get("floor") or {}).get("by_seed"), "the report of a stopped study has no floor"

    started = time.monotonic()
    again = cli(tmp_path, "run", str(study), "--grace-period", "600", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert time.monotonic() - started < 300  # no waiting out the 600 s grace period
    resumed = [r for r in trial_runs(tmp_path) if r.info.status == "FINISHED"]
    assert len(resumed) == 1 and int(resumed[0].data.tags["resumed_from_epoch"]) >= 1
    assert final_metrics(resumed[0]) == uninterrupted_metrics(tmp_path, study)


def test_a_legacy_run_directory_is_kept_only_for_its_own_config(tmp_path):
    from ablations.plan import point_run_dir, trial_digest
    from core.trainer import Trainer
    from tests.test_trainer import tiny_config

    config = tiny_config(**{"train.epochs": 1, "eval.linear": False, "eval.knn_every": 0})
    legacy = tmp_path / "abc123"
    Trainer(config, legacy).save_checkpoint(0)
    other = config.model_copy(update={"loss": config.loss.model_copy(update={"temperature": 0.9})})
    assert point_run_dir(tmp_path, "abc123", other) == tmp_path / f"abc123-{trial_digest(other)}"
    assert legacy.is_dir()  # another config's checkpoint: left alone, the trial starts afresh elsewhere
    moved = point_run_dir(tmp_path, "abc123", config)
    assert moved == tmp_path / f"abc123-{trial_digest(config)}" and (moved / "checkpoint.pt").exists()
    assert not legacy.exists()  # its own config's checkpoint: renamed, the trial resumes from it
    device = config.model_copy(update={"train": config.train.model_copy(update={"device": "cpu", "progress": False})})
    assert trial_digest(device) == trial_digest(config)  # where it runs is not what it is
