"""The decoded dataset handed to training and evaluation, and the raw form sources produce."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.data.mapped_images import MappedImages

Images = torch.Tensor | MappedImages
"""A split's images: a tensor in memory, or a view of memory-mapped files (``data.in_memory``)."""


@dataclass(frozen=True)
class Decoded:
    """What a source produces and the cache stores: named numpy arrays plus class names.

    Labelled sources fill ``train_images/train_labels/test_images/test_labels``; the STL-10
    unlabeled part is a separate ``Decoded`` holding only ``images``.
    """

    arrays: dict[str, np.ndarray]
    classes: list[str]


@dataclass(frozen=True, eq=False)
class ImageSplits:
    """Decoded dataset: uint8 images (N,C,H,W) on CPU, in memory or memory-mapped, plus int64 labels.

    ``pretrain`` is the very same object as ``train_images`` unless extra unlabeled
    images (STL-10 ``unlabeled``) are added, so callers can tell the two cases apart with ``is``.
    ``placement`` says where the images are and why (``data.in_memory``), for the run's log.
    """

    name: str
    pretrain: Images
    train_images: Images
    train_labels: torch.Tensor
    test_images: Images
    test_labels: torch.Tensor
    classes: list[str]
    placement: str = "in memory"

    def __post_init__(self) -> None:
        for field in ("pretrain", "train_images", "test_images"):
            t = getattr(self, field)
            if t.dtype != torch.uint8 or t.dim() != 4:
                raise ValueError(f"ImageSplits.{field} must be uint8 (N,C,H,W), got {t.dtype} {tuple(t.shape)}")
        for images, labels in ((self.train_images, self.train_labels), (self.test_images, self.test_labels)):
            if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
                raise ValueError(f"labels must be int64 ({images.shape[0]},), got {labels.dtype} {tuple(labels.shape)}")
        if not (self.pretrain.shape[1:] == self.train_images.shape[1:] == self.test_images.shape[1:]):
            raise ValueError("pretrain, train and test images must share C,H,W")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        """Image height (all images share one H x W, normally square)."""
        return int(self.train_images.shape[2])
