"""Same-process A/B of the training step on the GPU: the loss's host-device syncs, and CUDA graphs.

Three variants of ``Trainer.step`` (ResNet-18 with the CIFAR stem, batch 512, LARS, bf16 autocast,
channels_last: the bench's end-to-end (a) setting), each fed by its own trainer's batched epoch
iterator (augmentation on the GPU), timed in interleaved rounds so the machine's drift cancels:

* ``eager, syncing loss``: the loss as it was before 2026-11-27 (the positives' index built on the
  CPU and copied over, the negative mask written by index assignment of a Python scalar: four
  host-device syncs per step, found by ``benchmarks/gpu_sync_check.py``);
* ``eager``: today's loss, sync-free;
* ``compiled, reduce-overhead``: today's loss with ``train.compile: reduce-overhead`` (inductor
  kernels replayed as CUDA graphs).

    python benchmarks/gpu_step_ab.py --json ab.json

``--device cpu --variants eager,syncing --batch 32`` tries the script here (no syncs to remove there).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import core.losses as losses  # noqa: E402
from ablations.bench import time_steps  # noqa: E402
from core.config import RunConfig  # noqa: E402
from core.numerics import device_name  # noqa: E402
from core.trainer import Trainer  # noqa: E402


def _syncing_similarities(z1: torch.Tensor, z2: torch.Tensor, normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``core.losses.similarities`` before 2026-11-27 (its positives built on the host)."""
    z = torch.cat([z1, z2], dim=0)
    if z.dtype in (torch.float16, torch.bfloat16):
        z = z.float()
    if normalize:
        z = torch.nn.functional.normalize(z, dim=1)
    n = z1.shape[0]
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return z @ z.T, positive


def _syncing_negative_mask(n: int, positive: torch.Tensor, negatives: str, device: torch.device) -> torch.Tensor:
    """``core.losses.negative_mask`` before 2026-11-27 (index assignment of Python scalars)."""
    two_n = 2 * n
    idx = torch.arange(two_n, device=device)
    mask = torch.ones(two_n, two_n, dtype=torch.bool, device=device)
    mask[idx, idx] = False
    mask[idx, positive] = False
    if negatives == "one_view":
        view = idx // n
        mask &= view[:, None] != view[None, :]
    return mask


@contextmanager
def syncing_loss() -> Iterator[None]:
    saved = losses.similarities, losses.negative_mask
    losses.similarities, losses.negative_mask = _syncing_similarities, _syncing_negative_mask  # type: ignore[assignment]
    try:
        yield
    finally:
        losses.similarities, losses.negative_mask = saved


def config(device: str, batch: int, images: int, compile_: bool | str) -> RunConfig:
    return RunConfig.model_validate({
        "data": {"source": "synthetic",
                 "synthetic": {"num_classes": 10, "train_size": images, "test_size": 64, "image_size": 32}},
        "model": {"encoder": "resnet18", "cifar_stem": True},
        "train": {"batch_size": batch, "device": device, "epochs": 1, "progress": False, "checkpoint": False,
                  "compile": compile_},
    })


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--variants", default="syncing,eager,reduce-overhead")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=30, help="timed steps per variant and round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    names = {"syncing": "eager, syncing loss", "eager": "eager", "reduce-overhead": "compiled, reduce-overhead"}
    variants = args.variants.split(",")
    per_epoch = args.rounds * (args.steps + 3) + 3  # every round's steps and warm-ups draw fresh batches
    trainers = {v: Trainer(config(args.device, args.batch, per_epoch * args.batch,
                                  "reduce-overhead" if v == "reduce-overhead" else False)) for v in variants}
    iters: dict[str, Any] = {}
    for v, t in trainers.items():
        t.model.train()
        iters[v] = t.view_batches(0)
        with syncing_loss() if v == "syncing" else nullcontext():
            for _ in range(3):  # cuDNN autotuning; compiling, CUDA graphs' warm-up and recording
                t.step(*next(iters[v]))
    rates: dict[str, list[float]] = {names[v]: [] for v in variants}
    for _ in range(args.rounds):
        for v, t in trainers.items():
            with syncing_loss() if v == "syncing" else nullcontext():
                seconds = time_steps(t, iters[v].__next__, args.steps, device, warm_up=0)
            rates[names[v]].append(args.batch * args.steps / seconds)
    base = names["eager"] if "eager" in variants else names[variants[0]]
    out: dict[str, Any] = {
        "device": device_name(device),
        "torch": torch.__version__, "batch": args.batch, "steps": args.steps, "rounds": args.rounds,
        "images_per_s": {k: [round(x) for x in v] for k, v in rates.items()},
        "median_images_per_s": {k: round(statistics.median(v)) for k, v in rates.items()},
        "ratio_to_" + base.replace(" ", "_"): {
            k: round(statistics.median(a / b for a, b in zip(v, rates[base])), 3) for k, v in rates.items()},
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
