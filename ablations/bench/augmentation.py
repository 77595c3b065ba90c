"""Augmentation throughput: the batched ``core.augment`` pipeline against per-image torchvision v2
(the ``train.loader: torchvision`` backend, in one process) and, when installed, kornia.

The pipelines take turns within each round, so a shared machine's drift cancels in the speed-ups.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch

from ablations.bench.timing import timed

AUG_OPS = "crop+flip+color jitter+grayscale"


def _kornia_pipeline(cfg: Any, size: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The same ops in kornia.augmentation, for comparison; None where kornia is not installed."""
    try:
        import kornia.augmentation as K
    except ImportError:
        return None
    s = cfg.color.strength
    seq = K.AugmentationSequential(
        K.RandomResizedCrop((size, size), scale=cfg.crop.scale, ratio=cfg.crop.ratio),
        K.RandomHorizontalFlip(p=0.5),
        K.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, min(0.5, 0.2 * s), p=cfg.color.jitter_p),
        K.RandomGrayscale(p=cfg.color.grayscale_p),
    )
    return seq


def bench_augmentation(
    device: torch.device, size: int, batch_size: int, min_seconds: float, per_image_count: int, rounds: int = 7
) -> dict[str, Any]:
    """images/s of one view of crop+flip+color+grayscale: batched, per-image torchvision, kornia.

    The pipelines are timed in ``rounds`` interleaved rounds (batched, torchvision, kornia, batched,
    ...), each round ``min_seconds / rounds`` per pipeline. A shared machine's speed drifts by tens of
    percent within a minute; a speed-up taken from adjacent windows cancels that drift, so each
    reported speed-up is the median of the per-round ratios and each rate the median over rounds.
    """
    from core.augment import Compose, build_transform, to_float
    from core.config import AugmentConfig
    from core.loaders import TorchvisionViews

    cfg = AugmentConfig(ops=["crop", "color"])
    gen = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8, generator=gen, device=device)
    ops = Compose([build_transform(name, cfg) for name in cfg.ops])

    # per-image torchvision v2 in this one process (the DataLoader backend runs it in each worker)
    host = images.cpu()
    tv = TorchvisionViews(cfg, size)
    count = min(per_image_count, batch_size)

    def per_image() -> None:
        for i in range(count):
            tv.ops(host[i].float().div_(255.0))

    pipelines: dict[str, tuple[Callable[[], Any], torch.device, int, float]] = {
        "batched": (lambda: ops(to_float(images), gen), device, batch_size, min_seconds),
        "torchvision": (per_image, torch.device("cpu"), count, min_seconds / 2),
    }
    kornia_note = None
    seq = _kornia_pipeline(cfg, size)
    if seq is None:
        kornia_note = "kornia not installed: skipped"
    else:
        seq = seq.to(device)
        pipelines["kornia"] = (lambda: seq(to_float(images)), device, batch_size, min_seconds)
    rounds = max(1, rounds)
    per_round: dict[str, list[float]] = {name: [] for name in pipelines}
    for r in range(rounds):
        for name, (fn, dev, n_images, seconds) in pipelines.items():
            elapsed, iters = timed(fn, dev, seconds / rounds, warm_up=r == 0)
            per_round[name].append(n_images * iters / elapsed)

    def speedup(name: str) -> tuple[str | None, list[float]]:
        if name not in per_round:
            return None, []
        ratios = [a / b for a, b in zip(per_round[name], per_round["torchvision"])]
        return f"{statistics.median(ratios):.1f}x", ratios

    batched_speedup, batched_ratios = speedup("batched")
    kornia_speedup, kornia_ratios = speedup("kornia")
    return {
        "image_size": size,
        "batch_size": batch_size,
        "pipeline": AUG_OPS,
        "rounds": rounds,
        "batched_images_per_s": statistics.median(per_round["batched"]),
        "torchvision_images_per_s": statistics.median(per_round["torchvision"]),
        "kornia_images_per_s": statistics.median(per_round["kornia"]) if "kornia" in per_round else None,
        "batched_speedup": batched_speedup,
        "batched_speedup_range": _spread(batched_ratios),
        "kornia_speedup": kornia_speedup,
        "kornia_speedup_range": _spread(kornia_ratios),
        "per_round_images_per_s": per_round,
        "note": kornia_note,
    }


def _spread(ratios: list[float]) -> str | None:
    """'8.1-9.4x': the lowest and highest per-round speed-up, so the table shows the run's own noise."""
    return f"{min(ratios):.1f}-{max(ratios):.1f}x" if ratios else None
