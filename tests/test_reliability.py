"""Reliability: what the study engine does when the world misbehaves.

The tracking server goes away mid-trial, workers are killed at random or during the final
evaluation, a GPU runs out of memory, the input is wrong, the data cache is torn. Each test runs
the code users run (the CLI, a real MLflow store or server, a real Optuna SQLite storage) on the
tiny synthetic study of tests/test_engine.py.
"""

from __future__ import annotations

import json
import logging
import random
import re
import signal
import subprocess
import time
from functools import partial
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from optuna.trial import TrialState

from ablations import tracking
from ablations.cli import main
from ablations.engine import EngineOptions, _requeue, _take, claim, load_or_create, make_storage, requeue_lost, work
from ablations.optuna_access import storage_of, stored_trial, trials_of
from ablations.study import load_study, points
from core.data import load_dataset
from core.trainer import Trainer
from tests.test_data import _cfg, _same, _write_tree
from tests.test_engine import (
    TINY,
    cli,
    final_metrics,
    one_point_study,
    optuna_trials,
    popen,
    trial_runs,
    uninterrupted_metrics,
    wait_for_epoch,
    write_study,
)

OOM_HINT = "lower train.batch_size or give the trial more devices"


# ------------------------------------------------------------------ 1. the tracking server goes away
@pytest.mark.slow
def test_tracking_server_restart_mid_trial_loses_no_metric(tmp_path, mlflow_server_process):
    server = mlflow_server_process
    epochs = 12
    study = one_point_study(tmp_path, epochs=epochs)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    # MLflow's client retries for minutes by itself; without that the outage reaches our buffering at once
    no_client_retries = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    proc = popen(tmp_path, "run", str(study), "--tracking-uri", server.url, "--storage", storage, "--no-progress",
                 log=tmp_path / "run.log", env=no_client_retries)
    wait_for_epoch(tmp_path, 2)
    server.stop(signal.SIGKILL)  # the tracking host dies in the middle of the trial ...
    down_ms = time.time() * 1000
    time.sleep(3)
    up_ms = time.time() * 1000
    server.start()  # ... and comes back, same port, same store
    assert proc.wait(timeout=300) == 0, (tmp_path / "run.log").read_text()
    assert "this run: 1 trial finished, 0 failed" in (tmp_path / "run.log").read_text()

    (trial,) = optuna_trials(tmp_path)
    assert trial.state == TrialState.COMPLETE
    (run,) = trial_runs(tmp_path, uri=server.url)
    assert run.info.status == "FINISHED"
    client = MlflowClient(tracking_uri=server.url)

    def steps(key: str) -> list[int]:
        return sorted(m.step for m in client.get_metric_history(run.info.run_id, key))

    for key in ("lr", "images_per_sec", "epoch_time_s"):  # per epoch, each exactly once
        assert steps(key) == list(range(1, epochs + 1)), key
    assert steps("loss") == [*range(1, epochs + 1), epochs]  # per epoch, plus the final value at the last step
    assert steps("step_loss") == list(range(1, 4 * epochs + 1))  # 4 steps per epoch, log_every 1
    stamps = [m.timestamp for m in client.get_metric_history(run.info.run_id, "step_loss")]
    assert any(down_ms < t < up_ms for t in stamps), "no metric was made while the server was down"
    assert {"linear_top1", "linear_top4", "knn_top1", "train_time_s"} <= set(run.data.metrics)
    assert run.data.metrics["linear_top1"] == trial.user_attrs["metric.linear_top1"] == trial.value


class _Unreachable(Exception):
    """What the client raises for a tracking server that never comes back."""


