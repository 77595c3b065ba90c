"""Can a stride-2 convolution's backward be made cheaper by rewriting the convolution?

In the bf16 channels_last step of the width-16 small ResNet, the backward of the three stride-2 3x3
convolutions gained only 1.2-1.5x over fp32 NCHW (2026-11-27), against about 2x for the stride-1
ones, and cost 4-5x their own forward. A stride-2 3x3 convolution with padding 1 equals a stride-1
2x2 convolution of the space-to-depth input (``pixel_unshuffle`` by 2, padded by one row and column
at the top and left) with the weights rearranged: every kernel oneDNN then runs is stride 1. This
script checks the identity in float64 and times forward + backward of both under bf16 autocast,
channels_last, batch 512, as in training (milliseconds, median of 15 calls after 3 warm-up calls).

    OMP_NUM_THREADS=2 python benchmarks/stride2_conv_cpu.py
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.conv_backward_cpu import median_ms  # noqa: E402

SHAPES = ((16, 32, 32), (32, 64, 16), (64, 128, 8))  # in channels, out channels, input side
Conv = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def space_to_depth_weight(w: torch.Tensor) -> torch.Tensor:
    """(O, C, 3, 3) -> (O, 4C, 2, 2): padded to 4x4 at the top and left, a tap at row r = 2s + p
    (s: the 2x2 kernel's row, p: the row phase of pixel_unshuffle), and likewise for columns."""
    out, cin = w.shape[:2]
    return F.pad(w, (1, 0, 1, 0)).view(out, cin, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(out, 4 * cin, 2, 2)


def native(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, w, stride=2, padding=1)


def space_to_depth(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.conv2d(F.pad(F.pixel_unshuffle(x, 2), (1, 0, 1, 0)), space_to_depth_weight(w))


def forward_backward_ms(conv: Conv, cin: int, cout: int, side: int, calls: int = 15) -> float:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(512, cin, side, side, generator=gen).contiguous(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(cout, cin, 3, 3, generator=gen, requires_grad=True)
    grad = torch.randn(512, cout, side // 2, side // 2, generator=gen).bfloat16().contiguous(
        memory_format=torch.channels_last
    )

    def step() -> tuple[torch.Tensor, ...]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x, w)
        return torch.autograd.grad(y, (x, w), grad)

    return median_ms(step, calls=calls, warm_up=3)


def main() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 8, 16, 16, generator=gen, dtype=torch.float64)
    w = torch.randn(12, 8, 3, 3, generator=gen, dtype=torch.float64)
    print(
        "identity, float64: max |native - space_to_depth| = "
        f"{(native(x, w) - space_to_depth(x, w)).abs().max().item():.1e}"
    )
    for cin, cout, side in SHAPES:
        for _ in range(2):
            a = forward_backward_ms(native, cin, cout, side)
            b = forward_backward_ms(space_to_depth, cin, cout, side)
            print(f"{cin}->{cout}, {side} px: native {a:.1f} ms, space-to-depth {b:.1f} ms")


if __name__ == "__main__":
    main()
