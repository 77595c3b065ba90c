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
    return (f * x).add_((1 - f) * other).clamp_(0, 1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    # torchvision blends with zeros: factor * x + (1 - factor) * 0, which is exactly factor * x
    return (_per_sample(factor) * x).clamp_(0, 1)


def shift_brightness(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """x + delta, clamped to [0, 1] (``tf.image.random_brightness`` adds one delta per image; the
    official code clips after each colour op)."""
    return (x + _per_sample(delta)).clamp_(0, 1)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean, factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    return _blend(x, grayscale(x), factor)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue by ``shift`` (fraction of a turn, in [-0.5, 0.5]); identity for 1 channel.

    A rotation of hue keeps each pixel's max, min and chroma, so the round trip RGB -> HSV -> RGB
    (torchvision's ``adjust_hue``) reduces to: hue in sixths (h6), shifted, then channel n (5, 3, 1
    for r, g, b) = max - chroma * clamp(min(k, 4 - k), 0, 1), k = (n + h6) mod 6.
    """
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    maxc = x.amax(dim=1)
    chroma = maxc - x.amin(dim=1)
    c = chroma.masked_fill(chroma == 0, 1.0)
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    h6 = torch.where(is_r, (g - b).div_(c), torch.where(is_g, (b - r).div_(c).add_(2.0), (r - g).div_(c).add_(4.0)))
    h6 = torch.remainder(h6.add_(6.0 * shift.view(-1, 1, 1)), 6.0)
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(h6 + n, 6.0)
        w = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
        channels.append(torch.addcmul(maxc, chroma, w, value=-1.0))
    return torch.stack(channels, dim=1)