@pytest.mark.slow
def test_final_metrics_that_cannot_be_stored_fail_the_trial_and_requeue_it(tmp_path, monkeypatch):
    study = one_point_study(tmp_path, epochs=1)
    real = MlflowClient.log_batch

    def log_batch(self, run_id, metrics=(), params=(), tags=(), **kwargs):
        if any(m.key == "linear_top1" for m in metrics):
            raise _Unreachable("connection refused")
        return real(self, run_id, metrics=metrics, params=params, tags=tags, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", log_batch)
    options = EngineOptions(storage=f"sqlite:///{tmp_path / 'optuna.db'}",
                            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                            runs_dir=tmp_path / "runs", progress=False, tracking_timeout_s=3)
    report = work(load_study(study), "tiny", options)
    assert report.completed == [] and len(report.failed) == 1
    reason = report.failed[0][1]
    assert (reason.startswith("TrackingError: ") and "could not be stored within 3 s" in reason
            and "connection refused" in reason)
    failed, retry = optuna_trials(tmp_path)
    assert failed.state == TrialState.FAIL and failed.user_attrs["failure_reason"] == reason
    assert retry.state == TrialState.WAITING and retry.user_attrs["retry_of"] == failed.number
    (run,) = trial_runs(tmp_path)
    assert run.info.status == "FAILED" and run.data.tags["failure_reason"] == reason
    # What could be stored, was: the per-step metrics of training went out long before the final ones.
    # (Not the epoch's "loss": with one epoch it may share a batch with linear_top1 when the sender
    # thread is slow to wake, as on CI's loaded 2 cores on 2026-12-03, and go down with it.)
    assert "step_loss" in run.data.metrics and "linear_top1" not in run.data.metrics


def test_run_log_keeps_metrics_while_the_server_is_away():
    class Blinking:
        """A client that refuses the first two batches."""

        def __init__(self) -> None:
            self.refusals, self.metrics, self.tags = 2, [], []

        def log_batch(self, run_id, metrics=(), tags=()):
            if self.refusals:
                self.refusals -= 1
                raise ConnectionError("refused")
            self.metrics += [(m.key, m.step, m.value) for m in metrics]
            self.tags += [(t.key, t.value) for t in tags]

    client = Blinking()
    with tracking.RunLog(client, "run", pause_s=0.05) as run_log:  # type: ignore[arg-type]
        for step in range(1, 1001):  # more than one batch
            run_log.log({"step_loss": 1.0 / step}, step)
        run_log.log({"linear_top1": 50.0}, 1000, tags={"protocol.linear_top1": "frozen"})
        run_log.flush(timeout_s=10)
        assert run_log.pending() == 0 and client.refusals == 0
    assert client.metrics == [("step_loss", s, 1.0 / s) for s in range(1, 1001)] + [("linear_top1", 1000, 50.0)]
    assert client.tags == [("protocol.linear_top1", "frozen")]


def test_run_log_fails_fast_when_mlflow_refuses_the_metrics():
    class Refusing:
        def log_batch(self, run_id, metrics=(), tags=()):
            raise MlflowException("run is deleted", error_code=INVALID_PARAMETER_VALUE)

    run_log = tracking.RunLog(Refusing(), "run", pause_s=0.05)  # type: ignore[arg-type]
    run_log.log({"loss": 1.0}, 1)
    started = time.monotonic()
    with pytest.raises(tracking.TrackingError, match="MLflow refused metrics of run run: .*run is deleted"):
        run_log.flush(timeout_s=60)
    assert time.monotonic() - started < 10  # not retried until the deadline: retrying cannot help
    with pytest.raises(tracking.TrackingError):
        run_log.log({"loss": 0.5}, 2)  # training stops at its next step
    run_log.close()


# ------------------------------------------------------------------ 2. workers killed at random
def _study_done(storage: str, keys: set[str]) -> bool:
    try:
        trials = optuna.load_study(study_name="stress", storage=storage).get_trials(deepcopy=False)
    except KeyError:
        return False
    return {t.user_attrs.get("key") for t in trials if t.state == TrialState.COMPLETE} == keys


def _wait_until_created(storage: str, timeout: float = 120) -> None:
    """The study exists with all its points enqueued (a kill before that is not what this test is about)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if optuna.load_study(study_name="stress", storage=storage).user_attrs.get("ready"):
                return
        except Exception:  # not there yet, or the file is being created
            pass
        time.sleep(0.3)
    raise AssertionError("the study was never created")


@pytest.mark.slow
def test_sigkilled_workers_never_run_a_point_twice_nor_lose_one(tmp_path):
    study = tmp_path / "stress.yaml"
    study.write_text(TINY.format(epochs=6).replace("name: tiny", "name: stress") + "repeats: 2\n")
    keys = {p.key() for p in points(load_study(study))}
    assert len(keys) == 8
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = ("run", str(study), "--storage", storage, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--grace-period", "2", "--no-progress")
    rng = random.Random(20261125)
    logs: dict[subprocess.Popen, Path] = {}

    def launch() -> subprocess.Popen:
        log = tmp_path / f"worker{len(logs) + 1}.log"
        proc = popen(tmp_path, *args, log=log)
        logs[proc] = log
        return proc

    def has_claimed(proc: subprocess.Popen) -> bool:  # past start-up: killing it there is the interesting part
        return proc.poll() is None and re.search(r"^\S+ trial \d+: ", logs[proc].read_text(), re.M) is not None

    workers = [launch() for _ in range(3)]
    _wait_until_created(storage)
    kills, deadline = 0, time.monotonic() + 300
    while not _study_done(storage, keys):
        assert time.monotonic() < deadline, "the study did not complete in time"
        time.sleep(rng.uniform(0.3, 2.0))
        busy = [w for w in workers if has_claimed(w)]
        if kills < 5 and busy:
            rng.choice(busy).send_signal(signal.SIGKILL)
            kills += 1
        workers = [w for w in workers if w.poll() is None]
        while len(workers) < 3 and not _study_done(storage, keys):
            workers.append(launch())
    for w in workers:  # with nothing left to claim, the survivors finish on their own
        w.wait(timeout=120)
    assert kills >= 3

    trials = optuna.load_study(study_name="stress", storage=storage).get_trials()
    complete = [t.user_attrs["key"] for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(complete) == sorted(keys), "a point ran twice or was lost"
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.FAIL}
    finished = [r for r in trial_runs(tmp_path, "stress") if r.info.status == "FINISHED"]
    assert sorted(r.data.tags["point"] for r in finished) == sorted(keys)
    by_key = {t.user_attrs["key"]: t for t in trials if t.state == TrialState.COMPLETE}
    for run in finished:
        assert run.data.metrics["linear_top1"] == by_key[run.data.tags["point"]].value
    # no trial was trained by two workers: every MLflow run, failed ones included, is a different
    # claimed trial of its own point (a double claim shows up as two runs of one trial number)
    runs = trial_runs(tmp_path, "stress")
    numbers = [int(r.data.tags["trial"]) for r in runs]
    assert len(numbers) == len(set(numbers)), "a trial was trained twice"
    key_of = {t.number: t.user_attrs.get("key") for t in trials}
    assert all(key_of[int(r.data.tags["trial"])] == r.data.tags["point"] for r in runs)
    assert not [r for r in runs if "taken over" in r.data.tags.get("failure_reason", "")]


def _claim_all(url: str, start, queue) -> None:
    """One racing process: wait for the common start (a barrier every racer reaches once its storage
    is open), then try to claim every waiting trial.

    Reading a trial's state takes 2 ms more than it does here (a busy disk, a loaded machine),
    which widens the window between Optuna's read and its update: without a claim lock that
    window is where two processes both see WAITING.
    """
    from optuna.storages._rdb import models

    read = models.TrialModel.find_or_raise_by_id

    def slow_read(*args, **kwargs):
        trial = read(*args, **kwargs)
        time.sleep(0.002)
        return trial

    models.TrialModel.find_or_raise_by_id = staticmethod(slow_read)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    options = EngineOptions(storage=url, tracking_uri="unused", grace_period=600)
    opt = optuna.load_study(study_name="race", storage=make_storage(url, options))
    storage = storage_of(opt)  # what claim() hands to _take: Optuna's cache around the RDB storage
    waiting = trials_of(opt, states=(TrialState.WAITING,))
    start.wait(timeout=120)
    queue.put([f.number for f in waiting if _take(storage, f)])


def claims_race(url: str, processes: int = 6, trials: int = 300) -> list[int]:
    """``processes`` processes claim over ``trials`` waiting trials at the same instant, through the
    engine's own claim; returns every claimed trial number (a number twice is a double claim)."""
    import multiprocessing

    opt = optuna.create_study(study_name="race",
                              storage=make_storage(url, EngineOptions(storage=url, tracking_uri="unused")))
    for i in range(trials):
        opt.enqueue_trial({"x": i}, skip_if_exists=False)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start = ctx.Barrier(processes)  # released once every process has imported and opened the storage
    procs = [ctx.Process(target=_claim_all, args=(url, start, queue)) for _ in range(processes)]
    for p in procs:
        p.start()
    claimed = [n for _ in procs for n in queue.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
    return claimed


@pytest.mark.slow
def test_racing_claims_on_sqlite_never_take_a_trial_twice(tmp_path):
    # without the claim lock: 1 double claim in 300 trials in 1 of 3 runs as they are, and
    # a few in every run with the 2 ms slower read (3 of 200 in the run that checked this test)
    claimed = claims_race(f"sqlite:///{tmp_path / 'race.db'}", trials=200)
    assert sorted(claimed) == list(range(200)), f"{len(claimed) - len(set(claimed))} double claims"


def test_a_lost_retry_is_enqueued_once_and_a_duplicate_never_runs(tmp_path):
    study = load_study(write_study(tmp_path, epochs=1))
    options = EngineOptions(storage=f"sqlite:///{tmp_path / 'optuna.db'}",
                            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                            grace_period=600)
    client = tracking.connect(options.tracking_uri)
    opt = load_or_create(study, "tiny", make_storage(options.storage, options, client), client)
    started = time.time()
    first = claim(opt, study, started, client)
    opt.tell(first, state=TrialState.FAIL)  # its worker died before it could enqueue the retry
    requeue_lost(opt, client)
    requeue_lost(opt, client)  # once is enough: the retry is there now
    retries = [t for t in opt.get_trials() if t.user_attrs.get("retry_of") == first.number]
    assert len(retries) == 1 and retries[0].state == TrialState.WAITING
    _requeue(opt, stored_trial(opt, first), 0.0, "a second worker, at the same moment")

    claimed = []
    while (trial := claim(opt, study, started, client)) is not None:
        claimed.append(stored_trial(opt, trial).user_attrs["key"])
    assert sorted(claimed) == sorted(p.key() for p in points(study))  # every point once, the lost one included
    duplicate = opt.get_trials()[-1]
    assert duplicate.state == TrialState.FAIL and duplicate.user_attrs["duplicate_of"] == retries[0].number


def test_ctrl_c_while_the_study_is_created_leaves_nothing_half_made(tmp_path, monkeypatch):
    # Before: the half-made study stayed in the storage, and every later `run` waited 2 minutes for
    # its dead creator, then told the user to delete it by hand.
    study = load_study(write_study(tmp_path, epochs=1))
    options = EngineOptions(storage=f"sqlite:///{tmp_path / 'optuna.db'}",
                            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = tracking.connect(options.tracking_uri)
    storage = make_storage(options.storage, options, client)
    real_enqueue = optuna.Study.enqueue_trial
    calls = []

    def interrupted_after_two(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_enqueue(self, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "enqueue_trial", interrupted_after_two)
    with pytest.raises(KeyboardInterrupt):
        load_or_create(study, "tiny", storage, client)
    monkeypatch.setattr(optuna.Study, "enqueue_trial", real_enqueue)
    assert "tiny" not in [s.study_name for s in optuna.get_all_study_summaries(storage)]

    started = time.monotonic()
    opt = load_or_create(study, "tiny", storage, client, wait_s=5)
    assert time.monotonic() - started < 5  # created afresh, not waiting for the gone creator
    keys = [t.user_attrs["key"] for t in opt.get_trials()]
    assert sorted(keys) == sorted(p.key() for p in points(study))  # every point once
    parents = [r for r in client.search_runs([tracking.experiment_id(client, "tiny")])
               if r.data.tags.get(tracking.PARENT_TAG) == "study"]
    assert [r.info.run_id for r in parents] == [opt.user_attrs["mlflow_parent_run_id"]]  # the first one deleted


def test_a_worker_killed_before_recording_its_run_id_leaves_no_run_running(tmp_path):
    # The worker creates the trial's MLflow run, then saves its id on the Optuna trial; killed in
    # between, the run was left RUNNING for ever. Whoever finds the trial dead finds the run by tags.
    study = load_study(write_study(tmp_path, epochs=1))
    options = EngineOptions(storage=f"sqlite:///{tmp_path / 'optuna.db'}",
                            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                            heartbeat_interval=1, grace_period=1)
    client = tracking.connect(options.tracking_uri)
    opt = load_or_create(study, "tiny", make_storage(options.storage, options, client), client)
    dead = claim(opt, study, time.time(), client)
    orphan = tracking.create_trial_run(client, tracking.experiment_id(client, "tiny"),
                                       opt.user_attrs["mlflow_parent_run_id"],
                                       "dying", {"study": "tiny", "trial": str(dead.number)})
    other = tracking.create_trial_run(client, tracking.experiment_id(client, "tiny"),
                                      opt.user_attrs["mlflow_parent_run_id"],
                                      "alive", {"study": "tiny", "trial": str(dead.number + 1)})
    time.sleep(2.5)  # no heartbeat from the killed worker for longer than the grace period
    claim(opt, study, time.time(), client)  # another worker looks: the dead trial is failed and re-queued
    assert stored_trial(opt, dead).state == TrialState.FAIL
    run = client.get_run(orphan)
    assert run.info.status == "FAILED" and run.data.tags["failure_reason"] == "worker stopped sending heartbeats"
    assert client.get_run(other).info.status == "RUNNING"  # another trial's run is left alone


# ------------------------------------------------------------------ 3. out of GPU memory
@pytest.mark.slow
def test_out_of_memory_fails_its_trial_with_the_hint_and_the_study_goes_on(tmp_path, monkeypatch, capsys):
    study = write_study(tmp_path, epochs=1)
    real_step = Trainer.step

    def step(self, v1, v2):  # only the point with temperature 0.2 and colour distortion runs out
        if self.config.loss.temperature == 0.2 and "color" in self.config.augment.ops:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real_step(self, v1, v2)

    monkeypatch.setattr(Trainer, "step", step)
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(study), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "this run: 3 trials finished, 1 failed" in out

    runs = trial_runs(tmp_path)
    failed = [r for r in runs if r.info.status == "FAILED"]
    assert len(failed) == 1 and OOM_HINT in failed[0].data.tags["failure_reason"]
    assert failed[0].data.params["loss.temperature"] == "0.2" and "color" in failed[0].data.params["augment.ops"]
    assert sum(r.info.status == "FINISHED" for r in runs) == 3
    assert f"failed: trial {failed[0].data.tags['trial']}: out of memory" in out
    trials = optuna_trials(tmp_path)
    (oom,) = [t for t in trials if t.state == TrialState.FAIL]
    assert OOM_HINT in oom.user_attrs["failure_reason"]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    (retry,) = [t for t in trials if t.state == TrialState.WAITING]  # tried again by the next `run`
    assert retry.user_attrs["retry_of"] == oom.number and OOM_HINT in retry.user_attrs["retry_reason"]


# ------------------------------------------------------------------ 4. bad input
BAD_FILES = {  # case -> (edit of the tiny study, line the message names, what it says)
    "malformed_yaml": (("[0.2, 0.5]", "[0.2, 0.5"), 11, "malformed YAML"),
    "wrong_type": (("epochs: 1,", "epochs: many,"), 7, "base.train.epochs: Input should be a valid integer"),
    "out_of_range": (("knn_k: 10", "knn_k: -3"), 8, "base.eval.knn_k: Value error, expected k >= 1"),
    "unknown_dataset": (("source: synthetic", "source: cifar11"), 4, "base.data.source: Input should be 'cifar10'"),
}


def assert_rejected(folder: Path, out, names: str) -> None:
    """Exit 2, one message naming the culprit, nothing written."""
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: ") and out.stderr.count("error: ") == 1 and "Traceback" not in out.stderr
    assert names in out.stderr, out.stderr
    for written in ("mlflow.db", "optuna.db", "runs"):
        assert not (folder / written).exists(), written


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_study_file_exits_2_naming_the_line_and_writes_nothing(tmp_path, case):
    (old, new), line, says = BAD_FILES[case]
    study = write_study(tmp_path, epochs=1)
    study.write_text(study.read_text().replace(old, new))
    out = cli(tmp_path, "run", str(study))
    assert_rejected(tmp_path, out, f"{study}:{line}: ")
    assert says in out.stderr


def test_unwritable_runs_dir_exits_2_naming_the_option_and_writes_nothing(tmp_path):
    study = write_study(tmp_path, epochs=1)
    (tmp_path / "notes.txt").write_text("a file, not a folder: nobody, root included, can create runs/ in it\n")
    out = cli(tmp_path, "run", str(study), "--runs-dir", "notes.txt/runs")
    assert_rejected(tmp_path, out, "--runs-dir notes.txt/runs: ")
    assert "is not a folder" in out.stderr


# ------------------------------------------------------------------ 5. torn data cache
def _only_entry(cache: Path) -> Path:
    (entry,) = cache.iterdir()
    return entry


def test_corrupted_cache_file_of_the_right_size_is_detected_and_rebuilt(tmp_path, caplog):
    _write_tree(tmp_path / "imgs")
    cfg = _cfg(tmp_path, source="imagefolder", root=tmp_path / "imgs")
    first = load_dataset(cfg)
    npy = _only_entry(tmp_path / "cache") / "train_images.npy"
    good = npy.read_bytes()
    npy.write_bytes(good[:-10] + bytes(b ^ 0xFF for b in good[-10:]))  # same size, garbage pixels
    with caplog.at_level(logging.WARNING, logger="core.data.cache"):
        second = load_dataset(cfg)
    assert f"data cache file {npy} is unreadable" in caplog.text and "SHA-256" in caplog.text
    assert _same(first, second) and npy.read_bytes() == good  # rebuilt from the images, not loaded as garbage


TRAIN_ON_TREE = ["--set", "data.source=imagefolder", "--set", "data.root=imgs", "--set", "data.cache_dir=cache",
                 "--set", "model.encoder=resnet_small", "--set", "model.width=4", "--set", "train.epochs=1",
                 "--set", "train.batch_size=4", "--set", "train.progress=false", "--set", "eval.knn_k=3",
                 "--set", "eval.linear_epochs=2", "--set", "optim.warmup_epochs=0"]


@pytest.mark.slow
def test_truncated_cache_file_is_reported_and_rebuilt_by_train(tmp_path):
    _write_tree(tmp_path / "imgs")
    first = cli(tmp_path, "train", *TRAIN_ON_TREE, "--run-dir", "first", "--json", "first.json")
    assert first.returncode == 0, first.stderr
    npy = _only_entry(tmp_path / "cache") / "train_images.npy"
    good = npy.read_bytes()
    npy.write_bytes(good[: len(good) // 2])  # a copy cut short
    second = cli(tmp_path, "train", *TRAIN_ON_TREE, "--run-dir", "second", "--json", "second.json")
    assert second.returncode == 0, second.stderr
    assert f"data cache file {npy.resolve()} is unreadable" in second.stderr and "truncated" in second.stderr
    assert npy.read_bytes() == good
    metrics = [json.loads((tmp_path / f"{n}.json").read_text())["metrics"] for n in ("first", "second")]
    assert {k: v for k, v in metrics[0].items() if k != "train_time_s"} == {
        k: v for k, v in metrics[1].items() if k != "train_time_s"}  # the same data, so the same run


def test_cache_arrays_round_trip_with_checksums(tmp_path):
    _write_tree(tmp_path / "imgs")
    cfg = _cfg(tmp_path, source="imagefolder", root=tmp_path / "imgs")
    load_dataset(cfg)
    meta = json.loads((_only_entry(tmp_path / "cache") / "meta.json").read_text())
    for name, spec in meta["arrays"].items():
        path = _only_entry(tmp_path / "cache") / f"{name}.npy"
        assert spec["bytes"] == path.stat().st_size and len(spec["sha256"]) == 64
        assert list(np.load(path).shape) == spec["shape"]


# ------------------------------------------------------------------ 6. killed during the final evaluation
@pytest.mark.slow
def test_kill_during_final_evaluation_resumes_without_retraining_to_the_same_result(tmp_path):
    epochs = 3
    slow_eval = "  eval: {knn_k: 10, linear_epochs: 3000, linear_batch_size: 32, batch_size: 128}"
    study = one_point_study(tmp_path, epochs=epochs, eval_line=slow_eval)
    proc = popen(tmp_path, "run", str(study), "--grace-period", "3", "--no-progress", log=tmp_path / "killed.log")
    assert wait_for_epoch(tmp_path, epochs) == epochs  # the last checkpoint is written: evaluating now
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (killed,) = trial_runs(tmp_path)
    assert "linear_top1" not in killed.data.metrics, "the evaluation finished before the kill"

    again = cli(tmp_path, "run", str(study), "--grace-period", "3", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert [t.state for t in optuna_trials(tmp_path)] == [TrialState.FAIL, TrialState.COMPLETE]
    resumed = next(r for r in trial_runs(tmp_path) if r.info.status == "FINISHED")
    assert resumed.data.tags["resumed_from_epoch"] == str(epochs)
    assert "images_per_sec" not in resumed.data.metrics  # no epoch trained again
    assert final_metrics(resumed) == uninterrupted_metrics(tmp_path, study)


def test_a_trial_without_a_usable_value_fails_once_and_the_study_ends(tmp_path):
    # the study compares linear_top1, but its trials never compute it (validation refuses such a
    # file; built here directly to drive the engine into the case): each trial must fail with its
    # reason and be retried by the next run only, not re-enqueued and rerun for ever
    loaded = load_study(write_study(tmp_path, epochs=1))
    base = loaded.base.model_copy(update={"eval": loaded.base.eval.model_copy(update={"linear": False})})
    study = loaded.model_copy(update={"base": base})
    options = EngineOptions(storage=f"sqlite:///{tmp_path / 'optuna.db'}",
                            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                            runs_dir=tmp_path / "runs", progress=False, max_trials=12)
    report = work(study, "tiny", options)
    assert report.completed == [] and len(report.failed) == 4  # the 4 points, once each (12 allowed)
    assert all("without a usable linear_top1" in reason for _, reason in report.failed)
    states = [t.state for t in optuna_trials(tmp_path)]
    assert states.count(TrialState.FAIL) == 4 and states.count(TrialState.WAITING) == 4  # retries, for the next run
    assert {r.info.status for r in trial_runs(tmp_path)} == {"FAILED"}


def test_a_metric_the_trials_cannot_produce_is_refused_up_front(tmp_path):
    study = write_study(tmp_path, extra="metric: linear_top1\n")
    study.write_text(study.read_text().replace("eval: {", "eval: {linear: false, "))
    out = cli(tmp_path, "run", str(study))
    assert out.returncode == 2 and f"{study}:" in out.stderr and "eval.linear" in out.stderr, out.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "optuna.db").exists()
    knn = write_study(tmp_path, extra="metric: knn_top1\n")
    knn.write_text(knn.read_text().replace("eval: {", "eval: {linear: false, "))
    assert cli(tmp_path, "run", str(knn), "--dry-run").returncode == 0


def test_an_outage_while_a_trial_opens_is_waited_out_or_fails_the_trial_cleanly(tmp_path, monkeypatch):
    study = load_study(write_study(tmp_path, epochs=1))
    real = MlflowClient.create_run
    outage = {"left": 2}  # the server refuses the first two attempts, then answers

    def create_run(self, *args, **kwargs):
        if outage["left"] and "mlflow.parentRunId" in (kwargs.get("tags") or {}):  # a trial's run, not the study's
            outage["left"] -= 1
            raise _Unreachable("connection refused")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "create_run", create_run)
    monkeypatch.setattr(tracking, "retrying", partial(tracking.retrying, pause_s=0.1))
    options = EngineOptions(storage=f"sqlite:///{tmp_path / 'optuna.db'}",
                            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                            runs_dir=tmp_path / "runs", progress=False, tracking_timeout_s=5, max_trials=1)
    report = work(study, "tiny", options)
    assert len(report.completed) == 1 and report.failed == []  # waited out, one run, nothing lost
    assert [r.info.status for r in trial_runs(tmp_path)] == ["FINISHED"]

    outage["left"] = 10**6  # now it never comes back: the trial fails with its reason, the worker goes on
    options.tracking_timeout_s, options.max_trials = 1, 2
    report = work(study, "tiny", options)
    assert report.completed == [] and len(report.failed) == 2
    assert all(r.startswith("could not open the trial's MLflow run") and "connection refused" in r
               for _, r in report.failed)
    states = [t.state for t in optuna_trials(tmp_path)]
    assert states.count(TrialState.RUNNING) == 0 and states.count(TrialState.FAIL) == 2  # none left to a grace period
    assert [r.info.status for r in trial_runs(tmp_path)] == ["FINISHED"]  # no half-made run
