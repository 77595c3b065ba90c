"""What the CPU can check of the GPU scripts and CUDA device handling (the device tool ran them on an H100)."""

from __future__ import annotations

import torch

from benchmarks.gpu_sync_check import WARM_UP_STEPS, check_config
from core import distributed
from core.trainer import Trainer


def test_bare_cuda_becomes_the_current_gpu(monkeypatch):
    """torch.cuda.set_device refuses torch.device('cuda') without an index: every CUDA run failed
    at start on the H100 until device_for made it explicit."""
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    single = distributed.DistInfo(rank=0, world_size=1, local_rank=0)
    assert distributed.device_for(single, torch.device("cuda")) == torch.device("cuda", 3)
    assert distributed.device_for(single, torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert distributed.device_for(single, torch.device("cpu")) == torch.device("cpu")


def test_sync_check_epoch_holds_the_warm_up_and_checked_steps():
    """The first run on the H100 ran out of batches (StopIteration) before its last checked step."""
    steps, batch = 3, 8
    trainer = Trainer(check_config(batch, steps, "lars", "cpu"))
    assert sum(1 for _ in trainer.view_batches(0)) >= WARM_UP_STEPS + steps


def test_the_mapped_check_runs_on_the_cpu_and_finds_the_same_batches(tmp_path, monkeypatch):
    """benchmarks/gpu_mapped_check.py ran once on an H200 (2026-11-27); kept runnable here."""
    import json

    import core.hostmem
    from benchmarks.gpu_mapped_check import main

    monkeypatch.setattr(core.hostmem, "keep_freed_memory", lambda: None)  # process-wide: not in pytest's process

    out = tmp_path / "mapped.json"
    args = ["--device", "cpu", "--cases", "imagenet", "--images", "64", "--size", "32", "--crop", "24",
            "--imagenet-encoder", "resnet18", "--imagenet-batch", "8", "--steps", "1", "--rounds", "1",
            "--compare", "2", "--workers", "1", "--folder", str(tmp_path / "work"), "--json", str(out)]
    assert main(args) == 0
    case = json.loads(out.read_text())["cases"][0]
    assert case["identical_batches"] == [True, True]
    assert case["placement"]["false"] == "memory-mapped (data.in_memory: false)"
    assert set(case["median_images_per_s"]) == {"in memory", "mapped", "model only"}


def test_the_step_ab_puts_the_old_loss_back_and_both_compute_the_same_loss():
    """benchmarks/gpu_step_ab.py patches the syncing loss of before 2026-11-27 in for one variant:
    it must be the same function of the projections, and today's must be restored after."""
    import core.losses as losses
    from benchmarks.gpu_step_ab import syncing_loss
    from core.config import LossConfig

    z1, z2 = torch.randn(6, 5, generator=torch.Generator().manual_seed(0)).chunk(2)
    cfg = LossConfig(negatives="one_view", semi_hard=True, name="nt_logistic")
    today = losses.loss_from_config(cfg, z1, z2)
    saved = losses.similarities, losses.negative_mask
    with syncing_loss():
        assert losses.similarities is not saved[0]
        old = losses.loss_from_config(cfg, z1, z2)
    assert (losses.similarities, losses.negative_mask) == saved
    assert torch.equal(today, old)
