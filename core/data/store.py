"""The on-disk store of an imagefolder or tarball tree, built in chunks by worker processes.

The store is an ordinary cache entry (``cache.py``), in the folder ``cache.entry_dir(cfg,
"labelled")``: ``train_images.npy`` (N,C,H,W) uint8, ``train_labels.npy`` int64, ``test_images.npy``,
``test_labels.npy`` and ``meta.json``, written last. What differs is how it is made: no process
ever holds the dataset, so a tree larger than memory (ImageNet: 190 GB at 224 px) can be stored.

1. The tree is listed and planned (``folders.plan_tree``): which file is which row of which split,
   with which label. Each split's images file is created at its planned size as a sparse staging
   file (``train_images.npy.partial``).
2. Rows are cut into chunks of 64 MiB (``checksums.CHUNK_BYTES``). Worker processes (default: all
   cores, or one in-process worker when the tree's files total under 256 MiB) decode, resize and
   centre-crop the images of a chunk and write each to its row. A tarball of 256 MiB or more is
   read twice (listed, then streamed, the main process handing members to the workers as they
   come); a smaller one is read once, into memory.
3. Each finished chunk is appended, with the SHA-256 of its rows, to ``progress.jsonl``.
4. When all are done, rows of skipped files are squeezed out in place, the staging file becomes
   ``train_images.npy``, the labels are written, and meta.json last, with the whole-file and
   per-chunk SHA-256s, the class names, and the skipped and truncated files.

Failure modes:

* **killed or crashed build**: the next build of the same entry resumes. Finished chunks are
  re-hashed from the staging file and not decoded again; one whose bytes do not match its record
  (power lost before the page cache reached the disk) is decoded again. A resumed store is byte for
  byte the store an uninterrupted build makes.
* **a bad image file** (unreadable, not an image, cut off before any pixel): skipped, named in one
  warning, listed in meta.json (``skipped``); labels stay aligned. A truncated JPEG is decoded as far
  as its data goes and listed under ``truncated`` (``store_rows`` explains each case).
* **a split with no readable image, images of different sizes without data.image_size, a missing
  path, a malformed tree, an unknown name in data.classes**: DataError naming the path; the partial
  entry is deleted (the same setting would fail the same way again).
* **the tree changes**: its fingerprint is part of the entry's key, so a changed tree is a new
  entry; within an entry, a log for another plan is discarded and the build starts over.
* **two processes build the same entry**: a lock file in the entry; the second waits, then uses
  the first one's store.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
from filelock import FileLock
from PIL import Image
from tqdm.auto import tqdm

from core.config import DataConfig
from core.data.cache import FORMAT, META, entry_dir, file_spec, fsync_dir, load, save_npy, write_shared
from core.data.checksums import CHUNK_BYTES, chunk_table, row_ranges, rows_per_chunk, sha256_file
from core.data.class_list import selected_classes
from core.data.errors import DataError
from core.data.folders import TreePlan, list_folder, list_tarball, plan_tree, stream_tarball
from core.data.splits import Decoded
from core.data.store_files import ChunkRecord, ProgressLog, compact, create_staging, open_staging
from core.data.store_rows import Item, Outcome, Staging, decode_chunk, decode_rows, digest_rows, init_worker

log = logging.getLogger(__name__)

TREE_SOURCES = ("imagefolder", "tarball")
PROGRESS = "progress.jsonl"
LOCK = "build.lock"
PARALLEL_MIN_BYTES = 256 << 20  # smaller trees decode in-process: starting workers would cost more
_BATCH_BYTES = 8 << 20  # tarball: encoded bytes handed to a worker per job
_SIZE_SAMPLE = 256  # files whose size estimates a folder's total
_LISTED = 20  # files named in a warning before "and N more"
_SPLITS = ("train", "test")


@dataclass(frozen=True)
class Tree:
    """A listed and planned tree: where its bytes are and which image goes to which row."""

    kind: Literal["imagefolder", "tarball"]
    path: Path
    plan: TreePlan
    encoded_bytes: int  # all planned files (a tarball) or an estimate from a sample (a folder)
    blobs: dict[str, bytes] | None = None  # a small archive's members, read in its one pass

    def display(self, rel: str) -> str:
        """How messages name a file of the tree."""
        return str(self.path / rel) if self.kind == "imagefolder" else f"{self.path}:{rel}"

    def items(self, split: str) -> list[tuple[str, int]]:
        return self.plan.train if split == "train" else self.plan.test


@dataclass(frozen=True)
class Chunk:
    """Rows [start, stop) of one split: the unit of work, of resume and of checksums."""

    split: str
    index: int
    start: int
    stop: int


def open_tree(cfg: DataConfig, progress: bool | None = None) -> Tree:
    """List and plan ``cfg``'s tree (DataError when it is missing or malformed)."""
    assert cfg.root is not None
    path = cfg.root.expanduser()
    classes = selected_classes(cfg.classes)
    if cfg.source == "tarball" and path.is_file() and path.stat().st_size < PARALLEL_MIN_BYTES:
        blobs = dict(stream_tarball(path))  # small: one pass, members held in memory, as they always were
        plan = plan_tree(blobs, str(path), classes)
        return Tree("tarball", path, plan, sum(len(blobs[rel]) for rel, _ in plan.train + plan.test), blobs)
    if cfg.source == "tarball":
        sizes = list_tarball(path, progress)
        plan = plan_tree(sizes, str(path), classes)
        total = sum(sizes[rel] for rel, _ in plan.train + plan.test)
        return Tree("tarball", path, plan, total)
    plan = plan_tree(list_folder(path), str(path), classes)
    every = plan.train + plan.test
    sample = every[:: max(1, len(every) // _SIZE_SAMPLE)]
    sizes = []
    for rel, _ in sample:
        with contextlib.suppress(OSError):
            sizes.append((path / rel).stat().st_size)
    return Tree("imagefolder", path, plan, int(np.mean(sizes) * len(every)) if sizes else 0)


def _probe(tree: Tree) -> tuple[tuple[int, int, int], str]:
    """(3, H, W) of the first image whose header Pillow reads, and its name: the shape every image
    must share when data.image_size is not set. Reads headers only; decodes nothing."""
    names = [rel for rel, _ in tree.plan.train + tree.plan.test]
    if tree.kind == "imagefolder":
        candidates: Any = ((rel, partial(open, tree.path / rel, "rb")) for rel in names)
    elif tree.blobs is not None:
        candidates = ((rel, partial(io.BytesIO, tree.blobs[rel])) for rel in names)
    else:
        wanted = set(names)
        candidates = ((rel, partial(io.BytesIO, data)) for rel, data in stream_tarball(tree.path, wanted.__contains__))
    for rel, opener in candidates:
        try:
            with opener() as f, Image.open(f) as img:
                w, h = img.size
                return (3, h, w), tree.display(rel)
        except Exception:  # a bad file: the next one decides
            continue
    raise DataError(f"{tree.path}: none of its {len(names)} image files can be read")


def _cpus() -> int:
    """Cores this process may run on (fewer than os.cpu_count() under taskset or a container)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _Inline:
    """An executor that runs each call at submit, in this process: no pool for small trees."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def _executor(workers: int) -> Any:
    """A process pool, forked on Linux as DataLoader workers are: a forkserver or spawned worker
    would re-run the caller's main script, which a script without a ``__main__`` guard (or one
    read from stdin) cannot survive. Each worker uses one thread (``init_worker``)."""
    if workers <= 1:
        return _Inline()
    method = "fork" if sys.platform.startswith("linux") else "spawn"  # fork is unsafe on macOS
    main_file = getattr(sys.modules["__main__"], "__file__", None)
    if method == "spawn" and main_file is not None and not os.path.isfile(main_file):
        log.warning("decoding in this process: worker processes cannot re-import a main script read from %s", main_file)
        return _Inline()
    return ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context(method), initializer=init_worker, initargs=(os.getpid(),)
    )


class _Jobs:
    """Calls in flight on an executor, at most ``limit``; each result goes to ``on_done(tag, result)``,
    which may submit more (a finished future frees its slot before its callback runs)."""

    def __init__(self, executor: Any, limit: int, on_done: Callable[[Any, Any], None]) -> None:
        self._executor, self._limit, self._on_done = executor, limit, on_done
        self._pending: dict[Future, Any] = {}

    def submit(self, tag: Any, fn: Callable[..., Any], *args: Any) -> None:
        while len(self._pending) >= self._limit:
            self._wait()
        self._pending[self._executor.submit(fn, *args)] = tag

    def _wait(self) -> None:
        done, _ = wait(list(self._pending), return_when=FIRST_COMPLETED)
        # in submission order (callbacks, and so the progress log, are deterministic in-process);
        # all taken out before any callback submits more
        finished = [(tag, future) for future, tag in self._pending.items() if future in done]
        for _, future in finished:
            del self._pending[future]
        for tag, future in finished:
            self._on_done(tag, future.result())

    def drain(self) -> None:
        while self._pending:
            self._wait()


def _plan_digest(tree: Tree, cfg: DataConfig, shape: tuple[int, int, int], per_chunk: int) -> str:
    """What a progress log must have been written for, to be resumed."""
    blob = json.dumps(
        [FORMAT, tree.kind, cfg.image_size, list(shape), per_chunk, tree.plan.classes, tree.plan.train, tree.plan.test]
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _warn_files(tree: Tree, what: str, files: list[list[Any]]) -> None:
    """One warning naming each file (the first few, then a count)."""
    if not files:
        return
    lines = [f"  {name}: {reason}" for _, name, reason in files[:_LISTED]]
    if len(files) > _LISTED:
        lines.append(f"  and {len(files) - _LISTED} more (meta.json lists them all)")
    log.warning("%s: %d image file(s) %s:\n%s", tree.path, len(files), what, "\n".join(lines))


class _Build:
    """One build (or resumed build) of a store into ``entry``."""

    def __init__(
        self, cfg: DataConfig, entry: Path, workers: int | None, progress: bool | None, chunk_bytes: int
    ) -> None:
        self.cfg, self.entry, self.requested, self.progress, self.chunk_bytes = (
            cfg, entry, workers, progress, chunk_bytes
        )
        self.log = ProgressLog(entry / PROGRESS)
        self.done: dict[tuple[str, int], ChunkRecord] = {}

    def run(self) -> None:
        tree = self.tree = open_tree(self.cfg, self.progress)
        size = self.cfg.image_size
        self.shape, self.first = ((3, size, size), "") if size is not None else _probe(tree)
        per_chunk = rows_per_chunk(int(np.prod(self.shape)), self.chunk_bytes)
        self.chunks = [
            Chunk(split, k, a, b)
            for split in _SPLITS
            for k, (a, b) in enumerate(row_ranges(len(tree.items(split)), per_chunk))
        ]
        plan = _plan_digest(tree, self.cfg, self.shape, per_chunk)
        self.staging = self._resume(plan) or self._start(plan)
        pending_rows = sum(c.stop - c.start for c in self.chunks if (c.split, c.index) not in self.done)
        workers = (
            self.requested
            if self.requested is not None
            else (_cpus() if tree.encoded_bytes >= PARALLEL_MIN_BYTES else 1)
        )
        workers = max(1, min(workers, len(self.chunks)))
        log.info(
            "building the data store %s from %s: %d of %d images to decode, %d worker process(es)",
            self.entry, tree.path, pending_rows, sum(c.stop - c.start for c in self.chunks), workers,
        )
        executor = _executor(workers)
        try:
            self._verify(executor, workers)
            self._decode(executor, workers)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
        self._finish()

    # ------------------------------------------------------------------ state on disk
    def _staging_path(self, split: str) -> Path:
        return self.entry / f"{split}_images.npy.partial"

    def _resume(self, plan: str) -> dict[str, Staging] | None:
        done = self.log.read(plan)
        if done is None:
            return None
        staging = {s: open_staging(self._staging_path(s), len(self.tree.items(s)), self.shape) for s in _SPLITS}
        if any(v is None for v in staging.values()):
            return None
        self.done = done
        log.info("resuming the data store %s: %d of %d chunks were done", self.entry, len(done), len(self.chunks))
        return {s: v for s, v in staging.items() if v is not None}

    def _start(self, plan: str) -> dict[str, Staging]:
        for child in self.entry.iterdir():  # what an older build of this entry left
            if child.name != LOCK:
                child.unlink()
        self.done = {}
        staging = {s: create_staging(self._staging_path(s), len(self.tree.items(s)), self.shape) for s in _SPLITS}
        self.log.start(plan)
        return staging

    # ------------------------------------------------------------------ the work
    def _verify(self, executor: Any, workers: int) -> None:
        """Re-hash the chunks a killed build finished; decode again any that do not match."""
        if not self.done:
            return
        records = list(self.done.values())
        bar = tqdm(total=len(records), desc="checking finished chunks", unit="chunk", disable=self._no_bar())

        def checked(rec: ChunkRecord, digest: str) -> None:
            bar.update(1)
            if digest != rec.sha256:
                log.warning(
                    "%s: chunk %d of %s does not match its checksum; decoding it again",
                    self.entry, rec.index, rec.split,
                )
                del self.done[(rec.split, rec.index)]

        jobs = _Jobs(executor, 2 * workers, checked)
        by_key = {(c.split, c.index): c for c in self.chunks}
        for rec in records:
            c = by_key[(rec.split, rec.index)]
            jobs.submit(rec, digest_rows, self.staging[c.split], c.start, c.stop, frozenset(r[0] for r in rec.skipped))
        jobs.drain()
        bar.close()

    def _no_bar(self) -> bool | None:
        return None if self.progress is None else not self.progress

    def _record(self, chunk: Chunk, outcomes: list[Outcome], digest: str) -> None:
        ordered = sorted(outcomes, key=lambda o: o.row)
        rec = ChunkRecord(
            chunk.split, chunk.index, digest,
            skipped=[[o.row, o.name, o.reason] for o in ordered if o.status == "skipped"],
            truncated=[[o.row, o.name, o.reason] for o in ordered if o.status == "truncated"],
        )
        self.log.append(rec)
        self.done[(chunk.split, chunk.index)] = rec

    def _decode(self, executor: Any, workers: int) -> None:
        pending = [c for c in self.chunks if (c.split, c.index) not in self.done]
        if not pending:  # killed while finishing: nothing to decode, not even an archive to read
            return
        total = sum(c.stop - c.start for c in self.chunks)
        self.bar = tqdm(
            total=total, initial=total - sum(c.stop - c.start for c in pending), desc="decoding", unit="img",
            disable=self._no_bar(), smoothing=0.05,
        )
        try:
            if self.tree.kind == "tarball" and self.tree.blobs is None:
                self._decode_tarball(executor, workers, pending)
            else:
                self._decode_chunks(executor, workers, pending)
        finally:
            self.bar.close()

    def _decode_chunks(self, executor: Any, workers: int, pending: list[Chunk]) -> None:
        """A folder (workers read the files) or a small archive already in memory: chunk by chunk."""
        blobs = self.tree.blobs

        def finished(chunk: Chunk, result: tuple[list[Outcome], str]) -> None:
            self._record(chunk, *result)
            self.bar.update(chunk.stop - chunk.start)

        jobs = _Jobs(executor, 2 * workers, finished)
        for c in pending:
            items = [
                Item(row, self.tree.display(rel), str(self.tree.path / rel) if blobs is None else blobs[rel])
                for row, (rel, _) in enumerate(self.tree.items(c.split)[c.start : c.stop], c.start)
            ]
            jobs.submit(c, decode_chunk, self.staging[c.split], items, self.cfg.image_size, self.first, c.start, c.stop)
        jobs.drain()

    def _decode_tarball(self, executor: Any, workers: int, pending: list[Chunk]) -> None:
        """Stream a large archive once more; members go to workers in batches, in archive order, and a chunk
        is hashed once its last member is decoded."""
        chunk_of: dict[tuple[str, int], Chunk] = {}
        rows: dict[str, tuple[str, int]] = {}
        per_chunk = self.chunks[0].stop - self.chunks[0].start
        for c in pending:
            for row, (rel, _) in enumerate(self.tree.items(c.split)[c.start : c.stop], c.start):
                rows[rel] = (c.split, row)
            chunk_of[(c.split, c.index)] = c
        left = {c: c.stop - c.start for c in pending}
        outcomes: dict[Chunk, list[Outcome]] = {c: [] for c in pending}

        def finished(tag: tuple[str, Any], result: Any) -> None:
            kind, what = tag
            if kind == "digest":
                self._record(what, outcomes.pop(what), result)
                return
            for o in result:
                c = chunk_of[(what, o.row // per_chunk)]
                outcomes[c].append(o)
                left[c] -= 1
                if left[c] == 0:
                    skipped = frozenset(x.row for x in outcomes[c] if x.status == "skipped")
                    jobs.submit(("digest", c), digest_rows, self.staging[c.split], c.start, c.stop, skipped)
            self.bar.update(len(result))

        jobs = _Jobs(executor, 2 * workers, finished)
        batch: dict[str, list[Item]] = {s: [] for s in _SPLITS}
        size = 0

        def flush() -> None:
            for split, items in batch.items():
                if items:
                    jobs.submit(
                        ("rows", split), decode_rows, self.staging[split], items, self.cfg.image_size, self.first
                    )
                    batch[split] = []

        for rel, data in stream_tarball(self.tree.path, rows.__contains__):
            split, row = rows.pop(rel)  # popped: a member stored twice is decoded once
            batch[split].append(Item(row, self.tree.display(rel), data))
            size += len(data)
            if size >= _BATCH_BYTES:
                flush()
                size = 0
        flush()
        jobs.drain()
        if rows:
            raise DataError(f"{self.tree.path}: {len(rows)} member(s) listed earlier were not found on the second "
                            f"pass (was the archive replaced?), e.g. {next(iter(rows))}")

    # ------------------------------------------------------------------ the end
    def _finish(self) -> None:
        arrays: dict[str, Any] = {}
        skipped_all: list[list[Any]] = []
        truncated_all: list[list[Any]] = []
        row_bytes = int(np.prod(self.shape))
        for split in _SPLITS:
            chunks = [c for c in self.chunks if c.split == split]
            records = [self.done[(split, c.index)] for c in chunks]
            items = self.tree.items(split)
            skipped = sorted(r[0] for rec in records for r in rec.skipped)
            skipped_all += [r for rec in records for r in rec.skipped]
            truncated_all += [r for rec in records for r in rec.truncated]
            if len(skipped) == len(items):
                first = records[0].skipped[0]
                raise DataError(
                    f"{self.tree.path}: none of the {len(items)} {split} images can be decoded "
                    f"(e.g. {first[1]}: {first[2]})"
                )
            staging = self.staging[split]
            keep = compact(staging, len(items), skipped)
            images = self.entry / f"{split}_images.npy"
            os.replace(staging.path, images)
            ranges, digests, at = [], [], 0
            for c, rec in zip(chunks, records, strict=True):
                good = c.stop - c.start - len(rec.skipped)
                if good:
                    ranges.append((at, at + good))
                    digests.append(rec.sha256)
                at += good
            arrays[f"{split}_images"] = {
                "shape": [keep, *self.shape],
                "dtype": "uint8",
                "bytes": images.stat().st_size,
                "sha256": sha256_file(images, self.progress),
                "chunks": chunk_table(staging.offset, row_bytes, ranges, digests),
            }
            dropped = set(skipped)
            labels = np.array([label for row, (_, label) in enumerate(items) if row not in dropped], dtype=np.int64)
            path = self.entry / f"{split}_labels.npy"
            write_shared(path, partial(save_npy, array=labels))
            arrays[f"{split}_labels"] = file_spec(path, labels)
        meta = {
            "format": FORMAT,
            "classes": self.tree.plan.classes,
            "arrays": {k: arrays[k] for k in ("train_images", "train_labels", "test_images", "test_labels")},
            "skipped": [{"path": name, "reason": reason} for _, name, reason in skipped_all],
            "truncated": [{"path": name, "reason": reason} for _, name, reason in truncated_all],
        }
        write_shared(self.entry / META, lambda f: f.write(json.dumps(meta, indent=1).encode()))
        fsync_dir(self.entry)
        self.log.path.unlink()
        _warn_files(self.tree, "could not be decoded and were left out of the store", skipped_all)
        _warn_files(
            self.tree, "were cut short and were decoded as far as their data goes (the rest is grey)", truncated_all
        )


def _make_cache_dir(cfg: DataConfig) -> None:
    # before keying, as cache.cached does: creating it inside the root cannot change the key later
    with contextlib.suppress(OSError):
        cfg.cache_dir.expanduser().mkdir(parents=True, exist_ok=True)


def build_store(
    cfg: DataConfig,
    *,
    workers: int | None = None,
    progress: bool | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    verify_existing: bool = False,
) -> Path:
    """Build, resume or find the store of ``cfg``'s tree; returns its entry folder.

    ``workers``: decoding processes (default: all cores, or in-process for a tree under 256 MiB).
    ``progress``: progress bars (None: only on a terminal). ``verify_existing``: check a complete
    entry's checksums first and rebuild it when they fail (otherwise a complete entry is returned).
    """
    if cfg.source not in TREE_SOURCES:
        raise DataError(f"data stores are built from imagefolder and tarball trees, not source {cfg.source}")
    _make_cache_dir(cfg)
    entry = entry_dir(cfg, "labelled")
    if (entry / META).is_file() and not verify_existing:
        return entry
    entry.mkdir(parents=True, exist_ok=True)
    with FileLock(entry / LOCK):
        if (entry / META).is_file():
            if not verify_existing or load(entry) is not None:
                (entry / LOCK).unlink(missing_ok=True)  # complete: whoever waits on it finds meta.json
                return entry
            (entry / META).unlink()
        try:
            _Build(cfg, entry, workers, progress, chunk_bytes).run()
        except DataError:
            shutil.rmtree(entry, ignore_errors=True)  # the same settings would fail the same way
            raise
        (entry / LOCK).unlink(missing_ok=True)  # only once complete: a waiter then finds meta.json
    return entry


def ensure_store(cfg: DataConfig, workers: int | None = None, progress: bool | None = None) -> None:
    """Build or resume ``cfg``'s store unless it is complete: the step that never holds the tree
    in memory. A cache folder that cannot be written only costs a warning here: ``decode_tree``
    then builds in a temporary folder."""
    try:
        build_store(cfg, workers=workers, progress=progress)
    except OSError as exc:
        log.warning("could not write the data store under %s (%s)", cfg.cache_dir, exc)


def decode_tree(cfg: DataConfig) -> Decoded:
    """The tree's arrays in memory, through its store: the builder ``cache.cached`` calls when the
    entry is missing or damaged. A damaged store is built again; when the cache folder cannot be
    written, the store is built in a temporary folder, read and deleted again, with a warning, so
    the run goes on as with any other source."""
    try:
        found = load(build_store(cfg, verify_existing=True))
    except OSError as exc:
        log.warning(
            "could not write the data store under %s (%s); building it in a temporary folder", cfg.cache_dir, exc
        )
        with tempfile.TemporaryDirectory(prefix="simclr-store-") as tmp:
            found = load(build_store(cfg.model_copy(update={"cache_dir": Path(tmp)})))
    if found is None:
        raise DataError(f"{cfg.root}: the data store just built does not pass its own checksums (is the disk failing?)")
    return found
