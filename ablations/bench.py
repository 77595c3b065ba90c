"""``python -m ablations bench``: how fast the data pipeline and the training step are, in one run.

Measures, on one device:

* augmentation throughput (images/s, one view per image) of crop+flip+color jitter+grayscale at
  32x32 and 96x96, batch 512: the batched ``core.augment`` pipeline, the per-image torchvision v2
  pipeline (the ``train.loader: torchvision`` backend, one process) and, when installed,
  ``kornia.augmentation``; each with its speed-up over torchvision;
* end-to-end pretraining throughput (images/s and s/epoch) of ResNet-18 (CIFAR stem) on CIFAR-10:
  (a) our pipeline (``train.loader: batched``), (b) the per-image torchvision pipeline in DataLoader
  workers (``train.loader: torchvision``), (c) the model alone on random views already on the device
  (the ceiling a data pipeline can reach);
* end-to-end pretraining images/s under the default numerics (``train.precision: auto``,
  ``train.channels_last`` unset: bf16 autocast and channels_last where the device computes them
  natively) against forced fp32 NCHW, interleaved, with the speed-up (``core.numerics``);
* peak memory, the device and the library versions.

It prints a table and writes everything as JSON (``--json``). ``--quick`` is a CPU-sized run of a
few minutes: fewer timed iterations, a smaller end-to-end batch, a few steps extrapolated to s/epoch.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from core.config import COMPILE_MODES, torch_compile_mode

AUG_OPS = "crop+flip+color jitter+grayscale"
CIFAR_TRAIN_IMAGES = 50_000
_REPO = Path(__file__).resolve().parents[1]
DEFAULT_TARBALL = _REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"

BENCH_EPILOG = """\
examples:
  python -m ablations bench --quick                    # CPU, a few minutes
  python -m ablations bench --json bench.json          # full run on the default device (CUDA if any)
  python -m ablations bench --device cpu --threads 2 --quick --profile
