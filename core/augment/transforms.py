"""The seven transformations of the paper's Figure 5, batched with per-sample random parameters.

Each transformation splits into ``sample`` (draw the parameters of every image from a
``torch.Generator`` on the batch's device) and ``apply`` (transform the batch with them), so the
parameters can be inspected and compared with the per-image torchvision pipeline. Images are float
tensors in [0, 1] of shape (B, C, H, W) on any device; nothing loops over images in Python.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F

from core.augment import color as colorops
from core.config import BlurConfig, ColorConfig, CropConfig, CutoutConfig, NoiseConfig, RotateConfig

Params = dict[str, torch.Tensor]


class Transform(Protocol):
    """One transformation: draw per-image parameters, then apply them to the batch."""

    name: str

    def sample(self, x: torch.Tensor, generator: torch.Generator) -> Params: ...

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor: ...


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def _bernoulli(n: int, p: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) < p


class RandomResizedCrop:
    """Inception crop, resized to ``crop.size`` (default: back to the input size), then a horizontal
    flip with p = 0.5 when enabled.

    The box (``crop.sampler``): ``torchvision`` draws the area fraction uniformly and the aspect
    ratio log-uniformly, 10 tries, then a centre crop (``v2.RandomResizedCrop``); ``tf`` follows
    TensorFlow's ``sample_distorted_bounding_box`` as google-research/simclr calls it
    (``tf_crop_box``).

    Resampling (``crop.interpolation``): bilinear at the input size, where a crop is only ever
    enlarged, is one ``grid_sample`` (accelerators) or two batched matrix products (CPU). To another
    size a crop may shrink, so it is resampled with torchvision's antialiased filter
    (``antialias=True``, what the per-image loader uses), as two batched matrix products on every
    device; bicubic always takes that route (torch's antialiased bicubic, Keys a = -0.5, clamped to
    [0, 1] as google-research/simclr clips its views)."""

    name = "crop"
    attempts = 10

    def __init__(self, cfg: CropConfig) -> None:
        self.cfg = cfg

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the crops of an input of (height, width)."""
        return (height, width) if self.cfg.size is None else (self.cfg.size, self.cfg.size)

    def sample(self, x: torch.Tensor, generator: torch.Generator) -> Params:
        b, _, height, width = x.shape
        dev = x.device
        if self.cfg.sampler == "tf":
            draws = torch.rand((b, TF_ATTEMPTS, 2), generator=generator, device=dev, dtype=torch.float64)
            offsets = torch.rand((b, 2), generator=generator, device=dev, dtype=torch.float64)
            top, left, h, w = tf_crop_box(height, width, self.cfg.scale, self.cfg.ratio, draws, offsets)
            return {"top": top, "left": left, "height": h, "width": w, "flip": self._flip(b, generator, dev)}
        area = height * width
        shape = (b, self.attempts)
        scale = self.cfg.scale[0] + (self.cfg.scale[1] - self.cfg.scale[0]) * torch.rand(
            shape, generator=generator, device=dev
        )
        log_lo, log_hi = math.log(self.cfg.ratio[0]), math.log(self.cfg.ratio[1])
        ratio = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(shape, generator=generator, device=dev))
        w = torch.round(torch.sqrt(area * scale * ratio))
        h = torch.round(torch.sqrt(area * scale / ratio))
        ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = torch.argmax(ok.int(), dim=1, keepdim=True)
        w = w.gather(1, first).squeeze(1)
        h = h.gather(1, first).squeeze(1)
        fallback_h, fallback_w = self._fallback(height, width)
        any_ok = ok.any(dim=1)
        h = torch.where(any_ok, h, torch.full_like(h, fallback_h))
        w = torch.where(any_ok, w, torch.full_like(w, fallback_w))
        top = torch.floor(torch.rand(b, generator=generator, device=dev) * (height - h + 1))
        left = torch.floor(torch.rand(b, generator=generator, device=dev) * (width - w + 1))
        top = torch.where(any_ok, top, torch.floor((height - h) / 2))
        left = torch.where(any_ok, left, torch.floor((width - w) / 2))
        return {"top": top, "left": left, "height": h, "width": w, "flip": self._flip(b, generator, dev)}

    def _flip(self, b: int, generator: torch.Generator, dev: torch.device) -> torch.Tensor:
        return _bernoulli(b, 0.5, generator, dev) if self.cfg.flip else torch.zeros(b, dtype=torch.bool, device=dev)

    def _fallback(self, height: int, width: int) -> tuple[float, float]:
        in_ratio = width / height
        lo, hi = self.cfg.ratio
        if in_ratio < lo:
            return float(round(width / lo)), float(width)
        if in_ratio > hi:
            return float(height), float(round(height * hi))
        return float(height), float(width)

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        out = self.output_size(x.shape[2], x.shape[3])
        if self.cfg.interpolation == "bicubic":
            return self._apply_resampled(x, params, out, "bicubic").clamp_(0, 1)
        if out != tuple(x.shape[2:]):
            return self._apply_resampled(x, params, out, "bilinear")
        if x.device.type == "cpu":
            return self._apply_separable(x, params)
        return self._apply_grid(x, params)

    def _apply_resampled(self, x: torch.Tensor, params: Params, out: tuple[int, int], kernel: str) -> torch.Tensor:
        """Crop + antialiased resize to ``out`` as out = Ry @ x @ Rx^T, with per-sample filter
        matrices equal to ``F.interpolate(mode=kernel, antialias=True)``'s weights."""
        b, c, height, width = x.shape
        rx = _filter_matrix(params["left"], params["width"], width, out[1], x.dtype, kernel)
        rx = torch.where(params["flip"].view(-1, 1, 1), rx.flip(1), rx)
        ry = _filter_matrix(params["top"], params["height"], height, out[0], x.dtype, kernel)
        cols = torch.bmm(x.reshape(b, c * height, width), rx.transpose(1, 2))
        return torch.matmul(ry.unsqueeze(1), cols.view(b, c, height, out[1]))

    def _apply_separable(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """Crop + bilinear resize as two batched matrix products, out = Ry @ x @ Rx^T, with per-sample
        interpolation matrices holding the weights ``F.interpolate(mode="bilinear",
        align_corners=False)`` gives the crop (the flip reverses Rx's rows). Several times faster
        than ``grid_sample`` on CPU, where it runs on BLAS."""
        b, c, height, width = x.shape
        rx = _interpolation_matrix(params["left"], params["width"], width, x.dtype)
        rx = torch.where(params["flip"].view(-1, 1, 1), rx.flip(1), rx)
        ry = _interpolation_matrix(params["top"], params["height"], height, x.dtype)
        cols = torch.bmm(x.reshape(b, c * height, width), rx.transpose(1, 2))
        return torch.matmul(ry.unsqueeze(1), cols.view(b, c, height, width))

    def _apply_grid(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        b, _, height, width = x.shape
        sx = params["width"] / width
        sy = params["height"] / height
        cx = (2 * params["left"] + params["width"]) / width - 1
        cy = (2 * params["top"] + params["height"]) / height - 1
        sx = torch.where(params["flip"], -sx, sx)
        zero = torch.zeros_like(sx)
        theta = torch.stack([torch.stack([sx, zero, cx], 1), torch.stack([zero, sy, cy], 1)], 1).to(x.dtype)
        grid = F.affine_grid(theta, [b, x.shape[1], height, width], align_corners=False)
        # Clamp to the crop's outermost pixel centres, as resizing the cropped image would: at the
        # crop border an upsampling resize repeats the edge pixel rather than reading its neighbour.
        gx = grid[..., 0].clamp(
            min=_centre(params["left"], width), max=_centre(params["left"] + params["width"] - 1, width)
        )
        gy = grid[..., 1].clamp(
            min=_centre(params["top"], height), max=_centre(params["top"] + params["height"] - 1, height)
        )
        grid = torch.stack([gx, gy], dim=-1)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _interpolation_matrix(start: torch.Tensor, length: torch.Tensor, size: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, size, size): row i holds the bilinear weights of output sample i over the input samples
    when the crop [start, start + length) is resized to ``size``, as ``F.interpolate`` computes them."""
    dst = torch.arange(size, device=start.device, dtype=dtype)
    n = length.to(dtype).view(-1, 1)
    src = ((dst + 0.5) * (n / size) - 0.5).clamp_(min=0)
    i0 = src.floor()
    lam = src - i0
    i1 = torch.minimum(i0 + 1, n - 1)
    begin = start.to(dtype).view(-1, 1)
    m = torch.zeros(start.shape[0], size, size, device=start.device, dtype=dtype)
    m.scatter_add_(2, (begin + i0).long().unsqueeze(2), (1 - lam).unsqueeze(2))
    m.scatter_add_(2, (begin + i1).long().unsqueeze(2), lam.unsqueeze(2))
    return m


def _filter_matrix(
    start: torch.Tensor, length: torch.Tensor, size: int, out: int, dtype: torch.dtype, kernel: str = "bilinear"
) -> torch.Tensor:
    """(B, out, size): row i holds the weights of output sample i over the ``size`` input samples when
    the crop [start, start + length) is resized to ``out`` with the antialiased filter of
    ``F.interpolate(mode=kernel, antialias=True)`` (and PIL): the triangle (bilinear) or Keys' cubic
    with a = -0.5 (bicubic), its support widened by the shrink factor, the weights normalised over
    the taps that fall inside the crop."""
    n = length.to(dtype).view(-1, 1, 1)
    scale = n / out
    stretch = torch.clamp(scale, min=1.0)  # the filter is widened by the shrink factor, never narrowed
    centre = scale * (torch.arange(out, device=start.device, dtype=dtype).view(1, -1, 1) + 0.5)
    rel = torch.arange(size, device=start.device, dtype=dtype).view(1, 1, -1) - start.to(dtype).view(-1, 1, 1)
    t = ((rel - centre + 0.5) / stretch).abs()
    weights = _cubic(t) if kernel == "bicubic" else (1 - t).clamp_(min=0)
    weights = weights * ((rel >= 0) & (rel < n)).to(dtype)
    return weights / weights.sum(dim=2, keepdim=True)


def _cubic(t: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys' cubic convolution kernel at |x| = t (PIL's and torch's antialiased bicubic use a = -0.5)."""
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = (((t - 5) * t + 8) * t - 4) * a
    return torch.where(t < 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


TF_ATTEMPTS = 100
"""Tries of ``tf_crop_box`` (google-research/simclr passes max_attempts=100)."""
TF_MIN_OBJECT_COVERED = 0.1
"""The fraction of the image a ``tf_crop_box`` box must cover (google-research/simclr's min_object_covered)."""


def tf_crop_box(
    height: int,
    width: int,
    area_range: tuple[float, float],
    ratio_range: tuple[float, float],
    draws: torch.Tensor,
    offsets: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(top, left, height, width) per image of TensorFlow's ``sample_distorted_bounding_box`` with the
    whole image as the object (tensorflow/core/kernels/image/sample_distorted_bounding_box_op.cc,
    ``GenerateRandomCrop`` and its caller), vectorised over images and attempts.

    ``draws`` (B, attempts, 2) and ``offsets`` (B, 2) are uniforms in [0, 1): per attempt the aspect
    ratio (uniform over ``ratio_range``, not log-uniform) and the height (an integer uniform between
    the heights the area bounds give at that ratio), then the box's row and column. An attempt is
    kept when its area is within ``area_range`` and covers at least ``TF_MIN_OBJECT_COVERED`` of the
    image; the first kept attempt wins, and none kept means the whole image. TF's own rounding is
    kept: ``lrintf`` (half to even, as ``torch.round``), and offsets in [0, H - h) rather than
    [0, H - h] (its ``Uniform(n)`` excludes n).
    """
    image_area = float(height * width)
    min_area, max_area = area_range[0] * image_area, area_range[1] * image_area
    ratio = ratio_range[0] + draws[..., 0] * (ratio_range[1] - ratio_range[0])
    h = torch.round(torch.sqrt(min_area / ratio))
    max_h = torch.round(torch.sqrt(max_area / ratio))
    too_wide = torch.round(max_h * ratio) > width
    capped = torch.floor((width + 0.5 - 1e-7) / ratio)
    capped = torch.where(torch.round(capped * ratio) > width, capped - 1, capped)
    max_h = torch.where(too_wide, capped, max_h).clamp(max=height)
    h = torch.minimum(h, max_h)
    h = h + torch.floor(draws[..., 1] * (max_h - h + 1))
    w = torch.round(h * ratio)
    area = w * h
    grow = area < min_area
    h = torch.where(grow, h + 1, h)
    w = torch.where(grow, torch.round(h * ratio), w)
    area = w * h
    shrink = area > max_area
    h = torch.where(shrink, h - 1, h)
    w = torch.where(shrink, torch.round(h * ratio), w)
    area = w * h
    ok = (area >= min_area) & (area <= max_area) & (w <= width) & (h <= height) & (w > 0) & (h > 0)
    ok &= (area >= 1) & (area / image_area >= TF_MIN_OBJECT_COVERED)
    first = torch.argmax(ok.int(), dim=1, keepdim=True)
    any_ok = ok.any(dim=1)
    h = torch.where(any_ok, h.gather(1, first).squeeze(1), torch.full_like(h[:, 0], height))
    w = torch.where(any_ok, w.gather(1, first).squeeze(1), torch.full_like(w[:, 0], width))
    top = torch.where(h < height, torch.floor(offsets[:, 0] * (height - h)), torch.zeros_like(h))
    left = torch.where(w < width, torch.floor(offsets[:, 1] * (width - w)), torch.zeros_like(w))
    return top.float(), left.float(), h.float(), w.float()


def _centre(pixel: torch.Tensor, size: int) -> torch.Tensor:
    """Normalised coordinate (align_corners=False) of the centre of ``pixel``, shaped to broadcast on a grid."""
    return ((2 * pixel + 1) / size - 1).view(-1, 1, 1)


class ColorDistortion:
    """Colour jitter (brightness, contrast, saturation 0.8s; hue 0.2s; per-image random order) with
    probability ``jitter_p``, then grayscale with probability ``grayscale_p`` (paper Appendix A).

    Brightness (``color.brightness``) multiplies by a factor in [1 - 0.8s, 1 + 0.8s] (torchvision),
    or adds a delta in [-0.8s, 0.8s] (``tf.image.random_brightness``, google-research/simclr v1)."""

    name = "color"

    def __init__(self, cfg: ColorConfig) -> None:
        self.cfg = cfg
        s = cfg.strength
        additive = cfg.brightness == "additive"
        self._adjust = {
            **self._ADJUST, "brightness": colorops.shift_brightness if additive else colorops.adjust_brightness
        }
        self._neutral_brightness = 0.0 if additive else 1.0
        self.ranges = {
            "brightness": (-0.8 * s, 0.8 * s) if additive else (max(0.0, 1 - 0.8 * s), 1 + 0.8 * s),
            "contrast": (max(0.0, 1 - 0.8 * s), 1 + 0.8 * s),
            "saturation": (max(0.0, 1 - 0.8 * s), 1 + 0.8 * s),
            "hue": (-min(0.5, 0.2 * s), min(0.5, 0.2 * s)),
        }

    def sample(self, x: torch.Tensor, generator: torch.Generator) -> Params:
        b, dev = x.shape[0], x.device
        params = {name: _uniform(b, lo, hi, generator, dev) for name, (lo, hi) in self.ranges.items()}
        params["order"] = torch.argsort(torch.rand(b, 4, generator=generator, device=dev), dim=1)
        params["jitter"] = _bernoulli(b, self.cfg.jitter_p, generator, dev)
        params["grayscale"] = _bernoulli(b, self.cfg.grayscale_p, generator, dev)
        return params

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        if x.device.type == "cpu":
            return self._apply_gathered(x, params)
        return self._apply_masked(x, params)

    _ADJUST = {
        "brightness": colorops.adjust_brightness,
        "contrast": colorops.adjust_contrast,
        "saturation": colorops.adjust_saturation,
        "hue": colorops.adjust_hue,
    }

    def _apply_gathered(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """CPU: at each of the four stages, gather the images whose op at that stage is brightness
        (contrast, ...), adjust only those and put them back, so each image is adjusted once per op
        (the masked version computes every op on the whole batch at every stage: 4x the work)."""
        x = x.clone()
        jitter = params["jitter"]
        names = ("brightness", "contrast", "saturation", "hue")
        if x.shape[1] == 1:
            names = names[:2]  # saturation and hue are identities on one channel
        for stage in range(4):
            op_at_stage = params["order"][:, stage]
            for op_index, name in enumerate(names):
                idx = (jitter & (op_at_stage == op_index)).nonzero().squeeze(1)
                if idx.numel():
                    x[idx] = self._adjust[name](x[idx], params[name][idx])
        if x.shape[1] > 1:
            idx = params["grayscale"].nonzero().squeeze(1)
            if idx.numel():
                x[idx] = colorops.grayscale(x[idx]).expand(-1, x.shape[1], -1, -1)
        return x

    def _apply_masked(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """Accelerators: no data-dependent shapes, hence no host-device sync."""
        jitter = params["jitter"]
        neutral = {"brightness": self._neutral_brightness, "contrast": 1.0, "saturation": 1.0, "hue": 0.0}
        adjust = self._adjust
        for stage in range(4):
            op_at_stage = params["order"][:, stage]
            for op_index, name in enumerate(("brightness", "contrast", "saturation")):
                active = jitter & (op_at_stage == op_index)
                # a neutral factor (or a zero shift) is an exact identity for these three, so no gather is needed
                factor = torch.where(active, params[name], torch.full_like(params[name], neutral[name]))
                x = adjust[name](x, factor)
            x = _masked(x, jitter & (op_at_stage == 3), lambda t, idx: colorops.adjust_hue(t, params["hue"][idx]))
        if x.shape[1] > 1:
            gray = params["grayscale"].view(-1, 1, 1, 1)
            x = torch.where(gray, colorops.grayscale(x).expand_as(x), x)
        return x


def _masked(x: torch.Tensor, mask: torch.Tensor, fn) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Apply ``fn(x[idx], idx)`` to the selected images only.

    On CPU the selected rows are gathered (the work shrinks with the mask); on an accelerator the
    whole batch is transformed and selected with ``torch.where``, which needs no host-device sync.
    """
    if x.device.type == "cpu":
        idx = mask.nonzero().squeeze(1)
        if idx.numel() == 0:
            return x
        out = x.clone()
        out[idx] = fn(x[idx], idx)
        return out
    everything = torch.arange(x.shape[0], device=x.device)
    return torch.where(mask.view(-1, 1, 1, 1), fn(x, everything), x)


def blur_kernel_size(image_side: int, fraction: float) -> int:
    """Odd kernel side: google-research/simclr uses radius = int(side * 0.1) // 2, size 2r + 1."""
    return 2 * (int(image_side * fraction) // 2) + 1


class GaussianBlur:
    """Gaussian blur with probability p, sigma ~ U[sigma_lo, sigma_hi], kernel ~10% of the image side;
    a separable per-image convolution (grouped conv) with reflect padding."""

    name = "blur"

    def __init__(self, cfg: BlurConfig) -> None:
        self.cfg = cfg

    def sample(self, x: torch.Tensor, generator: torch.Generator) -> Params:
        b, dev = x.shape[0], x.device
        return {
            "sigma": _uniform(b, self.cfg.sigma[0], self.cfg.sigma[1], generator, dev),
            "apply": _bernoulli(b, self.cfg.p, generator, dev),
        }

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        b, c, height, width = x.shape
        k = blur_kernel_size(min(height, width), self.cfg.kernel_fraction)
        if k < 3:
            return x
        radius = k // 2
        offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        sigma = params["sigma"].to(x.dtype).view(-1, 1)
        kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
        kernel = kernel / kernel.sum(dim=1, keepdim=True)
        identity = (offsets == 0).to(x.dtype).expand(b, k)
        kernel = torch.where(params["apply"].view(-1, 1), kernel, identity)
        kernel = kernel.repeat_interleave(c, dim=0)  # (B*C, k): one kernel per image, shared by its channels
        y = x.reshape(1, b * c, height, width)
        y = F.pad(y, (radius, radius, radius, radius), mode="reflect")
        y = F.conv2d(y, kernel.view(b * c, 1, k, 1), groups=b * c)
        y = F.conv2d(y, kernel.view(b * c, 1, 1, k), groups=b * c)
        return y.view(b, c, height, width)


class Cutout:
    """One square of zeros (side = size_fraction * image side) centred uniformly in the image,
    clipped at the borders (DeVries & Taylor 2017)."""

    name = "cutout"

    def __init__(self, cfg: CutoutConfig) -> None:
        self.cfg = cfg

    def sample(self, x: torch.Tensor, generator: torch.Generator) -> Params:
        b, _, height, width = x.shape
        dev = x.device
        return {
            "cy": torch.floor(torch.rand(b, generator=generator, device=dev) * height),
            "cx": torch.floor(torch.rand(b, generator=generator, device=dev) * width),
        }

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        _, _, height, width = x.shape
        side = max(1, round(self.cfg.size_fraction * min(height, width)))
        top = (params["cy"] - side // 2).view(-1, 1, 1)
        left = (params["cx"] - side // 2).view(-1, 1, 1)
        rows = torch.arange(height, device=x.device).view(1, -1, 1)
        cols = torch.arange(width, device=x.device).view(1, 1, -1)
        hole = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
        return x.masked_fill(hole.unsqueeze(1), 0.0)


class Sobel:
    """Sobel edge magnitude of the luma, scaled to [0, 1] per image, copied to every channel."""

    name = "sobel"

    def sample(self, x: torch.Tensor, generator: torch.Generator) -> Params:
        return {}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        gray = colorops.grayscale(x)
        kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device, dtype=x.dtype)
        kernels = torch.stack([kx, kx.T]).unsqueeze(1)
        grads = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), kernels)
        magnitude = torch.sqrt((grads**2).sum(dim=1, keepdim=True))
        peak = magnitude.amax(dim=(2, 3), keepdim=True).clamp(min=1e-6)
        return (magnitude / peak).expand_as(x).contiguous()


class GaussianNoise:
    """Additive N(0, std^2) noise, std ~ U[std_lo, std_hi] per image, clamped to [0, 1]."""

    name = "noise"

    def __init__(self, cfg: NoiseConfig) -> None:
        self.cfg = cfg

    def sample(self, x: torch.Tensor, generator: torch.Generator) -> Params:
        b, dev = x.shape[0], x.device
        return {
            "std": _uniform(b, self.cfg.std[0], self.cfg.std[1], generator, dev),
            "noise": torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype),
        }

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return (x + params["std"].view(-1, 1, 1, 1).to(x.dtype) * params["noise"]).clamp_(0, 1)


class Rotate:
    """Rotation by a multiple of 90 degrees drawn uniformly from ``angles`` (square images)."""

    name = "rotate"

    def __init__(self, cfg: RotateConfig) -> None:
        self.quarter_turns = torch.tensor([a // 90 for a in cfg.angles])

    def sample(self, x: torch.Tensor, generator: torch.Generator) -> Params:
        choice = torch.randint(len(self.quarter_turns), (x.shape[0],), generator=generator, device=x.device)
        return {"quarter_turns": self.quarter_turns.to(x.device)[choice]}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        if x.shape[2] != x.shape[3]:
            raise ValueError(f"rotate needs square images, got {x.shape[2]}x{x.shape[3]}")
        turns = params["quarter_turns"].view(-1, 1, 1, 1)
        out = x
        for k in (1, 2, 3):
            out = torch.where(turns == k, torch.rot90(x, k, dims=(2, 3)), out)
        return out
