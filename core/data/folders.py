"""imagefolder and tarball sources: a train/ + test/ (or val/) tree with one folder per class.

Both list the tree as relative POSIX paths, plan it with ``plan_tree`` and decode it with
``decode_plan``; they differ only in where the bytes come from (a file or an archive member).
Archive members are read straight from the tar stream, never extracted to disk.
"""

from __future__ import annotations

import os
import tarfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from core.config import DataConfig
from core.data.decode import decode_many
from core.data.errors import DataError
from core.data.splits import Decoded

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
_SPLIT_DIRS = ("train", "test", "val")
_LAYOUT = "expected train/ and test/ (or val/) folders with one subfolder per class"


@dataclass(frozen=True)
class TreePlan:
    """Which file goes to which split with which label; class index = position in sorted names."""

    classes: list[str]
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]


def _parts(path: str) -> tuple[str, ...]:
    """Components of a POSIX path without empty and '.' parts ('./train//a' -> ('train', 'a')).

    Plain string splitting: pathlib costs about a second over CIFAR-10's 60k archive members.
    """
    return tuple(p for p in path.split("/") if p and p != ".")


def is_image_path(path: str) -> bool:
    """An image by extension, skipping hidden files and macOS archive debris (._x.jpg, __MACOSX/)."""
    parts = _parts(path)
    return (
        bool(parts)
        and os.path.splitext(parts[-1])[1].lower() in IMAGE_EXTENSIONS
        and not any(p.startswith(".") or p == "__MACOSX" for p in parts)
    )


def _tree_prefix(parts: list[tuple[str, ...]]) -> tuple[str, ...] | None:
    """() if split folders sit at the top, (folder,) if under exactly one top folder, else None."""
    if any(len(p) >= 3 and p[0] in _SPLIT_DIRS for p in parts):
        return ()
    tops = {p[0] for p in parts if len(p) >= 4 and p[1] in _SPLIT_DIRS}
    return (tops.pop(),) if len(tops) == 1 else None


def plan_tree(paths: Iterable[str], where: str) -> TreePlan:
    """Group image paths into train and test (test/, else val/) lists of (path, label)."""
    parts = [_parts(p) for p in paths if is_image_path(p)]
    prefix = _tree_prefix(parts)
    if prefix is None:
        raise DataError(f"{where}: {_LAYOUT} (found no such images)")
    groups: dict[str, dict[str, list[str]]] = {}
    for p in parts:
        rel = p[len(prefix) :]
        if p[: len(prefix)] == prefix and len(rel) >= 3 and rel[0] in _SPLIT_DIRS:
            groups.setdefault(rel[0], {}).setdefault(rel[1], []).append("/".join(p))
    test_dir = "test" if "test" in groups else "val" if "val" in groups else None
    if "train" not in groups or test_dir is None:
        raise DataError(f"{where}: {_LAYOUT} (found images only under {sorted(groups)})")
    classes = sorted(groups["train"])
    test_classes = sorted(groups[test_dir])
    if test_classes != classes:
        raise DataError(
            f"{where}: {test_dir}/ classes differ from train/ classes "
            f"(only in train: {sorted(set(classes) - set(test_classes))}, "
            f"only in {test_dir}: {sorted(set(test_classes) - set(classes))})"
        )

    def entries(split: str) -> list[tuple[str, int]]:
        return [(path, label) for label, c in enumerate(classes) for path in sorted(groups[split][c])]

    return TreePlan(classes, entries("train"), entries(test_dir))


def decode_plan(
    plan: TreePlan, read: Callable[[str], bytes], display: Callable[[str], str], size: int | None, where: str
) -> Decoded:
    """Decode both splits of a plan; ``display`` turns a tree path into the name errors show."""
    arrays: dict[str, np.ndarray] = {}
    for split, entries in (("train", plan.train), ("test", plan.test)):
        items = [(display(path), partial(read, path)) for path, _ in entries]
        arrays[f"{split}_images"] = decode_many(items, size, where)
        arrays[f"{split}_labels"] = np.array([label for _, label in entries], dtype=np.int64)
    train_hw, test_hw = arrays["train_images"].shape[2:], arrays["test_images"].shape[2:]
    if train_hw != test_hw:
        raise DataError(
            f"{where}: train images are {train_hw[0]}x{train_hw[1]} but test images are "
            f"{test_hw[0]}x{test_hw[1]}; set data.image_size to resize them to one size"
        )
    return Decoded(arrays, plan.classes)


def _missing(path: Path, kind: str) -> str:
    return "does not exist" if not path.exists() else f"is not a {kind}"


def load_imagefolder(cfg: DataConfig) -> Decoded:
    """Decode ``root/train`` and ``root/test`` (or ``root/val``)."""
    assert cfg.root is not None
    root = cfg.root.expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: {_missing(root, 'folder')}; {_LAYOUT}")
    paths: list[str] = []
    for split in _SPLIT_DIRS:
        for folder, _, files in os.walk(root / split, followlinks=True):
            rel = Path(folder).relative_to(root).as_posix()
            paths.extend(f"{rel}/{f}" for f in files)

    def read(path: str) -> bytes:
        try:
            return (root / path).read_bytes()
        except OSError as exc:
            raise DataError(f"{root / path}: cannot read ({exc.strerror})") from None

    return decode_plan(plan_tree(paths, str(root)), read, lambda p: str(root / p), cfg.image_size, str(root))


def _read_members(path: Path) -> dict[str, bytes]:
    """Bytes of every image member, keyed by normalised path, in one pass over the archive."""
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r|*") as tf:  # stream mode: one sequential pass, no seeks
            for member in tf:
                name = "/".join(_parts(member.name))
                if member.isfile() and is_image_path(name):
                    fileobj = tf.extractfile(member)
                    assert fileobj is not None
                    blobs[name] = fileobj.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a readable tar archive ({exc})") from None
    return blobs


def load_tarball(cfg: DataConfig) -> Decoded:
    """Decode an imagefolder tree stored in a .tar.gz/.tgz/.tar, at its top or under one folder."""
    assert cfg.root is not None
    path = cfg.root.expanduser()
    if not path.is_file():
        raise DataError(f"{path}: {_missing(path, 'file')} (expected a .tar.gz, .tgz or .tar; {_LAYOUT})")
    blobs = _read_members(path)
    plan = plan_tree(blobs, str(path))
    # pop: each member is read once, so its bytes can be freed as soon as it is decoded
    return decode_plan(plan, blobs.pop, lambda p: f"{path}:{p}", cfg.image_size, str(path))


def tarball_stem(path: Path) -> str:
    """'cifar10-jpeg' for 'cifar10-jpeg.tar.gz' (used in the dataset name)."""
    name = path.name
    for suffix in (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
