"""Where the two views of each training batch come from: ``train.loader``.

``batched`` (default): the uint8 images live on the training device; each step indexes a batch and
``core.augment.TwoViews`` transforms it as a whole with per-sample parameters (no per-image Python).

``torchvision``: the classic per-image pipeline, ``torchvision.transforms.v2`` applied image by image
in ``torch.utils.data.DataLoader`` worker processes, built from the same ``AugmentConfig`` so that its
parameters follow the same distributions (tests/test_loader_distributions.py checks this). It is the
fallback and the baseline that ``python -m ablations bench`` compares the batched pipeline against.

Reproducibility of the torchvision loader: every image's augmentation is seeded from
(seed, epoch, dataset index), so the views do not depend on ``num_workers`` or on worker scheduling,
and an epoch can be replayed exactly after a resume.

Memory-mapped images (``data.in_memory``, ``core.data.MappedImages``): ``mapped_epoch`` draws the
same permutation as ``batched_epoch``, reads each batch (only this rank's part of it under torchrun)
from the map in a background thread (``core.data.prefetch``) and augments it on the device, so its
views equal ``batched_epoch``'s bit for bit; the torchvision loader's workers read single images
from the map.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
import torchvision.transforms.v2 as v2

from core.augment import TwoViews, blur_kernel_size, build_transform
from core.augment.center import center_view
from core.augment.transforms import TF_ATTEMPTS, Transform, tf_crop_box
from core.components import per_image_form
from core.config import AugmentConfig, CropConfig
from core.data.mapped_images import MappedImages
from core.data.prefetch import prefetch
from core.registry import is_builtin

ImageFn = Callable[[torch.Tensor], torch.Tensor]

# A large odd multiplier mixes (seed, epoch, index) into one 63-bit seed per image and view pair.
_MIX = 0x9E3779B97F4A7C15


class _PerImage:
    """One of our batched transformations applied to a single image (C, H, W), parameters drawn from
    the global torch RNG like torchvision's. Used for the ops torchvision has no equivalent of
    (cutout, sobel, noise, rotate), so both backends share their semantics by construction."""

    def __init__(self, transform: Transform) -> None:
        self.transform = transform

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        x = image.unsqueeze(0)
        return self.transform.apply(x, self.transform.sample(x, gen)).squeeze(0)

    def __repr__(self) -> str:
        return f"PerImage({type(self.transform).__name__})"


class _TFCrop:
    """A crop box drawn as ``core.augment.transforms.tf_crop_box`` draws it (TensorFlow's
    ``sample_distorted_bounding_box``, which torchvision lacks), from the global torch RNG like
    torchvision's transforms, then cropped and resized by torchvision's ``resized_crop``."""

    def __init__(self, crop: CropConfig, out: int, interpolation: v2.InterpolationMode) -> None:
        self.crop, self.out, self.interpolation = crop, out, interpolation

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        draws = torch.rand((1, TF_ATTEMPTS, 2), dtype=torch.float64)
        offsets = torch.rand((1, 2), dtype=torch.float64)
        top, left, h, w = (int(v) for v in tf_crop_box(height, width, self.crop.scale, self.crop.ratio, draws, offsets))
        return v2.functional.resized_crop(
            image, top, left, h, w, [self.out, self.out], self.interpolation, antialias=True
        )

    def __repr__(self) -> str:
        return f"TFCrop({self.out}, {self.interpolation.value})"


def _clamp01(image: torch.Tensor) -> torch.Tensor:
    """Bicubic overshoots [0, 1]; the batched crop clamps, so this does too."""
    return image.clamp(0, 1)


def torchvision_op(name: str, cfg: AugmentConfig, image_size: int) -> list[ImageFn]:
    """The per-image torchvision equivalent of the batched op ``name`` (a list: some are two steps)
    for input images of ``image_size``; a crop outputs ``crop.size`` (default: ``image_size``)."""
    if not is_builtin("transform", name):  # a plugin brings its own per-image form, or none
        form = per_image_form(build_transform(name, cfg))
        if form is None:
            raise ValueError(f"transformation {name!r} has no per-image form (a per_image(image) method), "
                             "which train.loader: torchvision needs; use train.loader: batched")
        return [form]
    if name == "crop":
        c = cfg.crop
        out = c.size if c.size is not None else image_size
        mode = v2.InterpolationMode.BICUBIC if c.interpolation == "bicubic" else v2.InterpolationMode.BILINEAR
        ops: list[ImageFn] = [
            _TFCrop(c, out, mode) if c.sampler == "tf"
            else v2.RandomResizedCrop(out, scale=c.scale, ratio=c.ratio, interpolation=mode, antialias=True)
        ]
        if c.interpolation == "bicubic":
            ops.append(_clamp01)
        if c.flip:
            ops.append(v2.RandomHorizontalFlip(0.5))
        return ops
    if name == "color" and cfg.color.brightness == "additive":  # torchvision's brightness only multiplies
        return [_PerImage(build_transform(name, cfg))]
    if name == "color":
        s = cfg.color.strength
        jitter = v2.ColorJitter(brightness=0.8 * s, contrast=0.8 * s, saturation=0.8 * s, hue=min(0.5, 0.2 * s))
        return [v2.RandomApply([jitter], p=cfg.color.jitter_p), v2.RandomGrayscale(cfg.color.grayscale_p)]
    if name == "blur":
        k = blur_kernel_size(image_size, cfg.blur.kernel_fraction)
        return [v2.RandomApply([v2.GaussianBlur(k, sigma=cfg.blur.sigma)], p=cfg.blur.p)]
    return [_PerImage(build_transform(name, cfg))]


class _Center:
    """``core.augment.center.center_view`` of one image: the batched pipeline's own function."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return center_view(image, self.size)

    def __repr__(self) -> str:
        return f"Center({self.size})"


