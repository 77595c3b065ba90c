"""The paper's components as ``core.registry`` factories, with the signatures plugins have.

A built-in's params are its own config section as a dict (``augment.crop``, the ``loss`` fields, the
``model`` fields), validated again here, so the built-ins and a user's plugins are built by the
same calls (``core.components``).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

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
from core.config import (
    BlurConfig,
    ColorConfig,
    CropConfig,
    CutoutConfig,
    LossConfig,
    ModelConfig,
    NoiseConfig,
    RotateConfig,
)


def transform_crop(params: dict[str, Any]) -> Transform:
    return RandomResizedCrop(CropConfig.model_validate(params))


def transform_cutout(params: dict[str, Any]) -> Transform:
    return Cutout(CutoutConfig.model_validate(params))


def transform_color(params: dict[str, Any]) -> Transform:
    return ColorDistortion(ColorConfig.model_validate(params))


def transform_sobel(params: dict[str, Any]) -> Transform:
    return Sobel()


def transform_noise(params: dict[str, Any]) -> Transform:
    return GaussianNoise(NoiseConfig.model_validate(params))


def transform_blur(params: dict[str, Any]) -> Transform:
    return GaussianBlur(BlurConfig.model_validate(params))


def transform_rotate(params: dict[str, Any]) -> Transform:
    return Rotate(RotateConfig.model_validate(params))


def loss(params: dict[str, Any]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss named by ``params['name']`` with the other ``loss`` fields (``core.losses``)."""
    from core.losses import builtin_loss

    cfg = LossConfig.model_validate(params)
    return lambda z1, z2: builtin_loss(cfg, z1, z2)


def encoder(params: dict[str, Any], in_channels: int) -> tuple[nn.Module, int]:
    """The ResNet named by ``params['encoder']`` with the other ``model`` fields (``core.models``)."""
    from core.models import builtin_encoder

    return builtin_encoder(ModelConfig.model_validate(params), in_channels)
