"""Encoders and projection heads have the shapes and structure the paper describes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.config import ModelConfig
from core.models import GlobalAvgPool, SimCLRModel, build_encoder
from tests.dispatch import RecordOps


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_global_avg_pool_matches_adaptive_avg_pool_and_keeps_the_layout(dtype, layout):
    """Same output and the same gradient values as nn.AdaptiveAvgPool2d(1), bit for bit, with the
    input gradient in the input's memory format (AdaptiveAvgPool2d's is always NCHW)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, 4, 3, generator=gen).to(dtype).contiguous(memory_format=layout)
    up = torch.randn(6, 5, 1, 1, generator=gen).to(dtype)
    grads = []
    for pool in (nn.AdaptiveAvgPool2d(1), GlobalAvgPool()):
        leaf = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
        out = pool(leaf)
        out.backward(up)
        grads.append((out.detach(), leaf.grad))
    (ref_out, ref_grad), (out, grad) = grads
    assert out.shape == (6, 5, 1, 1) and torch.equal(out, ref_out)
    assert torch.equal(grad, ref_grad)
    assert grad.is_contiguous(memory_format=layout)


@pytest.mark.parametrize("encoder", ["resnet_small", "resnet18"])
def test_encoders_pool_with_a_layout_keeping_backward_and_no_new_weights(encoder):
    """Every encoder pools with GlobalAvgPool (no weights, so checkpoints keep their keys): under
    channels_last no ReLU backward gets its gradient in NCHW."""
    net, _ = build_encoder(ModelConfig(encoder=encoder, width=4, cifar_stem=True), in_channels=3)
    assert sum(isinstance(m, GlobalAvgPool) for m in net.modules()) == 1
    assert not any(isinstance(m, nn.AdaptiveAvgPool2d) for m in net.modules())
    x = torch.randn(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    net = net.to(memory_format=torch.channels_last)

    def nchw_relu_gradient(func, args, kwargs, out) -> bool:
        return func is torch.ops.aten.threshold_backward.default and not args[0].is_contiguous(
            memory_format=torch.channels_last
        )

    out = net(x)
    with RecordOps(nchw_relu_gradient) as mode:
        out.sum().backward()
    assert mode.seen == []  # nn.AdaptiveAvgPool2d(1) fails here: the last ReLU gets an NCHW gradient
