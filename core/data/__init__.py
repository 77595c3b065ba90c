"""Datasets as decoded uint8 tensors: ``load_dataset(cfg.data, seed)`` -> ``ImageSplits``.

Everything but ``synthetic`` is decoded once and cached as .npy under ``cfg.cache_dir``; subsets
are drawn after the cache, so one cache entry serves every subset size and seed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from core.config import DataConfig
from core.data.cache import cached
from core.data.decode import fit_array
from core.data.errors import DataError
from core.data.folders import load_imagefolder, load_tarball, tarball_stem
from core.data.idx import load_idx
from core.data.splits import Decoded, ImageSplits
from core.data.subset import stratified_indices
from core.data.synthetic import make_synthetic
from core.data.torchvision_sources import load_stl10_unlabeled, load_torchvision

__all__ = ["DataError", "ImageSplits", "load_dataset"]

log = logging.getLogger(__name__)

_BUILDERS: dict[str, Callable[[DataConfig], Decoded]] = {
    "cifar10": load_torchvision,
    "cifar100": load_torchvision,
    "stl10": load_torchvision,
    "imagefolder": load_imagefolder,
    "tarball": load_tarball,
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


def _decode(cfg: DataConfig, seed: int) -> tuple[Decoded, np.ndarray | None]:
    """The full labelled splits, plus STL-10's unlabeled images when asked for."""
    if cfg.source == "synthetic":
        decoded = make_synthetic(cfg.synthetic, seed)
        arrays = {k: fit_array(a, cfg.image_size) if k.endswith("_images") else a for k, a in decoded.arrays.items()}
        return Decoded(arrays, decoded.classes), None
    decoded = cached(cfg, "labelled", lambda: _BUILDERS[cfg.source](cfg))
    if not cfg.stl10_unlabeled:
        return decoded, None
    if cfg.source != "stl10":
        log.warning("data.stl10_unlabeled is ignored for source %s (it only applies to stl10)", cfg.source)
        return decoded, None
    return decoded, cached(cfg, "unlabeled", lambda: load_stl10_unlabeled(cfg)).arrays["images"]


def _subset(
    images: torch.Tensor, labels: torch.Tensor, n: int | None, seed: int, split: str, option: str
) -> tuple[torch.Tensor, torch.Tensor]:
    if n is None:
        return images, labels
    idx = torch.from_numpy(stratified_indices(labels.numpy(), n, seed, split, option))
    return images[idx], labels[idx]


def load_dataset(cfg: DataConfig, seed: int = 0) -> ImageSplits:
    """Decode (or load from cache) the configured dataset and apply the seeded subsets.

    ``seed`` drives the synthetic data and the subsets, so one run seed fixes the whole dataset.
    Raises DataError naming the path and what was expected when data is missing or malformed.
    """
    decoded, unlabeled = _decode(cfg, seed)
    a = decoded.arrays
    full_train = _tensor(a["train_images"])
    train_images, train_labels = _subset(
        full_train, _tensor(a["train_labels"]), cfg.subset, seed, "train", "data.subset"
    )
    test_images, test_labels = _subset(
        _tensor(a["test_images"]), _tensor(a["test_labels"]), cfg.test_subset, seed, "test", "data.test_subset"
    )
    # data.subset limits the labelled split; with STL-10's unlabeled images pretraining uses all of it
    pretrain = train_images if unlabeled is None else torch.cat([full_train, _tensor(unlabeled)])
    return ImageSplits(
        name=_name(cfg),
        pretrain=pretrain,
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        classes=list(decoded.classes),
    )