def _chain(names: list[str], cfg: AugmentConfig, image_size: int) -> list[ImageFn]:
    """The ops ``names`` in order for inputs of ``image_size``; each sees the size its input has
    (after a crop: ``crop.size``), as in the batched pipeline."""
    ops: list[ImageFn] = []
    for name in names:
        ops += torchvision_op(name, cfg, image_size)
        if name == "crop" and cfg.crop.size is not None:
            image_size = cfg.crop.size
    return ops


class TorchvisionViews:
    """Per-image two-view generator with the semantics of ``core.augment.TwoViews``.

    ``image``: uint8 or float (C, H, W) of side ``image_size``; returns two float32 views in [0, 1]
    of side ``crop.size`` (default: ``image_size``).
    """

    def __init__(self, cfg: AugmentConfig, image_size: int) -> None:
        self.mode = cfg.mode
        crop_size = cfg.crop.size if cfg.crop.size is not None else image_size
        if cfg.mode == "asymmetric":  # ops see the shared crop
            self.ops = v2.Compose(_chain(list(cfg.ops), cfg, crop_size))
        elif "crop" not in cfg.ops and cfg.crop.size is not None:  # no crop brings them to crop.size
            self.ops = v2.Compose([_Center(cfg.crop.size), *_chain(list(cfg.ops), cfg, crop_size)])
        else:
            self.ops = v2.Compose(_chain(list(cfg.ops), cfg, image_size))
        self.base_crop = v2.Compose(torchvision_op("crop", cfg, image_size))

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = image.float().div_(255.0) if image.dtype == torch.uint8 else image
        if self.mode == "asymmetric":
            base = self.base_crop(x)
            return self.ops(base), base
        return self.ops(x), self.ops(x)


class TwoViewDataset(torch.utils.data.Dataset):
    """Images (N, C, H, W) uint8 -> (view1, view2) per index, seeded by (seed, epoch, index)."""

    def __init__(self, images: torch.Tensor | MappedImages, cfg: AugmentConfig, seed: int = 0) -> None:
        self.images = images
        self.views = TorchvisionViews(cfg, min(images.shape[2], images.shape[3]))
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        item_seed = ((self.seed * 1_000_003 + self.epoch) * _MIX + int(index)) % (2**63 - 1)
        with torch.random.fork_rng(devices=[]):  # leaves the caller's RNG alone when num_workers == 0
            torch.manual_seed(item_seed)
            return self.views(self.images[index])


