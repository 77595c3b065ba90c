"""Training from a memory-mapped store: the same run as from memory, exact resume, each rank reads only
its slice, the placement is reported, and anonymous memory does not grow with the dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.augment import TwoViews
from core.config import AugmentConfig, DataConfig
from core.data import MappedImages, cache
from core.data.splits import Decoded
from core.distributed import DistInfo, shard_slice
from core.loaders import batched_epoch, mapped_epoch, rank_rows
from core.trainer import Callback, train
from tests.test_trainer import Recorder, StopAfter, tiny_config

REPO = Path(__file__).resolve().parents[1]


def exact_config(tmp_path: Path, in_memory: bool | str, **overrides) -> object:
    """The trainer tests' tiny run in fp32 NCHW (so CPUs with and without bf16 agree), cached under tmp_path."""
    return tiny_config(**{"train.precision": "fp32", "train.channels_last": False, "data.in_memory": in_memory,
                          "data.cache_dir": str(tmp_path / "cache"), **overrides})


def _steps(rec: Recorder) -> list[float]:
    return [m["loss"] for _, m in rec.steps]


def test_memory_mapped_training_is_the_in_memory_run_exactly(tmp_path):
    runs = {}
    for in_memory in (True, False):
        rec = Recorder()
        result = train(
            exact_config(tmp_path, in_memory, **{"train.epochs": 2}), tmp_path / str(in_memory), callbacks=[rec]
        )
        runs[in_memory] = (result, _steps(rec))
    (memory, memory_steps), (mapped, mapped_steps) = runs[True], runs[False]
    assert len(mapped_steps) == 4 and mapped_steps == memory_steps
    assert [h["loss"] for h in mapped.history] == [h["loss"] for h in memory.history]
    for key in ("knn_top1", "linear_top1", "linear_top4", "contrastive_acc", "loss"):
        assert mapped.metrics[key] == memory.metrics[key], key


def test_a_memory_mapped_run_resumes_exactly(tmp_path):
    reference = train(exact_config(tmp_path, True), tmp_path / "uninterrupted")
    interrupted = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        train(exact_config(tmp_path, False), interrupted, callbacks=[StopAfter(epoch=2)])
    rec = Recorder()
    # where the images are read from is resume-neutral: the run may go on from memory-mapped files
    resumed = train(exact_config(tmp_path, False), interrupted, callbacks=[rec])
    assert rec.starts == [1]
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in reference.history]
    for key in ("loss", "knn_top1", "linear_top1", "linear_top4"):
        assert resumed.metrics[key] == reference.metrics[key], key


def test_the_torchvision_loader_reads_single_images_from_the_map(tmp_path):
    results = [train(exact_config(tmp_path, m, **{"train.loader": "torchvision", "train.loader_workers": 0,
                                                  "train.epochs": 1, "eval.linear": False}), None)
               for m in (True, False)]
    assert results[0].history[0]["loss"] == results[1].history[0]["loss"]


class _Info(Callback):
    def on_run_info(self, info):
        self.info = info


def test_the_placement_is_printed_and_reported_with_its_reason(tmp_path, capsys):
    info = _Info()
    train(exact_config(tmp_path, False, **{"train.epochs": 1, "eval.linear": False}), None, callbacks=[info])
    assert info.info["data_placement"] == "memory-mapped (data.in_memory: false)"
    assert "data synthetic: memory-mapped (data.in_memory: false)\n" in capsys.readouterr().err
    train(exact_config(tmp_path, "auto", **{"train.epochs": 1, "eval.linear": False}), None, callbacks=[info])
    assert info.info["data_placement"] == "in memory (synthetic data is generated in memory)"


# ---------------------------------------------------------------- data parallel


class Spy(MappedImages):
    """Records the rows of every read."""

    def __init__(self, parts):
        super().__init__(parts)
        self.reads: list[list[int]] = []

    def read(self, rows, out=None):
        self.reads.append(rows.tolist())
        return super().read(rows, out)


