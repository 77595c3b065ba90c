"""End-to-end pretraining throughput: the trainer's own epoch iterator and step, timed.

Rows (a) batched augmentation, (b) per-image torchvision in DataLoader workers and (c) the model
alone on views already on the device (the ceiling a data pipeline can reach); then the default
numerics against forced fp32 NCHW, interleaved; and, asked for, a profile of one step.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

import torch

from ablations.bench.options import BenchOptions, Sizes
from ablations.bench.timing import peak_mb, ratio, sync, time_steps
from core.config import DataConfig


def _run_config(
    device: torch.device, batch_size: int, loader: str, workers: int, encoder: str, compile_: bool | str
) -> Any:
    """The run config of one end-to-end row: only the loader differs between (a) and (b)."""
    from core.config import RunConfig

    return RunConfig.model_validate(
        {
            "data": {"source": "synthetic"},
            "model": {"encoder": encoder, "cifar_stem": True, "width": 8},
            "train": {
                "batch_size": batch_size,
                "device": str(device),
                "loader": loader,
                "loader_workers": workers,
                "compile": compile_,
                "progress": False,
                "checkpoint": False,
                "epochs": 1,
            },
        }
    )


def _row(
    name: str,
    batch_size: int,
    steps: int,
    seconds: float,
    epoch_images: int,
    steps_per_epoch: int,
    device: torch.device,
) -> dict[str, Any]:
    """One row of the end-to-end table, with s/epoch extrapolated from the timed steps."""
    rate = batch_size * steps / seconds
    return {
        "name": name,
        "images_per_s": rate,
        "s_per_epoch": epoch_images / rate,
        "extrapolated": steps < steps_per_epoch,
        "steps": steps,
        "batch_size": batch_size,
        "peak_memory_mb": peak_mb(device),
        "speedup": None,
    }


def bench_end_to_end(
    device: torch.device, options: BenchOptions, sizes: Sizes, data: tuple[DataConfig, str]
) -> dict[str, Any]:
    """(a) batched pipeline, (b) torchvision DataLoader pipeline, (c) model alone; ``sizes.steps``
    timed steps each after the warm-up of ``time_steps``, on ``data`` (``bench_data``'s config and label)."""
    from core.data import load_dataset
    from core.trainer import Trainer

    batch_size, steps, workers = sizes.batch_size, sizes.steps, options.workers
    encoder, compile_ = options.encoder, options.compile
    data_config, data_label = data
    splits = load_dataset(data_config, seed=0)
    n = splits.pretrain.shape[0]
    steps_per_epoch = n // batch_size
    rows = []
    profile_table = None

    # (a) our pipeline: the trainer's own epoch iterator and step
    trainer = Trainer(_run_config(device, batch_size, "batched", workers, encoder, compile_), splits=splits)
    numerics = trainer.numerics
    trainer.model.train()
    batches = trainer.view_batches(0)
    seconds = time_steps(trainer, batches.__next__, steps, device)
    rows.append(_row("(a) batched (ours)", batch_size, steps, seconds, n, steps_per_epoch, device))
    if options.profile:
        profile_table = _profile_step(trainer, batches, device)
    del trainer, batches

    # (b) per-image torchvision v2 in DataLoader workers
    trainer = Trainer(_run_config(device, batch_size, "torchvision", workers, encoder, compile_), splits=splits)
    trainer.model.train()
    batches = trainer.view_batches(0)
    seconds = time_steps(trainer, batches.__next__, steps, device)
    rows.append(
        _row(
            f"(b) torchvision per-image, DataLoader workers={workers}",
            batch_size,
            steps,
            seconds,
            n,
            steps_per_epoch,
            device,
        )
    )
    del batches  # shuts the workers down

    # (c) the model alone on random views already on the device
    gen = torch.Generator(device=device).manual_seed(0)
    shape = (batch_size, splits.channels, *splits.pretrain.shape[2:])
    v1 = torch.rand(shape, generator=gen, device=device)
    v2 = torch.rand(shape, generator=gen, device=device)
    seconds = time_steps(trainer, lambda: (v1, v2), steps, device)
    rows.append(
        _row(
            "(c) model only, random tensors on device (ceiling)",
            batch_size,
            steps,
            seconds,
            n,
            steps_per_epoch,
            device,
        )
    )
    del trainer

    a, b, c = (r["images_per_s"] for r in rows)
    rows[0]["speedup"] = f"{ratio(a, b)} vs (b); {100 * a / c:.0f}% of (c)"
    rows[2]["speedup"] = f"{ratio(c, b)} vs (b)"
    return {
        "data": data_label,
        "model": f"{encoder}, CIFAR stem, SimCLR head, NT-Xent, LARS",
        "epoch_images": n,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": batch_size,
        "precision": numerics.describe(),
        "channels_last": numerics.channels_last,
        "compile": compile_,
        "rows": rows,
        "profile": profile_table,
    }


def bench_numerics(
    device: torch.device, encoder: str, width: int, batch_size: int, steps: int, rounds: int = 5
) -> dict[str, Any]:
    """End-to-end pretraining images/s (batched augmentation + step) under the default numerics
    against forced fp32 NCHW (``train.precision=fp32``, ``train.channels_last=false``): the same
    synthetic CIFAR-shaped data, ``rounds`` interleaved rounds of ``steps`` timed steps each, and
    the speed-up as the median of the per-round ratios (the machine's drift cancels within a round)."""
    from core.config import RunConfig
    from core.data import load_dataset
    from core.trainer import Trainer

    base = {
        "model": {"encoder": encoder, "cifar_stem": True, "width": width},
        "train": {"batch_size": batch_size, "device": str(device), "progress": False, "checkpoint": False, "epochs": 1},
    }
    size = batch_size * (rounds * steps + rounds + 1)  # every timed and warm-up step draws a fresh batch
    data = RunConfig.model_validate(
        {
            "data": {
                "source": "synthetic",
                "synthetic": {"num_classes": 10, "train_size": size, "test_size": 20, "image_size": 32},
            }
        }
    ).data
    splits = load_dataset(data, seed=0)
    configs = {
        "defaults": RunConfig.model_validate(base),
        "fp32 NCHW": RunConfig.model_validate(
            {**base, "train": {**base["train"], "precision": "fp32", "channels_last": False}}
        ),
    }
    trainers = {name: Trainer(cfg, splits=splits) for name, cfg in configs.items()}
    batches = {name: t.view_batches(0) for name, t in trainers.items()}
    per_round: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(rounds):
        for name, trainer in trainers.items():
            trainer.model.train()
            seconds = time_steps(trainer, batches[name].__next__, steps, device)
            per_round[name].append(batch_size * steps / seconds)
    ratios = [a / b for a, b in zip(per_round["defaults"], per_round["fp32 NCHW"])]
    return {
        "model": f"{encoder} (width {width}), CIFAR stem, 32x32, batch {batch_size}, batched augmentation",
        "defaults": trainers["defaults"].numerics.describe(),
        "baseline": trainers["fp32 NCHW"].numerics.describe(),
        "rounds": rounds,
        "steps_per_round": steps,
        "defaults_images_per_s": statistics.median(per_round["defaults"]),
        "fp32_nchw_images_per_s": statistics.median(per_round["fp32 NCHW"]),
        "speedup": f"{statistics.median(ratios):.2f}x",
        "speedup_range": f"{min(ratios):.2f}-{max(ratios):.2f}x",
        "per_round_images_per_s": per_round,
    }


def _profile_step(trainer: Any, batches: Any, device: torch.device, rows: int = 15) -> list[dict[str, Any]]:
    """Where the time of one training step goes (augmentation included), top ops by self time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    if device.type != "cuda":
        # a CUDA build of torch on a machine without a GPU: kineto would print "ERROR ...
        # gpuGetDeviceCount failed", expected there and only alarming to read
        os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    with profile(activities=activities) as prof:
        trainer.step(*next(batches))
        sync(device)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return [
        {
            "op": e.key,
            "self_cpu_ms": e.self_cpu_time_total / 1e3,
            "percent": 100 * e.self_cpu_time_total / total,
            "calls": e.count,
        }
        for e in events[:rows]
    ]
