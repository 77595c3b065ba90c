"""On-disk cache of decoded arrays: one folder of .npy files per (source, root state, image_size).

Every file is written atomically (temp file in the same folder, fsync, os.replace) and the JSON
sidecar ``meta.json`` is written last, so a reader sees either a complete entry or no entry. The
sidecar records each file's size and SHA-256 (whole, and per chunk of rows: ``core.data.checksums``)
and each array's shape and dtype; on load every file
is checked against it, so a file torn or corrupted later (a full disk, a copy cut short, a bad
sector) is reported with a warning naming it and rebuilt from the source, never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import IO, Any

import numpy as np

from core.atomic import write_atomic
from core.config import DataConfig
from core.data.checksums import array_chunks, sha256_file
from core.data.class_list import selected_classes
from core.data.splits import Decoded

log = logging.getLogger(__name__)

FORMAT = 3  # bump when decoding or the sidecar changes, so old entries stop matching (3: chunk checksums)
META = "meta.json"


def _stat(path: Path, rel: str) -> list[Any]:
    try:
        st = path.stat()
    except OSError:  # broken link or vanished file: still a valid, if unusual, key
        return [rel, "unreadable"]
    return [rel, st.st_size, st.st_mtime_ns]


def _children(folder: Path, skip: Path) -> list[Path]:
    try:
        return [c for c in folder.iterdir() if c.resolve() != skip]
    except OSError:  # unreadable folder: the source itself reports it when it tries to read it
        return []


def fingerprint(root: Path, skip: Path) -> list[Any]:
    """Size and mtime of the root and of every entry up to two levels below it.

    Two levels reach class folders (imagefolder) and dataset files (torchvision, idx), whose mtimes
    change when files are added or removed, without walking every image. ``skip`` (the cache
    folder) is left out so writing the cache never invalidates it.
    """
    if not root.exists():
        return ["missing"]
    out = [_stat(root, ".")]
    level = [root] if root.is_dir() else []
    for _ in range(2):
        children = sorted((c for d in level for c in _children(d, skip)), key=lambda c: c.as_posix())
        out += [_stat(c, c.relative_to(root).as_posix()) for c in children]
        level = [c for c in children if c.is_dir()]
    return out


def entry_dir(cfg: DataConfig, part: str) -> Path:
    """The cache folder for this config's data in its current on-disk state."""
    assert cfg.root is not None
    cache_dir = cfg.cache_dir.expanduser().resolve()
    root = cfg.root.expanduser().resolve()
    key = {
        "format": FORMAT,
        "source": cfg.source,
        "part": part,
        "root": str(root),
        "fingerprint": fingerprint(root, cache_dir),
        "image_size": cfg.image_size,
        "classes": selected_classes(cfg.classes),  # the resolved names: a list and its file are one entry
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / f"{cfg.source}-{part}-{digest}"


def write_shared(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """An atomic write readable by every user (mkstemp makes 0600; a cache may be shared by the users
    of one machine)."""
    write_atomic(path, write, prefix=f".{path.name}.", mode=0o644)


def fsync_dir(path: Path) -> None:
    """Make the renames inside ``path`` durable (an fsynced file is not, until its folder is)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_npy(f: IO[bytes], array: np.ndarray) -> None:
    """One array as .npy, never pickled (what ``load`` reads with ``allow_pickle=False``)."""
    np.save(f, array, allow_pickle=False)


def file_spec(path: Path, array: np.ndarray) -> dict[str, Any]:
    """What a reader checks the written file against: the whole file, and each chunk of rows."""
    return {
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
        "chunks": array_chunks(path, array.shape, array.dtype),
    }


def save(entry: Path, decoded: Decoded) -> None:
    """Write an entry; failure (read-only or full disk) only costs a warning, not the run."""
    try:
        entry.mkdir(parents=True, exist_ok=True)
        (entry / META).unlink(missing_ok=True)  # the entry is incomplete until the sidecar is back
        arrays = {}
        for name, array in decoded.arrays.items():
            write_shared(entry / f"{name}.npy", partial(save_npy, array=array))
            arrays[name] = file_spec(entry / f"{name}.npy", array)
        meta = {"format": FORMAT, "classes": decoded.classes, "arrays": arrays}
        write_shared(entry / META, lambda f: f.write(json.dumps(meta, indent=1).encode()))
        fsync_dir(entry)
    except OSError as exc:
        log.warning("could not write data cache %s (%s); continuing without it", entry, exc)


def _load_array(path: Path, spec: dict[str, Any]) -> np.ndarray:
    """One cached array, checked against the sidecar: size first (a torn header could make np.load
    allocate anything), then the checksum, then shape and dtype. ValueError says what is wrong."""
    size = path.stat().st_size
    if size != spec["bytes"]:
        raise ValueError(f"{size} bytes, the sidecar says {spec['bytes']} (truncated or overwritten)")
    if sha256_file(path) != spec["sha256"]:
        raise ValueError("its SHA-256 does not match the sidecar (corrupted)")
    array = np.load(path, allow_pickle=False)
    if list(array.shape) != spec["shape"] or str(array.dtype) != spec["dtype"]:
        raise ValueError(
            f"it holds {array.dtype} {list(array.shape)}, the sidecar says {spec['dtype']} {spec['shape']}"
        )
    return array


def load(entry: Path) -> Decoded | None:
    """The cached arrays, or None when absent, incomplete or not matching the sidecar (with a
    warning naming the bad file; the caller rebuilds the entry from the source)."""
    path = entry / META
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
        arrays = {}
        for name, spec in meta["arrays"].items():
            path = entry / f"{name}.npy"
            arrays[name] = _load_array(path, spec)
        return Decoded(arrays, [str(c) for c in meta["classes"]])
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        log.warning("data cache file %s is unreadable (%s); rebuilding it from the source", path, exc)
        return None


def cached(cfg: DataConfig, part: str, build: Callable[[], Decoded]) -> Decoded:
    """Load ``part`` of this config's data from the cache, or build and store it."""
    # made before keying, so creating it inside the root cannot change the root's fingerprint later;
    # a failure here is reported by save()
    with contextlib.suppress(OSError):
        cfg.cache_dir.expanduser().mkdir(parents=True, exist_ok=True)
    found = load(entry_dir(cfg, part))
    if found is not None:
        return found
    decoded = build()
    save(entry_dir(cfg, part), decoded)  # re-keyed: building may have downloaded into the root
    return decoded
