"""Datasets as decoded uint8 tensors: ``load_dataset(cfg.data, seed)`` -> ``ImageSplits``.

Everything but ``synthetic`` is decoded once and cached as .npy under ``cfg.cache_dir``; subsets
are drawn after the cache, so one cache entry serves every subset size and seed.

``data.in_memory`` decides whether the images are read into memory (tensors) or stay in the
memory-mapped files (``MappedImages``; a subset is then an index array, never a copy); see
``core.data.placement``. ``ImageSplits.placement`` says which, and why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from core.config import DataConfig
from core.data import placement
from core.data.decode import fit_array
from core.data.errors import DataError
from core.data.folders import tarball_stem
from core.data.idx import load_idx
from core.data.mapped_images import MappedImages
from core.data.splits import Decoded, Images, ImageSplits
from core.data.store import TREE_SOURCES, decode_tree, ensure_store
from core.data.subset import stratified_indices
from core.data.synthetic import make_synthetic
from core.data.torchvision_sources import load_stl10_unlabeled, load_torchvision

__all__ = ["DataError", "ImageSplits", "MappedImages", "load_dataset"]

log = logging.getLogger(__name__)

_BUILDERS: dict[str, Callable[[DataConfig], Decoded]] = {
    "cifar10": load_torchvision,
    "cifar100": load_torchvision,
    "stl10": load_torchvision,
    "imagefolder": decode_tree,
    "tarball": decode_tree,
    "idx": load_idx,
}


def _name(cfg: DataConfig) -> str:
    if cfg.source in ("imagefolder", "idx"):
        assert cfg.root is not None
        return f"{cfg.source}:{cfg.root.expanduser().resolve().name}"
    if cfg.source == "tarball":
        assert cfg.root is not None
        return f"tarball:{tarball_stem(cfg.root)}"
    return cfg.source


def _tensor(array: np.ndarray) -> torch.Tensor:
    """Share memory with the array when it is writable (torch warns on read-only buffers)."""
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def _images(array: np.ndarray) -> Images:
    """A memory map stays one (``MappedImages``); an array in memory becomes a tensor sharing it."""
    return MappedImages([torch.from_numpy(array)]) if isinstance(array, np.memmap) else _tensor(array)


def _synthetic(cfg: DataConfig, seed: int) -> Decoded:
    decoded = make_synthetic(cfg.synthetic, seed)
    arrays = {k: fit_array(a, cfg.image_size) if k.endswith("_images") else a for k, a in decoded.arrays.items()}
    return Decoded(arrays, decoded.classes)


def _decode(cfg: DataConfig, seed: int, device: torch.device | None) -> tuple[Decoded, np.ndarray | None, str]:
    """The full labelled splits, plus STL-10's unlabeled images when asked for, and where they are."""
    if cfg.classes is not None and cfg.source not in TREE_SOURCES:
        raise DataError(
            f"data.classes selects class folders of an imagefolder or tarball tree; source {cfg.source} has none"
        )
    if cfg.source in TREE_SOURCES:
        ensure_store(cfg)  # built on disk in chunks, never in memory: the tree may be larger than memory
    if cfg.source == "synthetic":
        decoded, where = placement.open_synthetic(cfg, seed, lambda: _synthetic(cfg, seed))
        return decoded, None, where
    builds = {"labelled": lambda: _BUILDERS[cfg.source](cfg)}
    if cfg.stl10_unlabeled and cfg.source != "stl10":
        log.warning("data.stl10_unlabeled is ignored for source %s (it only applies to stl10)", cfg.source)
    elif cfg.stl10_unlabeled:
        builds["unlabeled"] = lambda: load_stl10_unlabeled(cfg)
    parts, where = placement.open_parts(cfg, builds, device)
    unlabeled = parts["unlabeled"].arrays["images"] if "unlabeled" in parts else None
    return parts["labelled"], unlabeled, where


def _subset(
    images: Images, labels: torch.Tensor, n: int | None, seed: int, split: str, option: str
) -> tuple[Images, torch.Tensor]:
    if n is None:
        return images, labels
    idx = torch.from_numpy(stratified_indices(labels.numpy(), n, seed, split, option))
    chosen = images.select(idx) if isinstance(images, MappedImages) else images[idx]
    return chosen, labels[idx]


def load_dataset(cfg: DataConfig, seed: int = 0, device: torch.device | None = None) -> ImageSplits:
    """Decode (or load from cache) the configured dataset and apply the seeded subsets.

    ``seed`` drives the synthetic data and the subsets, so one run seed fixes the whole dataset.
    ``device``: where the run trains, for ``data.in_memory: auto``'s budget (None: the host's).
    Raises DataError naming the path and what was expected when data is missing or malformed.
    """
    decoded, unlabeled, where = _decode(cfg, seed, device)
    a = decoded.arrays
    full_train = _images(a["train_images"])
    train_images, train_labels = _subset(
        full_train, _tensor(a["train_labels"]), cfg.subset, seed, "train", "data.subset"
    )
    test_images, test_labels = _subset(
        _images(a["test_images"]), _tensor(a["test_labels"]), cfg.test_subset, seed, "test", "data.test_subset"
    )
    # data.subset limits the labelled split; with STL-10's unlabeled images pretraining uses all of it
    if unlabeled is None:
        pretrain = train_images
    elif isinstance(full_train, MappedImages):
        pretrain = MappedImages.concat(full_train, MappedImages([torch.from_numpy(unlabeled)]))
    else:
        pretrain = torch.cat([full_train, _tensor(unlabeled)])
    return ImageSplits(
        name=_name(cfg),
        pretrain=pretrain,
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        classes=list(decoded.classes),
        placement=where,
    )
