"""kNN and linear evaluation on hand-made and random features, and feature extraction."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from core.config import EvalConfig
from core.evaluate import Accuracy, evaluate_encoder, extract_features, knn_accuracy, linear_eval


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _blobs(
    n_per_class: int, num_classes: int, dim: int, sep: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian blobs (unit std) around class means ``sep`` apart along their own axes."""
    means = sep * torch.eye(num_classes, dim)
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    feats = means[labels] + torch.randn(len(labels), dim, generator=gen)
    return feats, labels


# ---------------------------------------------------------------- kNN


def test_knn_separated_clusters_is_perfect() -> None:
    gen = _gen(0)
    train_x, train_y = _blobs(30, 2, 8, sep=20.0, gen=gen)
    test_x, test_y = _blobs(10, 2, 8, sep=20.0, gen=gen)
    top1, top2 = knn_accuracy(train_x, train_y, test_x, test_y, num_classes=2, k=5, temperature=0.1)
    assert top1 == Accuracy("knn_top1", 100.0, top1.protocol)
    assert top2.name == "knn_top2" and top2.value == 100.0


def test_knn_identical_query_k1_gets_its_label() -> None:
    gen = _gen(1)
    bank = torch.randn(50, 16, generator=gen)
    labels = torch.randint(0, 7, (50,), generator=gen)
    pick = torch.tensor([0, 3, 17, 49])
    top1, _ = knn_accuracy(bank, labels, bank[pick] * 3.0, labels[pick], num_classes=7, k=1)
    assert top1.value == 100.0  # scaled copies: cosine similarity 1 with themselves


def test_knn_weighting_beats_majority() -> None:
    # One class-0 neighbour identical to the query (s = 1), two class-1 neighbours at 60 degrees (s = 0.5).
    # Unweighted majority says class 1; exp(s/0.1): 22026 vs 2 * 148 says class 0.
    bank = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2], [0.5, -math.sqrt(3) / 2]])
    bank_y = torch.tensor([0, 1, 1])
    query, query_y = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    weighted, _ = knn_accuracy(bank, bank_y, query, query_y, num_classes=2, k=3, temperature=0.1)
    assert weighted.value == 100.0
    # With a huge temperature every weight is ~1 and the vote is the plain majority.
    flat, _ = knn_accuracy(bank, bank_y, query, query_y, num_classes=2, k=3, temperature=1e4)
    assert flat.value == 0.0


def test_knn_small_temperature_does_not_overflow() -> None:
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    top1, _ = knn_accuracy(bank, torch.tensor([0, 0, 1]), bank, torch.tensor([0, 0, 1]), 2, k=3, temperature=1e-3)
    assert top1.value == 100.0


def _reference_knn(bank, bank_y, queries, num_classes, k, temperature):  # type: ignore[no-untyped-def]
    """Straightforward per-query loop in float64: returns (top1 predictions, sets of top-5 classes)."""
    preds, top5 = [], []
    for q in queries.double():
        sims = [(float(q @ b) / (q.norm().item() * b.norm().item()), int(y)) for b, y in zip(bank.double(), bank_y)]
        sims.sort(key=lambda t: -t[0])
        votes = [0.0] * num_classes
        for s, y in sims[: min(k, len(sims))]:
            votes[y] += math.exp(s / temperature)
        ranked = sorted(range(num_classes), key=lambda c: -votes[c])
        preds.append(ranked[0])
        top5.append(set(ranked[: min(5, num_classes)]))
    return preds, top5


@pytest.mark.parametrize("k, chunk", [(20, 7), (1000, 512)])
def test_knn_matches_reference_loop(k: int, chunk: int) -> None:
    gen = _gen(2)
    bank, queries = torch.randn(300, 8, generator=gen), torch.randn(60, 8, generator=gen)
    bank_y, query_y = torch.randint(0, 10, (300,), generator=gen), torch.randint(0, 10, (60,), generator=gen)
    preds, top5 = _reference_knn(bank, bank_y, queries, 10, k, 0.1)
    # Using the reference predictions as labels: every prediction must agree exactly.
    agree, _ = knn_accuracy(bank, bank_y, queries, torch.tensor(preds), 10, k=k, temperature=0.1, chunk=chunk)
    assert agree.value == 100.0
    top1, top5_acc = knn_accuracy(bank, bank_y, queries, query_y, 10, k=k, temperature=0.1, chunk=chunk)
    ref_top1 = 100.0 * sum(p == int(y) for p, y in zip(preds, query_y)) / 60
    ref_top5 = 100.0 * sum(int(y) in s for s, y in zip(top5, query_y)) / 60
    assert top1.value == pytest.approx(ref_top1) and top5_acc.value == pytest.approx(ref_top5)
    assert top5_acc.name == "knn_top5" and top5_acc.value >= top1.value
    assert f"k={min(k, 300)}" in top1.protocol


def test_knn_protocol_string() -> None:
    gen = _gen(3)
    x, y = torch.randn(20, 4, generator=gen), torch.randint(0, 3, (20,), generator=gen)
    top1, top3 = knn_accuracy(x, y, x, y, 3, k=200, temperature=0.1)
    assert "k=20 (asked 200" in top1.protocol and "exp(s/0.1)" in top1.protocol and "cosine" in top1.protocol
    assert top3.name == "knn_top3" and top3.value == 100.0  # top-min(5, C) with C = 3 covers every class
    assert 0.0 <= top1.value <= 100.0


# ---------------------------------------------------------------- linear evaluation


