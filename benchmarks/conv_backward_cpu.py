"""Where the bf16 channels_last CPU step loses time: each convolution of the width-16 small ResNet
(batch 512 = 2 views x 256, 32x32) timed as oneDNN runs it (forward, data gradient, weight gradient),
and the alternatives one could route a weight gradient through instead: fp32 NCHW, bf16 NCHW, fp32
channels_last, or im2col + one bf16 matrix product. A data gradient of a stride-1 convolution is also
computed as a forward convolution with flipped, transposed weights (exact: error 0), in case oneDNN's
backward-data kernel were the slow one.

Issue 11 asks for 2.0x over fp32 NCHW end to end; this script answers "is one convolution kernel
pathological, so that routing it elsewhere buys the rest?". Milliseconds, median of 7 calls:

    OMP_NUM_THREADS=2 python benchmarks/conv_backward_cpu.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch.nn import functional as F

ATEN = torch.ops.aten
SHAPES = [(16, 16, 32, 1), (32, 32, 16, 1), (16, 32, 32, 2), (32, 64, 16, 2), (64, 128, 8, 2)]  # cin, cout, px, stride


def median_ms(fn: Callable[[], object], calls: int = 7, warm_up: int = 2) -> float:
    """Median wall time of ``calls`` calls after ``warm_up`` untimed ones (oneDNN builds its kernels on
    the first); the CPU scripts beside this one time with it too."""
    for _ in range(warm_up):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def grads(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, stride: int, data: bool, weight: bool) -> tuple:
    """aten's convolution backward (what autograd calls) for a 3x3, padding-1 convolution."""
    return ATEN.convolution_backward(
        g, x, w, None, [stride] * 2, [1, 1], [1, 1], False, [0, 0], 1, [data, weight, False]
    )


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def measure(cin: int, cout: int, px: int, stride: int) -> dict[str, float]:
    cl, bf16 = torch.channels_last, torch.bfloat16
    x = torch.randn(512, cin, px, px).to(bf16).contiguous(memory_format=cl)
    w = (torch.randn(cout, cin, 3, 3) * 0.1).to(bf16).contiguous(memory_format=cl)
    g = torch.randn_like(F.conv2d(x, w, stride=stride, padding=1)).contiguous(memory_format=cl)
    row = {
        "forward": median_ms(lambda: F.conv2d(x, w, stride=stride, padding=1)),
        "data grad": median_ms(lambda: grads(g, x, w, stride, True, False)),
        "weight grad": median_ms(lambda: grads(g, x, w, stride, False, True)),
    }
    if stride == 1:
        flipped = w.flip(2, 3).transpose(0, 1).contiguous(memory_format=cl)
        row["data grad as forward"] = median_ms(
            lambda: F.conv2d(g, w.flip(2, 3).transpose(0, 1).contiguous(memory_format=cl), padding=1)
        )
        row["as-forward error"] = relative_error(F.conv2d(g, flipped, padding=1), grads(g, x, w, 1, True, False)[0])
    fp32 = (g.float().contiguous(), x.float().contiguous(), w.float().contiguous())
    row["weight grad fp32 NCHW"] = median_ms(
        lambda: grads(g.float().contiguous(), x.float().contiguous(), w.float().contiguous(), stride, False, True)
    )
    row["weight grad bf16 NCHW"] = median_ms(
        lambda: grads(g.contiguous(), x.contiguous(), w.contiguous(), stride, False, True)
    )
    row["weight grad fp32 channels_last"] = median_ms(
        lambda: grads(g.float(), x.float(), w.float(), stride, False, True)
    )

    def im2col() -> torch.Tensor:
        cols = F.unfold(x, 3, padding=1, stride=stride)  # (N, cin*9, L)
        return torch.einsum("ncl,nkl->ck", g.flatten(2), cols).reshape(w.shape)

    row["weight grad im2col"] = median_ms(im2col)
    row["im2col error"] = relative_error(im2col(), grads(*fp32, stride, False, True)[1])
    return row


def main() -> None:
    torch.manual_seed(0)
    for cin, cout, px, stride in SHAPES:
        row = measure(cin, cout, px, stride)
        cells = ", ".join(f"{k} {v:.1e}" if k.endswith("error") else f"{k} {v:.1f}" for k, v in row.items())
        print(f"{cin}->{cout}, {px} px, stride {stride}: {cells}", flush=True)


if __name__ == "__main__":
    main()
