"""Image bytes -> uint8 (C,H,W) tensors, and resizing to one square size.

Decoding is plain serial ``torchvision.io.decode_image`` (about 2.5 s for CIFAR-10's 60k JPEGs on
one core, PIL takes about 1.7x as long; threads only add GIL contention), with PIL as the fallback
for formats torchvision cannot read (BMP). torchvision 0.29 deprecates its image codecs in favour
of TorchCodec, which this project does not depend on; ``decode_many`` silences that one warning.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image
from torchvision.io import ImageReadMode, decode_image

from core.data.errors import DataError

_RESIZE_CHUNK = 2048  # images per resize call: bounds the float intermediate for big arrays


def _short_reason(exc: Exception) -> str:
    """torchvision prefixes C++ errors with 'func, /build/path.cpp:NN, '; keep only the reason."""
    return re.sub(r"^\w+, \S+:\d+, ", "", str(exc).strip())


def decode_image_bytes(data: bytes, name: str) -> torch.Tensor:
    """Decode one encoded image to RGB uint8 (3,H,W); DataError naming ``name`` if it is not one."""
    if not data:
        raise DataError(f"{name}: empty file (expected an encoded image)")
    try:
        img = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except RuntimeError as exc:
        try:
            with Image.open(io.BytesIO(data)) as pil:
                arr = np.asarray(pil.convert("RGB"))
        except Exception:
            raise DataError(f"{name}: cannot decode image ({_short_reason(exc)})") from None
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
    if img.dtype != torch.uint8:  # 16-bit PNG
        img = F.to_dtype(img, torch.uint8, scale=True)
    return img


def resize_center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size`` (antialiased) and center-crop to size x size.

    Works on (C,H,W) or (N,C,H,W) uint8; returns the input unchanged when it already fits.
    """
    if images.shape[-2:] == (size, size):
        return images
    return F.center_crop(F.resize(images, [size], antialias=True), [size, size])


def fit_array(images: np.ndarray, size: int | None) -> np.ndarray:
    """Apply ``resize_center_crop`` to a whole (N,C,H,W) uint8 array, in chunks to bound memory."""
    if size is None or images.shape[-2:] == (size, size):
        return images
    out = np.empty((images.shape[0], images.shape[1], size, size), dtype=np.uint8)
    for start in range(0, images.shape[0], _RESIZE_CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + _RESIZE_CHUNK]))
        out[start : start + _RESIZE_CHUNK] = resize_center_crop(chunk, size).numpy()
    return out


def decode_many(items: Sequence[tuple[str, Callable[[], bytes]]], size: int | None, where: str) -> np.ndarray:
    """Decode (name, read-bytes) items into one (N,3,H,W) uint8 array.

    With ``size`` each image is resized as it is decoded; without it every image must already
    share the first image's size, otherwise DataError points at ``data.image_size``.
    """
    if not items:
        raise DataError(f"{where}: no images to decode")
    out: torch.Tensor | None = None
    first = items[0][0]
    with warnings.catch_warnings():  # else one DeprecationWarning per image (see module doc)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.io")
        for i, (name, read) in enumerate(items):
            img = decode_image_bytes(read(), name)
            if size is not None:
                img = resize_center_crop(img, size)
            if out is None:
                out = torch.empty((len(items), *img.shape), dtype=torch.uint8)
            elif img.shape != out.shape[1:]:
                raise DataError(
                    f"{where}: images differ in size ({first} is {_hw(out.shape[1:])}, {name} is {_hw(img.shape)}); "
                    "set data.image_size to resize and center-crop them all to one size"
                )
            out[i] = img
    assert out is not None
    return out.numpy()


def _hw(shape: Sequence[int]) -> str:
    return f"{shape[-2]}x{shape[-1]}"