"""


# ---------------------------------------------------------------------------------------- helpers
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(
    fn: Callable[[], Any], device: torch.device, min_seconds: float, min_iters: int = 1, warm_up: bool = True
) -> tuple[float, int]:
    """Run ``fn`` (after one untimed warm-up unless ``warm_up`` is False) until ``min_seconds`` and
    ``min_iters`` are reached; returns (seconds, iterations)."""
    if warm_up:
        fn()
    _sync(device)
    iters = 0
    started = time.perf_counter()
    while True:
        fn()
        iters += 1
        if iters >= min_iters:
            _sync(device)
            elapsed = time.perf_counter() - started
            if elapsed >= min_seconds:
                return elapsed, iters


def _ratio(a: float | None, b: float | None) -> str | None:
    if a is None or b is None or b <= 0:
        return None
    return f"{a / b:.1f}x"


def _max_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return _max_rss_mb()


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def device_info(device: torch.device) -> dict[str, Any]:
    from core.numerics import cpu_bf16_support, device_name

    info: dict[str, Any] = {
        "type": device.type,
        "name": device_name(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_bf16_support(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_available"] = len(os.sched_getaffinity(0))
    try:
        info["load_average_1min"] = os.getloadavg()[0]
    except OSError:
        info["load_average_1min"] = None
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
    return info


def versions() -> dict[str, str | None]:
    import numpy
    import torchvision

    try:
        import kornia

        kornia_version: str | None = kornia.__version__
    except ImportError:
        kornia_version = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "kornia": kornia_version,
        "numpy": numpy.__version__,
    }


# ---------------------------------------------------------------------------------------- augmentation
def _kornia_pipeline(cfg: Any, size: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    try:
        import kornia.augmentation as K
    except ImportError:
        return None
    s = cfg.color.strength
    seq = K.AugmentationSequential(
        K.RandomResizedCrop((size, size), scale=cfg.crop.scale, ratio=cfg.crop.ratio),
        K.RandomHorizontalFlip(p=0.5),
        K.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, min(0.5, 0.2 * s), p=cfg.color.jitter_p),
        K.RandomGrayscale(p=cfg.color.grayscale_p),
    )
    return seq


def bench_augmentation(
    device: torch.device, size: int, batch_size: int, min_seconds: float, per_image_count: int, rounds: int = 7
) -> dict[str, Any]:
    """images/s of one view of crop+flip+color+grayscale: batched, per-image torchvision, kornia.

    The pipelines are timed in ``rounds`` interleaved rounds (batched, torchvision, kornia, batched,
    ...), each round ``min_seconds / rounds`` per pipeline. A shared machine's speed drifts by tens of
    percent within a minute; a speed-up taken from adjacent windows cancels that drift, so each
    reported speed-up is the median of the per-round ratios and each rate the median over rounds.
    """
    from core.augment import Compose, build_transform, to_float
    from core.config import AugmentConfig
    from core.loaders import TorchvisionViews

    cfg = AugmentConfig(ops=["crop", "color"])
    gen = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8, generator=gen, device=device)
    ops = Compose([build_transform(name, cfg) for name in cfg.ops])

    # per-image torchvision v2 in this one process (the DataLoader backend runs it in each worker)
    host = images.cpu()
    tv = TorchvisionViews(cfg, size)
    count = min(per_image_count, batch_size)

    def per_image() -> None:
        for i in range(count):
            tv.ops(host[i].float().div_(255.0))

    pipelines: dict[str, tuple[Callable[[], Any], torch.device, int, float]] = {
        "batched": (lambda: ops(to_float(images), gen), device, batch_size, min_seconds),
        "torchvision": (per_image, torch.device("cpu"), count, min_seconds / 2),
    }
    kornia_note = None
    seq = _kornia_pipeline(cfg, size)
    if seq is None:
        kornia_note = "kornia not installed: skipped"
    else:
        seq = seq.to(device)
        pipelines["kornia"] = (lambda: seq(to_float(images)), device, batch_size, min_seconds)
    rounds = max(1, rounds)
    per_round: dict[str, list[float]] = {name: [] for name in pipelines}
    for r in range(rounds):
        for name, (fn, dev, n_images, seconds) in pipelines.items():
            elapsed, iters = _timed(fn, dev, seconds / rounds, warm_up=r == 0)
            per_round[name].append(n_images * iters / elapsed)

    def speedup(name: str) -> tuple[str | None, list[float]]:
        if name not in per_round:
            return None, []
        ratios = [a / b for a, b in zip(per_round[name], per_round["torchvision"])]
        return f"{statistics.median(ratios):.1f}x", ratios

    batched_speedup, batched_ratios = speedup("batched")
    kornia_speedup, kornia_ratios = speedup("kornia")
    return {
        "image_size": size,
        "batch_size": batch_size,
        "pipeline": AUG_OPS,
        "rounds": rounds,
        "batched_images_per_s": statistics.median(per_round["batched"]),
        "torchvision_images_per_s": statistics.median(per_round["torchvision"]),
        "kornia_images_per_s": statistics.median(per_round["kornia"]) if "kornia" in per_round else None,
        "batched_speedup": batched_speedup,
        "batched_speedup_range": _spread(batched_ratios),
        "kornia_speedup": kornia_speedup,
        "kornia_speedup_range": _spread(kornia_ratios),
        "per_round_images_per_s": per_round,
        "note": kornia_note,
    }


def _spread(ratios: list[float]) -> str | None:
    """'8.1-9.4x': the lowest and highest per-round speed-up, so the table shows the run's own noise."""
    return f"{min(ratios):.1f}-{max(ratios):.1f}x" if ratios else None


