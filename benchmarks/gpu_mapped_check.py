"""Training from a memory-mapped store on the GPU: the same batches as from memory, no host sync in the
loop, and whether the background reader keeps up with the GPU's step.

The memory-mapped path (``data.in_memory: false``) reads each batch in a background thread into a
pinned host buffer and copies it to the GPU on a side stream (``core.data.prefetch``). Its tests run
on the CPU, where none of that CUDA machinery exists. This script runs it on a real GPU, for each of:

* ``cifar``: a CIFAR-10 tarball (32 x 32, ResNet-18 with the CIFAR stem, batch 512), or synthetic
  CIFAR-shaped images when the tarball is absent;
* ``imagenet``: a synthetic ImageNet-layout JPEG tree stored at 160 px and cropped to 128 px
  (``augment.crop.size``), ResNet-50, batch 256, the shape of an ImageNet-100 run at reduced size.

For each it checks and measures, with the trainer's own epoch iterator and step:

1. the placement each setting chose (``data.in_memory: true``, ``false`` and ``auto`` with its budget);
2. identity: the first ``--compare`` batches of two views are bitwise equal mapped and in memory;
3. syncs: which Python lines synchronised in the mapped loop's steps (after warm-up), as
   ``benchmarks/gpu_sync_check.py`` finds them;
4. speed: images/s of in memory, mapped (page cache warm) and the model alone on random views already
   on the GPU (the ceiling), in interleaved rounds; with ``--drop-caches`` (root only) one more mapped
   round after the kernel's page cache was dropped, so the reads come from the disk.

    python benchmarks/gpu_mapped_check.py --tarball .data/cifar10-jpeg.tar.gz --json out.json

Runs on the CPU too (``--device cpu``, small ``--images``) so the script itself is tested here; there
the sync check is skipped.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ablations.bench import time_steps  # noqa: E402
from benchmarks.gpu_sync_check import synchronising_lines  # noqa: E402
from benchmarks.mapped_loader import make_tree  # noqa: E402
from core.config import RunConfig  # noqa: E402
from core.numerics import device_name  # noqa: E402
from core.trainer import Trainer  # noqa: E402

WARM_UP = 2


def _tree_part(args: tuple[Path, int, int, int]) -> None:
    root, n, size, seed = args
    make_tree(root, n, size, seed=seed)


def make_tree_parallel(root: Path, n: int, size: int, workers: int) -> None:
    """``make_tree`` split over ``workers`` processes, each writing its own class folders' names."""
    if (root / "done").exists():
        return
    per = max(1, n // workers)
    parts = [(root / f"part{i}", per, size, i) for i in range(workers)]
    with multiprocessing.Pool(workers) as pool:
        pool.map(_tree_part, parts)
    for split in ("train", "val"):  # one ImageNet-layout tree: part<i>/<split>/cXX -> <split>/p<i>cXX
        for part, *_ in parts:
            for folder in (part / split).iterdir():
                target = root / split / f"{part.name}{folder.name}"
                target.parent.mkdir(parents=True, exist_ok=True)
                folder.rename(target)
    (root / "done").touch()


def case_config(case: str, args: argparse.Namespace, in_memory: Any) -> RunConfig:
    train = {"device": args.device, "progress": False, "checkpoint": False, "epochs": 1, "log_every": 10_000}
    if case == "cifar":
        data: dict[str, Any] = (
            {"source": "tarball", "root": str(args.tarball)}
            if args.tarball and args.tarball.exists()
            else {
                "source": "synthetic",
                "synthetic": {"num_classes": 10, "train_size": args.images, "test_size": 64, "image_size": 32},
            }
        )
        model = {"encoder": args.cifar_encoder, "cifar_stem": True}
        augment: dict[str, Any] = {"ops": ["crop", "color"], "color": {"strength": 0.5}}
        train["batch_size"] = args.cifar_batch
    else:
        data = {"source": "imagefolder", "root": str(args.folder / "tree"), "image_size": args.size}
        model = {"encoder": args.imagenet_encoder, "cifar_stem": False}
        augment = {"ops": ["crop", "color", "blur"], "crop": {"size": args.crop}}
        train["batch_size"] = args.imagenet_batch
    data.update({"cache_dir": str(args.folder / "cache"), "in_memory": in_memory})
    if args.budget_gb is not None and in_memory == "auto":
        data["memory_budget_gb"] = args.budget_gb
    return RunConfig.model_validate({"data": data, "model": model, "augment": augment, "train": train,
                                     "eval": {"linear": False}})


def drop_page_cache() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def run_case(case: str, args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    result: dict[str, Any] = {"case": case}
    started = time.perf_counter()
    memory = Trainer(case_config(case, args, True))
    result["load_and_store_build_s"] = round(time.perf_counter() - started, 1)
    mapped = Trainer(case_config(case, args, False))
    auto = Trainer(case_config(case, args, "auto"))
    result["placement"] = {
        "true": memory.splits.placement, "false": mapped.splits.placement, "auto": auto.splits.placement
    }
    result["images"] = int(memory.splits.pretrain.shape[0])
    result["image_shape"] = list(memory.splits.pretrain.shape[1:])
    result["numerics"] = memory.numerics.describe()
    del auto
    print(f"[{case}] {result['images']:,} images {result['image_shape']}, built/loaded in "
          f"{result['load_and_store_build_s']} s; placement {result['placement']}", flush=True)

    # 2. identity of the first batches (no step in between: the views alone)
    a, b = memory.view_batches(0), mapped.view_batches(0)
    same = []
    for _ in range(args.compare):
        (m1, m2), (p1, p2) = next(a), next(b)
        same.append(bool(torch.equal(m1, p1) and torch.equal(m2, p2)))
    a.close(), b.close()
    result["identical_batches"] = same
    print(f"[{case}] first {args.compare} batches bitwise equal mapped vs in memory: {same}", flush=True)

    batch = memory.config.train.batch_size
    steps_per_epoch = result["images"] // batch
    steps = min(args.steps, steps_per_epoch - WARM_UP - (args.sync_steps if device.type == "cuda" else 0))
    result["timed_steps"] = steps
    for t in (memory, mapped):
        t.model.train()

    # 3. syncs in the mapped loop
    if device.type == "cuda":
        batches = mapped.view_batches(1)
        for _ in range(WARM_UP):
            mapped.step(*next(batches))
        torch.cuda.synchronize(device)
        result["sync_lines_mapped"] = dict(
            synchronising_lines(lambda: [mapped.step(*next(batches)) for _ in range(args.sync_steps)])
        )
        batches.close()
        print(f"[{case}] syncs in {args.sync_steps} mapped steps: {result['sync_lines_mapped'] or 'none'}", flush=True)

    # 4. speed, interleaved rounds; a fresh epoch iterator per round, warmed up
    gen = torch.Generator(device=device).manual_seed(0)
    v1, v2 = torch.rand(m1.shape, generator=gen, device=device), torch.rand(m1.shape, generator=gen, device=device)
    rates: dict[str, list[float]] = {"in memory": [], "mapped": [], "model only": []}
    for r in range(args.rounds):
        for name, trainer in (("in memory", memory), ("mapped", mapped), ("model only", memory)):
            if name == "model only":
                seconds = time_steps(trainer, lambda: (v1, v2), steps, device, warm_up=WARM_UP)
            else:
                batches = trainer.view_batches(2 + r)
                seconds = time_steps(trainer, batches.__next__, steps, device, warm_up=WARM_UP)
                batches.close()
            rates[name].append(batch * steps / seconds)
    if args.drop_caches:
        dropped = drop_page_cache()
        batches = mapped.view_batches(99)
        if dropped:
            seconds = time_steps(mapped, batches.__next__, steps + WARM_UP, device, warm_up=0)
            rates["mapped, page cache dropped"] = [batch * (steps + WARM_UP) / seconds]
        batches.close()
        result["page_cache_dropped"] = dropped
    result["images_per_s"] = {k: [round(x) for x in v] for k, v in rates.items()}
    result["median_images_per_s"] = {k: round(statistics.median(v)) for k, v in rates.items()}
    med = result["median_images_per_s"]
    result["mapped_over_in_memory"] = round(med["mapped"] / med["in memory"], 3)
    result["in_memory_over_model_only"] = round(med["in memory"] / med["model only"], 3)
    print(f"[{case}] images/s (median of {args.rounds} rounds of {steps} steps, batch {batch}): {med}; "
          f"mapped / in memory {result['mapped_over_in_memory']}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--cases", default="cifar,imagenet", help="comma-separated: cifar, imagenet")
    p.add_argument("--tarball", type=Path, help="CIFAR-10 ImageFolder tarball (else synthetic CIFAR shape)")
    p.add_argument("--images", type=int, default=8192, help="synthetic images per case (tree and CIFAR shape)")
    p.add_argument("--size", type=int, default=160, help="imagenet: stored side")
    p.add_argument("--crop", type=int, default=128, help="imagenet: augment.crop.size")
    p.add_argument("--cifar-encoder", default="resnet18")
    p.add_argument("--imagenet-encoder", default="resnet50")
    p.add_argument("--cifar-batch", type=int, default=512)
    p.add_argument("--imagenet-batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=20, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--compare", type=int, default=3, help="batches compared bitwise")
    p.add_argument("--sync-steps", type=int, default=5)
    p.add_argument("--budget-gb", type=float, help="data.memory_budget_gb for the auto placement")
    p.add_argument("--drop-caches", action="store_true",
                   help="one more mapped round after dropping the page cache (root)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes writing the JPEG tree")
    p.add_argument("--folder", type=Path, default=Path("/tmp/gpu_mapped_check"))
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device here (use --device cpu to try the script)", file=sys.stderr)
        return 2
    from core.hostmem import keep_freed_memory

    keep_freed_memory()
    out: dict[str, Any] = {
        "device": device_name(torch.device(args.device)),
        "torch": torch.__version__,
        "host_cpus": os.cpu_count(),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "cases": [],
    }
    for case in args.cases.split(","):
        if case == "imagenet":
            started = time.perf_counter()
            make_tree_parallel(args.folder / "tree", args.images, args.size, args.workers)
            print(f"[imagenet] JPEG tree of {args.images:,} images at {args.size} px "
                  f"in {time.perf_counter() - started:.1f} s", flush=True)
        out["cases"].append(run_case(case, args))
        if args.json:
            args.json.write_text(json.dumps(out, indent=2) + "\n")
    ok = all(all(c["identical_batches"]) and not c.get("sync_lines_mapped") for c in out["cases"])
    print("mapped check:", "ok" if ok else "FAILED (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
