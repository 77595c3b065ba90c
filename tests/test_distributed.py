"""Data parallelism on CPU with Gloo, 2 processes: the global-batch loss and gradients equal one process's."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from core.distributed import CrossRankBatchNorm, DistInfo, convert_global_bn, global_views
from core.losses import margin_triplet, nt_logistic, nt_xent

WORLD = 2
GLOBAL_BATCH = 8
TOLERANCE = dict(rtol=1e-5, atol=1e-6)  # float32 sums in a different order


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 6))


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(GLOBAL_BATCH, 12, generator=g), torch.randn(GLOBAL_BATCH, 12, generator=g)


LOSSES = {
    "nt_xent": lambda a, b: nt_xent(a, b, temperature=0.3),
    "nt_xent_semi_hard": lambda a, b: nt_xent(a, b, temperature=0.3, semi_hard=True),
    "nt_logistic": lambda a, b: nt_logistic(a, b, temperature=0.3),
    "margin_triplet": lambda a, b: margin_triplet(a, b, margin=0.4),
}


def _single(name: str) -> tuple[float, list[torch.Tensor]]:
    model = _model()
    x1, x2 = _inputs()
    loss = LOSSES[name](model(x1), model(x2))
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters()]


def _bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 6))


def _bn_single() -> dict:
    # the trainer's step: one forward of both views, so BatchNorm sees all 2B views
    model = _bn_model()
    x1, x2 = _inputs()
    z1, z2 = model(torch.cat([x1, x2])).chunk(2)
    loss = nt_xent(z1, z2, temperature=0.3)
    loss.backward()
    return {
        "loss": loss.item(),
        "grads": [p.grad.clone() for p in model.parameters()],
        "buffers": [b.clone() for b in model.buffers()],
    }


def _global_bn_rank(rank: int, info: DistInfo) -> dict:
    bn_model = convert_global_bn(_bn_model(), "cpu")
    assert isinstance(bn_model[1], CrossRankBatchNorm)
    model = DistributedDataParallel(bn_model, broadcast_buffers=False)
    x1, x2 = _inputs()
    per = GLOBAL_BATCH // WORLD
    mine = slice(rank * per, (rank + 1) * per)
    z1, z2 = model(torch.cat([x1[mine], x2[mine]])).chunk(2)
    loss = nt_xent(*global_views(z1, z2, info), temperature=0.3)
    loss.backward()
    params = model.module.parameters()
    return {"loss": float(loss), "grads": [p.grad for p in params], "buffers": list(model.module.buffers())}


def _rank_main(rank: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        info = DistInfo(rank, WORLD, rank)
        results = {}
        for name, loss_fn in LOSSES.items():
            model = DistributedDataParallel(_model())
            x1, x2 = _inputs()
            per = GLOBAL_BATCH // WORLD
            mine = slice(rank * per, (rank + 1) * per)
            z1, z2 = global_views(model(x1[mine]), model(x2[mine]), info)
            loss = loss_fn(z1, z2)
            loss.backward()
            results[name] = {"loss": float(loss), "grads": [p.grad for p in model.module.parameters()]}
        results["global_bn"] = _global_bn_rank(rank, info)
        torch.save(results, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    init_file = str(folder / "init")
    out = str(folder / "result")
    mp.spawn(_rank_main, args=(init_file, out), nprocs=WORLD, join=True)
    return [torch.load(f"{out}.{rank}", weights_only=True) for rank in range(WORLD)]


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_global_loss_and_gradients_equal_single_process(two_rank_results, name):
    ref_loss, ref_grads = _single(name)
    for got in (r[name] for r in two_rank_results):
        assert got["loss"] == pytest.approx(ref_loss, rel=1e-6)
        for g, r in zip(got["grads"], ref_grads):
            torch.testing.assert_close(g, r, **TOLERANCE)


def test_global_batch_norm_equals_batch_norm_over_the_whole_batch(two_rank_results):
    # "global BN": statistics over every rank's views; same loss, gradients and running statistics
    ref = _bn_single()
    for got in (r["global_bn"] for r in two_rank_results):
        assert got["loss"] == pytest.approx(ref["loss"], rel=1e-5)
        for g, r in zip(got["grads"], ref["grads"]):
            torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5)
        for g, r in zip(got["buffers"], ref["buffers"]):
            torch.testing.assert_close(g.to(r.dtype), r, rtol=1e-4, atol=1e-6)
