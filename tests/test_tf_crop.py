"""The TF crop sampler (``augment.crop.sampler: tf``) and bicubic resampling
(``augment.crop.interpolation: bicubic``), against independent references.

The sampler is checked against a line-by-line scalar transcription of TensorFlow's
``GenerateRandomCrop`` and its caller (tensorflow/core/kernels/image/
sample_distorted_bounding_box_op.cc) fed the same uniform draws; the resampling against
``F.interpolate(mode="bicubic", antialias=True)`` of the cropped image, and against the per-image
torchvision loader on the same box."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from core.augment.transforms import TF_ATTEMPTS, RandomResizedCrop, tf_crop_box
from core.config import AugmentConfig, CropConfig


def _lrint(v: float) -> int:
    """C's lrintf under the default rounding mode: to nearest, ties to even (Python's round)."""
    return int(round(v))


def _tf_reference(height: int, width: int, area: tuple[float, float], ratio: tuple[float, float],
                  draws: list[tuple[float, float]], offsets: tuple[float, float]) -> tuple[int, int, int, int]:
    """One image's (top, left, h, w), written as the C++ reads: an attempt loop, early exits."""
    min_area, max_area = area[0] * width * height, area[1] * width * height
    for u_ratio, u_height in draws:
        ar = u_ratio * (ratio[1] - ratio[0]) + ratio[0]
        h = _lrint(math.sqrt(min_area / ar))
        max_h = _lrint(math.sqrt(max_area / ar))
        if _lrint(max_h * ar) > width:
            max_h = int((width + 0.5 - 0.0000001) / ar)
            if _lrint(max_h * ar) > width:
                max_h -= 1
        if max_h > height:
            max_h = height
        if h >= max_h:
            h = max_h
        if h < max_h:
            h += int(u_height * (max_h - h + 1))  # Uniform(n): an integer in [0, n)
        w = _lrint(h * ar)
        a = w * h
        if a < min_area:
            h += 1
            w = _lrint(h * ar)
            a = w * h
        if a > max_area:
            h -= 1
            w = _lrint(h * ar)
            a = w * h
        if a < min_area or a > max_area or w > width or h > height or w <= 0 or h <= 0:
            continue
        if a < 1 or a / (width * height) < 0.1:  # SatisfiesOverlapConstraints with the whole image
            continue
        top = int(offsets[0] * (height - h)) if h < height else 0
        left = int(offsets[1] * (width - w)) if w < width else 0
        return top, left, h, w
    return 0, 0, height, width


@pytest.mark.parametrize("height,width,area,ratio", [
    (32, 32, (0.08, 1.0), (3 / 4, 4 / 3)),
    (24, 40, (0.08, 1.0), (0.45, 0.8)),      # SimCLR scales the ratio range by the image's w/h
    (32, 32, (0.5, 0.6), (0.3, 3.0)),        # narrow areas, wide ratios: many attempts fail
    (7, 9, (0.08, 1.0), (3 / 4, 4 / 3)),
])
def test_tf_crop_box_equals_the_scalar_transcription_of_tensorflow(height, width, area, ratio):
    gen = torch.Generator().manual_seed(height * width)
    b = 400
    draws = torch.rand((b, TF_ATTEMPTS, 2), generator=gen, dtype=torch.float64)
    offsets = torch.rand((b, 2), generator=gen, dtype=torch.float64)
    top, left, h, w = tf_crop_box(height, width, area, ratio, draws, offsets)
    got = list(zip(top.tolist(), left.tolist(), h.tolist(), w.tolist()))
    want = [_tf_reference(height, width, area, ratio, draws[i].tolist(), tuple(offsets[i].tolist())) for i in range(b)]
    assert got == [tuple(float(v) for v in box) for box in want]