class TorchvisionLoader:
    """Epochs of (view1, view2) batches from a DataLoader with workers, moved to ``device``.

    Shuffling is seeded from (seed, epoch) and augmentation per image, so ``epoch(e)`` gives the same
    batches whatever ``num_workers`` is and after a resume.
    """

    def __init__(
        self,
        images: torch.Tensor | MappedImages,
        cfg: AugmentConfig,
        batch_size: int,
        device: torch.device,
        seed: int = 0,
        num_workers: int = 2,
    ) -> None:
        # forked workers share a memory map (file-backed pages), like a tensor in host memory
        self.dataset = TwoViewDataset(images if isinstance(images, MappedImages) else images.cpu(), cfg, seed)
        self.batch_size = batch_size
        self.device = device
        self.seed = seed
        self.num_workers = num_workers
        self._sampler_gen = torch.Generator()

    def _build(self) -> torch.utils.data.DataLoader[Any]:
        return torch.utils.data.DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            generator=self._sampler_gen,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,  # the dataset's epoch must reach the workers each epoch
            prefetch_factor=4 if self.num_workers > 0 else None,
        )

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.dataset.epoch = epoch
        self._sampler_gen.manual_seed(self.seed * 1_000_003 + epoch)
        loader = self._build()
        for v1, v2_ in loader:
            yield v1.to(self.device, non_blocking=True), v2_.to(self.device, non_blocking=True)


def batched_epoch(
    images: torch.Tensor,
    views: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    batch_size: int,
    data_gen: torch.Generator,
    aug_gen: torch.Generator,
    part: slice | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of the batched pipeline: a seeded permutation of the on-device images, each batch
    indexed from it and augmented whole (the draws from ``data_gen``/``aug_gen`` are in the same order
    as ever, so checkpoints written before the loader option resume to the same result).

    ``part``: this data-parallel rank's slice of every global batch; all ranks share the generator
    states, hence the permutation and every image's augmentation parameters."""
    steps = images.shape[0] // batch_size
    order = torch.randperm(images.shape[0], generator=data_gen, device=images.device)
    for i in range(steps):
        batch = images[order[i * batch_size : (i + 1) * batch_size]]
        yield views(batch, aug_gen) if part is None else views(batch, aug_gen, part=part)


def rank_rows(order: torch.Tensor, step: int, batch_size: int, part: slice | None) -> torch.Tensor:
    """The rows of global batch ``step`` of the permutation ``order`` that this rank reads: all of
    them in one process, else its ``part`` (``core.distributed.shard_slice``) of the batch."""
    rows = order[step * batch_size : (step + 1) * batch_size]
    return rows if part is None else rows[part]


def mapped_epoch(
    images: MappedImages,
    views: TwoViews,
    batch_size: int,
    data_gen: torch.Generator,
    aug_gen: torch.Generator,
    device: torch.device,
    part: slice | None = None,
    depth: int = 2,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``batched_epoch`` for memory-mapped images: the same permutation (drawn on ``data_gen``'s
    device, as there) and the same augmentation draws, but each batch, or this rank's ``part`` of it,
    is read from the map ``depth`` batches ahead by a background thread and moved to ``device``.
    ``views`` is a ``TwoViews``. The permutation comes to the host once per epoch (one sync)."""
    steps = images.shape[0] // batch_size
    order = torch.randperm(images.shape[0], generator=data_gen, device=data_gen.device).cpu()
    jobs = (rank_rows(order, i, batch_size, part) for i in range(steps))
    batches = prefetch(images, jobs, device, depth)
    try:
        for batch in batches:
            yield views.of_part(batch, aug_gen, part, batch_size)
    finally:
        batches.close()  # stops the reading thread when the epoch is left early
