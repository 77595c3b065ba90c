"""What bf16 can give on this CPU at most: one large square matrix product in fp32 and in bf16, GFLOP/s.

A convolution lowers to matrix products (oneDNN's brgemm kernels), so the bf16/fp32 ratio of a
compute-bound product is the ceiling for what bf16 autocast can buy a convolution-bound training
step, up to what the fp32 baseline loses to layout (channels_last helps fp32 too). Issue 11 asked
for 2.0x end to end (target 3x); on the development CPU (AMD EPYC, AVX512_BF16, no AMX, 2 cores)
this measured a ratio of 2.2-2.8x (2026-11-27), so 3x is out of this CPU's reach.

    OMP_NUM_THREADS=2 python benchmarks/matmul_peak_cpu.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.conv_backward_cpu import median_ms  # noqa: E402

SIZES = (1024, 2048, 3072)
ROUNDS = 3


def gflops(n: int, dtype: torch.dtype, calls: int = 10) -> float:
    """GFLOP/s of an n x n by n x n product, median of ``calls`` after three warm-up calls."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(dtype)
    b = torch.randn(n, n, generator=gen).to(dtype)
    return 2 * n**3 / (median_ms(lambda: torch.mm(a, b), calls=calls, warm_up=3) / 1e3) / 1e9


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}")
    for n in SIZES:
        for _ in range(ROUNDS):  # fp32 and bf16 interleaved: the machine's drift cancels in each ratio
            fp32, bf16 = gflops(n, torch.float32), gflops(n, torch.bfloat16)
            print(f"n={n}: fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s, ratio {bf16 / fp32:.2f}")


if __name__ == "__main__":
    main()
