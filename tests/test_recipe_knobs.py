"""The knobs the named recipes need, each pinned by hand against an independent formula or a
hand-made case: BN on the head's output, the hidden BN switch, more head layers, zero-init of the
last BN per block, the loss reduction, weight decay on every parameter, LARS's lr clipping,
additive brightness. Each test fails with the knob at its old default (checked when written)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.augment.transforms import ColorDistortion
from core.config import ColorConfig, LossConfig, ModelConfig, OptimConfig
from core.losses import loss_from_config
from core.models import SimCLRModel, build_head
from core.optim import LARS, build_optimizer, param_groups


# ------------------------------------------------------------------------------- projection head
def test_head_bn_out_scale_normalises_z_and_learns_no_shift():
    head = build_head(ModelConfig(head_bn_out="scale", head_dim=6), feature_dim=5)
    last_linear, bn = head[-2], head[-1]
    assert last_linear.bias is None  # a shift before BN is cancelled by it
    with torch.no_grad():
        bn.weight.copy_(torch.arange(1.0, 7.0))
        bn.bias.fill_(0.0)
    head.train()
    h = torch.randn(32, 5, generator=torch.Generator().manual_seed(0))
    z = head(h)
    pre = head[:-1](h)  # everything but the output BN
    expected = (pre - pre.mean(0)) / torch.sqrt(pre.var(0, unbiased=False) + bn.eps) * torch.arange(1.0, 7.0)
    torch.testing.assert_close(z, expected, rtol=1e-4, atol=1e-5)
    trainable = [n for n, p in head.named_parameters() if p.requires_grad]
    assert f"{len(head) - 1}.bias" not in trainable and f"{len(head) - 1}.weight" in trainable
    groups = param_groups(head, 1e-4)
    assert all(p is not bn.bias for g in groups for p in g["params"])  # no optimizer moves the shift


def test_head_bn_out_affine_learns_a_shift_and_default_has_no_output_bn():
    head = build_head(ModelConfig(head_bn_out="affine"), feature_dim=5)
    assert isinstance(head[-1], nn.BatchNorm1d) and head[-1].bias.requires_grad
    plain = build_head(ModelConfig(), feature_dim=5)
    assert isinstance(plain[-1], nn.Linear) and plain[-1].bias is not None
    linear = build_head(ModelConfig(head="linear", head_bn_out="scale"), feature_dim=5)
    assert isinstance(linear[0], nn.Linear) and linear[0].bias is None and isinstance(linear[1], nn.BatchNorm1d)


def test_head_bn_out_needs_a_head():
    with pytest.raises(ValueError, match="head_bn_out needs a projection head"):
        ModelConfig(head="none", head_bn_out="scale")


def test_head_layers_and_hidden_bn_build_the_stated_layers():
    three = build_head(ModelConfig(head_layers=3, head_hidden_dim=7, head_dim=4), feature_dim=5)
    kinds = [type(m).__name__ for m in three]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert [m.out_features for m in three if isinstance(m, nn.Linear)] == [7, 7, 4]
    solo = build_head(ModelConfig(head_hidden_bn=False, head_hidden_dim=7, head_dim=4), feature_dim=5)
    assert [type(m).__name__ for m in solo] == ["Linear", "ReLU", "Linear"]
    assert solo[0].bias is not None  # no BN to cancel a shift, so the hidden Linear keeps its bias
    x = torch.randn(3, 5)
    torch.testing.assert_close(solo(x), solo[2](F.relu(solo[0](x))))


@pytest.mark.parametrize("encoder", ["resnet_small", "resnet18", "resnet50"])
def test_zero_init_residual_makes_every_block_start_as_its_shortcut(encoder):
    cfg = ModelConfig(encoder=encoder, width=4, zero_init_residual=True)
    enc = SimCLRModel(cfg, in_channels=3).encoder
    blocks = [m for m in enc.modules() if type(m).__name__ in ("BasicBlock", "Bottleneck")]
    assert blocks
    for block in blocks:
        last = block.bn3 if hasattr(block, "bn3") else block.bn2
        assert torch.count_nonzero(last.weight) == 0
        others = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d) and m is not last]
        assert all(torch.all(m.weight == 1) for m in others)  # only the last one of each block
    # a block whose last BN scale is 0 adds nothing to its shortcut: out = relu(shortcut(x))
    block = blocks[1]
    block.eval()
    x = torch.randn(2, block.conv1.in_channels, 8, 8)
    shortcut = block.downsample(x) if block.downsample is not None else x
    torch.testing.assert_close(block(x), F.relu(shortcut))
    default = SimCLRModel(ModelConfig(encoder=encoder, width=4), in_channels=3).encoder
    lasts = [(b.bn3 if hasattr(b, "bn3") else b.bn2) for b in default.modules() if type(b).__name__ in ("BasicBlock", "Bottleneck")]
    assert all(torch.all(bn.weight == 1) for bn in lasts)


# ------------------------------------------------------------------------------- loss reduction
def _official_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """google-research/simclr's objective written out: for each direction, softmax cross-entropy of
    [a.b / t, a.a / t with self masked] against the positive, mean over N; the two added."""
    a, b = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    n = a.shape[0]
    big = 1e9
    mask = torch.eye(n) * big
    logits_aa, logits_bb = a @ a.T / temperature - mask, b @ b.T / temperature - mask
    logits_ab, logits_ba = a @ b.T / temperature, b @ a.T / temperature
    labels = torch.arange(n)
    loss_a = F.cross_entropy(torch.cat([logits_ab, logits_aa], 1), labels)
    loss_b = F.cross_entropy(torch.cat([logits_ba, logits_bb], 1), labels)
    return loss_a + loss_b


def test_sum_directions_is_the_official_objective_and_mean_is_half_of_it():
    gen = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(6, 4, generator=gen, dtype=torch.float64), torch.randn(6, 4, generator=gen, dtype=torch.float64)
    official = _official_nt_xent(z1, z2, 0.5)
    summed = loss_from_config(LossConfig(temperature=0.5, reduction="sum_directions"), z1, z2)
    mean = loss_from_config(LossConfig(temperature=0.5), z1, z2)
    torch.testing.assert_close(summed, official)
    torch.testing.assert_close(mean, official / 2)


def test_sum_directions_doubles_the_gradient():
    z1 = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), requires_grad=True)
    z2 = torch.randn(5, 3, generator=torch.Generator().manual_seed(2))
    (g_mean,) = torch.autograd.grad(loss_from_config(LossConfig(), z1, z2), z1)
    (g_sum,) = torch.autograd.grad(loss_from_config(LossConfig(reduction="sum_directions"), z1, z2), z1)
    torch.testing.assert_close(g_sum, 2 * g_mean)


# ------------------------------------------------------------------------------- optimizer
def test_exclude_bias_bn_false_decays_and_adapts_every_parameter():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    split = param_groups(model, 5e-4)
    assert [len(g["params"]) for g in split] == [1, 3] and split[1]["weight_decay"] == 0
    every = param_groups(model, 5e-4, exclude_bias_bn=False)
    assert len(every) == 1 and len(every[0]["params"]) == 4 and every[0]["weight_decay"] == 5e-4
    sgd = build_optimizer(model, OptimConfig(name="sgd", weight_decay=5e-4, exclude_bias_bn=False), lr=0.1)
    assert all(g["weight_decay"] == 5e-4 for g in sgd.param_groups)
    # one SGD step on a bias with zero gradient: decay alone moves it, b -= lr * wd * b
    bias = model[0].bias
    before = bias.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    sgd.step()
    torch.testing.assert_close(bias.detach(), before * (1 - 0.1 * 5e-4))


def test_lars_clip_lr_caps_a_layers_rate_at_the_global_lr():
    def step(lr: float, clip: bool) -> torch.Tensor:
        p = nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))
        opt = LARS([p], lr=lr, momentum=0.0, weight_decay=0.0, eta=0.02, clip_lr=clip)
        p.grad = torch.tensor([0.06, 0.08], dtype=torch.float64)  # ||p|| = 5, ||g|| = 0.1
        opt.step()
        return p.detach()

    g = torch.tensor([0.06, 0.08], dtype=torch.float64)
    start = torch.tensor([3.0, 4.0], dtype=torch.float64)
    # trust = 0.02 * 5 / 0.1 = 1.0. Unclipped the rate is lr * trust; clipped, min(trust, lr).
    torch.testing.assert_close(step(0.4, clip=False), start - 0.4 * 1.0 * g)
    torch.testing.assert_close(step(0.4, clip=True), start - min(1.0, 0.4) * g)
    torch.testing.assert_close(step(2.0, clip=True), start - min(1.0, 2.0) * g)
    torch.testing.assert_close(step(2.0, clip=False), start - 2.0 * g)
    opt = build_optimizer(nn.Linear(2, 2), OptimConfig(lars_clip_lr=True), lr=0.4)
    assert all(grp["clip_lr"] for grp in opt.param_groups)


# ------------------------------------------------------------------------------- brightness
def test_additive_brightness_adds_a_delta_within_plus_minus_0_8s():
    distortion = ColorDistortion(ColorConfig(strength=0.5, brightness="additive", jitter_p=1.0, grayscale_p=0.0))
    assert distortion.ranges["brightness"] == (-0.4, 0.4)
    x = torch.full((4, 3, 2, 2), 0.5)
    params = distortion.sample(x, torch.Generator().manual_seed(0))
    for name, neutral in (("contrast", 1.0), ("saturation", 1.0), ("hue", 0.0)):
        params[name] = torch.full((4,), neutral)  # brightness alone
    delta = torch.tensor([-0.4, -0.1, 0.2, 0.4])
    params["brightness"] = delta
    for out in (distortion._apply_gathered(x, params), distortion._apply_masked(x, params)):
        torch.testing.assert_close(out, (0.5 + delta).clamp(0, 1).view(4, 1, 1, 1).expand_as(x))
    mult = ColorDistortion(ColorConfig(strength=0.5, jitter_p=1.0, grayscale_p=0.0))
    assert mult.ranges["brightness"] == (0.6, 1.4)
    draws = distortion.sample(torch.zeros(20000, 3, 1, 1), torch.Generator().manual_seed(1))["brightness"]
    assert draws.min() >= -0.4 and draws.max() <= 0.4 and abs(draws.mean().item()) < 0.01
    assert math.isclose(draws.std().item(), 0.8 / math.sqrt(12), rel_tol=0.03)  # uniform on [-0.4, 0.4]
