"""Image bytes -> uint8 (C,H,W) tensors, and resizing to one square size.

Decoding is ``torchvision.io.decode_image`` (about 2.5 s for CIFAR-10's 60k JPEGs on one core, PIL
takes about 1.7x as long; threads only add GIL contention; ``core.data.store`` runs it in worker
processes), with PIL as the fallback for formats torchvision cannot read (BMP). torchvision 0.29
deprecates its image codecs in favour of TorchCodec, which this project does not depend on;
``core.data.store_rows`` silences that one warning.
"""

from __future__ import annotations

import io
import re

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
