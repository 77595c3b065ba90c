"""Optimizers and the learning-rate schedule of a SimCLR run.

LARS follows google-research/simclr's ``LARSOptimizer`` (classic momentum, no
Nesterov): for an adapted parameter ``p`` with gradient ``g``

    g' = g + wd * p
    trust = eta * ||p|| / ||g'||   (1.0 when either norm is 0)
    v = momentum * v + lr * trust * g'
    p = p - v

and for excluded parameters (biases, BatchNorm) the trust ratio is 1 and, via
``param_groups``, the weight decay is 0. The same bias/BN split is used for
SGD and Adam, so no optimizer decays biases or normalisation parameters
(``optim.exclude_bias_bn: false`` decays and adapts them like the rest).

``clip_lr`` (solo-learn's LARS, NVIDIA's LARC "clip" mode) caps each layer's rate at the
global one: ``v = momentum * v + min(trust, lr) * g'`` instead of ``lr * trust * g'``.

The schedule is linear warmup then cosine decay, stepped once per iteration.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import torch
from torch import nn

from core.config import OptimConfig

__all__ = ["LARS", "param_groups", "build_optimizer", "warmup_cosine", "build_scheduler"]


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al. 2017) as in SimCLR's TF code.

    Per-group options: ``lr``, ``momentum``, ``weight_decay``, ``eta`` and
    ``lars_adapt`` (False: no trust ratio, plain momentum SGD for that group) and
    ``clip_lr`` (the layer's rate is min(trust, lr) rather than lr * trust).
    Weight decay is applied wherever a group's ``weight_decay`` is non-zero
    (as the TF code decides decay and adaptation separately); ``param_groups``
    sets it to 0 for the non-adapted biases/BN group. The step is sync-free:
    norms and the trust-ratio guard stay on the device (``torch.where``).
    All parameters of one group must be on one device.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        lars_adapt: bool = True,
        clip_lr: bool = False,
    ) -> None:
        if lr < 0:
            raise ValueError(f"invalid lr {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"invalid momentum {momentum}")
        if weight_decay < 0:
            raise ValueError(f"invalid weight_decay {weight_decay}")
        if eta <= 0:
            raise ValueError(f"invalid eta {eta}")
        defaults = dict(
            lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars_adapt=lars_adapt, clip_lr=clip_lr
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, bufs = self._gather(group)
            if params:
                _lars_update(
                    params,
                    grads,
                    bufs,
                    lr=group["lr"],
                    momentum=group["momentum"],
                    weight_decay=group["weight_decay"],
                    eta=group["eta"],
                    adapt=group["lars_adapt"],
                    clip_lr=group.get("clip_lr", False),  # state saved before the option lacks it
                )
        return loss

    def _gather(self, group: dict[str, Any]) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Parameters with gradients, their gradients and (lazily zeroed) momentum buffers."""
        params, grads, bufs = [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("LARS does not support sparse gradients")
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            bufs.append(state["momentum_buffer"])
        if len({p.device for p in params}) > 1:
            raise ValueError("LARS needs all parameters of a param group on one device")
        return params, grads, bufs


def _trust_ratios(params: list[torch.Tensor], grads: list[torch.Tensor], eta: float) -> torch.Tensor:
    """eta*||p||/||g|| per parameter (a vector), 1.0 where either norm is 0; stays on the device."""
    p_norm = torch.stack(torch._foreach_norm(params))
    g_norm = torch.stack(torch._foreach_norm(grads))
    ok = (p_norm > 0) & (g_norm > 0)
    return torch.where(ok, eta * p_norm / torch.where(ok, g_norm, 1.0), 1.0)


def _lars_update(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    bufs: list[torch.Tensor],
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    eta: float,
    adapt: bool,
    clip_lr: bool = False,
) -> None:
    """v = momentum*v + lr*trust*(g + wd*p) (min(trust, lr) when ``clip_lr``); p -= v, for one
    group, with foreach ops."""
    if weight_decay != 0:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    if adapt:
        trust = _trust_ratios(params, grads, eta)
        scales = (trust.clamp(max=lr) if clip_lr else trust * lr).unbind()
        updates = torch._foreach_mul(grads, list(scales))
    else:
        updates = torch._foreach_mul(grads, lr)
    torch._foreach_mul_(bufs, momentum)
    torch._foreach_add_(bufs, updates)
    torch._foreach_sub_(params, bufs)


def param_groups(model: nn.Module, weight_decay: float, exclude_bias_bn: bool = True) -> list[dict[str, Any]]:
    """Split trainable parameters: ndim > 1 (conv/linear weights) adapted and decayed; the rest not.

    Biases and normalisation parameters are 1-d, so "ndim <= 1" catches them
    without naming layers; they get ``weight_decay=0, lars_adapt=False`` as in
    SimCLR, which excludes 'batch_normalization' and 'bias' from both. With
    ``exclude_bias_bn=False`` every parameter is decayed and adapted alike (lightly's
    SGD over ``model.parameters()``). Empty groups are left out.
    """
    adapted, excluded = [], []
    for p in model.parameters():
        if p.requires_grad:
            (adapted if p.ndim > 1 or not exclude_bias_bn else excluded).append(p)
    groups = [
        dict(params=adapted, weight_decay=weight_decay, lars_adapt=True),
        dict(params=excluded, weight_decay=0.0, lars_adapt=False),
    ]
    return [g for g in groups if g["params"]]


def _all_on_cuda(groups: list[dict[str, Any]]) -> bool:
    """Fused SGD/Adam kernels need every parameter on a CUDA device."""
    params = [p for g in groups for p in g["params"]]
    return torch.cuda.is_available() and bool(params) and all(p.is_cuda for p in params)


def build_optimizer(model: nn.Module, cfg: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """The configured optimizer at the (already batch-scaled) learning rate ``lr``.

    lars: LARS(momentum, eta). sgd: SGD with classic momentum. adam: torch.optim.Adam
    whose ``weight_decay`` is the coupled L2 penalty added to the gradient (not AdamW);
    biases/BN get none in every case. SGD/Adam use fused kernels when all
    parameters are on CUDA.
    """
    groups = param_groups(model, cfg.weight_decay, cfg.exclude_bias_bn)
    if cfg.name == "lars":
        return LARS(groups, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, eta=cfg.lars_eta,
                    clip_lr=cfg.lars_clip_lr)
    fused = _all_on_cuda(groups)
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups, lr=lr, momentum=cfg.momentum, nesterov=False, weight_decay=cfg.weight_decay, fused=fused
        )
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=cfg.weight_decay, fused=fused)
    raise ValueError(f"unknown optimizer '{cfg.name}'")


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """lr multiplier at ``step`` (0-based): linear warmup, then cosine decay to 0 at ``total_steps``.

    Warmup is (step+1)/warmup_steps, so the first step already trains and step
    warmup_steps-1 reaches 1.0. The decay is 0.5*(1+cos(pi*(step-warmup)/(total-warmup))),
    clamped to [0, 1] progress (steps past the end stay at 0). warmup_steps=0 means
    pure cosine; warmup_steps >= total_steps means the run never leaves warmup and
    holds 1.0 after it, rather than dividing by zero.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = total_steps - warmup_steps
    if decay_steps <= 0:
        return 1.0
    progress = min(max((step - warmup_steps) / decay_steps, 0.0), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR applying ``warmup_cosine``; call ``.step()`` once per iteration, after optimizer.step()."""
    if total_steps < 1 or warmup_steps < 0:
        raise ValueError(f"need total_steps >= 1 and warmup_steps >= 0, got {total_steps}, {warmup_steps}")
    fn = partial(warmup_cosine, total_steps=total_steps, warmup_steps=warmup_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=fn)
