"""Checkpoint files that survive kills and detect damage.

A checkpoint is written to a temp file, fsynced and renamed over the last one, so a kill leaves
either the old file or the new one; the one it replaces is kept as ``<name>.prev``. Each file ends
with a SHA-256 of its payload: a truncated or corrupted file is detected when loading, never
unpickled, and the caller falls back to the previous checkpoint (or to a fresh start).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import IO, Any

import torch

from core.atomic import write_atomic

_MAGIC = b"SIMCLR-CKPT-SHA256:"
_TRAILER = len(_MAGIC) + 64


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be used (damaged, or written by a different config)."""


def previous_path(path: Path) -> Path:
    """Where the checkpoint replaced by the latest save is kept."""
    return path.with_name(path.name + ".prev")


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` (torch.save format + checksum trailer) beside ``path``, fsync, keep the current
    file as ``.prev`` and rename the new one over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()

    def write(f: IO[bytes]) -> None:
        f.write(payload)
        f.write(_MAGIC + hashlib.sha256(payload).hexdigest().encode())

    write_atomic(path, write, replace=_replace_keeping_previous)
    for stale in path.parent.glob(path.name + ".*.tmp"):  # left by a process killed mid-write
        stale.unlink(missing_ok=True)


def _replace_keeping_previous(tmp: str, path: Path) -> None:
    """Put the finished temp file in place, the checkpoint it replaces becoming ``.prev``."""
    if path.exists():
        os.replace(path, previous_path(path))
    os.replace(tmp, path)


def load(path: Path) -> dict[str, Any]:
    """Load a checkpoint on CPU after checking its checksum; CheckpointError names the file if it is
    truncated, corrupted or not a checkpoint of this project."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from exc
    payload, trailer = data[:-_TRAILER], data[-_TRAILER:]
    if len(data) < _TRAILER or not trailer.startswith(_MAGIC):
        raise CheckpointError(f"{path}: damaged checkpoint (truncated, or not written by this project)")
    if hashlib.sha256(payload).hexdigest().encode() != trailer[len(_MAGIC) :]:
        raise CheckpointError(f"{path}: damaged checkpoint (checksum mismatch)")
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # the checksum matched, so this is a foreign or incompatible payload
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from exc


def load_latest_good(path: Path, warn: Any = print) -> tuple[dict[str, Any], Path] | None:
    """The newest undamaged checkpoint among ``path`` and its ``.prev``; ``warn`` is told about each
    damaged one. None when neither exists or both are damaged (then training starts over)."""
    for candidate in (path, previous_path(path)):
        if not candidate.exists():
            continue
        try:
            return load(candidate), candidate
        except CheckpointError as exc:
            warn(f"warning: {exc}; not using it")
    return None
