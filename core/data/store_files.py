"""The files of a store under construction: staging .npy files and the progress log.

A staging file (``train_images.npy.partial``) is a valid .npy of the split's planned shape, created
sparse at full size, whose rows workers fill in place. When every chunk is done, ``compact`` squeezes
out the rows of skipped files (only when there are any: a clean tree moves nothing), rewrites the
header with the final count and truncates the file, which then becomes ``train_images.npy``.

The progress log (``progress.jsonl``) is append-only: a first line naming the plan, then one line
per finished chunk with its SHA-256 and its skipped and truncated files. A line torn by a crash is
ignored, so that chunk is simply done again.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.data.store_rows import Staging

_COPY_BLOCK = 64 << 20  # bytes moved per read/write while compacting


def npy_header(shape: tuple[int, ...], length: int | None = None) -> bytes:
    """The .npy (version 1.0) header of a C-order uint8 array of ``shape``, padded to ``length``
    bytes when given (so a header for fewer rows can replace the original in place)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": tuple(shape)})
    header = buf.getvalue()
    if length is None or len(header) == length:
        return header
    body = header[10:].rstrip(b"\n").rstrip(b" ")
    if len(body) + 11 > length:
        raise ValueError(f"a header for {shape} needs more than {length} bytes")
    body += b" " * (length - 11 - len(body)) + b"\n"
    return header[:8] + (length - 10).to_bytes(2, "little") + body


def create_staging(path: Path, n_rows: int, shape: tuple[int, int, int]) -> Staging:
    """A sparse .npy file of (n_rows, *shape) uint8 (zeros until written); replaces any old one."""
    header = npy_header((n_rows, *shape))
    staging = Staging(str(path), len(header), shape)
    with path.open("wb") as f:
        f.write(header)
        f.truncate(len(header) + n_rows * staging.row_bytes)
    return staging


def open_staging(path: Path, n_rows: int, shape: tuple[int, int, int]) -> Staging | None:
    """The staging file an interrupted build left, if it is exactly the planned one; else None."""
    header = npy_header((n_rows, *shape))
    staging = Staging(str(path), len(header), shape)
    try:
        with path.open("rb") as f:
            ok = f.read(len(header)) == header and path.stat().st_size == len(header) + n_rows * staging.row_bytes
    except OSError:
        return None
    return staging if ok else None


def _good_runs(n_rows: int, skipped: list[int]) -> list[tuple[int, int]]:
    """Ranges of rows that are not skipped, in order."""
    runs, start = [], 0
    for row in skipped:
        if row > start:
            runs.append((start, row))
        start = row + 1
    if start < n_rows:
        runs.append((start, n_rows))
    return runs


def compact(staging: Staging, n_rows: int, skipped: list[int]) -> int:
    """Move the kept rows together (in place), rewrite the header for their count, cut the file
    there and fsync it. ``skipped`` is sorted. Returns the number of rows kept."""
    keep = n_rows - len(skipped)
    rb = staging.row_bytes
    with open(staging.path, "r+b") as f:
        fd = f.fileno()
        dst = skipped[0] if skipped else n_rows
        for a, b in _good_runs(n_rows, skipped):
            if a < dst:  # before the first skipped row: already in place
                continue
            for src in range(a, b, max(1, _COPY_BLOCK // rb)):
                count = min(b, src + max(1, _COPY_BLOCK // rb)) - src
                block = os.pread(fd, count * rb, staging.offset + src * rb)
                os.pwrite(fd, block, staging.offset + dst * rb)
                dst += count
        os.pwrite(fd, npy_header((keep, *staging.shape), length=staging.offset), 0)
        f.truncate(staging.offset + keep * rb)
        os.fsync(fd)
    return keep


@dataclass(frozen=True)
class ChunkRecord:
    """A finished chunk: its good rows' SHA-256 and the files skipped or truncated in it."""

    split: str
    index: int
    sha256: str
    skipped: list[list[Any]] = field(default_factory=list)  # [row, name, reason]
    truncated: list[list[Any]] = field(default_factory=list)  # [row, name, reason]


class ProgressLog:
    """Append-only record of finished chunks, for resuming a killed build."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def start(self, plan: str) -> None:
        """Begin a new log for ``plan`` (a digest of what is being built), dropping any old one."""
        with self.path.open("w") as f:
            f.write(json.dumps({"plan": plan}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self, plan: str) -> dict[tuple[str, int], ChunkRecord] | None:
        """The finished chunks of a log for ``plan``; None if there is none or it is for another plan."""
        try:
            lines = self.path.read_text().splitlines()
        except OSError:
            return None
        try:
            if not lines or json.loads(lines[0]).get("plan") != plan:
                return None
        except (ValueError, AttributeError):
            return None
        done = {}
        for line in lines[1:]:
            try:
                rec = ChunkRecord(**json.loads(line))
            except (ValueError, TypeError):  # torn by a crash: that chunk is done again
                continue
            done[(rec.split, rec.index)] = rec
        return done

    def append(self, rec: ChunkRecord) -> None:
        line = json.dumps({"split": rec.split, "index": rec.index, "sha256": rec.sha256,
                           "skipped": rec.skipped, "truncated": rec.truncated})
        with self.path.open("a") as f:
            f.write(line + "\n")
