"""Images that stay in their files: a uint8 (N, C, H, W) view over memory-mapped arrays.

A dataset larger than memory cannot be a tensor, so ``MappedImages`` is the read-only array-like
that training and evaluation use instead: its rows are concatenated memory-mapped parts (the
labelled train split, plus STL-10's unlabeled images), optionally seen through an index array
(a ``data.subset``), and every read is a copy of just the rows asked for. Selecting a subset
composes index arrays; nothing ever copies a whole split.

Reads go through the page cache: the pages they touch are file-backed (RssFile), which the kernel
drops under pressure, so the process's anonymous memory does not grow with the dataset. The parts
are copy-on-write maps (``np.load(mmap_mode="c")``): a stray write would go to a private anonymous
page, never to the file. Reads of one batch run in ascending file order (then the rows are put back
in the order asked for), so the kernel sees forward reads.

Failure modes: a store file truncated by someone else while it is mapped makes the next read of a
missing page raise SIGBUS, which kills the process (the size check when the store is opened
catches a file that is already short); an I/O error reading the disk does the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class MappedImages:
    """uint8 images (N, C, H, W) read on demand from memory-mapped parts, optionally through rows."""

    dtype = torch.uint8

    def __init__(self, parts: Sequence[torch.Tensor], index: torch.Tensor | None = None) -> None:
        if not parts:
            raise ValueError("MappedImages needs at least one part")
        shape = parts[0].shape[1:]
        for p in parts:
            if p.dtype != torch.uint8 or p.dim() != 4 or p.shape[1:] != shape:
                raise ValueError(
                    f"every part must be uint8 (N, {', '.join(map(str, shape))}), got {p.dtype} {tuple(p.shape)}"
                )
        self.parts = tuple(parts)
        # first row of every part in the concatenation, and the total as the last entry
        sizes = torch.tensor([0] + [p.shape[0] for p in parts], dtype=torch.int64)
        self.offsets = sizes.cumsum(0)
        self.index = None if index is None else index.to(torch.int64)
        n = int(self.offsets[-1]) if self.index is None else len(self.index)
        self.shape = torch.Size((n, *shape))

    # ------------------------------------------------------------------ array-like
    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return 4

    def dim(self) -> int:
        return 4

    @property
    def row_bytes(self) -> int:
        c, h, w = self.shape[1:]
        return c * h * w

    @property
    def nbytes(self) -> int:
        """Bytes of the rows this view holds (not of the files it reads from)."""
        return len(self) * self.row_bytes

    def __repr__(self) -> str:
        sub = "" if self.index is None else f", through {len(self.index)} rows"
        return f"MappedImages({tuple(self.shape)}, {len(self.parts)} part(s){sub})"

    # ------------------------------------------------------------------ views
    def select(self, rows: torch.Tensor) -> MappedImages:
        """The images ``rows`` of this view, as another view (index arrays compose; nothing is read)."""
        rows = rows.to(torch.int64)
        return MappedImages(self.parts, rows if self.index is None else self.index[rows])

    @staticmethod
    def concat(*views: MappedImages) -> MappedImages:
        """Views one after another, e.g. the labelled train split then STL-10's unlabeled images."""
        parts, indices, start = [], [], 0
        for v in views:
            parts += v.parts
            rows = torch.arange(int(v.offsets[-1])) if v.index is None else v.index
            indices.append(rows + start)
            start += int(v.offsets[-1])
        whole = all(v.index is None for v in views)
        return MappedImages(parts, None if whole else torch.cat(indices))

    # ------------------------------------------------------------------ reads
    def _stored(self, rows: torch.Tensor) -> torch.Tensor:
        """Row numbers in the concatenation of the parts."""
        return rows if self.index is None else self.index[rows]

    def read(self, rows: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Copy the images ``rows`` (1-D int, any order) into ``out`` (e.g. pinned memory) or a new
        tensor, in the order asked for. The files are read in ascending order."""
        rows = rows.to(device="cpu", dtype=torch.int64)
        n = len(rows)
        if out is None:
            out = torch.empty((n, *self.shape[1:]), dtype=torch.uint8)
        elif out.shape != (n, *self.shape[1:]) or out.dtype != torch.uint8:
            raise ValueError(f"out must be uint8 {(n, *self.shape[1:])}, got {out.dtype} {tuple(out.shape)}")
        stored, order = self._stored(rows).sort()
        if n and (int(stored[0]) < 0 or int(stored[-1]) >= int(self.offsets[-1])):
            raise IndexError(f"rows out of range for {self!r}")
        in_order = torch.empty(out.shape, dtype=torch.uint8)  # plain memory even when ``out`` is pinned
        # sorted, so each part's rows are one contiguous run of ``stored``
        bounds = torch.searchsorted(stored, self.offsets).tolist()
        for p, part in enumerate(self.parts):
            lo, hi = bounds[p], bounds[p + 1]
            if hi > lo:
                torch.index_select(part, 0, stored[lo:hi] - int(self.offsets[p]), out=in_order[lo:hi])
        out.index_copy_(0, order, in_order)  # out[order[k]] = in_order[k]: back to the order asked for
        return out

    def read_range(self, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """Images ``start:stop`` (a batch of evaluation): copied into ``out`` when given, else a view
        of the map where the rows are contiguous in one file (callers only read it)."""
        stop = min(stop, len(self))
        if self.index is None and len(self.parts) == 1:
            rows = self.parts[0][start:stop]
            return rows if out is None else out.copy_(rows)
        return self.read(torch.arange(start, stop), out=out)

    def __getitem__(self, key: int | slice | torch.Tensor) -> torch.Tensor:
        """One image (C, H, W), a slice or rows, as tensors (copies, or views of the read-only map)."""
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                return self.read_range(start, stop)
            return self.read(torch.arange(start, stop, step))
        if isinstance(key, torch.Tensor):
            return self.read(key)
        i = int(key)
        if not -len(self) <= i < len(self):
            raise IndexError(f"image {i} out of range for {self!r}")
        stored = int(self._stored(torch.tensor([i % len(self)]))[0])
        p = int(torch.searchsorted(self.offsets, torch.tensor(stored), right=True)) - 1
        return self.parts[p][stored - int(self.offsets[p])]
