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
    assert sum(1 for _ in trainer._view_batches(0)) >= WARM_UP_STEPS + steps
