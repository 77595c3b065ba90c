"""Each batched transformation does what it claims, checked image by image against torchvision."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.v2.functional as TF

from core.augment import (
    ColorDistortion,
    Cutout,
    GaussianBlur,
    GaussianNoise,
    RandomResizedCrop,
    Rotate,
    Sobel,
    TwoViews,
    blur_kernel_size,
    build_transform,
)
from core.config import (
    TRANSFORMS,
    AugmentConfig,
    BlurConfig,
    ColorConfig,
    CropConfig,
    CutoutConfig,
    NoiseConfig,
    RotateConfig,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def batch() -> torch.Tensor:
    return torch.rand(32, 3, 32, 32, generator=gen(123))


# Each transformation has a CPU path and an accelerator path (no data-dependent shapes, so no
# host-device sync); both are plain tensor code, so both are checked here, on CPU, image by image.
CROP_PATHS = {"cpu": "_apply_separable", "accelerator": "_apply_grid"}
COLOR_PATHS = {"cpu": "_apply_gathered", "accelerator": "_apply_masked"}


@pytest.mark.parametrize("path", sorted(CROP_PATHS))
def test_crop_equals_torchvision_resized_crop_and_flip(batch, path):
    t = RandomResizedCrop(CropConfig())
    params = t.sample(batch, gen())
    out = getattr(t, CROP_PATHS[path])(batch, params)
    for i in range(batch.shape[0]):
        top, left, h, w = (int(params[k][i]) for k in ("top", "left", "height", "width"))
        want = TF.resized_crop(batch[i], top, left, h, w, [32, 32], antialias=False)
        if params["flip"][i]:
            want = TF.horizontal_flip(want)
        torch.testing.assert_close(out[i], want, atol=1e-5, rtol=0)


def test_crop_changes_field_of_view():
    # a horizontal ramp: a crop of a fraction of the width shows only part of the ramp's range
    ramp = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(16, 3, 64, 64).contiguous()
    t = RandomResizedCrop(CropConfig(scale=(0.1, 0.3), flip=False))
    params = t.sample(ramp, gen())
    out = t.apply(ramp, params)
    seen = out[:, 0, 0, -1] - out[:, 0, 0, 0]
    expected = (params["width"] - 1) / 63  # the crop spans its first to last pixel centre
    torch.testing.assert_close(seen, expected, atol=1e-5, rtol=0)
    assert (seen < 0.9).all()


def test_crop_parameters_follow_the_inception_distribution():
    x = torch.zeros(20000, 1, 32, 32)
    params = RandomResizedCrop(CropConfig()).sample(x, gen(1))
    area = params["height"] * params["width"] / (32 * 32)
    ratio = params["width"] / params["height"]
    assert area.min() >= 0.06 and area.max() <= 1.0  # rounding to whole pixels widens 0.08 a little
    assert ratio.min() >= 0.6 and ratio.max() <= 1.6  # small crops round to whole pixels
    # torchvision's own sampler (rejection of crops that do not fit skews areas below U[0.08, 1]'s 0.54)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        tv = [T.RandomResizedCrop.get_params(torch.zeros(1, 32, 32), [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(5000)]
    tv_area = torch.tensor([h * w / 1024 for _, _, h, w in tv])
    tv_log_ratio = torch.tensor([math.log(w / h) for _, _, h, w in tv])
    assert area.mean().item() == pytest.approx(tv_area.mean().item(), abs=0.015)
    assert area.std().item() == pytest.approx(tv_area.std().item(), abs=0.015)
    assert ratio.log().mean().item() == pytest.approx(tv_log_ratio.mean().item(), abs=0.015)
    assert params["flip"].float().mean().item() == pytest.approx(0.5, abs=0.02)
    assert ((params["top"] + params["height"]) <= 32).all() and ((params["left"] + params["width"]) <= 32).all()


def test_crop_falls_back_to_centre_when_no_attempt_fits():
    # a ratio range far from the image's 1:1 with the whole area: every attempt is too wide or too tall
    t = RandomResizedCrop(CropConfig(scale=(1.0, 1.0), ratio=(3.0, 4.0), flip=False))
    params = t.sample(torch.zeros(4, 1, 30, 30), gen())
    assert params["width"].tolist() == [30.0] * 4
    assert params["height"].tolist() == [10.0] * 4  # round(30 / 3)
    assert params["top"].tolist() == [10.0] * 4


def _torchvision_color(img: torch.Tensor, params: dict[str, torch.Tensor], i: int) -> torch.Tensor:
    names = ["brightness", "contrast", "saturation", "hue"]
    fns = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    if params["jitter"][i]:
        for op in params["order"][i].tolist():
            img = fns[op](img, float(params[names[op]][i]))
    if params["grayscale"][i]:
        img = TF.rgb_to_grayscale(img, num_output_channels=3)
    return img


@pytest.mark.parametrize("path", sorted(COLOR_PATHS))
@pytest.mark.parametrize("strength", [0.25, 0.5, 1.0])
def test_color_distortion_equals_torchvision_per_image(batch, strength, path):
    t = ColorDistortion(ColorConfig(strength=strength))
    params = t.sample(batch, gen(strength.as_integer_ratio()[1]))
    out = getattr(t, COLOR_PATHS[path])(batch, params)
    for i in range(batch.shape[0]):
        torch.testing.assert_close(out[i], _torchvision_color(batch[i], params, i), atol=2e-5, rtol=0)


def test_color_factor_ranges_scale_with_strength():
    t = ColorDistortion(ColorConfig(strength=0.5))
    params = t.sample(torch.zeros(20000, 3, 2, 2), gen())
    for name in ("brightness", "contrast", "saturation"):
        assert params[name].min() >= 0.6 and params[name].max() <= 1.4
        assert params[name].mean().item() == pytest.approx(1.0, abs=0.01)
    assert params["hue"].abs().max() <= 0.1
    assert params["jitter"].float().mean().item() == pytest.approx(0.8, abs=0.015)
    assert params["grayscale"].float().mean().item() == pytest.approx(0.2, abs=0.015)
    # every one of the 24 orders of the four jitter operations occurs
    assert len({tuple(o) for o in params["order"].tolist()}) == 24


@pytest.mark.parametrize("path", sorted(COLOR_PATHS))
def test_color_strength_zero_is_identity(batch, path):
    t = ColorDistortion(ColorConfig(strength=0.0, jitter_p=1.0, grayscale_p=0.0))
    out = getattr(t, COLOR_PATHS[path])(batch, t.sample(batch, gen()))
    torch.testing.assert_close(out, batch, atol=2e-6, rtol=0)


@pytest.mark.parametrize("path", sorted(COLOR_PATHS))
def test_grayscale_makes_channels_equal(batch, path):
    t = ColorDistortion(ColorConfig(strength=1.0, grayscale_p=1.0))
    out = getattr(t, COLOR_PATHS[path])(batch, t.sample(batch, gen()))
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])


@pytest.mark.parametrize("path", sorted(COLOR_PATHS))
def test_color_on_single_channel_images_uses_brightness_and_contrast_only(path):
    x = torch.rand(8, 1, 16, 16, generator=gen())
    t = ColorDistortion(ColorConfig(strength=1.0, jitter_p=1.0, grayscale_p=1.0))
    params = t.sample(x, gen())
    out = getattr(t, COLOR_PATHS[path])(x, params)
    for i in range(8):
        want = x[i]
        for op in params["order"][i].tolist():  # saturation, hue and grayscale are identities on one channel
            if op == 0:
                want = TF.adjust_brightness(want, float(params["brightness"][i]))
            elif op == 1:
                want = TF.adjust_contrast(want, float(params["contrast"][i]))
        torch.testing.assert_close(out[i], want, atol=1e-6, rtol=0)


def test_rotation_angles(batch):
    t = Rotate(RotateConfig())
    params = t.sample(batch, gen())
    out = t.apply(batch, params)
    for i in range(batch.shape[0]):
        k = int(params["quarter_turns"][i])
        assert k in (1, 2, 3)
        assert torch.equal(out[i], torch.rot90(batch[i], k, dims=(1, 2)))
    many = t.sample(torch.zeros(6000, 1, 4, 4), gen(5))["quarter_turns"]
    for k in (1, 2, 3):
        assert (many == k).float().mean().item() == pytest.approx(1 / 3, abs=0.03)
    only_180 = Rotate(RotateConfig(angles=[180]))
    out = only_180.apply(batch, only_180.sample(batch, gen()))
    assert torch.equal(out, torch.flip(batch, dims=(2, 3)))


def _high_frequency_energy(x: torch.Tensor) -> float:
    return ((x[..., 1:, :] - x[..., :-1, :]) ** 2).mean().item() + ((x[..., :, 1:] - x[..., :, :-1]) ** 2).mean().item()


def test_blur_equals_torchvision_and_lowers_high_frequencies():
    x = torch.rand(16, 3, 64, 64, generator=gen(3))
    t = GaussianBlur(BlurConfig(p=0.5))
    params = t.sample(x, gen())
    out = t.apply(x, params)
    k = blur_kernel_size(64, 0.1)
    assert k == 7
    for i in range(x.shape[0]):
        if params["apply"][i]:
            want = TF.gaussian_blur(x[i], [k, k], [float(params["sigma"][i])] * 2)
            torch.testing.assert_close(out[i], want, atol=1e-5, rtol=0)
            energy, before = _high_frequency_energy(out[i]), _high_frequency_energy(x[i])
            assert energy <= before
            if params["sigma"][i] > 0.7:
                assert energy < 0.5 * before
        else:
            torch.testing.assert_close(out[i], x[i], atol=0, rtol=0)


def test_blur_kernel_size_follows_google_research():
    assert [blur_kernel_size(s, 0.1) for s in (32, 96, 224)] == [3, 9, 23]


def test_blur_rate_and_sigma_range():
    params = GaussianBlur(BlurConfig()).sample(torch.zeros(20000, 1, 2, 2), gen())
    assert params["apply"].float().mean().item() == pytest.approx(0.5, abs=0.015)
    assert params["sigma"].min() >= 0.1 and params["sigma"].max() <= 2.0


def test_cutout_zeroes_one_square():
    x = torch.ones(64, 3, 32, 32)
    t = Cutout(CutoutConfig(size_fraction=0.25))
    params = t.sample(x, gen())
    out = t.apply(x, params)
    zeros = (out[:, 0] == 0).float().sum(dim=(1, 2))
    inside = (params["cy"] >= 4) & (params["cy"] <= 27) & (params["cx"] >= 4) & (params["cx"] <= 27)
    assert (zeros[inside] == 64).all()  # an 8x8 hole when it fits entirely
    assert (zeros <= 64).all() and (zeros > 0).all()
    assert torch.equal(out[:, 0], out[:, 2])


def test_sobel_finds_edges_only_where_they_are():
    x = torch.zeros(2, 3, 16, 16)
    x[:, :, :, 8:] = 1.0  # a vertical edge between columns 7 and 8
    out = Sobel().apply(x, {})
    assert out.max().item() == pytest.approx(1.0)
    assert out[:, :, :, :6].abs().max() < 1e-5 and out[:, :, :, 10:].abs().max() < 1e-5
    assert (out[:, :, :, 7:9] > 0.5).all()
    flat = Sobel().apply(torch.full((1, 3, 8, 8), 0.3), {})
    assert flat.abs().max() < 1e-5


def test_noise_has_the_sampled_std():
    x = torch.full((4, 3, 64, 64), 0.5)
    t = GaussianNoise(NoiseConfig(std=(0.05, 0.1)))
    params = t.sample(x, gen())
    out = t.apply(x, params)
    measured = (out - x).flatten(1).std(dim=1)
    torch.testing.assert_close(measured, params["std"], atol=0.004, rtol=0)
    still = GaussianNoise(NoiseConfig(std=(0.0, 0.0)))
    assert torch.equal(still.apply(x, still.sample(x, gen())), x)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_every_transform_keeps_shape_range_and_reproduces_from_seed(batch, name):
    t = build_transform(name, AugmentConfig())
    a = t.apply(batch, t.sample(batch, gen(42)))
    b = t.apply(batch, t.sample(batch, gen(42)))
    assert a.shape == batch.shape and a.dtype == batch.dtype
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    if name != "sobel":  # the only deterministic transformation
        c = t.apply(batch, t.sample(batch, gen(43)))
        assert not torch.equal(a, c)


def test_unknown_transform_is_rejected():
    with pytest.raises(ValueError, match="unknown transformation"):
        build_transform("solarize", AugmentConfig())


def test_two_views_are_independent_and_reproducible():
    images = (torch.rand(16, 3, 32, 32, generator=gen()) * 255).to(torch.uint8)
    views = TwoViews(AugmentConfig(ops=["crop", "color"]))
    v1, v2 = views(images, gen(9))
    w1, w2 = views(images, gen(9))
    assert torch.equal(v1, w1) and torch.equal(v2, w2)
    assert not torch.equal(v1, v2)
    assert v1.dtype == torch.float32 and 0 <= v1.min() and v1.max() <= 1


def test_asymmetric_views_share_the_crop_and_leave_branch_two_as_identity():
    images = (torch.rand(16, 3, 32, 32, generator=gen()) * 255).to(torch.uint8)
    identity_pair = TwoViews(AugmentConfig(ops=[], mode="asymmetric"))
    v1, v2 = identity_pair(images, gen(1))
    assert torch.equal(v1, v2)  # no targeted transformation: both branches are the same crop
    colored = TwoViews(AugmentConfig(ops=["color"], mode="asymmetric", color=ColorConfig(strength=1.0, jitter_p=1.0)))
    c1, c2 = colored(images, gen(1))
    assert torch.equal(c2, v2)  # same generator state -> same shared crop; branch 2 untouched
    assert not torch.equal(c1, c2)


def test_ops_apply_in_the_given_order():
    images = (torch.rand(8, 3, 32, 32, generator=gen()) * 255).to(torch.uint8)
    # sobel then grayscale-free colour differs from colour then sobel
    a, _ = TwoViews(AugmentConfig(ops=["sobel", "noise"]))(images, gen(2))
    b, _ = TwoViews(AugmentConfig(ops=["noise", "sobel"]))(images, gen(2))
    assert not torch.allclose(a, b)
    assert torch.equal(b[:, 0], b[:, 1])  # sobel last: every channel the same edge map
    assert math.isfinite(a.sum().item())


@pytest.mark.parametrize("mode", ["asymmetric", "symmetric"])
def test_a_shard_gets_the_views_the_whole_batch_gives_its_images(mode):
    # data-parallel ranks augment only their slice, with the parameters of the single-process batch
    cfg = AugmentConfig(ops=["crop", "color", "blur", "noise"], mode=mode)
    images = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8)
    views = TwoViews(cfg)
    whole = views(images, torch.Generator().manual_seed(5))
    for part in (slice(0, 4), slice(4, 8), slice(8, 12)):
        shard = views(images, torch.Generator().manual_seed(5), part=part)
        for w, s in zip(whole, shard):
            torch.testing.assert_close(s, w[part], rtol=0, atol=1e-6)