# ---------------------------------------------------------------------------------------- end to end
def _splits(data: str, seed: int, synthetic_size: int = CIFAR_TRAIN_IMAGES) -> tuple[Any, str]:
    from core.config import DataConfig
    from core.data import load_dataset

    if data != "synthetic":
        path = Path(data) if data != "auto" else DEFAULT_TARBALL
        if path.exists():
            cfg = DataConfig(source="tarball", root=path)
            return load_dataset(cfg, seed=seed), f"CIFAR-10 (JPEG) from {path}"
        if data != "auto":
            raise FileNotFoundError(f"--data {data}: no such file")
    cfg = DataConfig(
        source="synthetic",
        synthetic={"num_classes": 10, "train_size": synthetic_size, "test_size": 20, "image_size": 32},
    )
    why = "asked for" if data == "synthetic" else "CIFAR-10 tarball not found"
    return load_dataset(cfg, seed=seed), f"synthetic, CIFAR-10 shape ({synthetic_size:,} x 3 x 32 x 32; {why})"


def _run_config(device: torch.device, batch_size: int, loader: str, workers: int, encoder: str, compile_: bool | str) -> Any:
    from core.config import RunConfig

    return RunConfig.model_validate(
        {
            "data": {"source": "synthetic"},
            "model": {"encoder": encoder, "cifar_stem": True, "width": 8},
            "train": {
                "batch_size": batch_size,
                "device": str(device),
                "loader": loader,
                "loader_workers": workers,
                "compile": compile_,
                "progress": False,
                "checkpoint": False,
                "epochs": 1,
            },
        }
    )


def _row(name: str, batch_size: int, steps: int, seconds: float, epoch_images: int, steps_per_epoch: int, device: torch.device) -> dict[str, Any]:
    rate = batch_size * steps / seconds
    return {
        "name": name,
        "images_per_s": rate,
        "s_per_epoch": epoch_images / rate,
        "extrapolated": steps < steps_per_epoch,
        "steps": steps,
        "batch_size": batch_size,
        "peak_memory_mb": _peak_mb(device),
        "speedup": None,
    }


def _warm_up_steps(compile_: bool | str) -> int:
    """Untimed steps before timing: one; three when compiled (compiling, then CUDA graphs' warm-up
    and recording under reduce-overhead)."""
    return 3 if compile_ else 1


def time_steps(
    trainer: Any,
    next_views: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    device: torch.device,
    warm_up: int | None = None,
) -> float:
    """Seconds for ``steps`` training steps on the views ``next_views`` yields, after ``warm_up``
    untimed steps (default: ``_warm_up_steps``); the peak-memory counter restarts after the
    warm-up. One sync at the end, as in training."""
    if warm_up is None:
        warm_up = _warm_up_steps(trainer.config.train.compile)
    for _ in range(warm_up):
        trainer._step(*next_views())
    _sync(device)
    _reset_peak(device)
    started = time.perf_counter()
    for _ in range(steps):
        loss, _ = trainer._step(*next_views())
    loss.item()
    _sync(device)
    return time.perf_counter() - started


