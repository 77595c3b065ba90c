"""Encoder f (a torchvision ResNet, optionally with the CIFAR stem) and projection head g.

h = f(x) is the pooled feature used for evaluation; z = g(h) is what the contrastive loss sees.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18, resnet34, resnet50
from torchvision.models.resnet import BasicBlock

from core.config import ModelConfig

_TORCHVISION = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}


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
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.feature_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def build_encoder(cfg: ModelConfig, in_channels: int) -> tuple[nn.Module, int]:
    """Return (encoder, feature_dim); the encoder maps (B,C,H,W) floats to pooled features (B, feature_dim)."""
    if cfg.encoder == "resnet_small":
        net = SmallResNet(cfg.width, in_channels, cfg.cifar_stem)
        return net, net.feature_dim
    net = _TORCHVISION[cfg.encoder](weights=None)
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    if cfg.cifar_stem:
        _cifar_stem(net, in_channels)
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net, feature_dim


def build_head(cfg: ModelConfig, feature_dim: int) -> nn.Module:
    """Projection head g: identity, a linear map, or Linear-BN-ReLU-Linear (the paper's ImageNet code)."""
    if cfg.head == "none":
        return nn.Identity()
    if cfg.head == "linear":
        return nn.Linear(feature_dim, cfg.head_dim)
    hidden = cfg.head_hidden_dim or feature_dim
    return nn.Sequential(
        nn.Linear(feature_dim, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, cfg.head_dim),
    )


class SimCLRModel(nn.Module):
    """f followed by g; ``forward`` returns (h, z)."""

    def __init__(self, cfg: ModelConfig, in_channels: int) -> None:
        super().__init__()
        self.encoder, self.feature_dim = build_encoder(cfg, in_channels)
        self.head = build_head(cfg, self.feature_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return h, self.head(h)
