"""idx source: MNIST-layout IDX files (MNIST, Fashion-MNIST, KMNIST), plain or gzipped."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from core.config import DataConfig
from core.data.decode import fit_array
from core.data.errors import DataError
from core.data.splits import Decoded

IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dims (N, H, W)
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dim (N,)
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(root: Path, name: str) -> Path:
    """``name`` or ``name.gz`` under root (plain wins when both exist)."""
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    expected = ", ".join(n for pair in _FILES.values() for n in pair)
    raise DataError(f"{root}: no {name} or {name}.gz (expected the IDX files {expected}, each optionally .gz)")


def read_idx(path: Path, magic: int, what: str) -> np.ndarray:
    """Parse one uint8 IDX file, checking its magic number and that the payload fills its dims."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic:
        shown = "none (file shorter than 4 bytes)" if found is None else f"0x{found:08x}"
        raise DataError(f"{path}: bad IDX magic {shown} (expected 0x{magic:08x} for {what})")
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, expected at least {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != math.prod(dims):
        raise DataError(
            f"{path}: {len(raw) - header} data bytes but the header says {'x'.join(map(str, dims))} "
            f"= {math.prod(dims)} (truncated or corrupt file)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def load_idx(cfg: DataConfig) -> Decoded:
    """Images as (N,1,H,W) uint8, labels int64; classes are the digit strings '0'..str(max label)."""
    assert cfg.root is not None
    root = cfg.root.expanduser()
    if not root.is_dir():
        state = "does not exist" if not root.exists() else "is not a folder"
        raise DataError(f"{root}: {state} (expected a folder of MNIST-layout IDX files)")
    arrays: dict[str, np.ndarray] = {}
    for split, (images_name, labels_name) in _FILES.items():
        images_path, labels_path = _find(root, images_name), _find(root, labels_name)
        images = read_idx(images_path, IMAGES_MAGIC, "images")
        labels = read_idx(labels_path, LABELS_MAGIC, "labels")
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"{images_path}: {images.shape[0]} images but {labels_path.name} has {labels.shape[0]} labels"
            )
        arrays[f"{split}_images"] = fit_array(images[:, None], cfg.image_size)
        arrays[f"{split}_labels"] = labels.astype(np.int64)
    num_classes = int(max(arrays["train_labels"].max(initial=0), arrays["test_labels"].max(initial=0))) + 1
    return Decoded(arrays, [str(k) for k in range(num_classes)])
