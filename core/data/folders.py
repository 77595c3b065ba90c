"""imagefolder and tarball sources: a train/ + test/ (or val/) tree with one folder per class.

Both are listed as relative POSIX paths and planned with ``plan_tree`` (which files, which label);
``core.data.store`` decodes the plan into the on-disk store. They differ only in where the bytes
come from: a file, or an archive member read straight from the tar stream, never extracted to disk.
"""

from __future__ import annotations

import os
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from core.data.errors import DataError

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


def plan_tree(paths: Iterable[str], where: str, classes: list[str] | None = None) -> TreePlan:
    """Group image paths into train and test (test/, else val/) lists of (path, label).

    ``classes`` (sorted names, from ``data.classes``) keeps only those class folders; a name that
    train/ does not hold is a DataError naming it and the tree.
    """
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
    if classes is not None:
        unknown = sorted(set(classes) - set(groups["train"]))
        if unknown:
            shown = ", ".join(unknown[:20]) + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else "")
            raise DataError(
                f"{where}: data.classes names {len(unknown)} class(es) that train/ does not hold: {shown} "
                f"(the tree has {len(groups['train'])} classes, e.g. {min(groups['train'])})"
            )
        keep = set(classes)
        groups = {split: {c: files for c, files in g.items() if c in keep} for split, g in groups.items()}
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


def _missing(path: Path, kind: str) -> str:
    return "does not exist" if not path.exists() else f"is not a {kind}"


def list_folder(root: Path) -> list[str]:
    """Relative POSIX paths of every file under ``root``'s split folders; DataError if no folder."""
    if not root.is_dir():
        raise DataError(f"{root}: {_missing(root, 'folder')}; {_LAYOUT}")
    paths: list[str] = []
    for split in _SPLIT_DIRS:
        for folder, _, files in os.walk(root / split, followlinks=True):
            rel = Path(folder).relative_to(root).as_posix()
            paths.extend(f"{rel}/{f}" for f in files)
    return paths


def read_file(root: Path, path: str) -> bytes:
    """The bytes of ``root/path``; OSError (unreadable file) is left to the caller, who skips it."""
    return (root / path).read_bytes()


def _check_archive(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"{path}: {_missing(path, 'file')} (expected a .tar.gz, .tgz or .tar; {_LAYOUT})")


def stream_tarball(path: Path, wanted: Callable[[str], bool] | None = None) -> Iterator[tuple[str, bytes]]:
    """(normalised path, bytes) of each image member ``wanted`` accepts (all without it), in
    archive order, in one sequential pass: a .tar.gz cannot be read out of order cheaply."""
    _check_archive(path)
    try:
        with tarfile.open(path, "r|*") as tf:  # stream mode: one sequential pass, no seeks
            for member in tf:
                name = "/".join(_parts(member.name))
                if member.isfile() and is_image_path(name) and (wanted is None or wanted(name)):
                    fileobj = tf.extractfile(member)
                    assert fileobj is not None
                    yield name, fileobj.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a readable tar archive ({exc})") from None


def list_tarball(path: Path, progress: bool | None = None) -> dict[str, int]:
    """Image member path -> size in bytes, from one pass over the archive that reads no image."""
    _check_archive(path)
    sizes: dict[str, int] = {}
    try:
        with open(path, "rb") as raw, tqdm.wrapattr(
            raw, "read", total=path.stat().st_size, desc="listing archive", disable=_no_bar(progress)
        ) as counted, tarfile.open(fileobj=counted, mode="r|*") as tf:
            for member in tf:
                name = "/".join(_parts(member.name))
                if member.isfile() and is_image_path(name):
                    sizes[name] = member.size
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a readable tar archive ({exc})") from None
    return sizes


def _no_bar(progress: bool | None) -> bool | None:
    """tqdm's ``disable``: None (the default) draws bars only on a terminal."""
    return None if progress is None else not progress


def _read_members(path: Path) -> dict[str, bytes]:
    """Bytes of every image member, keyed by normalised path (small archives: it is all in memory)."""
    return dict(stream_tarball(path))


def tarball_stem(path: Path) -> str:
    """'cifar10-jpeg' for 'cifar10-jpeg.tar.gz' (used in the dataset name)."""
    name = path.name
    for suffix in (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