def bench_end_to_end(
    device: torch.device,
    batch_size: int,
    steps: int,
    data: str,
    workers: int,
    encoder: str = "resnet18",
    compile_: bool | str = False,
    profile: bool = False,
    synthetic_size: int = CIFAR_TRAIN_IMAGES,
) -> dict[str, Any]:
    """(a) batched pipeline, (b) torchvision DataLoader pipeline, (c) model alone; ``steps`` timed
    steps each after the warm-up of ``time_steps``."""
    from core.trainer import Trainer

    splits, data_label = _splits(data, seed=0, synthetic_size=synthetic_size)
    n = splits.pretrain.shape[0]
    steps_per_epoch = n // batch_size
    rows = []
    profile_table = None

    # (a) our pipeline: the trainer's own epoch iterator and step
    trainer = Trainer(_run_config(device, batch_size, "batched", workers, encoder, compile_), splits=splits)
    numerics = trainer.numerics
    trainer.model.train()
    batches = trainer._view_batches(0)
    seconds = time_steps(trainer, batches.__next__, steps, device)
    rows.append(_row("(a) batched (ours)", batch_size, steps, seconds, n, steps_per_epoch, device))
    if profile:
        profile_table = _profile_step(trainer, batches, device)
    del trainer, batches

    # (b) per-image torchvision v2 in DataLoader workers
    trainer = Trainer(_run_config(device, batch_size, "torchvision", workers, encoder, compile_), splits=splits)
    trainer.model.train()
    batches = trainer._view_batches(0)
    seconds = time_steps(trainer, batches.__next__, steps, device)
    rows.append(_row(f"(b) torchvision per-image, DataLoader workers={workers}", batch_size, steps, seconds, n, steps_per_epoch, device))
    del batches  # shuts the workers down

    # (c) the model alone on random views already on the device
    gen = torch.Generator(device=device).manual_seed(0)
    shape = (batch_size, splits.channels, *splits.pretrain.shape[2:])
    v1 = torch.rand(shape, generator=gen, device=device)
    v2 = torch.rand(shape, generator=gen, device=device)
    seconds = time_steps(trainer, lambda: (v1, v2), steps, device)
    rows.append(_row("(c) model only, random tensors on device (ceiling)", batch_size, steps, seconds, n, steps_per_epoch, device))
    del trainer

    a, b, c = (r["images_per_s"] for r in rows)
    rows[0]["speedup"] = f"{_ratio(a, b)} vs (b); {100 * a / c:.0f}% of (c)"
    rows[2]["speedup"] = f"{_ratio(c, b)} vs (b)"
    return {
        "data": data_label,
        "model": f"{encoder}, CIFAR stem, SimCLR head, NT-Xent, LARS",
        "epoch_images": n,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": batch_size,
        "precision": numerics.describe(),
        "channels_last": numerics.channels_last,
        "compile": compile_,
        "rows": rows,
        "profile": profile_table,
    }


def bench_numerics(
    device: torch.device, encoder: str, width: int, batch_size: int, steps: int, rounds: int = 5
) -> dict[str, Any]:
    """End-to-end pretraining images/s (batched augmentation + step) under the default numerics
    against forced fp32 NCHW (``train.precision=fp32``, ``train.channels_last=false``): the same
    synthetic CIFAR-shaped data, ``rounds`` interleaved rounds of ``steps`` timed steps each, and
    the speed-up as the median of the per-round ratios (the machine's drift cancels within a round)."""
    from core.config import RunConfig
    from core.data import load_dataset
    from core.trainer import Trainer

    base = {
        "model": {"encoder": encoder, "cifar_stem": True, "width": width},
        "train": {"batch_size": batch_size, "device": str(device), "progress": False, "checkpoint": False, "epochs": 1},
    }
    size = batch_size * (rounds * steps + rounds + 1)  # every timed and warm-up step draws a fresh batch
    data = RunConfig.model_validate(
        {"data": {"source": "synthetic", "synthetic": {"num_classes": 10, "train_size": size, "test_size": 20, "image_size": 32}}}
    ).data
    splits = load_dataset(data, seed=0)
    configs = {
        "defaults": RunConfig.model_validate(base),
        "fp32 NCHW": RunConfig.model_validate({**base, "train": {**base["train"], "precision": "fp32", "channels_last": False}}),
    }
    trainers = {name: Trainer(cfg, splits=splits) for name, cfg in configs.items()}
    batches = {name: t._view_batches(0) for name, t in trainers.items()}
    per_round: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(rounds):
        for name, trainer in trainers.items():
            trainer.model.train()
            seconds = time_steps(trainer, batches[name].__next__, steps, device)
            per_round[name].append(batch_size * steps / seconds)
    ratios = [a / b for a, b in zip(per_round["defaults"], per_round["fp32 NCHW"])]
    return {
        "model": f"{encoder} (width {width}), CIFAR stem, 32x32, batch {batch_size}, batched augmentation",
        "defaults": trainers["defaults"].numerics.describe(),
        "baseline": trainers["fp32 NCHW"].numerics.describe(),
        "rounds": rounds,
        "steps_per_round": steps,
        "defaults_images_per_s": statistics.median(per_round["defaults"]),
        "fp32_nchw_images_per_s": statistics.median(per_round["fp32 NCHW"]),
        "speedup": f"{statistics.median(ratios):.2f}x",
        "speedup_range": f"{min(ratios):.2f}-{max(ratios):.2f}x",
        "per_round_images_per_s": per_round,
    }


