"""The two ``train.loader`` backends draw their augmentation parameters from the same distributions.

The batched transformations (core.augment) expose their per-image parameters through ``sample``; the
per-image torchvision v2 pipeline (core.loaders) is run image by image with every transform's
``make_params`` recorded. Continuous parameters are compared with a two-sample Kolmogorov-Smirnov
test and rates with a two-proportion z-test, both at a false-alarm rate far below 1e-3, so the tests
fail only when the distributions differ beyond sampling error.
"""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
import torch
import torchvision.transforms.v2 as v2

from core.augment import ColorDistortion, GaussianBlur, RandomResizedCrop
from core.config import AugmentConfig, RunConfig
from core.loaders import TorchvisionLoader, TorchvisionViews, TwoViewDataset

N_BATCHED = 20000
N_PER_IMAGE = 3000
SIZE = 32


def ks_statistic(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |F_a - F_b| over the pooled sample."""
    a, b = a.double().sort().values, b.double().sort().values
    grid = torch.cat([a, b])
    fa = torch.searchsorted(a, grid, right=True).double() / a.numel()
    fb = torch.searchsorted(b, grid, right=True).double() / b.numel()
    return (fa - fb).abs().max().item()


def assert_same_distribution(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    n, m = a.numel(), b.numel()
    critical = 1.95 * math.sqrt((n + m) / (n * m))  # KS at alpha = 0.001 (conservative for discrete data)
    d = ks_statistic(a, b)
    assert d < critical, f"{what}: KS distance {d:.4f} >= {critical:.4f} (batched n={n}, torchvision n={m})"


def assert_same_rate(k1: int, n1: int, k2: int, n2: int, what: str) -> None:
    p = (k1 + k2) / (n1 + n2)
    se = math.sqrt(max(p * (1 - p), 1e-12) * (1 / n1 + 1 / n2))
    z = abs(k1 / n1 - k2 / n2) / se
    assert z < 4.0, f"{what}: batched {k1 / n1:.4f} vs torchvision {k2 / n2:.4f} (z = {z:.1f})"


class Recorded:
    """Runs a TorchvisionViews pipeline on many images, recording every make_params call."""

    def __init__(self, cfg: AugmentConfig, n: int, seed: int = 0) -> None:
        self.calls: dict[str, list[dict]] = defaultdict(list)
        views = TorchvisionViews(cfg, SIZE)
        for t in views.ops.transforms:
            inner = t.transforms if isinstance(t, v2.RandomApply) else [t]
            for op in inner:
                op.make_params = self._recorder(type(op).__name__, op.make_params)
        images = torch.rand(64, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for i in range(n):
                views.ops(images[i % 64])
        self.n = n

    def _recorder(self, name, make_params):  # type: ignore[no-untyped-def]
        def wrapped(flat_inputs):  # type: ignore[no-untyped-def]
            params = make_params(flat_inputs)
            self.calls[name].append(params)
            return params

        return wrapped

    def values(self, name: str, key: str) -> torch.Tensor:
        return torch.tensor(
            [float(p[key][0] if isinstance(p[key], (list, tuple)) else p[key]) for p in self.calls[name]]
        )


@pytest.fixture(scope="module")
def cfg() -> AugmentConfig:
    return AugmentConfig(ops=["crop", "color", "blur"], color={"strength": 1.0})


@pytest.fixture(scope="module")
def torchvision_params(cfg) -> Recorded:
    return Recorded(cfg, N_PER_IMAGE)


def batched(transform, seed: int = 1) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    return transform.sample(torch.zeros(N_BATCHED, 3, SIZE, SIZE), torch.Generator().manual_seed(seed))


def test_crop_area_aspect_ratio_and_flip_rate(cfg, torchvision_params):
    p = batched(RandomResizedCrop(cfg.crop))
    tv = torchvision_params
    crops = tv.calls["RandomResizedCrop"]
    assert len(crops) == tv.n
    tv_h = torch.tensor([float(c["height"]) for c in crops])
    tv_w = torch.tensor([float(c["width"]) for c in crops])
    assert_same_distribution(p["height"] * p["width"] / SIZE**2, tv_h * tv_w / SIZE**2, "crop area fraction")
    assert_same_distribution((p["width"] / p["height"]).log(), (tv_w / tv_h).log(), "crop log aspect ratio")
    tv_top = torch.tensor([float(c["top"]) for c in crops])
    assert_same_distribution(p["top"] / (SIZE - p["height"] + 1), tv_top / (SIZE - tv_h + 1), "crop relative position")
    flips = len(tv.calls["RandomHorizontalFlip"])
    assert_same_rate(int(p["flip"].sum()), N_BATCHED, flips, tv.n, "flip rate")


def test_color_jitter_factors_rates_and_order(cfg, torchvision_params):
    p = batched(ColorDistortion(cfg.color))
    tv = torchvision_params
    jittered = len(tv.calls["ColorJitter"])
    assert_same_rate(int(p["jitter"].sum()), N_BATCHED, jittered, tv.n, "jitter rate")
    for name in ("brightness", "contrast", "saturation", "hue"):
        assert_same_distribution(p[name], tv.values("ColorJitter", f"{name}_factor"), f"{name} factor")
    # the order of the four adjustments: which one comes first is uniform in both
    tv_first = torch.tensor([int(c["fn_idx"][0]) for c in tv.calls["ColorJitter"]])
    for op in range(4):
        assert_same_rate(
            int((p["order"][:, 0] == op).sum()), N_BATCHED, int((tv_first == op).sum()), jittered, f"op {op} first"
        )
    grays = len(tv.calls["RandomGrayscale"])
    assert_same_rate(int(p["grayscale"].sum()), N_BATCHED, grays, tv.n, "grayscale rate")


def test_blur_rate_and_sigma(cfg, torchvision_params):
    p = batched(GaussianBlur(cfg.blur))
    tv = torchvision_params
    blurred = len(tv.calls["GaussianBlur"])
    assert_same_rate(int(p["apply"].sum()), N_BATCHED, blurred, tv.n, "blur rate")
    assert_same_distribution(p["sigma"], tv.values("GaussianBlur", "sigma"), "blur sigma")


def test_the_test_detects_a_different_distribution(cfg):
    # guard against a vacuous test: a narrower crop scale must fail the area comparison
    other = AugmentConfig(ops=["crop"], crop={"scale": (0.2, 1.0)})
    tv = Recorded(other, 1500)
    p = batched(RandomResizedCrop(cfg.crop))
    tv_area = torch.tensor([float(c["height"] * c["width"]) / SIZE**2 for c in tv.calls["RandomResizedCrop"]])
    with pytest.raises(AssertionError):
        assert_same_distribution(p["height"] * p["width"] / SIZE**2, tv_area, "crop area")


def test_torchvision_views_keep_shape_range_and_modes():
    images = torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8)
    for mode in ("symmetric", "asymmetric"):
        views = TorchvisionViews(
            AugmentConfig(ops=["crop", "color", "cutout", "noise", "rotate", "blur", "sobel"], mode=mode), SIZE
        )
        v1, v2_ = views(images)
        for v in (v1, v2_):
            assert v.shape == (3, SIZE, SIZE) and v.dtype == torch.float32
            assert v.min() >= 0 and v.max() <= 1


def test_dataset_items_are_seeded_by_index_and_epoch():
    images = torch.randint(0, 256, (8, 3, SIZE, SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ds = TwoViewDataset(images, AugmentConfig(), seed=3)
    a = ds[5]
    torch.rand(10)  # the global RNG state does not matter
    b = ds[5]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], a[1])
    ds.epoch = 1
    assert not torch.equal(ds[5][0], a[0])


@pytest.mark.slow
def test_loader_batches_do_not_depend_on_the_worker_count():
    images = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    cfg = AugmentConfig()
    runs = []
    for workers in (0, 2):
        loader = TorchvisionLoader(images, cfg, batch_size=16, device=torch.device("cpu"), seed=7, num_workers=workers)
        runs.append(list(loader.epoch(2)))
    assert len(runs[0]) == 4
    for (a1, a2), (b1, b2) in zip(*runs):
        assert torch.equal(a1, b1) and torch.equal(a2, b2)


@pytest.mark.slow
def test_trainer_runs_with_the_torchvision_loader(tmp_path):
    from core.trainer import Trainer

    config = RunConfig.model_validate(
        {
            "data": {
                "source": "synthetic",
                "synthetic": {"num_classes": 4, "train_size": 128, "test_size": 64, "image_size": 16},
            },
            "model": {"encoder": "resnet_small", "width": 8, "head_dim": 32},
            "optim": {"name": "adam", "lr": 1e-3, "lr_scaling": "none", "warmup_epochs": 0},
            "train": {
                "epochs": 2,
                "batch_size": 32,
                "seed": 1,
                "progress": False,
                "loader": "torchvision",
                "loader_workers": 1,
            },
            "eval": {"knn_k": 5, "linear": False, "batch_size": 64},
        }
    )
    result = Trainer(config, tmp_path).fit()
    assert len(result.history) == 2 and all(math.isfinite(h["loss"]) for h in result.history)
    # resuming the finished run with another worker count is allowed (the views do not depend on it)
    resumed = Trainer(
        config.model_copy(update={"train": config.train.model_copy(update={"loader_workers": 0})}), tmp_path
    )
    assert resumed.try_resume() and resumed.start_epoch == 2
