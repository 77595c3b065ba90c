"""Batched SimCLR augmentations: per-image random parameters, whole batches, any device."""

from core.augment.pipeline import Compose, TwoViews, build_transform, to_float
from core.augment.transforms import (
    ColorDistortion,
    Cutout,
    GaussianBlur,
    GaussianNoise,
    RandomResizedCrop,
    Rotate,
    Sobel,
    Transform,
    blur_kernel_size,
)

__all__ = [
    "ColorDistortion", "Compose", "Cutout", "GaussianBlur", "GaussianNoise", "RandomResizedCrop",
    "Rotate", "Sobel", "Transform", "TwoViews", "blur_kernel_size", "build_transform", "to_float",
]
