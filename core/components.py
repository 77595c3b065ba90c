"""Build a run config's transformations, loss and encoder through ``core.registry``, and check a
plugin against its contract on a tiny batch before anything trains.

Built-ins and plugins are built by the same calls; only their params differ (a built-in's own config
section, a plugin's ``params`` mapping). ``check_components`` runs each plugin once on random data of
the run's shape, so a broken plugin is refused with a message that names it, not found an hour into
a study as a shape error deep in the trainer.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from core.config import AugmentConfig, LossConfig, ModelConfig, RunConfig
from core.losses import REDUCTION_FACTOR
from core.registry import Component, PluginError, resolve, uses_plugins

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

def transform_params(component: Component, cfg: AugmentConfig) -> dict[str, Any]:
    """What a transformation's factory gets: a built-in's section of ``cfg`` (``augment.crop``; none
    for sobel), a plugin's ``augment.params.NAME``."""
    if not component.builtin:
        return dict(cfg.params.get(component.name, {}))
    section = getattr(cfg, component.name, None)
    return section.model_dump(mode="python") if section is not None else {}


def build_transform(name: str, cfg: AugmentConfig) -> Any:
    """The transformation called ``name`` in configs, parameterised from ``cfg``."""
    component = resolve("transform", name)
    return _call(component, ("augment", "params", name), component.factory, transform_params(component, cfg))


def build_loss(cfg: LossConfig) -> LossFn:
    """``cfg``'s objective as a function of (z1, z2), reduced as ``cfg.reduction`` says."""
    component = resolve("loss", cfg.name)
    params = cfg.model_dump(mode="python", exclude={"params"}) if component.builtin else dict(cfg.params)
    fn = _call(component, ("loss", "params"), component.factory, params)
    factor = REDUCTION_FACTOR[cfg.reduction]
    return fn if factor == 1.0 else (lambda z1, z2: fn(z1, z2) * factor)


def build_encoder(cfg: ModelConfig, in_channels: int) -> tuple[nn.Module, int]:
    """``cfg``'s encoder f as (module, feature_dim), mapping (B, C, H, W) to (B, feature_dim)."""
    component = resolve("encoder", cfg.encoder)
    params = cfg.model_dump(mode="python", exclude={"params"}) if component.builtin else dict(cfg.params)
    return _call(component, ("model", "params"), component.factory, params, in_channels)


