"""Evaluation in bounded memory: kNN over the bank in blocks, features read from a memory map batch by
batch; the results equal the unchunked computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.config import EvalConfig
from core.data import MappedImages
from core.evaluate import _knn_scores, _nearest, evaluate_encoder, extract_features, knn_accuracy


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _features(n: int, d: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy points around one centre per class (the same centres for every seed)."""
    labels = torch.arange(n) % classes
    centres = torch.randn(classes, d, generator=gen(100))
    return centres[labels] + 0.8 * torch.randn(n, d, generator=gen(seed)), labels


@pytest.mark.parametrize("block", [1, 7, 64, 299])
def test_the_nearest_bank_rows_in_blocks_are_the_nearest_rows_of_the_whole_bank(block):
    bank, _ = _features(300, 16, 5, 0)
    queries = F.normalize(torch.randn(40, 16, generator=gen(2)), dim=1)
    sims, idx = _nearest(queries, bank, 20, block)
    want_sims, want_idx = (queries @ F.normalize(bank, dim=1).T).topk(20, dim=1)
    torch.testing.assert_close(sims, want_sims, atol=1e-6, rtol=0)
    assert torch.equal(idx, want_idx)  # random features: no ties


def test_knn_in_query_chunks_and_bank_blocks_equals_knn_over_the_whole_bank():
    bank, bank_y = _features(500, 24, 6, 3)
    test, test_y = _features(130, 24, 6, 5)
    whole = knn_accuracy(bank, bank_y, test, test_y, 6, k=50, temperature=0.1, chunk=1000, bank_block=1000)
    blocked = knn_accuracy(bank, bank_y, test, test_y, 6, k=50, temperature=0.1, chunk=17, bank_block=60)
    assert [a.value for a in blocked] == [a.value for a in whole] and 40 < whole[0].value < 100
    assert [a.protocol for a in blocked] == [a.protocol for a in whole]
    q = F.normalize(test, dim=1)
    blocks, whole_bank = (_knn_scores(q, bank, bank_y, 6, 50, 0.1, block=b) for b in (60, 500))
    torch.testing.assert_close(blocks, whole_bank)


class _Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _mapped(tmp_path, images: torch.Tensor, name: str) -> MappedImages:
    path = tmp_path / f"{name}.npy"
    np.save(path, images.numpy())
    return MappedImages([torch.from_numpy(np.load(path, mmap_mode="c"))])


def test_features_read_from_a_map_in_batches_equal_those_of_the_tensor(tmp_path):
    images = torch.randint(0, 256, (45, 3, 10, 10), dtype=torch.uint8, generator=gen(6))
    enc = _Encoder()
    want = extract_features(enc, images, 64, torch.device("cpu"))
    mapped = _mapped(tmp_path, images, "x")
    for view, rows in ((mapped, images), (mapped.select(torch.arange(3, 40, 2)), images[3:40:2])):
        got = extract_features(enc, view, 8, torch.device("cpu"))  # 8 < N: several batches from the map
        torch.testing.assert_close(got, extract_features(enc, rows, 64, torch.device("cpu")), atol=1e-6, rtol=0)
    assert extract_features(enc, mapped, 8, torch.device("cpu")).shape == want.shape == (45, 8)


def test_evaluation_of_memory_mapped_splits_equals_that_of_tensors(tmp_path):
    g = gen(7)
    train_y, test_y = torch.arange(60) % 3, torch.arange(30) % 3
    train_x = (train_y.view(-1, 1, 1, 1) * 80 + torch.randint(0, 60, (60, 3, 8, 8), generator=g)).to(torch.uint8)
    test_x = (test_y.view(-1, 1, 1, 1) * 80 + torch.randint(0, 60, (30, 3, 8, 8), generator=g)).to(torch.uint8)
    cfg = EvalConfig(knn_k=10, linear_epochs=5, linear_batch_size=16, batch_size=16)

    def run(train_images, test_images):
        return evaluate_encoder(_Encoder(), train_images, train_y, test_images, test_y, 3, cfg, torch.device("cpu"),
                                gen(1), linear=True)

    tensors = run(train_x, test_x)
    maps = run(_mapped(tmp_path, train_x, "train"), _mapped(tmp_path, test_x, "test"))
    assert [(a.name, a.value) for a in maps] == [(a.name, a.value) for a in tensors]
    assert tensors[0].value > 50
