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
    lasts = [(b.bn3 if hasattr(b, "bn3") else b.bn2) for b in default.modules()
             if type(b).__name__ in ("BasicBlock", "Bottleneck")]
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
    z1, z2 = (torch.randn(6, 4, generator=gen, dtype=torch.float64),
              torch.randn(6, 4, generator=gen, dtype=torch.float64))
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


# ------------------------------------------------------------------------------- evaluation
def _separable(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images whose class (0/1) is which half of the image is bright."""
    labels = torch.arange(n) % 2
    images = torch.randint(0, 60, (n, 3, 8, 8), generator=gen, dtype=torch.uint8)
    images[labels == 0, :, :, :4] += 150
    images[labels == 1, :, :, 4:] += 150
    return images, labels


class _MeanPool(nn.Module):
    """A frozen 'encoder' with a fixed, known feature: each channel's mean of the left and right half."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[..., :4].mean(dim=(2, 3)), x[..., 4:].mean(dim=(2, 3))], dim=1)


def test_knn_at_several_k_reports_each_and_the_first_as_knn_top1():
    from core.config import EvalConfig
    from core.evaluate import evaluate_encoder, knn_accuracy

    gen = torch.Generator().manual_seed(0)
    train, y_train = _separable(40, gen)
    test, y_test = _separable(20, gen)
    cfg = EvalConfig(knn_k=[7, 3])
    found = {a.name: a for a in evaluate_encoder(_MeanPool(), train, y_train, test, y_test, 2, cfg,
                                                 device=torch.device("cpu"), generator=gen, linear=False)}
    assert set(found) == {"knn_top1", "knn_top2", "knn_top1_k3", "knn_top2_k3"}
    feats = lambda x: _MeanPool()(x.float() / 255)  # noqa: E731
    for k, suffix in ((7, ""), (3, "_k3")):
        top1, _ = knn_accuracy(feats(train), y_train, feats(test), y_test, 2, k=k, temperature=0.1)
        assert found[f"knn_top1{suffix}"].value == top1.value
        assert f"k={k}" in found[f"knn_top1{suffix}"].protocol
    assert EvalConfig(knn_k=[200]).knn_k == 200  # one k is the same config whichever way it is written
    with pytest.raises(ValueError):
        EvalConfig(knn_k=[10, 10])


def test_official_linear_protocol_trains_on_fresh_crops_without_standardising():
    """One epoch, crops that keep the whole image and no flip: the classifier equals a hand-written
    loop over the raw (unstandardised) features in the same batch order; with real crops it differs
    from that loop and still separates the classes."""
    from core.config import CropConfig, EvalConfig
    from core.evaluate import evaluate_encoder, linear_eval_augmented

    gen = torch.Generator().manual_seed(1)
    train, y_train = _separable(48, gen)
    test, y_test = _separable(16, gen)
    cfg = EvalConfig(linear_protocol="official", linear_epochs=1, linear_batch_size=16, linear_lr=25.6)
    whole = CropConfig(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
    feats = _MeanPool()(train.float() / 255)
    test_feats = _MeanPool()(test.float() / 255)
    got = linear_eval_augmented(_MeanPool(), train, y_train, test_feats, y_test, 2, cfg, whole,
                                torch.device("cpu"), torch.Generator().manual_seed(5))
    # the same by hand: zero-init, Nesterov SGD, lr 25.6 x 16/256 = 1.6, cosine over 3 steps
    order = torch.randperm(48, generator=torch.Generator().manual_seed(5))
    clf = nn.Linear(6, 2)  # 3 channels x 2 halves
    nn.init.zeros_(clf.weight), nn.init.zeros_(clf.bias)
    opt = torch.optim.SGD(clf.parameters(), lr=1.6, momentum=0.9, nesterov=True)
    for step, rows in enumerate(order.split(16)):
        for group in opt.param_groups:
            group["lr"] = 1.6 * 0.5 * (1 + math.cos(math.pi * step / 3))
        loss = F.cross_entropy(clf(feats[rows]), y_train[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
    expected = (clf(test_feats).argmax(1) == y_test).float().mean().item() * 100
    assert got[0].name == "linear_top1" and got[0].value == pytest.approx(expected)
    assert "not standardized" in got[0].protocol and "augmented training images" in got[0].protocol
    cfg_long = EvalConfig(linear_protocol="official", linear_epochs=20, linear_batch_size=16, linear_lr=25.6)
    results = {a.name: a for a in evaluate_encoder(_MeanPool(), train, y_train, test, y_test, 2, cfg_long,
                                                   device=torch.device("cpu"),
                                                   generator=torch.Generator().manual_seed(2),
                                                   linear=True, crop=CropConfig(scale=(0.3, 1.0)))}
    assert (results["linear_top1"].value >= 87.5
            and "crop (torchvision sampler, bilinear)" in results["linear_top1"].protocol)
    offline = {a.name: a for a in evaluate_encoder(_MeanPool(), train, y_train, test, y_test, 2,
                                                  EvalConfig(linear_epochs=20, linear_batch_size=16, linear_lr=25.6),
                                                  device=torch.device("cpu"),
                                                  generator=torch.Generator().manual_seed(2),
                                                  linear=True)}
    assert "standardized with train mean/std" in offline["linear_top1"].protocol


def test_torchvision_loader_takes_additive_brightness_from_the_batched_op():
    """torchvision's ColorJitter only multiplies; the per-image loader then runs our op per image."""
    from core.config import AugmentConfig
    from core.loaders import torchvision_op

    ops = torchvision_op("color", AugmentConfig(color=ColorConfig(brightness="additive")), 32)
    assert len(ops) == 1 and type(ops[0]).__name__ == "_PerImage" and ops[0].transform.cfg.brightness == "additive"
    default = torchvision_op("color", AugmentConfig(), 32)
    assert type(default[0]).__name__ == "RandomApply"
