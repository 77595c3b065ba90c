"""Solarisation as BYOL uses it (Grill et al. 2020, Table 6): with probability p, every pixel at or
above a threshold is inverted, x -> 1 - x.

The transformation follows the ``Transform`` protocol of ``core/augment/transforms.py``: ``sample``
draws each image's coin from the generator, ``apply`` uses it on the whole batch, and ``per_image``
is the one-image form ``train.loader: torchvision`` needs (its coin from the global torch RNG, which
that loader seeds per image).
"""

from __future__ import annotations

from typing import Any

import torch


class Solarize:
    """Invert the pixels at or above ``threshold`` of each image, with probability ``p`` per image."""

    name = "solarize"

    def __init__(self, p: float, threshold: float) -> None:
        self.p, self.threshold = p, threshold

    def sample(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"apply": torch.rand(x.shape[0], generator=generator, device=x.device) < self.p}

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        chosen = params["apply"].view(-1, 1, 1, 1)
        return torch.where(chosen & (x >= self.threshold), 1.0 - x, x)

    def per_image(self, image: torch.Tensor) -> torch.Tensor:
        if float(torch.rand(())) >= self.p:
            return image
        return torch.where(image >= self.threshold, 1.0 - image, image)


def solarize(params: dict[str, Any]) -> Solarize:
    """Factory (entry point): ``augment.params.solarize`` takes ``p`` (default 0.2, BYOL's second
    view) and ``threshold`` (default 0.5, on pixels in [0, 1])."""
    unknown = set(params) - {"p", "threshold"}
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)}; solarize takes p and threshold")
    p, threshold = float(params.get("p", 0.2)), float(params.get("threshold", 0.5))
    if not 0 <= p <= 1:
        raise ValueError(f"p must be in [0, 1], got {p}")
    return Solarize(p, threshold)
