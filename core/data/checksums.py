"""SHA-256 of cache files, whole and in chunks of rows, so a reader can check a store piecewise.

A cache entry's sidecar records, for every .npy file, the SHA-256 of the whole file and a table of
chunks: consecutive row ranges, the byte range each occupies in the file, and that range's SHA-256.
A reader that maps a file of hundreds of gigabytes can check just the chunks it touches.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

CHUNK_BYTES = 64 << 20  # rows per chunk: as many as fit in 64 MiB (a store build's unit of work, too)
_READ = 1 << 22


def rows_per_chunk(row_bytes: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    """How many rows of ``row_bytes`` make one chunk (at least one)."""
    return max(1, chunk_bytes // max(1, row_bytes))


def row_ranges(n_rows: int, per_chunk: int) -> list[tuple[int, int]]:
    """[(0, per_chunk), (per_chunk, 2 * per_chunk), ...] covering ``n_rows`` rows."""
    return [(a, min(a + per_chunk, n_rows)) for a in range(0, n_rows, per_chunk)]


def npy_data_offset(path: Path) -> int:
    """Bytes before the first element of a .npy file (its header)."""
    with path.open("rb") as f:
        if np.lib.format.read_magic(f) == (1, 0):
            np.lib.format.read_array_header_1_0(f)
        else:
            np.lib.format.read_array_header_2_0(f)
        return f.tell()


def sha256_file(path: Path, progress: bool | None = False) -> str:
    """SHA-256 of a whole file (with a byte progress bar when ``progress`` is not False and it is big)."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as f, tqdm(
        total=size, unit="B", unit_scale=True, desc=f"checksum {path.name}", leave=False,
        disable=(None if progress is None else not progress) if size > (1 << 30) else True,
    ) as bar:
        while chunk := f.read(_READ):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def chunk_table(
    offset: int, row_bytes: int, ranges: list[tuple[int, int]], digests: list[str]
) -> list[dict[str, Any]]:
    """The sidecar's chunk entries: rows [a, b), the bytes they occupy, their SHA-256."""
    return [
        {"rows": [a, b], "bytes": [offset + a * row_bytes, offset + b * row_bytes], "sha256": d}
        for (a, b), d in zip(ranges, digests, strict=True)
    ]


def hash_chunks(path: Path, row_bytes: int, ranges: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Chunk entries of a written .npy file, hashed from the file itself."""
    offset = npy_data_offset(path)
    digests = []
    with path.open("rb") as f:
        for a, b in ranges:
            f.seek(offset + a * row_bytes)
            digest, left = hashlib.sha256(), (b - a) * row_bytes
            while left:
                block = f.read(min(_READ, left))
                if not block:
                    raise OSError(f"{path}: ends before row {b}")
                digest.update(block)
                left -= len(block)
            digests.append(digest.hexdigest())
    return chunk_table(offset, row_bytes, ranges, digests)


def array_chunks(
    path: Path, shape: tuple[int, ...], dtype: np.dtype, chunk_bytes: int = CHUNK_BYTES
) -> list[dict[str, Any]]:
    """Chunk entries of a written (N, ...) .npy file in chunks of ``chunk_bytes`` worth of rows."""
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
    return hash_chunks(path, row_bytes, row_ranges(shape[0], rows_per_chunk(row_bytes, chunk_bytes)))
