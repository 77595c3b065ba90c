"""Tests at the seams between config, trainer, model, loss, optimizer and evaluation.

Unit tests of each piece pass even when the pieces are wired together wrongly (a config field that
never reaches the computation, the same view fed to both branches, the head's output evaluated
instead of the encoder's, test statistics leaking into the linear evaluation). These tests check
the wiring itself, on tiny hand-made inputs whose right answer is written out here with plain
formulas, independent of core/:

* every science-changing field of the loss, augment, model, optim and eval sections changes the
  computation, and matches a hand-made expected value where one is easy to write;
* every evaluation uses the split its protocol names (kNN: train bank, test queries; linear: fit
  and standardise on train, test on test);
* the trainer feeds two different views to the two branches and evaluates h = f(x), not z = g(h);
* the optimizers follow their documented updates under the real warmup + cosine schedule.

Everything is fp32 and NCHW (``train.precision: fp32``, ``train.channels_last: false``) so numbers
can be pinned, and small (resnet_small width 4, 16x16 images, a handful of steps).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import core.evaluate as evaluate_module
from core.augment import TwoViews
from core.config import AugmentConfig, EvalConfig, LossConfig, ModelConfig, RunConfig, apply_overrides
from core.evaluate import evaluate_encoder, knn_accuracy, linear_eval
from core.losses import loss_from_config, margin_triplet, nt_logistic, nt_xent
from core.models import SimCLRModel
from core.trainer import Callback, Trainer

CPU = torch.device("cpu")


# ====================================================================== helpers


def tiny_config(**overrides: Any) -> RunConfig:
    """16 synthetic 16x16 training images, batch 8 (2 steps per epoch), resnet_small width 4, fp32."""
    base = {
        "data": {"source": "synthetic",
                 "synthetic": {"num_classes": 4, "train_size": 16, "test_size": 8, "image_size": 16}},
        "model": {"encoder": "resnet_small", "width": 4, "head_dim": 8},
        "optim": {"name": "sgd", "lr": 0.05, "lr_scaling": "none", "warmup_epochs": 1},
        "train": {"epochs": 1, "batch_size": 8, "seed": 0, "device": "cpu", "precision": "fp32",
                  "channels_last": False, "progress": False, "log_every": 1, "checkpoint": False},
        "eval": {"knn_every": 0, "knn_k": 3, "linear": False, "linear_epochs": 2, "linear_batch_size": 8,
                 "batch_size": 64},
    }
    return apply_overrides(RunConfig.model_validate(base), overrides)


class Log(Callback):
    """Records what the trainer reports."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []
        self.epochs: list[dict[str, float]] = []

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self.steps.append(dict(metrics))

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.epochs.append(dict(metrics))


class ViewSpy:
    """Wraps the trainer's view generator and keeps every pair of views it hands out."""

    def __init__(self, views: Any) -> None:
        self.views = views
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        v1, v2 = self.views(*args, **kwargs)
        self.calls.append((v1.detach().clone(), v2.detach().clone()))
        return v1, v2


