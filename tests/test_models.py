"""Encoders and projection heads have the shapes and structure the paper describes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.config import ModelConfig
from core.models import SimCLRModel, build_encoder


@pytest.mark.parametrize(
    "encoder,dim", [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048), ("resnet_small", 64)]
)
def test_feature_dimensions(encoder, dim):
    net, feature_dim = build_encoder(ModelConfig(encoder=encoder, width=8), in_channels=3)
    assert feature_dim == dim
    net.eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 3, 32, 32)).shape == (2, dim)


def test_cifar_stem_is_3x3_stride_1_without_maxpool():
    net, _ = build_encoder(ModelConfig(encoder="resnet18", cifar_stem=True), in_channels=3)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, nn.Identity)
    imagenet, _ = build_encoder(ModelConfig(encoder="resnet18", cifar_stem=False), in_channels=3)
    assert imagenet.conv1.kernel_size == (7, 7) and imagenet.conv1.stride == (2, 2)


@pytest.mark.parametrize("head,out", [("none", 64), ("linear", 32), ("nonlinear", 32)])
def test_projection_heads(head, out):
    model = SimCLRModel(ModelConfig(encoder="resnet_small", width=8, head=head, head_dim=32), in_channels=1)
    h, z = model(torch.rand(4, 1, 28, 28))
    assert h.shape == (4, 64) and z.shape == (4, out)
    if head == "none":
        assert torch.equal(h, z)
    if head == "nonlinear":
        kinds = [type(m) for m in model.head]
        assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
        assert model.head[0].out_features == 64  # hidden width defaults to the feature dimension


def test_head_hidden_dim_option():
    model = SimCLRModel(ModelConfig(encoder="resnet_small", width=8, head_hidden_dim=100), in_channels=3)
    assert model.head[0].out_features == 100
