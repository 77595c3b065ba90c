"""Keep freed host memory in the process, so a CPU training step does not page-fault its buffers afresh.

glibc serves a large allocation (at or above its mmap threshold, 128 KiB to 32 MiB) with a fresh
``mmap`` and returns it to the operating system on ``free``. A training step on the CPU allocates and
frees the same activation buffers every step, so each step page-faults them in again, zero-filled
by the kernel: measured on the development CPU (2026-11-26), a width-16 small ResNet at batch 256
took ~250,000 minor faults a step in fp32 NCHW (about 1 GB) and ran at 239-262 images/s; with
``mmap`` off it took none and ran at 402-440. In bf16 channels_last the buffers are half the size
and the gain is within noise. An augmentation-only process (``ablations bench``) faulted ~7,000
pages per batch of 512, unless something had raised the threshold first.

``keep_freed_memory`` turns glibc's ``mmap`` use and heap trimming off (``mallopt``), so freed
blocks are reused. The price: memory freed is not given back until the process ends, so the
resident size stays at its peak, which a training process reaches in its first step anyway. It is
process-wide, so the library never calls it: the command line does, at start, for every command
(``python -m ablations``), and a program using ``core`` may call it itself.

Failure modes: not Linux/glibc, or ``mallopt`` refusing a value: nothing changes, and the returned
text says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

# <malloc.h>
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> str:
    """Turn off glibc's mmap for large blocks and its heap trimming; returns what was done."""
    if not sys.platform.startswith("linux"):
        return "default (not Linux)"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "default (no glibc mallopt)"
    if mallopt(_M_MMAP_MAX, 0) != 1 or mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) != 1:
        return "default (mallopt refused)"
    return "glibc: freed memory kept in the process (no mmap, no trimming)"