def spy_forward(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(x, h, z) of every forward pass of the SimCLR model (training steps only: evaluation runs f alone)."""
    calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def hook(module: nn.Module, args: tuple[Any, ...], out: tuple[torch.Tensor, torch.Tensor]) -> None:
        h, z = out
        calls.append((args[0].detach().clone(), h.detach().clone(), z.detach().clone()))

    model.register_forward_hook(hook)
    return calls


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=0, atol=atol)


# ====================================================================== loss


def reference_loss(z1: torch.Tensor, z2: torch.Tensor, name: str = "nt_xent", temperature: float = 0.5,
                   normalize: bool = True, margin: float = 0.4, semi_hard: bool = False,
                   negatives: str = "both_views") -> float:
    """The paper's Table 2 objectives, anchor by anchor in double precision (module docstring of
    core/losses.py: every view an anchor, mean over the 2N anchors, semi-hard keeps s(a,n) < s(a,p),
    one_view keeps only the other view's images as negatives)."""
    z = torch.cat([z1, z2]).double()
    if normalize:
        z = z / z.norm(dim=1, keepdim=True)
    v = z.tolist()
    n = len(v) // 2
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        negs = [j for j in range(2 * n) if j not in (i, pos)]
        if negatives == "one_view":
            negs = [j for j in negs if (j < n) != (i < n)]
        s_pos = dot(v[i], v[pos])
        s_neg = [dot(v[i], v[j]) for j in negs]
        if semi_hard:
            s_neg = [s for s in s_neg if s < s_pos]
        if name == "nt_xent":
            total += -s_pos / temperature + math.log(
                math.exp(s_pos / temperature) + sum(math.exp(s / temperature) for s in s_neg))
        elif name == "nt_logistic":
            softplus = lambda t: math.log1p(math.exp(t))  # -log sigmoid(x) = softplus(-x)  # noqa: E731
            neg = sum(softplus(s / temperature) for s in s_neg) / max(1, len(s_neg))
            total += softplus(-s_pos / temperature) + neg
        else:
            total += sum(max(s - s_pos + margin, 0.0) for s in s_neg) / max(1, len(s_neg))
    return total / (2 * n)


DIRECT = {"nt_xent": nt_xent, "nt_logistic": nt_logistic, "margin_triplet": margin_triplet}

LOSS_CASES = [
    {"temperature": 0.1},
    {"normalize": False},
    {"negatives": "one_view"},
    {"semi_hard": True},
    {"negatives": "one_view", "semi_hard": True, "temperature": 0.2},
    {"name": "nt_logistic"},
    {"name": "nt_logistic", "temperature": 0.2},
    {"name": "nt_logistic", "negatives": "one_view"},
    {"name": "nt_logistic", "semi_hard": True},
    {"name": "nt_logistic", "normalize": False},
    {"name": "margin_triplet"},
    {"name": "margin_triplet", "margin": 0.9},
    {"name": "margin_triplet", "negatives": "one_view"},
    {"name": "margin_triplet", "semi_hard": True},
    {"name": "margin_triplet", "normalize": False},
]


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(6, 5, generator=g, dtype=torch.double), torch.randn(6, 5, generator=g, dtype=torch.double)


def _direct_call(z1: torch.Tensor, z2: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    scale = {"margin": cfg.margin} if cfg.name == "margin_triplet" else {"temperature": cfg.temperature}
    return DIRECT[cfg.name](z1, z2, normalize=cfg.normalize, negatives=cfg.negatives, semi_hard=cfg.semi_hard, **scale)


@pytest.mark.parametrize("fields", LOSS_CASES, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
def test_loss_from_config_is_the_configured_loss_and_every_field_counts(pair, fields):
    z1, z2 = pair
    cfg = LossConfig(**fields)
    got = loss_from_config(cfg, z1, z2).item()
    assert got == pytest.approx(reference_loss(z1, z2, **fields), rel=1e-9)
    assert got == pytest.approx(_direct_call(z1, z2, cfg).item(), rel=1e-12)
    # each field, put back to its default, gives another value: none of them is ignored
    for key in fields:
        reverted = {k: v for k, v in fields.items() if k != key}
        assert abs(got - reference_loss(z1, z2, **reverted)) > 1e-6, key
        assert abs(got - loss_from_config(LossConfig(**reverted), z1, z2).item()) > 1e-6, key


def test_fields_of_other_losses_do_not_change_a_loss(pair):
    z1, z2 = pair
    assert loss_from_config(LossConfig(margin=0.9), z1, z2) == loss_from_config(LossConfig(), z1, z2)
    mt = LossConfig(name="margin_triplet")
    assert loss_from_config(mt.model_copy(update={"temperature": 0.1}), z1, z2) == loss_from_config(mt, z1, z2)


LOSS_IN_TRAINER = [
    {"name": "nt_xent", "temperature": 0.2, "negatives": "one_view", "semi_hard": True},
    {"name": "nt_logistic", "temperature": 0.3, "normalize": False, "negatives": "one_view"},
    {"name": "margin_triplet", "margin": 0.9, "semi_hard": True},
]


@pytest.mark.parametrize("fields", LOSS_IN_TRAINER, ids=lambda f: f["name"])
def test_trainer_step_loss_is_the_configured_loss_of_the_projections(fields):
    cfg = tiny_config(**{f"loss.{k}": v for k, v in fields.items()})
    log = Log()
    trainer = Trainer(cfg, callbacks=[log])
    forwards = spy_forward(trainer.model)
    trainer.fit(resume=False)
    assert len(forwards) == len(log.steps) == 2
    for (_, _, z), metrics in zip(forwards, log.steps):
        z1, z2 = z.chunk(2)
        assert metrics["loss"] == pytest.approx(reference_loss(z1, z2, **fields), rel=1e-5)
        for key in fields:
            if fields[key] == getattr(LossConfig(), key):
                continue
            reverted = {k: v for k, v in fields.items() if k != key}
            assert metrics["loss"] != pytest.approx(reference_loss(z1, z2, **reverted), rel=1e-4), key


# ====================================================================== trainer: views, model, evaluation


def test_trainer_feeds_two_different_views_to_the_two_branches():
    cfg = tiny_config()  # default augment: crop + colour, symmetric
    trainer = Trainer(cfg)
    spy = ViewSpy(trainer.views)
    trainer.views = spy
    forwards = spy_forward(trainer.model)
    trainer.fit(resume=False)
    assert len(spy.calls) == len(forwards) == trainer.steps_per_epoch == 2
    for (v1, v2), (x, h, z) in zip(spy.calls, forwards):
        b = v1.shape[0]
        assert b == cfg.train.batch_size
        assert not close(v1, v2, atol=1e-3)  # two independent augmentations
        assert torch.equal(x[:b], v1) and torch.equal(x[b:], v2)  # view 1 -> z1 branch, view 2 -> z2 branch
        assert not close(z[:b], z[b:], atol=1e-4)
        # the model is the configured one: h has 8 * width features, z head_dim
        assert h.shape == (2 * b, 8 * cfg.model.width) and z.shape == (2 * b, cfg.model.head_dim)


IDENTITY_CROP = {"scale": (1.0, 1.0), "ratio": (1.0, 1.0), "flip": False}


def test_trainer_uses_the_configured_augmentation_asymmetric_rotate():
    # asymmetric: view 2 is the shared crop (here the identity), view 1 is ops(crop) = rot180
    cfg = tiny_config(**{"augment.ops": ["rotate"], "augment.mode": "asymmetric", "augment.crop": IDENTITY_CROP,
                         "augment.rotate.angles": [180]})
    trainer = Trainer(cfg)
    forwards = spy_forward(trainer.model)
    trainer.fit(resume=False)
    pretrain = trainer.splits.pretrain.float() / 255
    seen = []
    for x, _, _ in forwards:
        b = x.shape[0] // 2
        v1, v2 = x[:b], x[b:]
        assert close(v1, torch.rot90(v2, 2, dims=(2, 3)), atol=1e-6)
        for img in v2:  # view 2 is an untouched training image
            match = [i for i in range(len(pretrain)) if close(img, pretrain[i], atol=1e-6)]
            assert len(match) == 1
            seen += match
    assert sorted(seen) == list(range(len(pretrain)))  # one epoch = every image once


def test_trainer_builds_the_configured_model():
    cfg = tiny_config(**{"model.width": 8, "model.head": "nonlinear", "model.head_dim": 5,
                         "model.head_hidden_dim": 7, "model.cifar_stem": False})
    trainer = Trainer(cfg)
    reference = SimCLRModel(cfg.model, in_channels=3)
    assert {k: v.shape for k, v in trainer.model.state_dict().items()} == \
        {k: v.shape for k, v in reference.state_dict().items()}
    forwards = spy_forward(trainer.model)
    trainer.fit(resume=False)
    _, h, z = forwards[0]
    assert h.shape == (16, 64) and z.shape == (16, 5)


def test_trainer_evaluates_h_of_the_train_and_test_splits(monkeypatch):
    cfg = tiny_config(**{"eval.linear": True, "eval.knn_every": 1, "eval.knn_k": 4, "model.head_dim": 8})
    seen: dict[str, list[tuple[torch.Tensor, ...]]] = {"knn": [], "linear": []}
    real = {"knn": evaluate_module.knn_accuracy, "linear": evaluate_module.linear_eval}

    def spy(kind: str):
        def wrapper(train_feats, train_labels, test_feats, test_labels, *args, **kwargs):
            seen[kind].append((train_feats.clone(), train_labels.clone(), test_feats.clone(), test_labels.clone()))
            return real[kind](train_feats, train_labels, test_feats, test_labels, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(evaluate_module, "knn_accuracy", spy("knn"))
    monkeypatch.setattr(evaluate_module, "linear_eval", spy("linear"))
    log = Log()
    trainer = Trainer(cfg, callbacks=[log])
    result = trainer.fit(resume=False)

    s = trainer.splits
    encoder = trainer.model.encoder.eval()  # running BN statistics, as evaluation uses
    with torch.no_grad():
        h_train = encoder(s.train_images.float() / 255)
        h_test = encoder(s.test_images.float() / 255)
    assert h_train.shape[1] == 8 * cfg.model.width != cfg.model.head_dim
    assert len(seen["knn"]) == 2 and len(seen["linear"]) == 1  # epoch-end monitor + final; linear once
    for train_feats, train_labels, test_feats, test_labels in seen["knn"] + seen["linear"]:
        assert close(train_feats, h_train) and close(test_feats, h_test)
        assert torch.equal(train_labels, s.train_labels) and torch.equal(test_labels, s.test_labels)
    # the reported numbers are those of kNN on h computed here
    direct = knn_accuracy(h_train, s.train_labels, h_test, s.test_labels, s.num_classes, 4, cfg.eval.knn_temperature)
    final = {a.name: a for a in result.accuracies}
    assert final["knn_top1"] == direct[0]
    assert log.epochs[0]["knn_top1"] == direct[0].value
    assert {"linear_top1", "linear_top4"} <= set(final)


@pytest.mark.parametrize("every, expected", [(0, [False, False, False]), (1, [True, True, True]),
                                             (2, [False, True, True])])
def test_knn_every_sets_the_epochs_with_a_knn_monitor(every, expected):
    cfg = tiny_config(**{"eval.knn_every": every, "train.epochs": 3})
    log = Log()
    result = Trainer(cfg, callbacks=[log]).fit(resume=False)
    # epoch 3 is the last: always monitored when knn_every > 0
    assert ["knn_top1" in m for m in log.epochs] == expected
    assert {a.name for a in result.accuracies} == {"knn_top1", "knn_top4"}  # eval.linear false: no linear


# ====================================================================== optimizer under the real schedule


def hand_multiplier(step: int, total: int, warmup: int) -> float:
    """Linear warmup (step+1)/warmup, then cosine to 0 at ``total`` (core/optim.py's docstring)."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / (total - warmup))))


OPTIM_CASES = {
    "sgd": ({"optim.name": "sgd", "optim.lr": 0.05, "optim.lr_scaling": "sqrt", "optim.momentum": 0.8,
             "optim.weight_decay": 0.05}, 0.05 * math.sqrt(8)),
    "lars": ({"optim.name": "lars", "optim.lr": 25.6, "optim.lr_scaling": "linear", "optim.momentum": 0.85,
              "optim.weight_decay": 0.02, "optim.lars_eta": 0.05}, 25.6 * 8 / 256),
    "adam": ({"optim.name": "adam", "optim.lr": 2e-3, "optim.lr_scaling": "none", "optim.weight_decay": 0.01},
             2e-3),
}


def replay(name: str, opt: dict[str, Any], base_lr: float, p0: list[torch.Tensor], grads: list[list[torch.Tensor]],
           total: int, warmup: int, constant_lr: bool = False) -> list[list[torch.Tensor]]:
    """Parameters after each step, by the documented update rules, in float64.

    Weights (ndim > 1) are decayed (and LARS-adapted); biases and BN parameters are not.
    sgd:  d = g + wd p;  v = m v + d (v = d at the first step);  p -= lr v
    lars: d = g + wd p;  trust = eta ||p|| / ||d|| (1 for biases/BN);  v = m v + lr trust d;  p -= v
    adam: d = g + wd p (coupled L2);  bias-corrected moments;  p -= lr m^ / (sqrt(v^) + eps)
    """
    wd, m, eta = opt.get("optim.weight_decay", 0.0), opt.get("optim.momentum", 0.9), opt.get("optim.lars_eta")
    ps = [p.clone() for p in p0]
    buf = [torch.zeros_like(p) for p in ps]
    sq = [torch.zeros_like(p) for p in ps]
    history = []
    for k, gs in enumerate(grads):
        lr = base_lr * (1.0 if constant_lr else hand_multiplier(k, total, warmup))
        for i, (p, g) in enumerate(zip(ps, gs)):
            adapted = p.ndim > 1
            d = g + (wd * p if adapted else 0.0)
            if name == "sgd":
                buf[i] = d.clone() if k == 0 else m * buf[i] + d
                ps[i] = p - lr * buf[i]
            elif name == "lars":
                trust = 1.0
                if adapted and p.norm() > 0 and d.norm() > 0:
                    trust = eta * p.norm() / d.norm()
                buf[i] = m * buf[i] + lr * trust * d
                ps[i] = p - buf[i]
            else:
                b1, b2, eps, t = 0.9, 0.999, 1e-8, k + 1
                buf[i] = b1 * buf[i] + (1 - b1) * d
                sq[i] = b2 * sq[i] + (1 - b2) * d * d
                ps[i] = p - lr * (buf[i] / (1 - b1**t)) / ((sq[i] / (1 - b2**t)).sqrt() + eps)
        history.append([p.clone() for p in ps])
    return history


@pytest.mark.parametrize("name", list(OPTIM_CASES))
def test_trainer_optimizer_follows_the_documented_update_under_warmup_cosine(name):
    opt, base_lr = OPTIM_CASES[name]
    # 3 epochs x 2 steps; warmup 1 epoch = 2 steps; cosine over the 4 others
    cfg = tiny_config(**opt, **{"train.epochs": 3, "optim.warmup_epochs": 1})
    assert cfg.effective_lr() == pytest.approx(base_lr)
    total, warmup = 6, 2
    trainer = Trainer(cfg)
    params = list(trainer.model.parameters())
    p0 = [p.detach().double().clone() for p in params]
    grads: list[list[torch.Tensor]] = []
    before: list[list[torch.Tensor]] = []

    def record(optimizer, args, kwargs):
        grads.append([p.grad.detach().double().clone() for p in params])
        before.append([p.detach().double().clone() for p in params])

    trainer.optimizer.register_step_pre_hook(record)
    log = Log()
    trainer.callbacks.append(log)  # the trainer's own callback list (rank 0)
    trainer.fit(resume=False)
    assert len(grads) == total
    after = before[1:] + [[p.detach().double().clone() for p in params]]

    # the lr logged after step k is the lr of step k + 1
    assert [m["lr"] for m in log.steps] == pytest.approx(
        [base_lr * hand_multiplier(k + 1, total, warmup) for k in range(total)], abs=1e-12)

    expected = replay(name, opt, base_lr, p0, grads, total, warmup)
    for k in range(total):
        for i, (got, want) in enumerate(zip(after[k], expected[k])):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=2e-6, msg=lambda m: f"step {k}, param {i}: {m}")
    # the comparison has power: the same updates at a constant lr end elsewhere
    constant = replay(name, opt, base_lr, p0, grads, total, warmup, constant_lr=True)
    assert any(not torch.allclose(a, b, rtol=1e-4, atol=2e-6) for a, b in zip(after[-1], constant[-1]))


# ====================================================================== model


@pytest.mark.parametrize("encoder, width, dim", [("resnet_small", 4, 32), ("resnet_small", 8, 64),
                                                 ("resnet18", 16, 512), ("resnet34", 16, 512),
                                                 ("resnet50", 16, 2048)])
def test_encoder_and_width_set_the_feature_dimension(encoder, width, dim):
    model = SimCLRModel(ModelConfig(encoder=encoder, width=width, head="none"), in_channels=3)
    h, z = model.eval()(torch.rand(2, 3, 16, 16))
    assert model.feature_dim == dim and h.shape == (2, dim)


@pytest.mark.parametrize("encoder", ["resnet_small", "resnet18"])
def test_cifar_stem_is_a_3x3_stride_1_conv_without_max_pool(encoder):
    def stem(cifar: bool) -> tuple[nn.Conv2d, bool]:
        net = SimCLRModel(ModelConfig(encoder=encoder, width=4, cifar_stem=cifar), in_channels=1).encoder
        first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
        return first, any(isinstance(m, nn.MaxPool2d) for m in net.modules())

    conv, pool = stem(True)
    assert (conv.kernel_size, conv.stride, conv.in_channels, pool) == ((3, 3), (1, 1), 1, False)
    conv, pool = stem(False)
    assert (conv.kernel_size, conv.stride, conv.in_channels, pool) == ((7, 7), (2, 2), 1, True)


def test_head_none_linear_nonlinear_by_hand():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 16, 16)
    none = SimCLRModel(ModelConfig(encoder="resnet_small", width=4, head="none", head_dim=3), 3)
    h, z = none(x)
    assert torch.equal(h, z)  # head_dim is ignored for head: none

    lin = SimCLRModel(ModelConfig(encoder="resnet_small", width=4, head="linear", head_dim=3), 3)
    h, z = lin(x)
    layer = lin.head
    assert z.shape == (6, 3) and close(z, h @ layer.weight.T + layer.bias)

    for hidden, want_hidden in ((None, 32), (7, 7)):
        cfg = ModelConfig(encoder="resnet_small", width=4, head="nonlinear", head_dim=5, head_hidden_dim=hidden)
        mlp = SimCLRModel(cfg, 3)
        h, z = mlp(x)  # train mode: BN normalises with the batch's own statistics
        l1, bn, _, l2 = mlp.head
        assert l1.weight.shape == (want_hidden, 32) and l2.weight.shape == (5, want_hidden)
        a = h @ l1.weight.T
        a = (a - a.mean(0)) / torch.sqrt(a.var(0, unbiased=False) + bn.eps) * bn.weight + bn.bias
        assert z.shape == (6, 5) and close(z, a.clamp(min=0) @ l2.weight.T + l2.bias)


# ====================================================================== augmentation


def _images(n: int = 6, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (n, 3, size, size), generator=g).to(torch.uint8)  # no zero pixels


def _views(aug: dict[str, Any], images: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return TwoViews(AugmentConfig.model_validate(aug))(images, torch.Generator().manual_seed(seed))


def _with(base: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    node = out
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return out


AUGMENT_FIELDS = [
    ({"ops": ["crop"]}, "ops", ["crop", "color"]),
    ({"ops": ["crop"]}, "ops", ["crop", "sobel"]),
    ({}, "mode", "asymmetric"),
    ({"ops": ["crop"]}, "crop.scale", (0.5, 0.5)),
    ({"ops": ["crop"]}, "crop.ratio", (1.5, 2.0)),
    ({"ops": ["crop"], "crop": IDENTITY_CROP}, "crop.flip", True),
    ({"ops": ["color"]}, "color.strength", 1.5),
    ({"ops": ["color"]}, "color.jitter_p", 0.2),
    ({"ops": ["color"]}, "color.grayscale_p", 1.0),
    ({"ops": ["blur"], "blur": {"kernel_fraction": 0.5}}, "blur.p", 1.0),
    ({"ops": ["blur"], "blur": {"p": 1.0, "kernel_fraction": 0.5}}, "blur.sigma", (3.0, 4.0)),
    ({"ops": ["blur"], "blur": {"p": 1.0}}, "blur.kernel_fraction", 0.5),
    ({"ops": ["cutout"]}, "cutout.size_fraction", 0.25),
    ({"ops": ["noise"]}, "noise.std", (0.2, 0.3)),
    ({"ops": ["rotate"]}, "rotate.angles", [90]),
]


@pytest.mark.parametrize("base, field, value", AUGMENT_FIELDS, ids=[f"{f}={v}" for _, f, v in AUGMENT_FIELDS])
def test_each_augment_field_changes_the_views(base, field, value):
    x = _images()
    before = _views(base, x)
    after = _views(_with(base, field, value), x)
    assert not (close(before[0], after[0], 1e-4) and close(before[1], after[1], 1e-4))


@pytest.mark.parametrize("aug", [
    {"ops": ["crop"], "crop": IDENTITY_CROP},
    {"ops": ["color"], "color": {"strength": 0.0, "grayscale_p": 0.0}},
    {"ops": ["color"], "color": {"jitter_p": 0.0, "grayscale_p": 0.0}},
    {"ops": ["blur"], "blur": {"p": 0.0, "kernel_fraction": 0.5}},
    {"ops": ["blur"], "blur": {"p": 1.0, "kernel_fraction": 0.1}},  # radius int(16 * 0.1) // 2 = 0
    {"ops": ["noise"], "noise": {"std": (0.0, 0.0)}},
    {"ops": ["rotate"], "rotate": {"angles": [0]}},
    {"ops": ["cutout", "noise"], "mode": "asymmetric", "crop": IDENTITY_CROP, "cutout": {"size_fraction": 0.25},
     "noise": {"std": (0.0, 0.0)}},  # view 2 only (asymmetric): the identity crop
], ids=["crop", "color-strength-0", "color-jitter-p-0", "blur-p-0", "blur-tiny-kernel", "noise-0", "rotate-0",
        "asymmetric-view2"])
def test_neutral_settings_leave_the_images_unchanged(aug):
    x = _images()
    v1, v2 = _views(aug, x)
    if aug.get("mode") != "asymmetric":
        assert close(v1, x.float() / 255)
    assert close(v2, x.float() / 255)


def test_asymmetric_mode_sends_ops_to_view1_only():
    x = _images()
    v1, v2 = _views({"ops": ["rotate"], "mode": "asymmetric", "crop": IDENTITY_CROP, "rotate": {"angles": [180]}}, x)
    assert close(v2, x.float() / 255, 1e-6) and close(v1, torch.rot90(x.float() / 255, 2, dims=(2, 3)), 1e-6)


@pytest.mark.parametrize("angles", [[90], [270], [90, 270]])
def test_rotate_angles_by_hand(angles):
    x = _images().float() / 255
    for v in _views({"ops": ["rotate"], "rotate": {"angles": angles}}, x):
        for img, out in zip(x, v):
            options = [torch.rot90(img, a // 90, dims=(1, 2)) for a in angles]
            assert any(close(out, o, 1e-7) for o in options)


@pytest.mark.parametrize("scale, ratio, crop_hw",
                         [((0.25, 0.25), (1.0, 1.0), (8, 8)), ((0.25, 0.25), (4.0, 4.0), (4, 16))])
def test_crop_scale_and_ratio_set_the_crop_by_hand(scale, ratio, crop_hw):
    # area fraction a and ratio r of a 16x16 image: width sqrt(256 a r), height sqrt(256 a / r)
    x = _images().float() / 255
    ch, cw = crop_hw
    for v in _views({"ops": ["crop"], "crop": {"scale": scale, "ratio": ratio, "flip": False}}, x):
        for img, out in zip(x, v):
            candidates = [F.interpolate(img[None, :, t:t + ch, left:left + cw], size=(16, 16), mode="bilinear",
                                        align_corners=False)[0]
                          for t in range(16 - ch + 1) for left in range(16 - cw + 1)]
            assert min((out - c).abs().max().item() for c in candidates) < 1e-5


def test_flip_by_hand():
    x = _images().float() / 255
    flips = []
    for v in _views({"ops": ["crop"], "crop": {**IDENTITY_CROP, "flip": True}}, x):
        for img, out in zip(x, v):
            same, mirrored = close(out, img, 1e-6), close(out, img.flip(2), 1e-6)
            assert same or mirrored
            flips.append(mirrored)
    assert any(flips) and not all(flips)


def test_grayscale_by_hand():
    x = _images().float() / 255
    luma = (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None].expand_as(x)
    for v in _views({"ops": ["color"], "color": {"jitter_p": 0.0, "grayscale_p": 1.0}}, x):
        assert close(v, luma)


@pytest.mark.parametrize("fraction, sigma", [(0.2, 1.0), (0.5, 2.0)])
def test_blur_kernel_fraction_and_sigma_by_hand(fraction, sigma):
    # radius = int(16 * fraction) // 2 (google-research/simclr), Gaussian weights, reflect padding
    x = _images().float() / 255
    r = int(16 * fraction) // 2
    w = [math.exp(-(o * o) / (2 * sigma * sigma)) for o in range(-r, r + 1)]
    w = [wi / sum(w) for wi in w]
    p = F.pad(x, (r, r, r, r), mode="reflect")
    rows = sum(wi * p[:, :, i:i + 16, :] for i, wi in enumerate(w))
    want = sum(wi * rows[:, :, :, i:i + 16] for i, wi in enumerate(w))
    for v in _views({"ops": ["blur"], "blur": {"p": 1.0, "sigma": (sigma, sigma), "kernel_fraction": fraction}}, x):
        assert close(v, want)


@pytest.mark.parametrize("fraction, side", [(0.25, 4), (0.5, 8)])
def test_cutout_size_by_hand(fraction, side):
    x = _images(n=12)
    heights = []
    for v in _views({"ops": ["cutout"], "cutout": {"size_fraction": fraction}}, x):
        for out in v:
            hole = out == 0  # the images have no zero pixels of their own
            assert torch.equal(hole, hole[:1].expand_as(hole))  # the same square in every channel
            rows, cols = hole[0].any(1).nonzero().flatten(), hole[0].any(0).nonzero().flatten()
            h, w = len(rows), len(cols)
            assert 1 <= h <= side and 1 <= w <= side and int(hole[0].sum()) == h * w  # a clipped square
            heights.append(min(h, w))
    assert max(heights) == side


@pytest.mark.parametrize("std", [0.05, 0.1])
def test_noise_std_by_hand(std):
    x = torch.full((6, 3, 16, 16), 128, dtype=torch.uint8)
    for v in _views({"ops": ["noise"], "noise": {"std": (std, std)}}, x):
        measured = (v - x.float() / 255).flatten(1).std(dim=1)
        assert torch.all((measured - std).abs() < 0.12 * std)


# ====================================================================== evaluation on hand-made features


def _as_images(rows: list[list[int]]) -> torch.Tensor:
    """Features as uint8 'images' (N, D, 1, 1): through an identity encoder h = value / 255."""
    return torch.tensor(rows, dtype=torch.uint8)[:, :, None, None]


IDENTITY = nn.Flatten()


def _evaluate(train: list[list[int]], train_y: list[int], test: list[list[int]], test_y: list[int],
              num_classes: int, cfg: EvalConfig, linear: bool) -> dict[str, Any]:
    results = evaluate_encoder(IDENTITY, _as_images(train), torch.tensor(train_y), _as_images(test),
                               torch.tensor(test_y), num_classes, cfg, CPU, torch.Generator().manual_seed(0),
                               linear=linear)
    return {a.name: a for a in results}


def test_knn_bank_is_the_train_split_and_queries_the_test_split():
    # train: one item per axis, labels 0, 1, 2. test: near axis 0 labelled 0 (right), near axis 1
    # labelled 2 (wrong for a train bank). Bank train/queries test: 1 of 2 = 50%. Swapped splits
    # give 1/3 or 2/3, test/test or train/train give 100%.
    train, train_y = [[255, 0, 0], [0, 255, 0], [0, 0, 255]], [0, 1, 2]
    test, test_y = [[250, 20, 0], [10, 250, 0]], [0, 2]
    res = _evaluate(train, train_y, test, test_y, 3, EvalConfig(knn_k=1), linear=False)
    assert res["knn_top1"].value == 50.0
    assert "train split bank (N=3)" in res["knn_top1"].protocol
    assert "test split queries (N=2)" in res["knn_top1"].protocol


@pytest.mark.parametrize("k, temperature, expected", [(1, 1.0, 100.0), (3, 1.0, 0.0), (3, 0.01, 100.0)])
def test_knn_k_and_temperature_from_the_config(k, temperature, expected):
    # query along 0 deg, class 0; bank: class 0 at 10 deg, class 1 at 30 and 35 deg.
    # k=1: class 0. k=3, T=1: weights 1 vs exp(-0.12) + exp(-0.17) = 1.73: class 1.
    # k=3, T=0.01: the nearest item's weight dwarfs the others: class 0.
    def at(deg: float) -> list[int]:
        return [round(250 * math.cos(math.radians(deg))), round(250 * math.sin(math.radians(deg)))]

    train, train_y = [at(10), at(30), at(35)], [0, 1, 1]
    res = _evaluate(train, train_y, [at(0)], [0], 2, EvalConfig(knn_k=k, knn_temperature=temperature), linear=False)
    assert res["knn_top1"].value == expected


LINEAR_CFG = EvalConfig(knn_k=1, linear_epochs=30, linear_batch_size=4, linear_lr=50.0)  # lr 50 x 4/256 = 0.78


def test_linear_eval_standardises_with_train_statistics():
    # The same affine map on both splits keeps the problem linear, so only the (zero-initialised,
    # briefly trained) classifier can tell the statistics apart: its boundary starts at the
    # standardisation mean and the bias moves it slowly. Train: class 0 at 0, 20; class 1 at 80, 100,
    # symmetric about the train mean 50, so with train statistics the bias gradient is 0 and the
    # boundary stays at 50 at every step. Test: all class 1, at 60, 65, 70, 250: train statistics
    # get all of them (100%); test statistics (mean 111) would leave 60, 65, 70 on the class 0 side
    # after 3 short epochs (25%).
    train, train_y = [[0], [20], [80], [100]], [0, 0, 1, 1]
    test, test_y = [[60], [65], [70], [250]], [1, 1, 1, 1]
    cfg = EvalConfig(knn_k=1, linear_epochs=3, linear_batch_size=4, linear_lr=6.4)  # lr 6.4 x 4/256 = 0.1
    res = _evaluate(train, train_y, test, test_y, 2, cfg, linear=True)
    assert res["linear_top1"].value == 100.0
    direct = linear_eval(torch.tensor(train).float(), torch.tensor(train_y), torch.tensor(test).float(),
                         torch.tensor(test_y), 2, 3, 4, 6.4, torch.Generator().manual_seed(0))
    assert direct[0].value == 100.0
    assert "standardized with train mean/std" in direct[0].protocol


def test_linear_eval_fits_on_train_and_tests_on_test():
    # train: low -> 0, high -> 1; test has the opposite labels. A classifier fitted on train gets every
    # test point wrong (0%); one fitted on test would get 100%.
    train, train_y = [[0], [20], [80], [100]], [0, 0, 1, 1]
    test, test_y = [[10], [90]], [1, 0]
    res = _evaluate(train, train_y, test, test_y, 2, LINEAR_CFG, linear=True)
    assert res["linear_top1"].value == 0.0
    assert "trained on train split (N=4)" in res["linear_top1"].protocol
    assert "tested on test split (N=2)" in res["linear_top1"].protocol


@pytest.mark.parametrize("epochs, batch, lr", [(3, 2, 0.1), (5, 4, 0.7), (2, 100, 0.3)])
def test_linear_eval_settings_reach_the_classifier(monkeypatch, epochs, batch, lr):
    calls = []
    real = evaluate_module._train_linear

    def spy(x, y, num_classes, epochs_, batch_size, lr_, weight_decay, generator):
        calls.append((x.clone(), y.clone(), epochs_, batch_size, lr_))
        return real(x, y, num_classes, epochs_, batch_size, lr_, weight_decay, generator)

    monkeypatch.setattr(evaluate_module, "_train_linear", spy)
    train, train_y = [[0, 5], [20, 9], [80, 1], [100, 3]], [0, 0, 1, 1]
    cfg = EvalConfig(linear_epochs=epochs, linear_batch_size=batch, linear_lr=lr, knn_k=1)
    _evaluate(train, train_y, [[10, 1]], [0], 2, cfg, linear=True)
    assert len(calls) == 1
    x, y, e, b, scaled = calls[0]
    used = min(batch, 4)
    assert (e, b) == (epochs, used) and scaled == pytest.approx(lr * used / 256)
    # the classifier is fitted on the train split, standardised by hand with its own statistics
    raw = torch.tensor(train).float() / 255
    want = (raw - raw.mean(0)) / raw.std(0, unbiased=False)
    assert close(x, want) and torch.equal(y, torch.tensor(train_y))
    # linear: false runs no linear evaluation
    calls.clear()
    assert "linear_top1" not in _evaluate(train, train_y, [[10, 1]], [0], 2, cfg, linear=False)
    assert calls == []


def test_feature_batch_size_does_not_change_the_result():
    torch.manual_seed(0)
    encoder = SimCLRModel(ModelConfig(encoder="resnet_small", width=4), 3).encoder
    with torch.no_grad():  # non-trivial running statistics
        encoder.train()(torch.rand(16, 3, 16, 16))
    x_train, x_test = _images(n=10, seed=1), _images(n=6, seed=2)
    y_train, y_test = torch.arange(10) % 2, torch.arange(6) % 2

    def run(batch_size: int) -> list:
        cfg = EvalConfig(knn_k=3, linear_epochs=3, linear_batch_size=4, batch_size=batch_size)
        return evaluate_encoder(encoder, x_train, y_train, x_test, y_test, 2, cfg, CPU,
                                torch.Generator().manual_seed(0), linear=True)

    assert run(1) == run(64)
