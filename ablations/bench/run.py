"""``run_bench``: every measurement of one ``BenchOptions``, in order, as one JSON-ready dict."""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any

import torch

from ablations.bench.augmentation import bench_augmentation
from ablations.bench.dataset import bench_data
from ablations.bench.options import BenchOptions
from ablations.bench.timing import device_info, max_rss_mb, versions, warm_up_steps
from ablations.bench.training import bench_end_to_end, bench_numerics


def run_bench(options: BenchOptions) -> dict[str, Any]:
    """Every measurement, as one JSON-ready dict.

    The data is resolved first, so a ``--data`` (or ``$SIMCLR_DATA``) that is not there raises
    ConfigFileError before minutes are spent measuring.
    """
    from core.hostmem import keep_freed_memory
    from core.trainer import resolve_device

    dev = resolve_device(options.device)
    sizes = options.sizes_for(dev)
    data = bench_data(options.data, options.synthetic_size)
    started = time.perf_counter()
    # as the command line does at start; the augmentation-only process otherwise page-faults every
    # batch, as training does not (core.hostmem), and kornia running first hid that
    allocator = keep_freed_memory()
    notes = []
    if sizes.batch_size != 512:
        notes.append(f"end-to-end batch {sizes.batch_size}, not 512 (--quick on CPU); s/epoch scales accordingly")
    aug = [
        bench_augmentation(dev, s, options.aug_batch_size, sizes.aug_seconds, sizes.per_image_count)
        for s in options.image_sizes
    ]
    e2e = bench_end_to_end(dev, options, sizes, data)
    numerics = None
    if options.numerics_encoder is not None:
        numerics = bench_numerics(
            dev, options.numerics_encoder, options.numerics_width, sizes.numerics_batch, sizes.numerics_steps,
            rounds=options.numerics_rounds,
        )
    compile_ = options.compile
    if any(r["extrapolated"] for r in e2e["rows"]):
        warm = warm_up_steps(compile_)
        notes.append(f"s/epoch extrapolated from {sizes.steps} timed steps (after {warm} warm-up step{'s' * (warm > 1)}"
                     f"{', compiled' if compile_ else ''})")
    if dev.type == "cpu":
        notes.append("peak memory on CPU is the process's maximum resident set size so far (ru_maxrss)")
    return {
        "date": _dt.date.today().isoformat(),
        "command": options.command,
        "quick": options.quick,
        "device": device_info(dev),
        "host_allocator": allocator,
        "versions": versions(),
        "augmentation": aug,
        "end_to_end": e2e,
        "numerics": numerics,
        "peak_memory": {
            "process_max_rss_mb": max_rss_mb(),
            "cuda_max_allocated_mb": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None,
        },
        "wall_s": time.perf_counter() - started,
        "notes": notes,
    }
