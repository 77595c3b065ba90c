"""Atomic file writes: a killed process leaves either the old file or the complete new one.

The bytes go to a temp file in the destination's folder, are fsynced, and the temp file is renamed
over the destination (``os.replace`` is atomic within a filesystem). Used for checkpoints, the
decoded-data cache and the outcome file of a distributed trial.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def write_atomic(
    path: Path,
    write: Callable[[IO[bytes]], object],
    *,
    prefix: str | None = None,
    mode: int | None = None,
    replace: Callable[[str, Path], None] = os.replace,
) -> None:
    """``write(f)`` into a temp file beside ``path`` (named ``prefix`` + random + ``.tmp``, default
    prefix ``<name>.``), fsync it, optionally chmod it to ``mode``, then ``replace(tmp, path)``.
    The temp file is removed if anything fails before the rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix if prefix is not None else path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
