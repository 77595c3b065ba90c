"""Clocks, device syncs, peak memory and the machine's description: what every measurement shares.

``time_steps`` is the one timed loop around the trainer's own ``Trainer.view_batches`` and
``Trainer.step``; the end-to-end rows, the numerics comparison and ``benchmarks/gpu_step_ab.py``
and ``gpu_mapped_check.py`` all time training through it, so they measure the same thing.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so a clock read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    fn: Callable[[], Any], device: torch.device, min_seconds: float, min_iters: int = 1, warm_up: bool = True
) -> tuple[float, int]:
    """Run ``fn`` (after one untimed warm-up unless ``warm_up`` is False) until ``min_seconds`` and
    ``min_iters`` are reached; returns (seconds, iterations)."""
    if warm_up:
        fn()
    sync(device)
    iters = 0
    started = time.perf_counter()
    while True:
        fn()
        iters += 1
        if iters >= min_iters:
            sync(device)
            elapsed = time.perf_counter() - started
            if elapsed >= min_seconds:
                return elapsed, iters


def ratio(a: float | None, b: float | None) -> str | None:
    """'3.2x': how many times ``a`` is ``b``; None where either is missing."""
    if a is None or b is None or b <= 0:
        return None
    return f"{a / b:.1f}x"


def max_rss_mb() -> float:
    """The process's peak resident set so far, MiB (the only peak the CPU has)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def peak_mb(device: torch.device) -> float:
    """Peak memory of ``device`` since the last ``reset_peak``, MiB (on CPU: the process's ever)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return max_rss_mb()


def reset_peak(device: torch.device) -> None:
    """Restart the CUDA peak counter, so a row's peak is its own, not the previous row's."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def warm_up_steps(compile_: bool | str) -> int:
    """Untimed steps before timing: one; three when compiled (compiling, then CUDA graphs' warm-up
    and recording under reduce-overhead)."""
    return 3 if compile_ else 1


def time_steps(
    trainer: Any,
    next_views: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    device: torch.device,
    warm_up: int | None = None,
) -> float:
    """Seconds for ``steps`` training steps on the views ``next_views`` yields, after ``warm_up``
    untimed steps (default: ``warm_up_steps``); the peak-memory counter restarts after the
    warm-up. One sync at the end, as in training."""
    if warm_up is None:
        warm_up = warm_up_steps(trainer.config.train.compile)
    for _ in range(warm_up):
        trainer.step(*next_views())
    sync(device)
    reset_peak(device)
    started = time.perf_counter()
    for _ in range(steps):
        loss, _ = trainer.step(*next_views())
    loss.item()
    sync(device)
    return time.perf_counter() - started


def device_info(device: torch.device) -> dict[str, Any]:
    """The device and how loaded the machine was: a shared machine's figures need both to be read."""
    from core.numerics import cpu_bf16_support, device_name

    info: dict[str, Any] = {
        "type": device.type,
        "name": device_name(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_bf16_support(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_available"] = len(os.sched_getaffinity(0))
    try:
        info["load_average_1min"] = os.getloadavg()[0]
    except OSError:
        info["load_average_1min"] = None
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
    return info


def versions() -> dict[str, str | None]:
    """The versions of the libraries whose speed is measured (kornia None when absent)."""
    import numpy
    import torchvision

    try:
        import kornia

        kornia_version: str | None = kornia.__version__
    except ImportError:
        kornia_version = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "kornia": kornia_version,
        "numpy": numpy.__version__,
    }
