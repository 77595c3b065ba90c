"""Compose transformations into SimCLR's two views of a batch."""

from __future__ import annotations

import torch

from core.augment.center import CenterView
from core.augment.transforms import Params, RandomResizedCrop, Transform
from core.components import build_transform
from core.config import AugmentConfig

CPU_CHUNK_ELEMENTS = 1 << 20
"""Elements per slice of a batch when a chain of transformations runs on CPU (4 MiB of float32)."""


def slice_params(params: list[Params], part: slice) -> list[Params]:
    """The parameters of the images in ``part`` (every parameter is indexed by image first)."""
    return [{k: v[part] for k, v in p.items()} for p in params]


def shaped_like(x: torch.Tensor, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """A tensor of ``shape`` on ``x``'s device and dtype that owns no memory (for ``sample``, which
    reads only shape, device and dtype)."""
    return torch.empty((), device=x.device, dtype=x.dtype).expand(*shape)


def output_shape(t: Transform, shape: tuple[int, ...] | torch.Size) -> tuple[int, ...]:
    """The shape of ``t``'s output for an input of ``shape`` (only crops change it)."""
    resize = getattr(t, "output_size", None)
    return tuple(shape) if resize is None else (*shape[:2], *resize(shape[2], shape[3]))


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 in [0, 1] on the same device."""
    return images.float().div_(255.0)


class Compose:
    """Apply transformations in order, each with fresh per-image parameters."""

    def __init__(self, transforms: list[Transform]) -> None:
        self.transforms = transforms

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Transform ``x`` with fresh parameters drawn from ``generator``."""
        return self.apply(x, self.sample(x, generator))

    def sample(self, like: torch.Tensor, generator: torch.Generator) -> list[Params]:
        """Every transformation's per-image parameters for a batch shaped like ``like``, all drawn
        first (in the same order from ``generator`` as drawing each just before its transformation);
        each is drawn for the shape its input will have (a crop to ``crop.size`` changes it)."""
        params, shape = [], tuple(like.shape)
        for t in self.transforms:
            params.append(t.sample(like if shape == tuple(like.shape) else shaped_like(like, shape), generator))
            shape = output_shape(t, shape)
        return params

    def apply(self, x: torch.Tensor, params: list[Params]) -> torch.Tensor:
        """Run the chain on ``x`` with ``params`` (one entry per image of ``x``)."""
        if x.device.type != "cpu" or x.numel() <= CPU_CHUNK_ELEMENTS:
            return self._apply(x, params)
        # CPU: run the whole chain on cache-sized slices of the batch. Whole-batch temporaries are
        # large allocations that glibc hands back to the kernel when freed, and page-faulting them in
        # again costs more than the arithmetic; slices stay in cache (2-3x faster at 32x32).
        per_chunk = max(1, CPU_CHUNK_ELEMENTS // x[0].numel())
        out: torch.Tensor | None = None
        for start in range(0, x.shape[0], per_chunk):
            part = slice(start, start + per_chunk)
            y = self._apply(x[part], slice_params(params, part))
            if out is None:  # a crop to crop.size changes the image size
                out = x.new_empty((x.shape[0], *y.shape[1:]))
            out[part] = y
        assert out is not None
        return out

    def _apply(self, x: torch.Tensor, params: list[Params]) -> torch.Tensor:
        for t, p in zip(self.transforms, params):
            x = t.apply(x, p)
        return x


class TwoViews:
    """SimCLR's view generator.

    symmetric: view1 = ops(x), view2 = ops(x), independent parameters.
    asymmetric (Figure 5): base = crop(x), shared by both views; view1 = ops(base), view2 = base.

    Views come out at ``crop.size``: symmetric ops without a crop start from the central view
    (``core.augment.center``), as evaluation does, when ``crop.size`` is set.
    """

    def __init__(self, cfg: AugmentConfig) -> None:
        self.mode = cfg.mode
        ops = [build_transform(name, cfg) for name in cfg.ops]
        if cfg.mode == "symmetric" and "crop" not in cfg.ops and cfg.crop.size is not None:
            ops.insert(0, CenterView(cfg.crop.size))
        self.ops = Compose(ops)
        self.base_crop = RandomResizedCrop(cfg.crop)

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator, part: slice | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``images`` uint8 or float (B, C, H, W); returns two float views in [0, 1].

        ``part``: return only the views of ``images[part]``, with the parameters those images get when
        the whole batch is augmented. Data-parallel ranks draw every image's parameters from one
        shared generator state and transform only their own shard, so the global batch's views are
        those of a single process, bit for bit, and no rank augments images it does not train on.
        """
        batch_size = images.shape[0]
        return self.of_part(images if part is None else images[part], generator, part, batch_size)

    def of_part(
        self, images: torch.Tensor, generator: torch.Generator, part: slice | None, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The views of ``images``, which are ``part`` of a batch of ``batch_size`` images (the
        whole batch when ``part`` is None): what ``self(batch, generator, part)`` returns, for a
        rank that has read only its own part of the batch (a memory-mapped store)."""
        x = to_float(images) if images.dtype == torch.uint8 else images
        # sampling only reads the batch's shape, device and dtype
        like = shaped_like(x, (batch_size, *x.shape[1:]))

        def draw(t_sample: list[Params]) -> list[Params]:
            return t_sample if part is None else slice_params(t_sample, part)

        if self.mode == "asymmetric":
            crop = draw([self.base_crop.sample(like, generator)])[0]
            base = self.base_crop.apply(x, crop)
            base_like = shaped_like(x, output_shape(self.base_crop, like.shape))
            return self.ops.apply(base, draw(self.ops.sample(base_like, generator))), base
        v1 = self.ops.apply(x, draw(self.ops.sample(like, generator)))
        return v1, self.ops.apply(x, draw(self.ops.sample(like, generator)))
