"""The worker side of building a store: decode images into rows of a staging .npy file, hash rows.

These functions run in worker processes (in-process for small trees). Tasks carry file paths (or,
for an archive, the member's bytes) and row numbers, never decoded arrays: each task opens the
staging file itself and writes every image straight to its row with ``os.pwrite``, so a worker
holds one image at a time and no process ever holds the dataset.

Failure modes, per image: a file that cannot be read or decoded at all is skipped (its outcome says
why); a truncated JPEG is decoded as far as its data goes (Pillow's LOAD_TRUNCATED_IMAGES, the rest
of the picture grey) and reported as truncated; CMYK, grayscale, palette and 16-bit images, and a
PNG named .JPEG, are converted to 8-bit RGB like any other. Images of different sizes without
``data.image_size`` are a DataError: that is a setting to fix, not a bad file.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import os
import signal
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageFile

from core.data.decode import decode_image_bytes, resize_center_crop
from core.data.errors import DataError

_READ_BLOCK = 16 << 20  # bytes per read when hashing rows back
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class Staging:
    """A staging .npy file of (N, C, H, W) uint8: where row 0 starts and what one row holds."""

    path: str
    offset: int
    shape: tuple[int, int, int]

    @property
    def row_bytes(self) -> int:
        c, h, w = self.shape
        return c * h * w


@dataclass(frozen=True)
class Item:
    """One image to decode into ``row``: ``source`` is a file path to read, or the bytes themselves."""

    row: int
    name: str
    source: str | bytes


@dataclass(frozen=True)
class Outcome:
    """What became of one image: written (``ok``), written from a truncated file, or skipped."""

    row: int
    name: str
    status: Literal["ok", "truncated", "skipped"]
    reason: str = ""


def init_worker(parent: int) -> None:
    """One thread per worker process (the pool is the parallelism); Ctrl-C is the parent's to handle;
    and on Linux the worker dies with ``parent``: a build killed with -9 cannot tell its pool, whose
    workers would otherwise wait for work forever."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # it died before that took effect
            os._exit(1)


@contextlib.contextmanager
def _quiet_torchvision() -> Iterator[None]:
    """torchvision 0.29 deprecates its decoders in favour of TorchCodec: one warning per image, else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.io")
        yield


def _decode_truncated(data: bytes) -> torch.Tensor:
    """Decode what a truncated file holds. Pillow's switch for it is process-wide, so it is set only
    around this one call and restored (in a worker process it touches nothing else)."""
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with Image.open(io.BytesIO(data)) as pil:
            arr = np.asarray(pil.convert("RGB"))
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def decode_lenient(data: bytes, name: str) -> tuple[torch.Tensor | None, Outcome]:
    """Decode like ``decode_image_bytes``; a truncated file is decoded in part, any other failure
    is an outcome ``skipped`` with its reason instead of an exception. The outcome's row is -1."""
    try:
        return decode_image_bytes(data, name), Outcome(-1, name, "ok")
    except DataError as exc:
        reason = str(exc).removeprefix(f"{name}: ")
    try:
        return _decode_truncated(data), Outcome(-1, name, "truncated", reason)
    except Exception:  # Pillow raises many types for bad data; the first decoder's reason says why
        return None, Outcome(-1, name, "skipped", reason)


def _read(item: Item) -> bytes | str:
    """The item's bytes, or the reason they cannot be read."""
    if isinstance(item.source, bytes):
        return item.source
    try:
        with open(item.source, "rb") as f:
            return f.read()
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"


def _hw(shape: tuple[int, ...]) -> str:
    return f"{shape[-2]}x{shape[-1]}"


class _RowWriter:
    """Writes rows to the staging file, gathering consecutive ones into one ``pwrite`` (a syscall per
    small image costs as much as decoding it)."""

    def __init__(self, staging: Staging, fd: int) -> None:
        self._staging, self._fd, self._row_bytes = staging, fd, staging.row_bytes
        self._first, self._rows = -1, bytearray()

    def write(self, row: int, data: memoryview) -> None:
        if self._rows and (row != self._first + len(self._rows) // self._row_bytes or len(self._rows) >= _READ_BLOCK):
            self.flush()
        if not self._rows:
            self._first = row
        self._rows += data

    def flush(self) -> None:
        if self._rows:
            os.pwrite(self._fd, self._rows, self._staging.offset + self._first * self._row_bytes)
            self._rows = bytearray()


def decode_rows(staging: Staging, items: list[Item], size: int | None, first: str) -> list[Outcome]:
    """Decode each item, resize it to ``size``, write it to its row; skipped rows are left as they are.

    ``first`` names the image whose size the staging file was made for, for the message when
    another image differs and ``size`` is None.
    """
    outcomes = []
    fd = os.open(staging.path, os.O_WRONLY)
    try:
        writer = _RowWriter(staging, fd)
        with _quiet_torchvision():
            for item in items:
                data = _read(item)
                if isinstance(data, str):
                    outcomes.append(Outcome(item.row, item.name, "skipped", data))
                    continue
                img, outcome = decode_lenient(data, item.name)
                outcomes.append(Outcome(item.row, item.name, outcome.status, outcome.reason))
                if img is None:
                    continue
                if size is not None:
                    img = resize_center_crop(img, size)
                if tuple(img.shape) != staging.shape:
                    raise DataError(
                        f"images differ in size ({first} is {_hw(staging.shape)}, {item.name} is {_hw(img.shape)}); "
                        "set data.image_size to resize and center-crop them all to one size"
                    )
                writer.write(item.row, memoryview(img.contiguous().numpy()).cast("B"))
        writer.flush()
    finally:
        os.close(fd)
    return outcomes


def digest_rows(staging: Staging, start: int, stop: int, skipped: frozenset[int] = frozenset()) -> str:
    """SHA-256 of rows [start, stop) read back from the staging file, leaving out ``skipped`` rows:
    exactly the bytes these rows occupy once the store is compacted."""
    digest = hashlib.sha256()
    per_read = max(1, _READ_BLOCK // staging.row_bytes)
    with open(staging.path, "rb") as f:
        row = start
        while row < stop:
            if row in skipped:
                row += 1
                continue
            end = row
            while end < stop and end - row < per_read and end not in skipped:
                end += 1
            f.seek(staging.offset + row * staging.row_bytes)
            want = (end - row) * staging.row_bytes
            block = f.read(want)
            if len(block) != want:
                raise OSError(f"{staging.path}: {len(block)} bytes at row {row}, expected {want} (file cut short)")
            digest.update(block)
            row = end
    return digest.hexdigest()


def decode_chunk(
    staging: Staging, items: list[Item], size: int | None, first: str, start: int, stop: int
) -> tuple[list[Outcome], str]:
    """Decode a whole chunk (rows [start, stop), all of them in ``items``) and hash its good rows."""
    outcomes = decode_rows(staging, items, size, first)
    skipped = frozenset(o.row for o in outcomes if o.status == "skipped")
    return outcomes, digest_rows(staging, start, stop, skipped)
