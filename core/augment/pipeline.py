"""Compose transformations into SimCLR's two views of a batch."""

from __future__ import annotations

import torch

from core.augment.transforms import (
    ColorDistortion,
    Cutout,
    GaussianBlur,
    GaussianNoise,
    RandomResizedCrop,
    Rotate,
    Sobel,
    Transform,
)
from core.config import AugmentConfig


CPU_CHUNK_ELEMENTS = 1 << 20
"""Elements per slice of a batch when a chain of transformations runs on CPU (4 MiB of float32)."""


def build_transform(name: str, cfg: AugmentConfig) -> Transform:
    """The transformation called ``name`` in configs, parameterised by its section of ``cfg``."""
    factories = {
        "crop": lambda: RandomResizedCrop(cfg.crop),
        "cutout": lambda: Cutout(cfg.cutout),
        "color": lambda: ColorDistortion(cfg.color),
        "sobel": Sobel,
        "noise": lambda: GaussianNoise(cfg.noise),
        "blur": lambda: GaussianBlur(cfg.blur),
        "rotate": lambda: Rotate(cfg.rotate),
    }
    if name not in factories:
        raise ValueError(f"unknown transformation {name!r}; choose from {sorted(factories)}")
    return factories[name]()


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 in [0, 1] on the same device."""
    return images.float().div_(255.0)


class Compose:
    """Apply transformations in order, each with fresh per-image parameters."""

    def __init__(self, transforms: list[Transform]) -> None:
        self.transforms = transforms

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # Every transformation keeps the batch's shape, so all parameters can be drawn first (in the
        # same order from ``generator`` as drawing each just before its transformation).
        params = [t.sample(x, generator) for t in self.transforms]
        if x.device.type != "cpu" or x.numel() <= CPU_CHUNK_ELEMENTS:
            return self._apply(x, params)
        # CPU: run the whole chain on cache-sized slices of the batch. Whole-batch temporaries are
        # large allocations that glibc hands back to the kernel when freed, and page-faulting them in
        # again costs more than the arithmetic; slices stay in cache (2-3x faster at 32x32).
        per_chunk = max(1, CPU_CHUNK_ELEMENTS // x[0].numel())
        out = torch.empty_like(x)
        for start in range(0, x.shape[0], per_chunk):
            part = slice(start, start + per_chunk)
            out[part] = self._apply(x[part], [{k: v[part] for k, v in p.items()} for p in params])
        return out

    def _apply(self, x: torch.Tensor, params: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        for t, p in zip(self.transforms, params):
            x = t.apply(x, p)
        return x


class TwoViews:
    """SimCLR's view generator.

    symmetric: view1 = ops(x), view2 = ops(x), independent parameters.
    asymmetric (Figure 5): base = crop(x), shared by both views; view1 = ops(base), view2 = base.
    """

    def __init__(self, cfg: AugmentConfig) -> None:
        self.mode = cfg.mode
        self.ops = Compose([build_transform(name, cfg) for name in cfg.ops])
        self.base_crop = RandomResizedCrop(cfg.crop)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``images`` uint8 or float (B, C, H, W); returns two float views in [0, 1]."""
        x = to_float(images) if images.dtype == torch.uint8 else images
        if self.mode == "asymmetric":
            base = self.base_crop.apply(x, self.base_crop.sample(x, generator))
            return self.ops(base, generator), base
        return self.ops(x, generator), self.ops(x, generator)
