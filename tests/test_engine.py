"""The study engine through the real CLI: MLflow and Optuna stores on disk, real worker processes.

Every test runs ``python -m ablations`` as a user would, each call its own process
(``tests.cli_process``: forked from a server that imported the CLI once), in a temporary folder, on
a tiny synthetic study (each trial trains for a second or two on CPU).
"""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.request
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from optuna.trial import TrialState

from core import checkpoint
from core.numerics import device_name, resolve_numerics
from tests.cli_process import cli, popen
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]

TINY = """\
name: tiny
description: A 2x2 grid on synthetic stripes, for tests.
base:
  data: {{source: synthetic, synthetic: {{num_classes: 4, train_size: 128, test_size: 64, image_size: 16}}}}
  model: {{encoder: resnet_small, width: 4, head_dim: 16}}
  optim: {{name: adam, lr: 0.001, lr_scaling: none, warmup_epochs: 0}}
  train: {{epochs: {epochs}, batch_size: 32, progress: false, log_every: 1}}
  eval: {{knn_k: 10, linear_epochs: 5, linear_batch_size: 32, batch_size: 128}}
grid:
  loss.temperature: [0.2, 0.5]
  augment.ops: [[crop], [crop, color]]
"""


def write_study(folder: Path, epochs: int = 2, extra: str = "") -> Path:
    path = folder / "tiny.yaml"
    path.write_text(TINY.format(epochs=epochs) + extra)
    return path


def one_point_study(folder: Path, epochs: int, eval_line: str | None = None) -> Path:
    """The tiny study reduced to one point (temperature 0.5), optionally with another ``eval:`` line."""
    text = TINY.format(epochs=epochs).split("grid:")[0] + "grid:\n  loss.temperature: [0.5]\n"
    if eval_line is not None:
        text = "\n".join(eval_line if line.startswith("  eval:") else line for line in text.splitlines()) + "\n"
    path = folder / "tiny.yaml"
    path.write_text(text)
    return path


def checkpoint_epoch(folder: Path, name: str = "tiny") -> int | None:
    """Epochs completed according to the study's (single) checkpoint, None before the first."""
    found = list((folder / "runs").glob(f"{name}/*/checkpoint.pt"))
    if not found:
        return None
    try:
        return int(checkpoint.load(found[0])["epoch"]) + 1
    except (OSError, RuntimeError, EOFError):  # replaced while we read it
        return None


