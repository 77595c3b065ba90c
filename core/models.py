"""Encoder f (a torchvision ResNet, optionally with the CIFAR stem) and projection head g.

h = f(x) is the pooled feature used for evaluation; z = g(h) is what the contrastive loss sees.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18, resnet34, resnet50
from torchvision.models.resnet import BasicBlock, Bottleneck

from core.config import ModelConfig

_TORCHVISION = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}


class _GlobalAvgPoolFn(torch.autograd.Function):
    """Mean over H and W whose gradient keeps the input's memory format.

    ``AdaptiveAvgPool2d(1)`` differentiates as ``mean``: its input gradient is an expanded tensor
    divided into a fresh NCHW one, so under channels_last the last ReLU's backward meets mixed
    layouts and takes a strided path (measured on the CPU in bf16: 4.4 ms against 0.3 ms for
    512x128x4x4, 15 ms against 1.2 ms for 512x512x4x4). The values are the same: the expanded
    gradient is divided by H*W in the same dtype, only written in the input's layout.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        ctx.channels_last = (
            x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        )
        return F.adaptive_avg_pool2d(x, 1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        layout = torch.channels_last if ctx.channels_last else torch.contiguous_format
        out = torch.empty(ctx.shape, dtype=grad.dtype, device=grad.device, memory_format=layout)
        out.copy_(grad.expand(ctx.shape))
        return out.div_(ctx.shape[-2] * ctx.shape[-1])


class GlobalAvgPool(nn.Module):
    """``nn.AdaptiveAvgPool2d(1)`` (same output, (B, C, 1, 1)) with a layout-keeping backward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GlobalAvgPoolFn.apply(x)


def _cifar_stem(net: nn.Module, in_channels: int) -> None:
    """Paper Appendix B.9: 3x3 stride-1 first conv, first max-pool removed."""
    net.conv1 = nn.Conv2d(in_channels, net.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()


class SmallResNet(nn.Module):
    """A narrow 4-stage ResNet (one torchvision BasicBlock per stage) for CPU tests and quick runs.

    Stage widths are width, 2*width, 4*width, 8*width; the feature dimension is 8*width.
    """

    def __init__(self, width: int, in_channels: int, cifar_stem: bool) -> None:
        super().__init__()
        if cifar_stem:
            stem = [nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        else:
            stem = [
                nn.Conv2d(in_channels, width, 7, 2, 3, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            ]
        layers: list[nn.Module] = list(stem)
        channels = width
        for stage in range(4):
            out = width * 2**stage
            stride = 1 if stage == 0 else 2
            down = None
            if stride != 1 or channels != out:
                down = nn.Sequential(nn.Conv2d(channels, out, 1, stride, bias=False), nn.BatchNorm2d(out))
            layers.append(BasicBlock(channels, out, stride=stride, downsample=down))
            channels = out
        layers += [GlobalAvgPool(), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.feature_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def zero_init_last_bn(net: nn.Module) -> int:
    """Set the scale of the last BatchNorm of every residual block to 0, so each block starts as
    its shortcut (google-research/simclr's ResNet; Goyal et al. 2017). Returns how many were set."""
    count = 0
    for block in net.modules():
        last = getattr(block, "bn3", None) if isinstance(block, Bottleneck) else getattr(block, "bn2", None)
        if isinstance(block, (BasicBlock, Bottleneck)) and isinstance(last, nn.BatchNorm2d):
            nn.init.zeros_(last.weight)
            count += 1
    return count


def build_encoder(cfg: ModelConfig, in_channels: int) -> tuple[nn.Module, int]:
    """Return (encoder, feature_dim); the encoder (a built-in or a plugin, ``core.components``) maps
    (B,C,H,W) floats to pooled features (B, feature_dim)."""
    from core.components import build_encoder as build_named

    net, feature_dim = build_named(cfg, in_channels)
    if cfg.zero_init_residual:
        zero_init_last_bn(net)
    return net, feature_dim


def builtin_encoder(cfg: ModelConfig, in_channels: int) -> tuple[nn.Module, int]:
    """The built-in ResNet ``cfg.encoder`` without its fc layer, globally average-pooled."""
    if cfg.encoder == "resnet_small":
        net = SmallResNet(cfg.width, in_channels, cfg.cifar_stem)
        return net, net.feature_dim
    net = _TORCHVISION[cfg.encoder](weights=None)
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    net.avgpool = GlobalAvgPool()
    if cfg.cifar_stem:
        _cifar_stem(net, in_channels)
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net, feature_dim


def build_head(cfg: ModelConfig, feature_dim: int) -> nn.Module:
    """Projection head g: identity, a linear map, or (Linear-BN-ReLU) x (head_layers - 1) then Linear
    (the paper's ImageNet code has two layers, google-research/simclr's TF2 code three); without
    ``head_hidden_bn`` the hidden layers are Linear (with bias)-ReLU (solo-learn).

    With ``head_bn_out`` the output z is batch-normalised too, and the last Linear drops its bias
    (a shift before BatchNorm is cancelled by it): ``scale`` learns only a scale (the official
    code's output BN has ``center=False``), ``affine`` a scale and a shift.
    """
    if cfg.head == "none":
        return nn.Identity()
    out_bn = cfg.head_bn_out != "none"
    if cfg.head == "linear":
        layers: list[nn.Module] = [nn.Linear(feature_dim, cfg.head_dim, bias=not out_bn)]
    else:
        hidden = cfg.head_hidden_dim or feature_dim
        layers = []
        width = feature_dim
        for _ in range(cfg.head_layers - 1):
            if cfg.head_hidden_bn:
                layers += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            else:
                layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        layers.append(nn.Linear(width, cfg.head_dim, bias=not out_bn))
    if out_bn:
        layers.append(OutputBatchNorm(cfg.head_dim, shift=cfg.head_bn_out == "affine"))
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


class OutputBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d on z with a learned scale and, only when ``shift``, a learned shift.

    Without a shift the bias stays 0 (the official head's ``center=False``): it does not require a
    gradient, so ``core.optim.param_groups`` leaves it out of every optimizer, and the layer stays a
    plain BatchNorm1d for SyncBatchNorm conversion and checkpoints.
    """

    def __init__(self, features: int, shift: bool) -> None:
        super().__init__(features)
        self.bias.requires_grad_(shift)


class SimCLRModel(nn.Module):
    """f followed by g; ``forward`` returns (h, z)."""

    def __init__(self, cfg: ModelConfig, in_channels: int) -> None:
        super().__init__()
        self.encoder, self.feature_dim = build_encoder(cfg, in_channels)
        self.head = build_head(cfg, self.feature_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return h, self.head(h)
