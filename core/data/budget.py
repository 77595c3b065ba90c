"""How many image bytes a run may hold in memory: the rule behind ``data.in_memory: auto``.

``data.memory_budget_gb`` when set; otherwise half of the host's available memory at start
(``MemAvailable``: free memory plus what the kernel can reclaim, so it leaves room for the model,
the activations and the page cache that a memory-mapped read would use), and when training on CUDA
also at most a quarter of the GPU's memory, because there the images in memory live on the GPU
beside the model and its activations. Half and a quarter leave the rest of each to the run itself;
the choice is printed with its numbers, so a run that should have chosen otherwise says why.

Failure modes: no ``/proc/meminfo`` (not Linux): the host's physical memory as ``os.sysconf``
reports it is used instead, and without that, the budget is unlimited on the host.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from core.config import DataConfig

GB = 1e9
HOST_FRACTION = 0.5
DEVICE_FRACTION = 0.25


def host_available_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """The kernel's estimate of memory available without swapping, or the physical size; None if unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def device_total_bytes(device: torch.device) -> int:
    return int(torch.cuda.get_device_properties(device).total_memory)


def memory_budget(cfg: DataConfig, device: torch.device | None) -> tuple[float, str]:
    """(bytes, why) that ``auto`` may hold in memory for a run on ``device`` (None: the host)."""
    if cfg.memory_budget_gb is not None:
        return cfg.memory_budget_gb * GB, f"data.memory_budget_gb {cfg.memory_budget_gb:g}"
    host = host_available_bytes()
    budget, why = (float("inf"), "host memory unknown") if host is None else (
        HOST_FRACTION * host, f"half of the host's {host / GB:.1f} GB available")
    if device is not None and device.type == "cuda":
        gpu = DEVICE_FRACTION * device_total_bytes(device)
        if gpu < budget:
            budget, why = gpu, f"a quarter of the GPU's {gpu / DEVICE_FRACTION / GB:.1f} GB"
    return budget, why


def decide(cfg: DataConfig, nbytes: int, device: torch.device | None) -> tuple[bool, str]:
    """Whether ``nbytes`` of stored images go into memory, and the reason in words."""
    if cfg.in_memory is not True and cfg.in_memory is not False:  # auto
        budget, why = memory_budget(cfg, device)
        if nbytes <= budget:
            return True, f"auto: {nbytes / GB:.2f} GB of images within the {budget / GB:.1f} GB budget, {why}"
        return False, f"auto: {nbytes / GB:.2f} GB of images over the {budget / GB:.1f} GB budget, {why}"
    return bool(cfg.in_memory), f"data.in_memory: {str(cfg.in_memory).lower()}"
