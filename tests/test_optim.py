"""LARS, the parameter split, optimizer construction, the schedule and lr scaling, checked by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from core.config import OptimConfig, RunConfig, TrainConfig
from core.optim import LARS, build_optimizer, build_scheduler, param_groups, warmup_cosine


def _one_step(p0: list[float], g: list[float], **kw: float | bool) -> torch.Tensor:
    """Apply one LARS step to a fresh parameter with a fixed gradient; return the new value."""
    p = nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = LARS([p], **kw)
    p.grad = torch.tensor(g, dtype=torch.float64)
    opt.step()
    return p.detach()


def test_lars_trust_ratio_without_decay() -> None:
    # ||p|| = 5, ||g|| = 1 -> trust = 0.001 * 5 / 1 = 0.005; step = lr * trust * g.
    p = _one_step([3.0, 4.0], [0.6, 0.8], lr=1.0, momentum=0.0, weight_decay=0.0, eta=0.001)
    expected = torch.tensor([3.0, 4.0], dtype=torch.float64) - 0.005 * torch.tensor([0.6, 0.8], dtype=torch.float64)
    torch.testing.assert_close(p, expected, rtol=0, atol=1e-12)


def test_lars_trust_ratio_with_decay() -> None:
    # g' = g + 0.1 p = [0.9, 1.2], ||g'|| = 1.5; trust = 0.001 * 5 / 1.5 = 1/300.
    # step = 2.0 * (1/300) * [0.9, 1.2] = [0.006, 0.008].
    p = _one_step([3.0, 4.0], [0.6, 0.8], lr=2.0, momentum=0.0, weight_decay=0.1, eta=0.001)
    torch.testing.assert_close(p, torch.tensor([2.994, 3.992], dtype=torch.float64), rtol=0, atol=1e-12)


def test_lars_zero_weight_uses_ratio_one() -> None:
    # ||p|| = 0 -> trust 1.0, so a zero-initialised weight still moves by lr * g.
    p = _one_step([0.0, 0.0], [0.6, 0.8], lr=0.5, momentum=0.9, weight_decay=0.0, eta=0.001)
    torch.testing.assert_close(p, torch.tensor([-0.3, -0.4], dtype=torch.float64), rtol=0, atol=1e-12)


def test_lars_zero_grad_is_finite_and_no_move() -> None:
    p = _one_step([3.0, 4.0], [0.0, 0.0], lr=1.0, momentum=0.9, weight_decay=0.0, eta=0.001)
    torch.testing.assert_close(p, torch.tensor([3.0, 4.0], dtype=torch.float64), rtol=0, atol=0)


def test_lars_momentum_accumulates_over_two_steps() -> None:
    p = nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))
    opt = LARS([p], lr=1.0, momentum=0.9, weight_decay=0.0, eta=0.001)
    p.grad = torch.tensor([0.6, 0.8], dtype=torch.float64)
    opt.step()
    # step 1: v1 = 0.005 * [0.6, 0.8] = [0.003, 0.004]; p1 = [2.997, 3.996].
    torch.testing.assert_close(p.detach(), torch.tensor([2.997, 3.996], dtype=torch.float64), rtol=0, atol=1e-12)
    p.grad = torch.tensor([0.0, 1.0], dtype=torch.float64)
    opt.step()
    # step 2: ||p1|| = sqrt(2.997^2 + 3.996^2) = 4.995, ||g|| = 1 -> trust 0.004995;
    # v2 = 0.9 * [0.003, 0.004] + 0.004995 * [0, 1] = [0.0027, 0.008595]; p2 = p1 - v2.
    assert math.isclose(math.hypot(2.997, 3.996), 4.995, rel_tol=1e-12)
    expected = torch.tensor([2.997 - 0.0027, 3.996 - 0.008595], dtype=torch.float64)
    torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-12)
    buf = opt.state[p]["momentum_buffer"]
    torch.testing.assert_close(buf, torch.tensor([0.0027, 0.008595], dtype=torch.float64), rtol=0, atol=1e-12)


def test_lars_excluded_group_plain_momentum_no_decay() -> None:
    model = nn.Linear(2, 1).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[3.0, 4.0]]))
        model.bias.fill_(2.0)
    opt = LARS(param_groups(model, weight_decay=0.5), lr=0.1, momentum=0.9, eta=0.001)
    for _ in range(2):
        model.weight.grad = torch.zeros_like(model.weight)
        model.bias.grad = torch.tensor([1.0], dtype=torch.float64)
        opt.step()
    # bias: v1 = 0.1, v2 = 0.9*0.1 + 0.1 = 0.19; b = 2 - 0.1 - 0.19 = 1.71 (no decay, no trust ratio).
    torch.testing.assert_close(model.bias.detach(), torch.tensor([1.71], dtype=torch.float64), rtol=0, atol=1e-12)
    # weight (adapted group): zero grad but wd 0.5 -> g' = 0.5 p = [1.5, 2], trust = 0.001*5/2.5 = 0.002,
    # v1 = 0.1*0.002*[1.5, 2] = [3e-4, 4e-4], p1 = [2.9997, 3.9996]; g' = 0.5 p1 keeps trust 0.002,
    # v2 = 0.9 v1 + 2e-4 * 0.5 p1 = [5.6997e-4, 7.5996e-4], p2 = p1 - v2.
    expected = torch.tensor([[2.9997 - 5.6997e-4, 3.9996 - 7.5996e-4]], dtype=torch.float64)
    torch.testing.assert_close(model.weight.detach(), expected, rtol=0, atol=1e-12)


def test_lars_state_dict_roundtrip() -> None:
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    opt = LARS(param_groups(model, 1e-4), lr=0.3)
    model(torch.randn(8, 3, generator=gen)).pow(2).sum().backward()
    opt.step()
    fresh = LARS(param_groups(model, 1e-4), lr=0.3)
    fresh.load_state_dict(opt.state_dict())
    for p in model.parameters():
        torch.testing.assert_close(fresh.state[p]["momentum_buffer"], opt.state[p]["momentum_buffer"])
    assert [g["lars_adapt"] for g in fresh.param_groups] == [True, False]


def test_param_groups_split() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    groups = param_groups(model, weight_decay=1e-6)
    adapted, excluded = groups
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(adapted["params"]) == {id(model[0].weight), id(model[3].weight)}
    assert ids(excluded["params"]) == {
        id(model[0].bias),
        id(model[1].weight),
        id(model[1].bias),
        id(model[3].bias),
    }
    assert adapted["weight_decay"] == 1e-6 and adapted["lars_adapt"] is True
    assert excluded["weight_decay"] == 0.0 and excluded["lars_adapt"] is False


def test_param_groups_skips_frozen_and_empty() -> None:
    model = nn.Linear(3, 2, bias=False)
    groups = param_groups(model, 0.1)
    assert len(groups) == 1 and groups[0]["lars_adapt"]
    model.weight.requires_grad_(False)
    assert param_groups(model, 0.1) == []


@pytest.mark.parametrize("name, cls", [("lars", LARS), ("sgd", torch.optim.SGD), ("adam", torch.optim.Adam)])
def test_build_optimizer(name: str, cls: type) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    cfg = OptimConfig(name=name, weight_decay=1e-4, momentum=0.8, lars_eta=0.002)
    opt = build_optimizer(model, cfg, lr=0.7)
    assert type(opt) is cls
    assert [g["lr"] for g in opt.param_groups] == [0.7, 0.7]
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0]
    if name == "lars":
        assert opt.param_groups[0]["eta"] == 0.002 and opt.param_groups[0]["momentum"] == 0.8
    if name == "sgd":
        assert opt.param_groups[0]["momentum"] == 0.8 and opt.param_groups[0]["nesterov"] is False
    if name != "lars":
        assert not opt.param_groups[0]["fused"]  # CPU parameters
    before = model[0].weight.detach().clone()
    model(torch.ones(4, 3)).pow(2).sum().backward()
    opt.step()
    assert not torch.equal(before, model[0].weight.detach())


def test_warmup_cosine_values() -> None:
    total, warm = 110, 10
    assert warmup_cosine(0, total, warm) == pytest.approx(0.1)
    assert warmup_cosine(4, total, warm) == pytest.approx(0.5)
    assert warmup_cosine(9, total, warm) == pytest.approx(1.0)  # end of warmup
    assert warmup_cosine(10, total, warm) == pytest.approx(1.0)  # cos(0)
    assert warmup_cosine(60, total, warm) == pytest.approx(0.5)  # halfway through the decay
    assert warmup_cosine(35, total, warm) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert warmup_cosine(110, total, warm) == pytest.approx(0.0, abs=1e-12)  # end
    assert warmup_cosine(500, total, warm) == pytest.approx(0.0, abs=1e-12)  # past the end


def test_warmup_cosine_edge_cases() -> None:
    assert warmup_cosine(0, 100, 0) == pytest.approx(1.0)
    assert warmup_cosine(50, 100, 0) == pytest.approx(0.5)
    assert warmup_cosine(4, 10, 20) == pytest.approx(0.25)
    assert warmup_cosine(25, 10, 20) == 1.0  # warmup longer than the run: hold the peak, no div by 0
    assert warmup_cosine(10, 10, 10) == 1.0


def test_build_scheduler_per_iteration() -> None:
    p = nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=2.0)
    sched = build_scheduler(opt, total_steps=20, warmup_steps=4)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.5)
    assert lrs[3] == pytest.approx(2.0)
    assert lrs[12] == pytest.approx(1.0)  # (12 - 4) / 16 = 1/2 of the decay
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    resumed = build_scheduler(torch.optim.SGD([p], lr=2.0), total_steps=20, warmup_steps=4)
    resumed.load_state_dict(sched.state_dict())
    assert resumed.last_epoch == 20 and resumed.get_last_lr() == sched.get_last_lr()
    with pytest.raises(ValueError):
        build_scheduler(opt, total_steps=0, warmup_steps=0)


def test_effective_lr_scaling() -> None:
    linear = RunConfig(optim=OptimConfig(lr=0.3, lr_scaling="linear"), train=TrainConfig(batch_size=4096))
    sqrt = RunConfig(optim=OptimConfig(lr=0.075, lr_scaling="sqrt"), train=TrainConfig(batch_size=4096))
    default = RunConfig(optim=OptimConfig(lr=1.0), train=TrainConfig(batch_size=512))
    none = RunConfig(optim=OptimConfig(lr=0.3, lr_scaling="none"), train=TrainConfig(batch_size=4096))
    assert linear.effective_lr() == pytest.approx(4.8)
    assert sqrt.effective_lr() == pytest.approx(4.8)
    assert default.effective_lr() == pytest.approx(2.0)
    assert none.effective_lr() == pytest.approx(0.3)
