"""The CPU benchmark scripts' own claims that a test can check: benchmarks/stride2_conv_cpu.py timed
a rewriting of stride-2 convolutions (benchmarks/HISTORY.md, 2026-11-27) that must compute the same function."""

from __future__ import annotations

import pytest
import torch

from benchmarks.stride2_conv_cpu import native, space_to_depth


@pytest.mark.parametrize("cin,cout,side", [(1, 1, 2), (3, 5, 6), (8, 12, 16)])
def test_space_to_depth_is_the_stride_2_convolution_and_has_its_gradients(cin, cout, side):
    gen = torch.Generator().manual_seed(cin)
    x = torch.randn(2, cin, side, side, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(cout, cin, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, cout, side // 2, side // 2, generator=gen, dtype=torch.float64)

    a = native(x, w)
    ga = torch.autograd.grad(a, (x, w), grad)
    b = space_to_depth(x, w)
    gb = torch.autograd.grad(b, (x, w), grad)
    assert b.shape == a.shape
    torch.testing.assert_close(b, a, rtol=0, atol=1e-12)
    for u, v in zip(gb, ga):
        torch.testing.assert_close(u, v, rtol=0, atol=1e-12)


def test_space_to_depth_places_one_tap_where_the_stride_2_kernel_reads_it():
    """A hand case: a kernel with one non-zero tap at (row 0, column 2) reads, for output (i, j),
    input (2i - 1, 2j + 1), zero above the image."""
    x = torch.arange(16, dtype=torch.float64).view(1, 1, 4, 4)
    w = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    w[0, 0, 0, 2] = 1.0
    expected = torch.tensor([[[[0.0, 0.0], [5.0, 7.0]]]], dtype=torch.float64)
    torch.testing.assert_close(space_to_depth(x, w), expected, rtol=0, atol=0)
    torch.testing.assert_close(native(x, w), expected, rtol=0, atol=0)
