"""A small Vision Transformer from torchvision as the encoder: its class token is the feature h."""

from __future__ import annotations

from typing import Any

from torch import nn
from torchvision.models import VisionTransformer

DEFAULTS = {"image_size": 32, "patch_size": 4, "layers": 2, "heads": 2, "hidden_dim": 64, "mlp_dim": 128}
"""Small enough to train about as fast as the width-8 small ResNet of the cpu scale on 2 CPU cores."""


def vit(params: dict[str, Any], in_channels: int) -> tuple[nn.Module, int]:
    """Factory (entry point): ``model.params`` takes any of ``DEFAULTS``' keys (``image_size`` must
    be the training resolution); returns (encoder, hidden_dim)."""
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)}; vit takes {', '.join(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    net = VisionTransformer(
        image_size=p["image_size"], patch_size=p["patch_size"], num_layers=p["layers"], num_heads=p["heads"],
        hidden_dim=p["hidden_dim"], mlp_dim=p["mlp_dim"],
    )
    if in_channels != 3:
        net.conv_proj = nn.Conv2d(in_channels, p["hidden_dim"], kernel_size=p["patch_size"], stride=p["patch_size"])
    net.heads = nn.Identity()  # forward then returns the class token's final state, (B, hidden_dim)
    return net, p["hidden_dim"]
