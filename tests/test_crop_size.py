"""augment.crop.size: the training resolution, in both pipelines, and the evaluation protocol that goes with it."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2 as v2
import torchvision.transforms.v2.functional as TF
from torch import nn

from core.augment import GaussianBlur, RandomResizedCrop, TwoViews, blur_kernel_size
from core.augment.center import center_view
from core.augment.pipeline import CPU_CHUNK_ELEMENTS, Compose, build_transform
from core.config import AugmentConfig, CropConfig
from core.evaluate import extract_features
from core.loaders import TorchvisionViews, TwoViewDataset
from core.trainer import Trainer
from tests.test_trainer import tiny_config


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _want(x: torch.Tensor, params: dict, i: int, size: int) -> torch.Tensor:
    top, left, h, w = (int(params[k][i]) for k in ("top", "left", "height", "width"))
    want = TF.resized_crop(x[i], top, left, h, w, [size, size], antialias=True)
    return TF.horizontal_flip(want) if params["flip"][i] else want


@pytest.mark.parametrize("size", [12, 20, 40])
def test_a_crop_to_another_size_equals_torchvisions_antialiased_resized_crop(size):
    # 20 from 20: the old path; 12 from 20 shrinks most crops (antialiasing matters); 40 enlarges them all
    x = torch.rand(48, 3, 20, 20, generator=gen(1))
    t = RandomResizedCrop(CropConfig(size=size))
    params = t.sample(x, gen(2))
    out = t.apply(x, params)
    assert out.shape == (48, 3, size, size)
    for i in range(len(x)):
        if size == 20:  # unchanged: at the input size crops only enlarge, with plain bilinear weights
            top, left, h, w = (int(params[k][i]) for k in ("top", "left", "height", "width"))
            want = TF.resized_crop(x[i], top, left, h, w, [20, 20], antialias=False)
            want = TF.horizontal_flip(want) if params["flip"][i] else want
        else:
            want = _want(x, params, i, size)
        torch.testing.assert_close(out[i], want, atol=2e-5, rtol=0)


def test_the_per_image_pipeline_and_the_batched_one_resample_a_crop_alike():
    # torchvision's own RandomResizedCrop(12) on 20 px images, its crop boxes replayed through ours
    cfg = CropConfig(size=12, flip=False)
    x = torch.rand(40, 3, 20, 20, generator=gen(3))
    tv = v2.RandomResizedCrop(12, scale=cfg.scale, ratio=cfg.ratio, antialias=True)
    boxes, outs = [], []
    torch.manual_seed(0)
    for img in x:
        p = tv.make_params([img])
        boxes.append(p)
        outs.append(tv.transform(img, p))
    params = {k: torch.tensor([float(p[k]) for p in boxes]) for k in ("top", "left", "height", "width")}
    params["flip"] = torch.zeros(len(x), dtype=torch.bool)
    ours = RandomResizedCrop(cfg).apply(x, params)
    torch.testing.assert_close(ours, torch.stack(outs), atol=2e-5, rtol=0)


def test_transformations_after_a_crop_draw_their_parameters_at_the_crop_size():
    cfg = AugmentConfig(ops=["crop", "noise", "cutout"], crop=CropConfig(size=10))
    chain = Compose([build_transform(n, cfg) for n in cfg.ops])
    x = torch.rand(700, 3, 24, 24, generator=gen(4))  # > CPU_CHUNK_ELEMENTS: the CPU path runs in slices
    assert x.numel() > CPU_CHUNK_ELEMENTS
    params = chain.sample(x, gen(5))
    assert params[1]["noise"].shape == (700, 3, 10, 10)
    assert params[2]["cy"].max() < 10 and params[2]["cx"].max() < 10
    out = chain.apply(x, params)
    assert out.shape == (700, 3, 10, 10)
    torch.testing.assert_close(out, chain._apply(x, params), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("ops", "mode"), [(["crop", "color"], "symmetric"), (["color", "blur"], "asymmetric"), (["color"], "symmetric")]
)
def test_both_pipelines_make_views_at_the_crop_size(ops, mode):
    cfg = AugmentConfig(ops=ops, mode=mode, crop=CropConfig(size=12))
    images = torch.randint(0, 256, (6, 3, 20, 20), dtype=torch.uint8, generator=gen(6))
    v1, v2_ = TwoViews(cfg)(images, gen(7))
    assert v1.shape == v2_.shape == (6, 3, 12, 12)
    t1, t2 = TwoViewDataset(images, cfg)[0]
    assert t1.shape == t2.shape == (3, 12, 12)


def test_views_without_a_random_crop_are_the_central_view_in_both_pipelines():
    cfg = AugmentConfig(ops=["sobel"], crop=CropConfig(size=12))  # sobel: deterministic
    images = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8, generator=gen(8))
    central = center_view(images.float() / 255, 12)
    v1, _ = TwoViews(cfg)(images, gen(9))
    torch.testing.assert_close(v1, TwoViews(AugmentConfig(ops=["sobel"]))(central, gen(9))[0], atol=0, rtol=0)
    torch.testing.assert_close(TorchvisionViews(cfg, 16)(images[0])[0], v1[0], atol=1e-6, rtol=0)


def test_the_per_image_blur_after_a_crop_has_the_crop_sizes_kernel():
    cfg = AugmentConfig(ops=["crop", "blur"], crop=CropConfig(size=40))
    blurs = [t for t in TorchvisionViews(cfg, 96).ops.transforms if isinstance(t, v2.RandomApply)]
    (blur,) = blurs[0].transforms
    assert list(blur.kernel_size) == [blur_kernel_size(40, cfg.blur.kernel_fraction)] * 2 == [5, 5]
    assert blur_kernel_size(96, cfg.blur.kernel_fraction) == 9  # what the stored size would have given
    assert isinstance(build_transform("blur", cfg), GaussianBlur)


# ---------------------------------------------------------------- evaluation


def test_the_central_view_is_a_centre_crop_of_87_5_percent_resized():
    x = torch.rand(2, 3, 256, 256, generator=gen(10))
    torch.testing.assert_close(center_view(x, 224), x[..., 16:240, 16:240], atol=0, rtol=0)  # no resampling
    y = torch.rand(2, 3, 16, 16, generator=gen(11))
    torch.testing.assert_close(center_view(y, 12), TF.resize(y[..., 1:15, 1:15], [12, 12], antialias=True))
    assert center_view(y, 16) is y and center_view(y, None) is y  # at the stored size: as stored (CIFAR)


class _Sizes(nn.Module):
    """An encoder that records the input sizes it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, int]] = []
        self.proj = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape[2:]))
        return self.proj(x.mean(dim=(2, 3)))


def test_features_are_computed_on_the_central_view():
    enc = _Sizes()
    images = torch.randint(0, 256, (10, 3, 16, 16), dtype=torch.uint8, generator=gen(12))
    feats = extract_features(enc, images, 4, torch.device("cpu"), size=12)
    assert set(enc.seen) == {(12, 12)}
    torch.testing.assert_close(feats, enc.proj(center_view(images.float() / 255, 12).mean(dim=(2, 3))))


def test_a_run_trains_and_evaluates_at_the_crop_size():
    config = tiny_config(**{"augment.crop.size": 12, "train.epochs": 1, "eval.linear_epochs": 2})
    trainer = Trainer(config, None)
    seen: list[tuple[int, int]] = []
    trainer.model.encoder.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[2:])))
    result = trainer.fit()
    assert set(seen) == {(12, 12)} and len(seen) > 4  # 4 training steps, then evaluation's batches
    assert {"knn_top1", "linear_top1"} <= set(result.metrics)
