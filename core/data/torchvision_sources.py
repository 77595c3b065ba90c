"""cifar10, cifar100 and stl10 through torchvision's dataset classes (download only on request)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from torchvision.datasets import CIFAR10, CIFAR100, STL10

from core.config import DataConfig
from core.data.decode import fit_array
from core.data.errors import DataError
from core.data.splits import Decoded


class _Kind(NamedTuple):
    cls: type
    title: str
    folder: str  # what torchvision looks for under the root


KINDS = {
    "cifar10": _Kind(CIFAR10, "CIFAR-10", "cifar-10-batches-py"),
    "cifar100": _Kind(CIFAR100, "CIFAR-100", "cifar-100-python"),
    "stl10": _Kind(STL10, "STL-10", "stl10_binary"),
}


def _open(source: str, root: Path, download: bool, **split: Any) -> Any:
    """Instantiate the torchvision dataset, turning 'not found' into one DataError naming the root."""
    kind = KINDS[source]
    try:
        return kind.cls(str(root), download=download, **split)
    except RuntimeError:  # torchvision: "Dataset not found or corrupted"
        hint = "downloaded files failed their checksum" if download else "set data.download: true to fetch it"
        raise DataError(
            f"{root}: no {kind.title} found (expected {kind.folder}/ under this torchvision root; {hint})"
        ) from None
    except OSError as exc:  # download failures (no network) and unreadable files
        raise DataError(f"{root}: could not load {kind.title} ({exc})") from None


def _images(ds: Any, source: str) -> np.ndarray:
    """Contiguous (N,C,H,W) uint8: CIFAR stores (N,H,W,C), STL-10 a transposed (N,C,H,W) view."""
    data = np.asarray(ds.data, dtype=np.uint8)
    return np.ascontiguousarray(data if source == "stl10" else data.transpose(0, 3, 1, 2))


def _classes(ds: Any) -> list[str]:
    """Class names; STL-10 only has them when its class_names.txt is present."""
    classes = getattr(ds, "classes", None)
    return list(classes) if classes else [str(k) for k in range(10)]


def _labels(ds: Any, source: str) -> np.ndarray:
    return np.asarray(ds.labels if source == "stl10" else ds.targets, dtype=np.int64)


def load_torchvision(cfg: DataConfig) -> Decoded:
    """The labelled train and test splits of a torchvision dataset."""
    assert cfg.root is not None
    root = cfg.root.expanduser()
    arrays: dict[str, np.ndarray] = {}
    classes: list[str] = []
    for split, train in (("train", True), ("test", False)):
        kwargs: dict[str, Any] = {"split": split} if cfg.source == "stl10" else {"train": train}
        ds = _open(cfg.source, root, cfg.download, **kwargs)
        arrays[f"{split}_images"] = fit_array(_images(ds, cfg.source), cfg.image_size)
        arrays[f"{split}_labels"] = _labels(ds, cfg.source)
        classes = _classes(ds)
    return Decoded(arrays, classes)


def load_stl10_unlabeled(cfg: DataConfig) -> Decoded:
    """STL-10's 100k unlabeled images (for pretraining only), as ``arrays['images']``."""
    assert cfg.root is not None
    ds = _open("stl10", cfg.root.expanduser(), cfg.download, split="unlabeled")
    return Decoded({"images": fit_array(_images(ds, "stl10"), cfg.image_size)}, _classes(ds))
