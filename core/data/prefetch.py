"""Read the next batches from memory-mapped images in a background thread, ahead of the step.

A batch read from a memory map page-faults through the page cache (or the disk), which the training
step should not wait for: a daemon thread reads up to ``depth`` batches ahead, in the order asked
for, while the main thread trains. On CUDA each batch is read into one of ``depth + 1`` pinned host
buffers and copied to the device with ``non_blocking=True`` on a side stream; the main thread's
stream waits for that copy's event before using the batch (no host sync), and a pinned buffer is
refilled only after its previous copy has finished. On the CPU the thread only reads.

The thread draws no random numbers and only reads, so what it yields is exactly what reading the
same rows in the main thread gives: the order of batches and their contents do not depend on timing.
Memory: about ``depth`` + 3 batches of uint8 images (waiting, being read with the scratch of its
sorted read, and in use), plus on CUDA ``depth`` + 1 pinned buffers: it depends on the batch, not
on the dataset.

Failure modes: an exception while reading is raised in the consumer at the batch it belongs to;
a consumer that stops early (an exception in training, Ctrl-C, ``close()``) stops the thread and
waits for it, so no reader outlives its epoch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable

import torch

from core.data.mapped_images import MappedImages

Job = torch.Tensor | slice  # rows to read, or a contiguous range of rows
_END = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _rows(job: Job) -> int:
    return len(job) if isinstance(job, torch.Tensor) else job.stop - job.start


def _read(images: MappedImages, job: Job, out: torch.Tensor | None) -> torch.Tensor:
    """A copy of the rows of ``job`` (in this thread: the page faults happen here, not in the step)."""
    if isinstance(job, slice):
        if out is None:
            out = torch.empty((_rows(job), *images.shape[1:]), dtype=torch.uint8)
        return images.read_range(job.start, job.stop, out=out)
    return images.read(job, out=out)


class Prefetcher:
    """Iterate over the batches ``jobs`` of ``images``, read ahead and placed on ``device``."""

    def __init__(self, images: MappedImages, jobs: Iterable[Job], device: torch.device, depth: int = 2) -> None:
        self.images, self.jobs, self.device, self.depth = images, jobs, torch.device(device), max(1, depth)
        self.cuda = self.device.type == "cuda"
        self._queue: queue.Queue[object] = queue.Queue(maxsize=self.depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="prefetch", daemon=True)
        self._started = False

    # ------------------------------------------------------------------ the reading thread
    def _put(self, item: object) -> bool:
        """Hand ``item`` over unless the consumer has stopped; False when it has."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            if self.cuda:
                with torch.cuda.device(self.device):
                    self._work_cuda()
            else:
                for job in self.jobs:
                    if not self._put(_read(self.images, job, None)):
                        return
            self._put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(_Failed(exc))

    def _work_cuda(self) -> None:
        stream = torch.cuda.Stream(self.device)
        slots = self.depth + 1  # one being filled while ``depth`` wait in the queue
        buffers: list[torch.Tensor | None] = [None] * slots
        copied: list[torch.cuda.Event | None] = [None] * slots
        for i, job in enumerate(self.jobs):
            slot, n = i % slots, _rows(job)
            done = copied[slot]
            if done is not None:
                done.synchronize()  # its previous batch has left the pinned buffer
            buffer = buffers[slot]
            if buffer is None or buffer.shape[0] < n:
                buffer = buffers[slot] = torch.empty((n, *self.images.shape[1:]), dtype=torch.uint8, pin_memory=True)
            host = _read(self.images, job, buffer[:n])
            with torch.cuda.stream(stream):
                batch = host.to(self.device, non_blocking=True)
                event = copied[slot] = torch.cuda.Event()
                event.record(stream)
            if not self._put((batch, event)):
                return

    # ------------------------------------------------------------------ the consumer
    def __iter__(self) -> Generator[torch.Tensor, None, None]:
        if self._started:
            raise RuntimeError("a Prefetcher is iterated once")
        self._started = True
        self._thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.exc
                if self.cuda:
                    batch, event = item  # type: ignore[misc]
                    current = torch.cuda.current_stream(self.device)
                    current.wait_event(event)
                    batch.record_stream(current)  # its memory is not reused before this stream is done with it
                else:
                    batch = item  # type: ignore[assignment]
                item = None
                yield batch
                del batch  # not held here while waiting for the next one
        finally:
            self.close()

    def close(self) -> None:
        """Stop the reading thread and wait for it (idempotent)."""
        self._stop.set()
        if self._thread.is_alive():
            while True:  # unblock a reader waiting on a full queue
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self._thread.join()


def prefetch(
    images: MappedImages, jobs: Iterable[Job], device: torch.device, depth: int = 2
) -> Generator[torch.Tensor, None, None]:
    """The batches ``jobs`` of ``images`` on ``device``, read ``depth`` batches ahead in a thread
    (``close()`` the generator to stop it early)."""
    return Prefetcher(images, jobs, device, depth).__iter__()
