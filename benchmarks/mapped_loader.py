"""Loader throughput from a memory-mapped store against torchvision's ImageFolder in DataLoader workers.

Both make SimCLR's two views (crop to ``--crop`` + flip, colour distortion) of every image of a JPEG
tree stored at ``--size`` pixels, one epoch at a time, on the CPU:

* ``mapped``: the store that ``data.in_memory: false`` trains from (built once, not timed), read batch
  by batch by ``core.loaders.mapped_epoch`` (background reader thread, then ``TwoViews`` on the batch);
* ``in memory``: the same store read into memory, ``core.loaders.batched_epoch`` (for reference);
* ``imagefolder``: ``torchvision.datasets.ImageFolder`` (PIL decoding of every JPEG, every epoch) with
  the per-image transforms of ``core.loaders.TorchvisionViews`` in a ``DataLoader`` with ``--workers``
  worker processes.

Each pipeline runs one epoch in a fresh process, in interleaved rounds (a shared machine's speed
drifts), and reports images/s (reading the store or the JPEGs included) and the peak anonymous memory
(Pss_Anon, summed over the process and its DataLoader workers, so pages a worker shares with its
parent count once, sampled every 5 ms), also as the part above what importing torch and the project
took.

    python benchmarks/mapped_loader.py --images 3000 --size 160 --crop 128 --rounds 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.augment import TwoViews
from core.config import AugmentConfig, CropConfig, DataConfig
from core.data import MappedImages, load_dataset
from core.loaders import TorchvisionViews, batched_epoch, mapped_epoch


def make_tree(root: Path, n: int, size: int, classes: int = 10, seed: int = 0) -> None:
    """A JPEG tree of smooth random photographs-like images (quality 90), ImageNet layout."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", n), ("val", max(classes, n // 20))):
        for i in range(count):
            folder = root / split / f"c{i % classes:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            low = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
            img = Image.fromarray(low).resize((size, size), Image.BICUBIC)
            noise = rng.integers(-12, 13, (size, size, 3))
            pixels = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=90)


def _anon(pid: int) -> int:
    """Proportional anonymous memory (Pss_Anon): pages a forked worker shares with its parent count once."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss_Anon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _family() -> list[int]:
    pids = [os.getpid()]
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return pids


class PeakAnon:
    """Peak of RssAnon over this process and its children, above the level at start."""

    def __enter__(self) -> PeakAnon:
        self.base = _anon(os.getpid())
        self.peak = self.base
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, sum(_anon(p) for p in _family()))
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    @property
    def above_start(self) -> int:
        return self.peak - self.base


def _epoch(batches) -> int:  # type: ignore[no-untyped-def]
    n = 0
    for v1, _ in batches:
        n += v1.shape[0]
    return n


def run_one(name: str, args: argparse.Namespace) -> dict[str, float]:
    """One epoch of one pipeline in this (fresh) process: images/s and anonymous memory."""
    import torchvision
    import torchvision.transforms.v2 as v2

    torch.set_num_threads(1)
    tree = args.folder / f"tree-{args.images}-{args.size}"
    data = DataConfig(source="imagefolder", root=tree, cache_dir=args.folder / "cache", in_memory=False)
    cfg = AugmentConfig(ops=["crop", "color"], crop=CropConfig(size=args.crop))
    cpu = torch.device("cpu")
    gens = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    imported = _anon(os.getpid())  # torch and the project, before any data
    with PeakAnon() as peak:  # opening or loading the data counts for memory, not for time
        if name == "mapped":
            splits = load_dataset(data)
            assert isinstance(splits.pretrain, MappedImages), splits.placement
            started = time.perf_counter()
            n = _epoch(mapped_epoch(splits.pretrain, TwoViews(cfg), args.batch, *gens, cpu))
        elif name == "in memory":
            images = load_dataset(data.model_copy(update={"in_memory": True})).pretrain
            started = time.perf_counter()
            n = _epoch(batched_epoch(images, TwoViews(cfg), args.batch, *gens))
        else:
            transform = v2.Compose([v2.PILToTensor(), TorchvisionViews(cfg, args.size)])
            folder = torchvision.datasets.ImageFolder(str(tree / "train"), transform=transform)
            loader = torch.utils.data.DataLoader(folder, batch_size=args.batch, shuffle=True, drop_last=True,
                                                 num_workers=args.workers, prefetch_factor=4)
            started = time.perf_counter()
            n = sum(v[0].shape[0] for v, _ in loader)
        elapsed = time.perf_counter() - started
    return {"images_per_s": n / elapsed, "peak_anon_mb": peak.peak / 1e6,
            "above_imports_mb": (peak.peak - imported) / 1e6, "imports_mb": imported / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--size", type=int, default=160, help="stored side")
    parser.add_argument("--crop", type=int, default=128, help="augment.crop.size")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/mapped_loader_bench"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--run", help=argparse.SUPPRESS)  # internal: one pipeline in a fresh process
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_one(args.run, args)))
        return

    tree = args.folder / f"tree-{args.images}-{args.size}"
    if not (tree / "train").is_dir():
        started = time.perf_counter()
        make_tree(tree, args.images, args.size)
        print(f"wrote {args.images} JPEGs in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    jpeg_bytes = sum(p.stat().st_size for p in (tree / "train").rglob("*.jpg"))
    started = time.perf_counter()
    store = load_dataset(DataConfig(source="imagefolder", root=tree, cache_dir=args.folder / "cache", in_memory=False))
    build_s = time.perf_counter() - started  # the store, built once (and hashed once), not timed below
    pipelines = ("mapped", "in memory", "imagefolder")
    results: dict[str, list[dict[str, float]]] = {k: [] for k in pipelines}
    child = [sys.executable, __file__, *sys.argv[1:]]
    for r in range(args.rounds):
        for name in pipelines:
            done = subprocess.run([*child, "--run", name], capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            results[name].append(result)
            print(f"round {r + 1} {name:12s} {result['images_per_s']:8.1f} images/s  "
                  f"peak anon {result['peak_anon_mb']:7.1f} MB "
                  f"({result['above_imports_mb']:+.1f} MB over the {result['imports_mb']:.0f} MB of imports)",
                  file=sys.stderr)
    summary = {
        "images": args.images, "stored_side": args.size, "crop": args.crop, "batch": args.batch,
        "workers": args.workers, "jpeg_mb": jpeg_bytes / 1e6, "store_mb": store.pretrain.nbytes / 1e6,
        "store_build_s": build_s, "rounds": results,
        "median": {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in results.items()},
    }
    print(json.dumps(summary["median"], indent=1))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
