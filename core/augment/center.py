"""The deterministic view of an image at the training resolution: what evaluation sees.

SimCLR's evaluation protocol (google-research/simclr ``preprocess_for_eval``): ImageNet images are
centre-cropped to 87.5% of their shorter side and resized to the training resolution (224), so a
256-pixel image gives its central 224 pixels unchanged; images of 32 pixels or less (CIFAR) are
used as they are. Here the store already holds images resized and centre-cropped to one size, so:
at the stored size (``augment.crop.size`` unset or equal) images are used as stored; at another
size, the central 87.5% of the stored image is resized to it (antialiased bilinear), which covers
the same part of the original photograph as the official protocol does.

The training views use the same transformation when they have no random crop (symmetric mode
without ``crop``): otherwise nothing would bring them to ``crop.size``.
"""

from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as TF

from core.augment.transforms import Params

CENTER_FRACTION = 0.875


def center_view(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Float images (..., H, W) seen at ``size``: unchanged at their own size (or None), else the
    central 87.5% of the shorter side resized to size x size."""
    height, width = x.shape[-2:]
    if size is None or (height, width) == (size, size):
        return x
    side = max(1, round(CENTER_FRACTION * min(height, width)))
    x = TF.center_crop(x, [side, side])
    return x if side == size else TF.resize(x, [size, size], antialias=True)


class CenterView:
    """``center_view`` as a transformation of the batched pipeline (no random parameters)."""

    name = "center"

    def __init__(self, size: int | None) -> None:
        self.size = size

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return (height, width) if self.size is None else (self.size, self.size)

    def sample(self, x: torch.Tensor, generator: torch.Generator) -> Params:
        return {}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return center_view(x, self.size)