def wait_for_epoch(folder: Path, epoch: int, timeout: float = 240) -> int:
    """Poll the checkpoint until it holds at least ``epoch`` completed epochs; returns what it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = checkpoint_epoch(folder)
        if done is not None and done >= epoch:
            return done
        time.sleep(0.1)
    raise AssertionError(f"no checkpoint with {epoch} epochs within {timeout} s")


FINAL_METRICS = ("linear_top1", "linear_top4", "knn_top1", "loss")


def final_metrics(run) -> dict[str, float]:
    """The metrics that must not depend on whether a run was interrupted (train_time_s does)."""
    return {k: run.data.metrics[k] for k in FINAL_METRICS}


def uninterrupted_metrics(folder: Path, study: Path) -> dict[str, float]:
    """Run ``study`` again from scratch under another name (own checkpoints) and return its final metrics."""
    out = cli(folder, "run", str(study), "--name", "reference", "--no-progress")
    assert out.returncode == 0, out.stderr
    (run,) = trial_runs(folder, "reference")
    return final_metrics(run)


def table_lines(text: str) -> list[str]:
    """The Markdown table's lines (header, rule, rows) from a command's output."""
    return [line for line in text.splitlines() if line.startswith("|")]


def trial_runs(folder: Path, name: str = "tiny", uri: str | None = None) -> list:
    client = MlflowClient(tracking_uri=uri or f"sqlite:///{folder / 'mlflow.db'}")
    exp = client.get_experiment_by_name(name)
    assert exp is not None
    return client.search_runs([exp.experiment_id], filter_string="tags.`ablations.role` = 'trial'")


def optuna_trials(folder: Path, name: str = "tiny") -> list:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'optuna.db'}").get_trials()


@pytest.mark.slow
def test_run_prints_table_logs_to_mlflow_and_rerun_skips_everything(tmp_path):
    study = write_study(tmp_path)
    first = cli(tmp_path, "run", str(study))
    assert first.returncode == 0, first.stderr
    assert "this run: 4 trials finished, 0 failed" in first.stdout
    table = first.stdout.split("linear_top1 (%)")[1]
    for ops in ("crop+color", "crop"):
        assert ops in table
    runs = trial_runs(tmp_path)
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        assert {"linear_top1", "linear_top4", "knn_top1", "loss", "lr", "images_per_sec"} <= set(run.data.metrics)
        assert run.data.params["loss.temperature"] in ("0.2", "0.5")
        assert run.data.tags["mlflow.parentRunId"]
        assert {"study", "trial", "git_commit", "axis.loss.temperature", "axis.augment.ops"} <= set(run.data.tags)
        # what really ran, resolved from train.device 'auto' and train.precision 'auto'
        auto = resolve_numerics("auto", None, torch.device("cpu"))
        assert run.data.tags["device"] == "cpu" and run.data.tags["device_name"] == device_name(torch.device("cpu"))
        assert run.data.tags["numerics"] == auto.describe() and run.data.tags["numerics.precision"] == auto.precision
        # the table shows what MLflow holds, to two decimals
        temp, ops = run.data.params["loss.temperature"], "+".join(json.loads(run.data.params["augment.ops"]))
        rows = [[c.strip() for c in line.strip("|").split("|")] for line in table_lines(table)[2:]]
        row = next(r for r in rows if float(r[0]) == float(temp) and r[1] == ops)
        assert row[2] == f"{run.data.metrics['linear_top1']:.2f}"
    assert {t.state for t in optuna_trials(tmp_path)} == {TrialState.COMPLETE}

    started = time.monotonic()
    second = cli(tmp_path, "run", str(study))
    assert second.returncode == 0, second.stderr
    assert "all 4 trials already finished: nothing to run" in second.stdout
    assert len(trial_runs(tmp_path)) == 4  # nothing trained again
    assert len(optuna_trials(tmp_path)) == 4
    assert time.monotonic() - started < 60

    plan = cli(tmp_path, "plan", str(study))
    assert plan.returncode == 0 and "4 trials, 4 done, 0 to run" in plan.stdout

    report = cli(tmp_path, "report", "tiny")
    assert report.returncode == 0 and table_lines(table) == table_lines(report.stdout.split("linear_top1 (%)")[1])


@pytest.mark.slow
def test_two_concurrent_runs_share_the_study_and_run_each_trial_once(tmp_path):
    study = write_study(tmp_path)
    procs = [popen(tmp_path, "run", str(study)) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    finished = [int(re.search(r"this run: (\d+) trials? finished", out)[1]) for out in outputs]  # "1 trial"
    assert sum(finished) == 4, outputs
    trials = optuna_trials(tmp_path)
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.user_attrs["key"] for t in trials) == sorted({t.user_attrs["key"] for t in trials})
    runs = trial_runs(tmp_path)
    assert len(runs) == 4 and len({r.data.tags["point"] for r in runs}) == 4


@pytest.mark.slow
def test_workers_option_runs_trials_in_parallel_processes(tmp_path):
    study = write_study(tmp_path)
    out = cli(tmp_path, "run", str(study), "--workers", "2", "--devices", "cpu")
    assert out.returncode == 0, out.stderr
    assert "this run: 4 trials finished" in out.stdout
    assert len(trial_runs(tmp_path)) == 4


@pytest.mark.slow
def test_killed_run_resumes_from_the_checkpoint(tmp_path):
    # one point, long enough (10-20 s) to be killed in the middle
    study = one_point_study(tmp_path, epochs=40)
    proc = popen(tmp_path, "run", str(study), "--grace-period", "3")
    wait_for_epoch(tmp_path, 1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = checkpoint_epoch(tmp_path)
    assert killed_at is not None and killed_at < 40
    second = cli(tmp_path, "run", str(study), "--grace-period", "3")
    assert second.returncode == 0, second.stderr
    trials = optuna_trials(tmp_path)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]  # killed attempt, then its retry
    assert trials[1].user_attrs["retry_of"] == 0 and trials[1].user_attrs["key"] == trials[0].user_attrs["key"]
    runs = trial_runs(tmp_path)
    resumed = [r for r in runs if r.info.status == "FINISHED"]
    assert len(resumed) == 1 and int(resumed[0].data.tags["resumed_from_epoch"]) >= killed_at
    # resuming changes nothing: the same numbers as a run never interrupted (CPU, same seed)
    assert final_metrics(resumed[0]) == uninterrupted_metrics(tmp_path, study)


@pytest.mark.slow
def test_a_resumed_run_counts_no_killed_worker_in_its_time_left(tmp_path):
    # two points; the first run is killed in its first trial, whose heartbeat then goes stale
    text = TINY.format(epochs=40).split("grid:")[0] + "grid:\n  loss.temperature: [0.2, 0.5]\n"
    study = tmp_path / "tiny.yaml"
    study.write_text(text)
    proc = popen(tmp_path, "run", str(study), "--grace-period", "3")
    wait_for_epoch(tmp_path, 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(4.0)  # past the grace period: the dead trial still reads RUNNING until a claim checks it
    second = cli(tmp_path, "run", str(study), "--grace-period", "3", "--max-trials", "1", "--no-progress")
    assert second.returncode == 0, second.stderr
    lines = [line for line in second.stderr.splitlines() if "study: " in line]
    assert len(lines) == 1 and "study: 1 done, 0 running, 1 to run, about" in lines[0], second.stderr
    assert lines[0].endswith("(1 worker here)"), lines[0]


@pytest.mark.slow
def test_a_diverging_trial_fails_with_its_reason_and_the_study_goes_on(tmp_path):
    study = tmp_path / "div.yaml"
    text = TINY.format(epochs=2).replace("name: tiny", "name: div").split("grid:")[0]
    study.write_text(
        text.replace("optim: {name: adam, lr: 0.001, lr_scaling: none, warmup_epochs: 0}",
                     "optim: {name: sgd, lr: 0.001, lr_scaling: none, warmup_epochs: 0}")
        + "zip:\n  optim.lr: [0.001, 1.0e+12]\n  loss.normalize: [true, false]\n"
    )
    out = cli(tmp_path, "run", str(study))
    assert out.returncode == 0, out.stderr
    assert "this run: 1 trial finished, 1 failed" in out.stdout
    assert "failed: trial 1: diverged" in out.stdout
    runs = {float(r.data.params["optim.lr"]): r for r in trial_runs(tmp_path, "div")}
    assert runs[1e12].info.status == "FAILED" and "diverged" in runs[1e12].data.tags["failure_reason"]
    assert runs[1e-3].info.status == "FINISHED"
    assert "failed (1)" in out.stdout.split("linear_top1 (%)")[1]
    # a new invocation retries the failed point (once), not the finished one
    # failed trials do not keep the study open: its MLflow run is FINISHED with the failure counted
    run = study_run(tmp_path, "div")
    assert run.info.status == "FINISHED" and run.data.metrics["trials_failed"] == 1
    again = cli(tmp_path, "run", str(study))
    assert "this run: 0 trials finished, 1 failed" in again.stdout
    assert len(trial_runs(tmp_path, "div")) == 3
    # the rerun added a trial, and left the study's run FINISHED again, with the new count
    run = study_run(tmp_path, "div")
    assert run.info.status == "FINISHED" and run.data.metrics["trials_failed"] == 2


def test_bad_study_exits_2_naming_file_and_line_and_writes_nothing(tmp_path):
    study = write_study(tmp_path, extra="colour: 3\n")
    out = cli(tmp_path, "run", str(study))
    assert out.returncode == 2
    assert f"{study}:12" in out.stderr and "colour" in out.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.db").exists()
    bad_set = cli(tmp_path, "run", str(write_study(tmp_path)), "--set", "loss.temprature=0.1")
    assert bad_set.returncode == 2 and "temprature" in bad_set.stderr and "temperature" in bad_set.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_missing_data_root_exits_2_before_writing_anything(tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text(TINY.format(epochs=1).replace("source: synthetic,", "source: imagefolder, root: nowhere/cifar,"))
    out = cli(tmp_path, "run", str(study))
    assert out.returncode == 2 and "nowhere/cifar does not exist" in out.stderr, out.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.db").exists()


def test_unreachable_tracking_server_stops_before_training(tmp_path):
    study = write_study(tmp_path)
    env_uri = f"http://127.0.0.1:{free_port()}"
    out = cli(tmp_path, "run", str(study), "--tracking-uri", env_uri, timeout=300)
    assert out.returncode == 2 and env_uri in out.stderr
    assert not (tmp_path / "runs").exists()


def optuna_state_counts(trials: list) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


@pytest.mark.slow
def test_mlflow_server_serves_the_study_over_rest(tmp_path, mlflow_server):
    base = mlflow_server
    study = write_study(tmp_path)
    out = cli(tmp_path, "run", str(study), "--tracking-uri", base, "--storage", f"sqlite:///{tmp_path / 'optuna.db'}")
    assert out.returncode == 0, out.stderr

    def get(path: str, query: str) -> dict:
        with urllib.request.urlopen(f"{base}/api/2.0/mlflow/{path}?{query}", timeout=10) as r:
            return json.loads(r.read())

    exp = get("experiments/get-by-name", "experiment_name=tiny")["experiment"]
    request = urllib.request.Request(
        f"{base}/api/2.0/mlflow/runs/search",
        data=json.dumps({"experiment_ids": [exp["experiment_id"]], "max_results": 100}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        runs = json.loads(r.read())["runs"]
    trials = [r for r in runs if {"key": "ablations.role", "value": "trial"} in r["data"]["tags"]]
    assert len(trials) == 4 and {r["info"]["status"] for r in trials} == {"FINISHED"}
    assert all(any(m["key"] == "linear_top1" for m in r["data"]["metrics"]) for r in trials)
    floors = [r for r in runs if {"key": "ablations.role", "value": "baseline"} in r["data"]["tags"]]
    assert len(floors) == 1  # the floor of its one seed
    assert len(runs) == 6  # and the study's parent run


def study_run(folder: Path, name: str = "tiny"):
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    exp = client.get_experiment_by_name(name)
    (run,) = client.search_runs([exp.experiment_id], filter_string="tags.`ablations.role` = 'study'")
    return run


@pytest.mark.slow
def test_the_study_run_is_finished_once_every_trial_ended_and_partial_while_some_wait(tmp_path):
    study = write_study(tmp_path)
    part = cli(tmp_path, "run", str(study), "--max-trials", "2", "--no-progress")
    assert part.returncode == 0, part.stderr
    run = study_run(tmp_path)
    # two of four points done and no process left on it: partial, never RUNNING, and it says so
    assert run.info.status == "KILLED" and run.info.end_time and run.data.tags["ablations.status"] == "partial"
    assert "the study is partial: 2 finished, 2 trials still to run" in part.stdout
    assert run.data.metrics["trials_finished"] == 2 and run.data.metrics["trials_open"] == 2
    assert run.data.tags["mlflow.note.content"] == "A 2x2 grid on synthetic stripes, for tests."

    rest = cli(tmp_path, "run", str(study), "--no-progress")
    assert rest.returncode == 0, rest.stderr
    run = study_run(tmp_path)
    assert run.info.status == "FINISHED" and run.info.end_time and run.data.tags["ablations.status"] == "finished"
    assert run.data.metrics["trials_finished"] == 4 and run.data.metrics["trials_open"] == 0
    assert run.data.metrics["trials_failed"] == 0 and run.data.metrics["trials_pruned"] == 0
    values = [r.data.metrics["linear_top1"] for r in trial_runs(tmp_path)]
    assert run.data.metrics["best_value"] == pytest.approx(max(values))
    # what the study compares, as params; the per-point means as a table beside the report
    assert run.data.params["axis.loss.temperature"] == "[0.2, 0.5]"
    assert run.data.params["axis.augment.ops"] == "[[crop], [crop, color]]"
    assert run.data.params["repeats"] == "1" and run.data.params["metric"] == "linear_top1 (maximize)"
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    summary = pd.read_csv(client.download_artifacts(run.info.run_id, "report/tables/summary.csv", str(tmp_path)))
    assert len(summary) == 4 and sorted(summary["mean"]) == pytest.approx(sorted(values))  # both in %