def per_image_form(transform: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A plugin transformation's per-image form for ``train.loader: torchvision``: its ``per_image``
    method (one (C, H, W) image in, one out, randomness from the global torch RNG), or None."""
    fn = getattr(transform, "per_image", None)
    return fn if callable(fn) else None


class ComponentError(PluginError):
    """A plugin that breaks its contract, with the config field to blame (``loc``)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _call(component: Component, loc: tuple[str | int, ...], factory: Callable[..., Any], *args: Any) -> Any:
    try:
        return factory(*args)
    except Exception as exc:  # a plugin's own error, about its params or anything else
        if component.builtin:
            raise
        raise ComponentError(loc, f"{component.describe()}: its factory raised {type(exc).__name__}: {exc}") from exc


def image_shape(config: RunConfig) -> tuple[int, int]:
    """(channels, side) of the images ``config`` trains on, as far as the config says (else 3, 32):
    the shape a plugin is tried on."""
    d = config.data
    if d.source == "synthetic":
        return d.synthetic.channels, d.synthetic.image_size
    return (1 if d.source == "idx" else 3), (d.image_size or 32)


def check_components(config: RunConfig, shape: tuple[int, int] | None = None, batch: int = 4) -> None:
    """Try every plugin ``config`` uses on random images of ``shape`` (channels, side; default: as
    the config says, ``image_shape``); ComponentError says which contract it broke (built-ins are
    tested by the suite and skipped here)."""
    if not uses_plugins(config):
        return
    channels, side = shape if shape is not None else image_shape(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        shape = (batch, channels, side, side)
        for i, name in enumerate(config.augment.ops):
            component = resolve("transform", name)
            if name == "crop" and config.augment.crop.size is not None:
                shape = (batch, channels, config.augment.crop.size, config.augment.crop.size)
            if not component.builtin:
                _check_transform(component, config, i, shape)
        loss = resolve("loss", config.loss.name)
        if not loss.builtin:
            _check_loss(loss, config)
        encoder = resolve("encoder", config.model.encoder)
        if not encoder.builtin:
            _check_encoder(encoder, config, channels, side)


def _check_transform(component: Component, config: RunConfig, index: int, shape: tuple[int, ...]) -> None:
    loc: tuple[str | int, ...] = ("augment", "ops", index)
    what = component.describe()
    t = build_transform(component.name, config.augment)
    for attr in ("sample", "apply"):
        if not callable(getattr(t, attr, None)):
            raise ComponentError(loc, f"{what}: its factory returned {type(t).__name__}, which has no {attr}() "
                                      "(the Transform protocol of core/augment/transforms.py)")
    x = torch.rand(shape)
    try:
        params = t.sample(x, torch.Generator().manual_seed(0))
        if not isinstance(params, dict) or not all(isinstance(v, torch.Tensor) for v in params.values()):
            raise ComponentError(loc, f"{what}: sample() must return a dict of tensors, got {type(params).__name__}")
        bad = [k for k, v in params.items() if v.ndim == 0 or v.shape[0] != shape[0]]
        if bad:
            raise ComponentError(loc, f"{what}: sample()'s {', '.join(bad)} not indexed by image first "
                                      f"(expected a first dimension of {shape[0]}, the batch)")
        y = t.apply(x, params)
    except ComponentError:
        raise
    except Exception as exc:
        raise ComponentError(loc, f"{what}: failed on a batch of shape {tuple(shape)}: "
                                  f"{type(exc).__name__}: {exc}") from exc
    _expect_images(y, shape, loc, f"{what}: apply()")
    if config.train.loader == "torchvision":
        form = per_image_form(t)
        if form is None:
            raise ComponentError(("train", "loader"), f"{what} has no per-image form, which train.loader: "
                                 "torchvision needs: give it a per_image(image) method (docs/plugins.md), or use "
                                 "train.loader: batched")
        _expect_images(form(x[0]), shape[1:], ("train", "loader"), f"{what}: per_image()")


def _expect_images(y: Any, shape: tuple[int, ...], loc: tuple[str | int, ...], what: str) -> None:
    if not isinstance(y, torch.Tensor):
        raise ComponentError(loc, f"{what} must return a tensor, got {type(y).__name__}")
    if tuple(y.shape) != tuple(shape):
        raise ComponentError(loc, f"{what} returned shape {tuple(y.shape)} for an input of {tuple(shape)} "
                                  "(a transformation keeps the shape; only crop resizes)")
    if not y.is_floating_point() or not bool(torch.isfinite(y).all()):
        raise ComponentError(loc, f"{what} must return finite floating-point images")


def _check_loss(component: Component, config: RunConfig) -> None:
    loc: tuple[str | int, ...] = ("loss", "name")
    what = component.describe()
    fn = build_loss(config.loss)
    dim = config.model.head_dim if config.model.head != "none" else 16
    z1 = torch.randn(8, dim, requires_grad=True)
    z2 = torch.randn(8, dim, requires_grad=True)
    try:
        out = fn(z1, z2)
    except Exception as exc:
        raise ComponentError(loc, f"{what}: failed on z1, z2 of shape (8, {dim}): {type(exc).__name__}: {exc}") from exc
    if not isinstance(out, torch.Tensor) or out.ndim != 0:
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise ComponentError(loc, f"{what} must return a scalar tensor (ndim 0), got {got}")
    if not bool(torch.isfinite(out)):
        raise ComponentError(loc, f"{what} returned {float(out)} on random projections")
    if not out.requires_grad:
        raise ComponentError(loc, f"{what}: its value does not depend on z1, z2 through autograd (no gradient)")


def _check_encoder(component: Component, config: RunConfig, channels: int, side: int) -> None:
    loc: tuple[str | int, ...] = ("model", "encoder")
    what = component.describe()
    built = build_encoder(config.model, channels)
    if not (isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], nn.Module)
            and isinstance(built[1], int) and built[1] > 0):
        raise ComponentError(loc, f"{what}: its factory must return (nn.Module, feature_dim > 0), got "
                                  f"{type(built).__name__}")
    net, dim = built
    try:
        h = net(torch.rand(2, channels, side, side))
    except Exception as exc:
        raise ComponentError(loc, f"{what}: failed on a batch of shape (2, {channels}, {side}, {side}): "
                                  f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(h, torch.Tensor) or tuple(h.shape) != (2, dim):
        got = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
        raise ComponentError(loc, f"{what}: returned {got} for 2 images; expected (2, {dim}), pooled features")
