"""One run over 2 processes under torchrun (Gloo on CPU), through the `train` command users run.

Semantics: train.batch_size is the global batch; each rank augments and encodes its half, the loss
is NT-Xent over the gathered global batch, and BatchNorm is global (statistics over both ranks'
views, as one process sees them). So 2 processes should follow the loss curve of 1 process on the
same global batch. Tolerances (relative): the first epoch (4 steps) agrees to 1e-5 (measured ~1e-7:
float sums in another order); after that this tiny model amplifies rounding itself (perturbing one
process's weights by 1e-7 moves its curve by ~1e-3 within a dozen steps; the second epoch differed by
~1e-5 on one CPU and by 1.6e-4 on an AVX-512 one), so later epochs are held to 1e-2. A real semantic
difference shows at once: the same run with per-rank BatchNorm (train.sync_bn: false) is off by
~2.7e-4 already in the first epoch, 27x the tolerance there, which the check rejects (checked below).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from core import checkpoint

REPO = Path(__file__).resolve().parents[1]
CONFIG = """\
data: {source: synthetic, synthetic: {num_classes: 4, train_size: 256, test_size: 128, image_size: 16}}
model: {encoder: resnet_small, width: 8, head_dim: 32}
augment: {ops: [crop, color], color: {strength: 1.0}}
optim: {name: lars, lr: 1.0, warmup_epochs: 1}
train: {epochs: 6, batch_size: 64, seed: 1, progress: false, log_every: 1, device: cpu,
        precision: fp32, channels_last: false}
eval: {knn_k: 20, linear_epochs: 5, linear_batch_size: 64, batch_size: 256}
"""

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _command(folder: Path, run_dir: str, procs: int, *extra: str) -> list[str]:
    train = ["-m", "ablations", "train", str(folder / "tiny.yaml"), "--run-dir", str(folder / run_dir), *extra]
    if procs == 1:
        return [sys.executable, *train]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}", *train]


def _train(folder: Path, run_dir: str, procs: int, *extra: str) -> dict:
    done = subprocess.run(
        _command(folder, run_dir, procs, *extra), cwd=folder, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((folder / run_dir / "result.json").read_text())


def _losses(result: dict) -> list[float]:
    return [h["loss"] for h in result["history"]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("torchrun")
    (folder / "tiny.yaml").write_text(CONFIG)
    return folder, _train(folder, "one", 1), _train(folder, "two", 2)


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (Linux /proc), children first."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        for child in (task / "children").read_text().split():
            found += [*_descendants(int(child)), int(child)]
    return found


def _same_curve(a: list[float], b: list[float]) -> bool:
    first_epoch = abs(a[0] - b[0]) <= 1e-5 * abs(a[0])
    return len(a) == len(b) and first_epoch and all(abs(x - y) <= 1e-2 * abs(x) for x, y in zip(a, b))


def test_two_processes_follow_the_single_process_loss_curve(runs):
    folder, one, two = runs
    assert len(_losses(two)) == 6
    assert _same_curve(_losses(one), _losses(two)), (_losses(one), _losses(two))
    # rank 0 evaluated once, on the full train/test splits, and reported for the group
    assert two["metrics"]["knn_top1"] > 25.0 and "linear_top1" in two["metrics"]
    assert "N=256" in two["protocols"]["knn_top1"]


def test_two_processes_reading_a_memory_map_train_exactly_as_from_memory(runs):
    # each rank reads only its half of every global batch from the map (tests/test_mapped_training.py
    # checks which rows); the group's run is the in-memory group's run, loss for loss
    folder, _, two = runs
    mapped = _train(
        folder, "two-mapped", 2, "--set", "data.in_memory=false", "--set", f"data.cache_dir={folder / 'cache'}"
    )
    assert _losses(mapped) == _losses(two)
    assert mapped["metrics"]["linear_top1"] == two["metrics"]["linear_top1"]
    assert mapped["metrics"]["knn_top1"] == two["metrics"]["knn_top1"]


def test_per_rank_batch_norm_is_a_different_curve(runs):
    # guards the test above against being vacuous: local BN statistics change the first epoch
    folder, one, _ = runs
    local_bn = _train(folder, "local-bn", 2, "--set", "train.sync_bn=false")
    assert not _same_curve(_losses(one), _losses(local_bn))


def test_a_checkpoint_written_by_two_ranks_resumes(runs):
    folder, _, two = runs
    log = (folder / "killed.log").open("w")
    group = subprocess.Popen(
        _command(folder, "resumed", 2), cwd=folder, env=_env(), stdout=log, stderr=subprocess.STDOUT
    )
    path = folder / "resumed" / "checkpoint.pt"
    deadline = time.monotonic() + 240
    killed_after = None
    while killed_after is None and group.poll() is None and time.monotonic() < deadline:
        try:
            killed_after = int(checkpoint.load(path)["epoch"]) + 1
        except (FileNotFoundError, checkpoint.CheckpointError):  # not written yet, or being replaced
            time.sleep(0.02)
    # both ranks (torchrun starts them in their own sessions), then torchrun
    for pid in [*_descendants(group.pid), group.pid]:
        os.kill(pid, signal.SIGKILL)
    group.wait()
    assert killed_after is not None and killed_after < 6, "the run ended before it could be killed mid-way"
    assert not (folder / "resumed" / "result.json").exists()

    again = subprocess.run(
        _command(folder, "resumed", 2), cwd=folder, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming from" in again.stderr
    resumed = json.loads((folder / "resumed" / "result.json").read_text())
    # same group size, same reductions: the resumed run is the uninterrupted one, exactly
    assert _losses(resumed) == _losses(two)
    assert resumed["metrics"]["linear_top1"] == two["metrics"]["linear_top1"]


def test_a_study_with_devices_per_trial_runs_each_trial_as_a_torchrun_group(tmp_path):
    from tests.test_engine import cli, one_point_study, optuna_trials, trial_runs

    study = one_point_study(tmp_path, epochs=2)
    study.write_text(study.read_text() + "devices_per_trial: 2\n")
    out = cli(tmp_path, "run", str(study), "--devices", "cpu", "--no-progress")
    assert out.returncode == 0, out.stdout + out.stderr
    assert [t.state.name for t in optuna_trials(tmp_path)] == ["COMPLETE"]
    (run,) = trial_runs(tmp_path)
    assert run.info.status == "FINISHED"
    # rank 0 of the group logged the per-epoch history and the final metrics to the worker's run
    history = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").get_metric_history(
        run.info.run_id, "loss"
    )
    assert len(history) >= 2 and {"linear_top1", "knn_top1", "contrastive_acc"} <= set(run.data.metrics)


def test_a_finished_group_run_is_not_trained_again(runs):
    folder, _, two = runs
    again = subprocess.run(
        _command(folder, "two", 2), cwd=folder, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stderr.count("already finished") == 1  # rank 0 speaks for the group
    assert json.loads((folder / "two" / "result.json").read_text()) == two