@pytest.mark.parametrize("world", [1, 2, 4])
def test_each_rank_reads_only_its_slice_of_every_global_batch(world):
    images = torch.randint(0, 256, (70, 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    cfg = AugmentConfig(ops=["crop", "color", "noise"])
    batch, seed = 16, 7
    order = torch.randperm(70, generator=torch.Generator().manual_seed(seed))
    reads = []
    for rank in range(world):
        info = DistInfo(rank, world, rank)
        part = shard_slice(batch, info)
        spy = Spy([images])
        gens = [torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)]
        views = list(mapped_epoch(spy, TwoViews(cfg), batch, *gens, torch.device("cpu"), part=part))
        per_rank = batch // world
        want = [
            order[i * batch + rank * per_rank : i * batch + (rank + 1) * per_rank].tolist() for i in range(70 // batch)
        ]
        assert spy.reads == want  # this rank's rows of each of the 4 global batches, nothing else
        assert spy.reads == [rank_rows(order, i, batch, part).tolist() for i in range(4)]
        reads.append(spy.reads)
        # the views of its rows are those the in-memory pipeline gives the same rank, bit for bit
        gens = [torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)]
        expected = list(batched_epoch(images, TwoViews(cfg), batch, *gens, part=part))
        assert len(views) == len(expected) == 4
        for (a1, a2), (b1, b2) in zip(views, expected):
            assert torch.equal(a1, b1) and torch.equal(a2, b2)
    for step in range(4):  # the ranks' slices make up the global batch
        assert sum((r[step] for r in reads), []) == order[step * batch : (step + 1) * batch].tolist()


# ---------------------------------------------------------------- memory


_PEAK_SCRIPT = r"""
import json, sys, threading, time
from pathlib import Path

def status():
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) * 1024 for k in ("RssAnon", "RssFile")}

peak = {"RssAnon": 0, "RssFile": 0}
done = threading.Event()
def sample():
    while not done.is_set():
        now = status()
        for k in peak:
            peak[k] = max(peak[k], now[k])
        time.sleep(0.002)
threading.Thread(target=sample, daemon=True).start()

from core.config import RunConfig
from core.trainer import Callback, Trainer

class Stop(Exception):
    pass

class StopAfter(Callback):
    def on_step(self, step, metrics):
        if step >= 4:
            raise Stop

config = RunConfig.model_validate(json.loads(sys.argv[1]))
try:
    Trainer(config, None, [StopAfter()]).fit()
except Stop:
    pass
time.sleep(0.05)
done.set()
print(json.dumps(peak))
"""


@pytest.mark.slow
def test_memory_mapped_training_peaks_far_lower_in_anonymous_memory(tmp_path):
    # a store of 300 MB: 24,400 random images of 3x64x64 (written as a build leaves it)
    n, side = 24_400, 64
    rng = np.random.default_rng(0)
    root = tmp_path / "root"
    root.mkdir()
    data = {"source": "idx", "root": str(root), "cache_dir": str(tmp_path / "cache")}
    arrays = {
        "train_images": rng.integers(0, 256, (n, 3, side, side), dtype=np.uint8),
        "train_labels": (np.arange(n) % 10).astype(np.int64),
        "test_images": rng.integers(0, 256, (64, 3, side, side), dtype=np.uint8),
        "test_labels": (np.arange(64) % 10).astype(np.int64),
    }
    store_bytes = arrays["train_images"].nbytes + arrays["test_images"].nbytes
    cache.save(cache.entry_dir(DataConfig(**data), "labelled"), Decoded(arrays, [str(k) for k in range(10)]))
    del arrays
    peaks = {}
    for in_memory in (True, False):
        config = {
            "data": {**data, "in_memory": in_memory},
            "model": {"encoder": "resnet_small", "width": 4, "head_dim": 16},
            "augment": {"ops": ["crop", "color"]},
            # NCHW: fp32 channels_last crashes torch 2.14.1 on CPU for this tiny model at 64 px (heap corruption)
            "train": {"epochs": 1, "batch_size": 32, "log_every": 1, "device": "cpu", "precision": "fp32",
                      "channels_last": False, "progress": False, "checkpoint": False},
        }
        done = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, json.dumps(config)], cwd=REPO, capture_output=True,
                              text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr
        peaks[in_memory] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"store {store_bytes / 1e6:.0f} MB; peak RssAnon in memory {peaks[True]['RssAnon'] / 1e6:.0f} MB, "
          f"memory-mapped {peaks[False]['RssAnon'] / 1e6:.0f} MB; peak RssFile {peaks[True]['RssFile'] / 1e6:.0f} / "
          f"{peaks[False]['RssFile'] / 1e6:.0f} MB")
    assert peaks[True]["RssAnon"] - peaks[False]["RssAnon"] >= 150e6, peaks