def _profile_step(trainer: Any, batches: Any, device: torch.device, rows: int = 15) -> list[dict[str, Any]]:
    """Where the time of one training step goes (augmentation included), top ops by self time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    if device.type != "cuda":
        # a CUDA build of torch on a machine without a GPU: kineto would print "ERROR ...
        # gpuGetDeviceCount failed", expected there and only alarming to read
        os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    with profile(activities=activities) as prof:
        trainer._step(*next(batches))
        _sync(device)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return [
        {"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1e3, "percent": 100 * e.self_cpu_time_total / total, "calls": e.count}
        for e in events[:rows]
    ]


# ---------------------------------------------------------------------------------------- driver
def run_bench(
    device: str = "auto",
    quick: bool = False,
    batch_size: int | None = None,
    aug_batch_size: int = 512,
    steps: int | None = None,
    aug_seconds: float | None = None,
    per_image_count: int | None = None,
    image_sizes: tuple[int, ...] = (32, 96),
    data: str = "auto",
    workers: int = 2,
    encoder: str = "resnet18",
    compile_: bool | str = False,
    profile: bool = False,
    synthetic_size: int = CIFAR_TRAIN_IMAGES,
    command: str = "",
    numerics_encoder: str | None = "resnet_small",
    numerics_width: int = 16,
    numerics_batch: int | None = None,
    numerics_steps: int | None = None,
    numerics_rounds: int = 5,
) -> dict[str, Any]:
    """Every measurement, as one JSON-ready dict."""
    from core.hostmem import keep_freed_memory
    from core.trainer import resolve_device

    dev = resolve_device(device)
    cpu_quick = quick and dev.type == "cpu"
    if batch_size is None:
        batch_size = 128 if cpu_quick else 512
    if steps is None:
        steps = 2 if cpu_quick else (10 if quick else 50)
    if aug_seconds is None:
        aug_seconds = 2.0 if quick else 5.0
    if per_image_count is None:
        per_image_count = 128 if quick else 512
    started = time.perf_counter()
    # as the command line does at start; the augmentation-only process otherwise page-faults every
    # batch, as training does not (core.hostmem), and kornia running first hid that
    allocator = keep_freed_memory()
    notes = []
    if batch_size != 512:
        notes.append(f"end-to-end batch {batch_size}, not 512 (--quick on CPU); s/epoch scales accordingly")
    aug = [bench_augmentation(dev, s, aug_batch_size, aug_seconds, per_image_count) for s in image_sizes]
    e2e = bench_end_to_end(dev, batch_size, steps, data, workers, encoder, compile_, profile, synthetic_size)
    numerics = None
    if numerics_encoder is not None:
        n_width, n_batch, n_steps = numerics_width, numerics_batch, numerics_steps
        if n_batch is None:
            n_batch = 256 if dev.type == "cpu" else 512
        if n_steps is None:
            n_steps = 3 if dev.type == "cpu" else 20
        numerics = bench_numerics(dev, numerics_encoder, n_width, n_batch, n_steps, rounds=numerics_rounds)
    if any(r["extrapolated"] for r in e2e["rows"]):
        warm = _warm_up_steps(compile_)
        notes.append(f"s/epoch extrapolated from {steps} timed steps (after {warm} warm-up step{'s' * (warm > 1)}"
                     f"{', compiled' if compile_ else ''})")
    if dev.type == "cpu":
        notes.append("peak memory on CPU is the process's maximum resident set size so far (ru_maxrss)")
    return {
        "date": _dt.date.today().isoformat(),
        "command": command,
        "quick": quick,
        "device": device_info(dev),
        "host_allocator": allocator,
        "versions": versions(),
        "augmentation": aug,
        "end_to_end": e2e,
        "numerics": numerics,
        "peak_memory": {
            "process_max_rss_mb": _max_rss_mb(),
            "cuda_max_allocated_mb": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None,
        },
        "wall_s": time.perf_counter() - started,
        "notes": notes,
    }


def _fmt(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def _with_range(a: dict[str, Any], name: str) -> str | None:
    """'9.4x (rounds 8.1-10.2x)': the median speed-up and the spread of the per-round ones."""
    if a[f"{name}_speedup"] is None:
        return None
    return f"{a[f'{name}_speedup']} (rounds {a[f'{name}_speedup_range']})"


def format_result(r: dict[str, Any]) -> str:
    from tabulate import tabulate

    d, v = r["device"], r["versions"]
    lines = [
        f"device: {d['type']} ({d['name']}), torch threads {d['torch_threads']}, cpus {d.get('cpus_available', d['cpu_count'])}, "
        f"load avg {_fmt(d.get('load_average_1min'), 1)}",
        "versions: " + ", ".join(f"{k} {val or 'absent'}" for k, val in v.items()),
        "",
        f"augmentation throughput, one view of {AUG_OPS}, images/s (median over {r['augmentation'][0]['rounds']} "
        "interleaved rounds; speed-up vs per-image torchvision: median of the per-round ratios, and their range):",
    ]
    table = []
    for a in r["augmentation"]:
        size = f"{a['image_size']}x{a['image_size']}, batch {a['batch_size']}"
        table.append([size, "batched core.augment (ours)", _fmt(a["batched_images_per_s"]), _with_range(a, "batched")])
        table.append([size, "kornia.augmentation", _fmt(a["kornia_images_per_s"]), _with_range(a, "kornia") or (a["note"] or "-")])
        table.append([size, "torchvision v2 per image (1 process)", _fmt(a["torchvision_images_per_s"]), "1.0x"])
    lines.append(tabulate(table, headers=["images", "pipeline", "images/s", "speed-up"]))
    e = r["end_to_end"]
    lines += [
        "",
        f"end-to-end pretraining: {e['model']}, batch {e['batch_size']}, {e['precision']}"
        + (f", torch.compile mode {torch_compile_mode(e['compile'])}" if e.get("compile") else "")
        + f", data: {e['data']}",
    ]
    table = [
        [row["name"], _fmt(row["images_per_s"]), _fmt(row["s_per_epoch"], 1) + (" (extrapolated)" if row["extrapolated"] else ""), _fmt(row["peak_memory_mb"]), row["speedup"] or "-"]
        for row in e["rows"]
    ]
    lines.append(tabulate(table, headers=["pipeline", "images/s", f"s/epoch ({e['epoch_images']:,} images)", "peak MiB", "speed-up"]))
    n = r.get("numerics")
    if n:
        lines += [
            "",
            f"numerics, end to end: {n['model']}; images/s, median of {n['rounds']} interleaved rounds of "
            f"{n['steps_per_round']} steps; speed-up: median of the per-round ratios (range):",
            tabulate(
                [
                    [f"defaults: {n['defaults']}", _fmt(n["defaults_images_per_s"]), f"{n['speedup']} (rounds {n['speedup_range']})"],
                    [f"forced: {n['baseline']}", _fmt(n["fp32_nchw_images_per_s"]), "1.00x"],
                ],
                headers=["numerics", "images/s", "speed-up"],
            ),
        ]
    if e.get("profile"):
        lines += ["", "profile of one (a) step, top ops by self CPU time:"]
        lines.append(tabulate([[p["op"], _fmt(p["self_cpu_ms"], 1), _fmt(p["percent"], 1), p["calls"]] for p in e["profile"]], headers=["op", "ms", "%", "calls"]))
    lines += ["", *(f"note: {n}" for n in r["notes"]), f"bench wall time {r['wall_s']:.0f} s"]
    return "\n".join(lines)


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="CPU-sized run of a few minutes (fewer iterations, end-to-end batch 128 and 2 steps on CPU)")
    p.add_argument("--json", dest="json_out", type=Path, help="also write every measurement to this JSON file")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--batch-size", type=int, help="end-to-end batch (default 512; 128 with --quick on CPU)")
    p.add_argument("--steps", type=int, help="timed end-to-end steps per pipeline (default 50; 10 quick; 2 quick on CPU)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the torchvision pipeline (default 2)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--data", default="auto", help="CIFAR-10 tarball path, 'synthetic', or auto (../shared/data/cifar10-jpeg.tar.gz if present)")
    p.add_argument(
        "--compile", nargs="?", const=True, default=False, metavar="MODE",
        choices=[True, *COMPILE_MODES],
        help="torch.compile the model (train.compile); MODE: default (the same as no MODE), reduce-overhead "
        "(CUDA graphs too), max-autotune, max-autotune-no-cudagraphs",
    )
    p.add_argument("--profile", action="store_true", help="also profile one step of (a) and print where the time goes")
    p.add_argument("--numerics-encoder", default="resnet_small", help="encoder of the numerics comparison (defaults vs forced fp32 NCHW); 'none' skips it (default resnet_small)")
    p.add_argument("--numerics-width", type=int, default=16, help="width of a resnet_small numerics encoder (default 16)")
    p.add_argument("--numerics-batch", type=int, help="batch of the numerics comparison (default 256 on CPU, 512 on CUDA)")
    p.add_argument("--numerics-steps", type=int, help="timed steps per round of the numerics comparison (default 3 on CPU, 20 on CUDA)")
    # for tests: keep the run tiny
    p.add_argument("--aug-seconds", type=float, help=argparse.SUPPRESS)
    p.add_argument("--per-image-count", type=int, help=argparse.SUPPRESS)
    p.add_argument("--aug-batch-size", type=int, default=512, help=argparse.SUPPRESS)
    p.add_argument("--image-sizes", type=int, nargs="+", default=[32, 96], help=argparse.SUPPRESS)
    p.add_argument("--encoder", default="resnet18", help=argparse.SUPPRESS)
    p.add_argument("--synthetic-size", type=int, default=CIFAR_TRAIN_IMAGES, help=argparse.SUPPRESS)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_bench(
        device=args.device,
        quick=args.quick,
        batch_size=args.batch_size,
        aug_batch_size=args.aug_batch_size,
        steps=args.steps,
        aug_seconds=args.aug_seconds,
        per_image_count=args.per_image_count,
        image_sizes=tuple(args.image_sizes),
        data=args.data,
        workers=args.workers,
        encoder=args.encoder,
        compile_=args.compile,
        profile=args.profile,
        synthetic_size=args.synthetic_size,
        command="python -m ablations " + " ".join(args.argv),
        numerics_encoder=None if args.numerics_encoder == "none" else args.numerics_encoder,
        numerics_width=args.numerics_width,
        numerics_batch=args.numerics_batch,
        numerics_steps=args.numerics_steps,
    )
    print(format_result(result))
    if args.json_out is not None:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json_out}")
    return 0


def add_bench_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``bench`` on the ``python -m ablations`` subparsers."""
    p = sub.add_parser(
        "bench",
        help="measure augmentation and training throughput",
        description=(
            "Measure, in one run on one device, how fast the data pipeline and the training step are: "
            "augmentation images/s (batched core.augment vs per-image torchvision vs kornia) and "
            "end-to-end pretraining images/s and s/epoch (ours vs DataLoader workers vs model-only "
            "ceiling), with peak memory, device and versions. Prints a table; --json writes every number."
        ),
        epilog=BENCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_options(p)
    p.set_defaults(func=cmd_bench)