def _linear(train_x, train_y, test_x, test_y, num_classes, seed=0):  # type: ignore[no-untyped-def]
    return linear_eval(
        train_x, train_y, test_x, test_y, num_classes, epochs=15, batch_size=64, lr=0.1, generator=_gen(seed)
    )


def test_linear_eval_separable_blobs() -> None:
    gen = _gen(4)
    train_x, train_y = _blobs(100, 4, 16, sep=6.0, gen=gen)
    test_x, test_y = _blobs(50, 4, 16, sep=6.0, gen=gen)
    top1, top4 = _linear(train_x + 3.0, train_y, test_x + 3.0, test_y, 4)
    assert top1.name == "linear_top1" and top1.value >= 99.0
    assert top4.name == "linear_top4" and top4.value == 100.0


def test_linear_eval_random_labels_near_chance() -> None:
    gen = _gen(5)
    train_x, test_x = torch.randn(400, 32, generator=gen), torch.randn(400, 32, generator=gen)
    train_y, test_y = torch.randint(0, 4, (400,), generator=gen), torch.randint(0, 4, (400,), generator=gen)
    top1, _ = _linear(train_x, train_y, test_x, test_y, 4)
    assert abs(top1.value - 25.0) < 10.0  # chance is 25%; 10 points is ~4.5 binomial std at n=400


def test_linear_eval_deterministic_for_a_seed() -> None:
    gen = _gen(6)
    train_x, train_y = _blobs(40, 5, 8, sep=1.0, gen=gen)
    test_x, test_y = _blobs(20, 5, 8, sep=1.0, gen=gen)
    first = _linear(train_x, train_y, test_x, test_y, 5, seed=11)
    again = _linear(train_x, train_y, test_x, test_y, 5, seed=11)
    assert first == again
    assert first[1].name == "linear_top5" and first[1].value >= first[0].value


def test_linear_eval_protocol_and_generator_use() -> None:
    gen = _gen(7)
    x, y = _blobs(10, 2, 4, sep=3.0, gen=gen)
    g = _gen(0)
    state = g.get_state()
    top1, _ = linear_eval(x, y, x, y, 2, epochs=3, batch_size=8, lr=0.4, generator=g, weight_decay=1e-4)
    assert not torch.equal(g.get_state(), state)  # shuffling drew from the given generator
    for part in ("standardized", "affine", "Nesterov", "momentum 0.9", "lr 0.4 x 8/256", "cosine", "9 steps",
                 "3 epochs", "weight decay 0.0001", "N=20"):
        assert part in top1.protocol, part


# ---------------------------------------------------------------- feature extraction


def _encoder() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 8, 8), generator=_gen(seed), dtype=torch.uint8)


def test_extract_features_batches_match_one_pass_and_restore_mode() -> None:
    enc = _encoder()
    enc(_images(16, 8).float() / 255)  # move BN running stats away from their init
    enc[2].eval()  # a submodule deliberately in eval mode must stay so
    images = _images(10, 9)
    feats = extract_features(enc, images, batch_size=3, device=torch.device("cpu"))
    assert enc.training and enc[1].training and not enc[2].training
    enc.eval()
    with torch.no_grad():
        expected = enc(images.float() / 255)
    assert feats.dtype == torch.float32 and feats.shape == (10, 6)
    torch.testing.assert_close(feats, expected, rtol=0, atol=1e-5)
    cl = extract_features(enc, images, batch_size=4, device=torch.device("cpu"), channels_last=True)
    torch.testing.assert_close(cl, expected, rtol=0, atol=1e-5)
    assert not enc.training  # an encoder that came in eval mode stays in eval mode


def test_extract_features_autocast_returns_float32() -> None:
    enc = _encoder()
    images = _images(6, 10)
    ref = extract_features(enc, images, batch_size=6, device=torch.device("cpu"))
    bf = extract_features(enc, images, batch_size=4, device=torch.device("cpu"), autocast_dtype=torch.bfloat16)
    assert bf.dtype == torch.float32
    torch.testing.assert_close(bf, ref, rtol=0.05, atol=0.05)


def test_extract_features_rejects_float_images() -> None:
    with pytest.raises(ValueError):
        extract_features(_encoder(), torch.zeros(2, 3, 8, 8), batch_size=2, device=torch.device("cpu"))


# ---------------------------------------------------------------- end to end


def _bright_dark(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 1 images are bright, class 0 dark: trivially separable pixels."""
    labels = torch.arange(n) % 2
    noise = torch.randint(0, 40, (n, 3, 4, 4), generator=_gen(seed))
    return (noise + 200 * labels[:, None, None, None]).to(torch.uint8), labels


def test_evaluate_encoder_knn_and_linear() -> None:
    train_x, train_y = _bright_dark(40, 11)
    test_x, test_y = _bright_dark(20, 12)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(48, 8))
    cfg = EvalConfig(knn_k=5, linear_epochs=5, linear_batch_size=16, linear_lr=0.5, batch_size=7)
    args = (encoder, train_x, train_y, test_x, test_y, 2, cfg, torch.device("cpu"), _gen(0))
    results = evaluate_encoder(*args, linear=True)
    assert [r.name for r in results] == ["knn_top1", "knn_top2", "linear_top1", "linear_top2"]
    assert results[0].value == 100.0 and results[2].value == 100.0
    assert "k=5" in results[0].protocol and "linear" in results[2].protocol
    assert [r.name for r in evaluate_encoder(*args, linear=False)] == ["knn_top1", "knn_top2"]
    assert encoder.training
