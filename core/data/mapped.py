"""Open a stored dataset (a cache entry of ``core.data.cache``) memory-mapped, without reading it.

The arrays are mapped copy-on-write (``np.load(mmap_mode="c")``): writable for torch, backed by the
file, and never written back. Opening checks, for every array, what costs nothing: the file's size
and its .npy header's shape and dtype against ``meta.json``.

When the SHA-256 is checked: hashing a 190 GB store at every start would take minutes, so a
memory-mapped store is hashed once per state of its files and the result is recorded in
``verified.json`` beside ``meta.json``: for each array, the checksum it matched and the file's size,
mtime and inode when it did. A later open whose files still have that size, mtime and inode skips
the hash; any rewrite, copy or touch of a file changes them and the file is hashed again before use.
The check that a build or an in-memory load already made (``core.data.cache`` hashes every file it
writes or loads) is recorded with ``record_verified`` instead of being repeated. A store read into
memory (``data.in_memory`` true, or auto within the budget) is hashed at every load, as before.

Failure modes: a file missing, of the wrong size, with another shape or dtype in its header, or
whose hash does not match: ``open_entry`` returns None and says why at debug level (the caller
rebuilds through ``core.data.cache``, which reports the damage); ``verified.json`` unwritable (a
read-only store): a warning, and the hash is repeated at the next start; damage that changes
neither size nor mtime after the recorded check (a bit flip on the disk) is not detected by a
mapped open (delete ``verified.json`` to force a new check; an in-memory load always detects it).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import write_atomic
from core.data.checksums import sha256_file
from core.data.splits import Decoded

log = logging.getLogger(__name__)

META = "meta.json"
VERIFIED = "verified.json"


def read_meta(entry: Path) -> dict[str, Any] | None:
    """The entry's sidecar, or None when it is absent or unreadable (an incomplete entry)."""
    try:
        meta = json.loads((entry / META).read_text())
        return meta if isinstance(meta, dict) and isinstance(meta.get("arrays"), dict) else None
    except (OSError, ValueError):
        return None


def stored_shapes(entry: Path) -> dict[str, tuple[int, ...]] | None:
    """Each array's shape as the sidecar records it (None without a readable sidecar)."""
    meta = read_meta(entry)
    if meta is None:
        return None
    try:
        return {name: tuple(int(d) for d in spec["shape"]) for name, spec in meta["arrays"].items()}
    except (KeyError, TypeError, ValueError):
        return None


def _state(st: os.stat_result) -> dict[str, int]:
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def _read_record(entry: Path) -> dict[str, Any]:
    try:
        record = json.loads((entry / VERIFIED).read_text())
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_record(entry: Path, record: dict[str, Any]) -> None:
    try:
        write_atomic(entry / VERIFIED, lambda f: f.write(json.dumps(record, indent=1).encode()), mode=0o644)
    except OSError as exc:
        log.warning("could not record the checksum check of %s (%s); it will be repeated at the next start", entry, exc)


def record_verified(entry: Path) -> None:
    """Record that every array of ``entry`` matched its checksum just now (the caller hashed it)."""
    meta = read_meta(entry)
    if meta is None:
        return
    record = {}
    for name, spec in meta["arrays"].items():
        try:
            st = (entry / f"{name}.npy").stat()
        except OSError:
            return
        if st.st_size != spec.get("bytes"):
            return  # not the file that was checked
        record[name] = {"sha256": spec.get("sha256"), **_state(st)}
    _write_record(entry, record)


def _open_array(path: Path, spec: dict[str, Any]) -> tuple[np.ndarray, os.stat_result]:
    """One array mapped copy-on-write, after the free checks; ValueError says what is wrong."""
    st = path.stat()
    if st.st_size != spec["bytes"]:
        raise ValueError(f"{st.st_size} bytes, the sidecar says {spec['bytes']} (truncated or overwritten)")
    array = np.load(path, mmap_mode="c", allow_pickle=False)
    if list(array.shape) != list(spec["shape"]) or str(array.dtype) != spec["dtype"]:
        raise ValueError(
            f"it holds {array.dtype} {list(array.shape)}, the sidecar says {spec['dtype']} {spec['shape']}"
        )
    return array, st


def open_entry(entry: Path) -> Decoded | None:
    """The entry's arrays as copy-on-write memory maps, or None when absent, incomplete or damaged."""
    meta = read_meta(entry)
    if meta is None:
        return None
    record = _read_record(entry)
    arrays: dict[str, np.ndarray] = {}
    states: dict[str, os.stat_result] = {}
    unchecked: list[str] = []
    try:
        for name, spec in meta["arrays"].items():
            arrays[name], states[name] = _open_array(entry / f"{name}.npy", spec)
            if record.get(name) != {"sha256": spec["sha256"], **_state(states[name])}:
                unchecked.append(name)
        if unchecked:
            total = sum(states[n].st_size for n in unchecked)
            started = time.perf_counter()
            log.info("checking the SHA-256 of %s (%.1f GB, once for these files)", entry, total / 1e9)
            for name in unchecked:
                if sha256_file(entry / f"{name}.npy") != meta["arrays"][name]["sha256"]:
                    raise ValueError(f"{name}.npy: its SHA-256 does not match the sidecar (corrupted)")
            log.info("checked in %.1f s", time.perf_counter() - started)
            _write_record(entry, {n: {"sha256": meta["arrays"][n]["sha256"], **_state(states[n])} for n in arrays})
        return Decoded(arrays, [str(c) for c in meta["classes"]])
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        log.debug("cannot memory-map %s: %s", entry, exc)
        return None