def test_tf_crops_are_smaller_than_torchvisions_and_cover_a_tenth():
    """By simulation at 32x32, default area and ratio ranges: mean area 0.43 against 0.49."""
    like = torch.empty(()).expand(100_000, 3, 32, 32)
    gen = torch.Generator().manual_seed(0)
    tf = RandomResizedCrop(CropConfig(sampler="tf")).sample(like, gen)
    tv = RandomResizedCrop(CropConfig()).sample(like, gen)
    tf_area = tf["height"] * tf["width"] / 1024
    tv_area = tv["height"] * tv["width"] / 1024
    assert tf_area.min() >= 0.1 and tf_area.max() <= 1.0
    assert 0.42 < tf_area.mean() < 0.44 and 0.48 < tv_area.mean() < 0.50
    assert ((tf["top"] + tf["height"]) <= 32).all() and ((tf["left"] + tf["width"]) <= 32).all()


def _crop_reference(x: torch.Tensor, box: tuple[int, int, int, int], out: int, flip: bool) -> torch.Tensor:
    top, left, h, w = box
    y = F.interpolate(x[None, :, top:top + h, left:left + w], size=(out, out), mode="bicubic",
                      align_corners=False, antialias=True)[0].clamp(0, 1)
    return y.flip(-1) if flip else y


@pytest.mark.parametrize("size", [None, 24, 40])
def test_bicubic_crop_equals_interpolate_of_the_cropped_image(size):
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(16, 3, 32, 32, generator=gen)
    crop = RandomResizedCrop(CropConfig(sampler="tf", interpolation="bicubic", size=size))
    params = crop.sample(x, gen)
    out = crop.apply(x, params)
    side = size or 32
    assert out.shape == (16, 3, side, side) and out.min() >= 0 and out.max() <= 1
    for i in range(16):
        box = tuple(int(params[k][i]) for k in ("top", "left", "height", "width"))
        torch.testing.assert_close(out[i], _crop_reference(x[i], box, side, bool(params["flip"][i])), rtol=0, atol=2e-5)


def test_bicubic_differs_from_bilinear_and_the_default_is_unchanged():
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(8, 3, 32, 32, generator=gen)
    params = RandomResizedCrop(CropConfig()).sample(x, torch.Generator().manual_seed(9))
    bilinear = RandomResizedCrop(CropConfig()).apply(x, params)
    bicubic = RandomResizedCrop(CropConfig(interpolation="bicubic")).apply(x, params)
    assert (bilinear - bicubic).abs().max() > 1e-2
    i = 0
    top, left, h, w = (int(params[k][i]) for k in ("top", "left", "height", "width"))
    ref = F.interpolate(x[i:i + 1, :, top:top + h, left:left + w], size=(32, 32), mode="bilinear",
                        align_corners=False)[0]
    torch.testing.assert_close(bilinear[i], ref.flip(-1) if params["flip"][i] else ref, rtol=0, atol=2e-5)


def test_torchvision_loader_follows_the_sampler_and_interpolation():
    """The per-image loader's crop for the tf sampler and bicubic: same box, same pixels as the
    batched crop (both torch's antialiased bicubic), and the box distribution of tf_crop_box."""
    from core.loaders import torchvision_op

    cfg = AugmentConfig(crop=CropConfig(sampler="tf", interpolation="bicubic", flip=False))
    ops = torchvision_op("crop", cfg, 32)
    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(11)
    got = ops[1](ops[0](x))  # crop, then the clamp
    torch.manual_seed(11)
    draws, offsets = torch.rand((1, TF_ATTEMPTS, 2), dtype=torch.float64), torch.rand((1, 2), dtype=torch.float64)
    box = tuple(int(v) for v in tf_crop_box(32, 32, cfg.crop.scale, cfg.crop.ratio, draws, offsets))
    batched = RandomResizedCrop(cfg.crop).apply(
        x[None], {"top": torch.tensor([box[0]]), "left": torch.tensor([box[1]]), "height": torch.tensor([box[2]]),
                  "width": torch.tensor([box[3]]), "flip": torch.tensor([False])})[0]
    torch.testing.assert_close(got, batched, rtol=0, atol=2e-5)
    torch.testing.assert_close(got, _crop_reference(x, box, 32, False), rtol=0, atol=2e-5)
    plain = torchvision_op("crop", AugmentConfig(crop=CropConfig(interpolation="bicubic")), 32)[0]
    assert plain.interpolation == TF.InterpolationMode.BICUBIC
