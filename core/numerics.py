"""Which numerics a run uses on its device (autocast dtype and memory format), and the device's name.

``train.precision: auto`` means bf16 autocast where the hardware computes bf16 natively (every
CUDA GPU this project targets; a CPU with AVX512_BF16 or AMX, as torch's own CPU capability checks
report) and fp32 elsewhere: on a CPU without native bf16, bf16 is emulated and slower than fp32.
``train.channels_last`` (unset) means channels_last on CUDA, and on a CPU under bf16 autocast, where
oneDNN's and cuDNN's convolutions are faster in NHWC (measured on the development CPU: 1.5-2.1x).
An fp32 CPU run stays NCHW: with torch 2.14.1, fp32 channels_last training on the CPU corrupts the
heap for small ResNets at 48-64 px (found 2026-11-27: width 4 or 8, 3 steps at batch 64 abort with
"corrupted size vs. prev_size" or a segfault; width 16, 32 px and bf16 ran clean). Explicit values
always win. Only the encoder and head run under autocast: the trainer casts the projections
to fp32 before the loss, the similarity matrix and the optimizer step, as on CUDA.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["Numerics", "cpu_bf16_support", "device_name", "resolve_numerics"]


def device_name(device: torch.device) -> str:
    """The model of the GPU or CPU behind ``device`` (e.g. 'NVIDIA H100 80GB HBM3', 'AMD EPYC')."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or device.type


def cpu_bf16_support() -> str | None:
    """The CPU feature that makes bf16 native here ("AMX" or "AVX512_BF16"), or None.

    Asks torch's own checks (``torch.cpu._is_amx_tile_supported`` and
    ``torch.cpu._is_avx512_bf16_supported``); a torch without them answers None, so fp32.
    """
    checks = (("AMX", "_is_amx_tile_supported"), ("AVX512_BF16", "_is_avx512_bf16_supported"))
    for name, attr in checks:
        check = getattr(torch.cpu, attr, None)
        try:
            if check is not None and check():
                return name
        except RuntimeError:  # a build without the CPU info backend
            continue
    return None


@dataclass(frozen=True)
class Numerics:
    """What a run computes in: ``autocast_dtype`` (None: plain fp32), ``channels_last``, and why."""

    autocast_dtype: torch.dtype | None
    channels_last: bool
    reason: str

    @property
    def precision(self) -> Literal["bf16", "fp32"]:
        return "bf16" if self.autocast_dtype == torch.bfloat16 else "fp32"

    def describe(self) -> str:
        """One line for logs and reports, e.g. 'bf16 autocast, channels_last (auto: CPU has AVX512_BF16)'."""
        dtype = "bf16 autocast" if self.autocast_dtype is not None else "fp32"
        layout = "channels_last" if self.channels_last else "NCHW"
        return f"{dtype}, {layout} ({self.reason})"

    def as_tags(self) -> dict[str, str]:
        """The resolved numerics as MLflow tags (strings)."""
        return {
            "numerics.precision": self.precision,
            "numerics.channels_last": str(self.channels_last).lower(),
            "numerics": self.describe(),
        }


def resolve_numerics(
    precision: Literal["auto", "fp32", "bf16"],
    channels_last: bool | None,
    device: torch.device,
    cpu_bf16: str | None | Literal["detect"] = "detect",
) -> Numerics:
    """The numerics for ``device`` from the config's ``precision`` and ``channels_last``.

    ``cpu_bf16`` is what ``cpu_bf16_support()`` answers (detected when left at "detect"); tests pass
    None to stand for a CPU without native bf16.
    """
    reasons = []
    if precision == "auto":
        if device.type == "cuda":
            dtype: torch.dtype | None = torch.bfloat16
            reasons.append("auto: bf16 on CUDA")
        elif device.type == "cpu":
            feature = cpu_bf16_support() if cpu_bf16 == "detect" else cpu_bf16
            dtype = torch.bfloat16 if feature else None
            reasons.append(f"auto: CPU has {feature}" if feature else "auto: CPU without native bf16")
        else:
            dtype = None
            reasons.append(f"auto: fp32 on {device.type}")
    else:
        dtype = torch.bfloat16 if precision == "bf16" else None
        reasons.append(f"train.precision={precision}")
    if channels_last is None:
        # fp32 channels_last on the CPU corrupts the heap in torch 2.14.1 (small ResNets at 48-64 px:
        # "malloc(): invalid next size", "corrupted size vs. prev_size", segfaults); bf16 does not
        layout = device.type == "cuda" or (device.type == "cpu" and dtype is not None)
        if device.type == "cpu" and dtype is None:
            reasons.append("NCHW: fp32 channels_last is unsafe on this torch's CPU kernels")
    else:
        layout = channels_last
        reasons.append(f"train.channels_last={str(channels_last).lower()}")
    return Numerics(dtype, layout, "; ".join(reasons))
