"""Colour math on batches of float images in [0, 1] (B, C, H, W), following torchvision's tensor semantics.

Each function takes a per-sample factor of shape (B,) so a whole batch is transformed in one pass.
"""

from __future__ import annotations

import torch

_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision.transforms.functional.rgb_to_grayscale


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma (B, 1, H, W) of an RGB batch; a 1-channel batch is returned as is."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (_GRAY_WEIGHTS[0] * r + _GRAY_WEIGHTS[1] * g + _GRAY_WEIGHTS[2] * b).unsqueeze(1)


def _per_sample(factor: torch.Tensor) -> torch.Tensor:
    return factor.view(-1, 1, 1, 1)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """factor * x + (1 - factor) * other, clamped to [0, 1] (torchvision's _blend)."""
    f = _per_sample(factor)
    return (f * x + (1 - f) * other).clamp_(0, 1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, torch.zeros_like(x), factor)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean, factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    return _blend(x, grayscale(x), factor)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue by ``shift`` (fraction of a turn, in [-0.5, 0.5]); identity for 1 channel."""
    if x.shape[1] == 1:
        return x
    h, s, v = _rgb_to_hsv(x)
    h = torch.remainder(h + shift.view(-1, 1, 1), 1.0)
    return _hsv_to_rgb(h, s, v)


def _rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r, g, b = x.unbind(1)
    maxc = x.amax(dim=1)
    minc = x.amin(dim=1)
    chroma = maxc - minc
    flat = chroma == 0
    s = chroma / torch.where(flat, torch.ones_like(maxc), maxc)
    c = torch.where(flat, torch.ones_like(chroma), chroma)
    rc, gc, bc = (maxc - r) / c, (maxc - g) / c, (maxc - b) / c
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    hue = torch.where(is_r, bc - gc, torch.where(is_g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.remainder(hue / 6.0, 1.0)
    return hue, s, maxc


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """f(n) = v - v*s*clamp(min(k, 4 - k), 0, 1) with k = (n + 6h) mod 6, for n = 5, 3, 1 (r, g, b)."""
    h6 = h * 6.0
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + h6, 6.0)
        channels.append(v - v * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(channels, dim=1)
