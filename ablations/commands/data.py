"""``python -m ablations data build``: make the data store of an ImageFolder tree before training.

Training builds the store on first use anyway (``core.data.store``); building it ahead, once, on a
machine with many cores, keeps hours of decoding out of the first trial, shows what the tree holds
(images per class, files that could not be decoded), and leaves a store that every later run,
trial and study with the same data settings opens at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ablations.data_option import add_data_option, load_run_config_with_data
from ablations.exit_codes import EXIT_BAD_INPUT
from ablations.logs import configure_logging
from ablations.yamlfile import ConfigFileError

BUILD_DESCRIPTION = """\
Decode an ImageFolder tree (train/ and val/ or test/, one folder per class) or a .tar.gz of one into
the on-disk store that training reads: every image resized (shorter side) and centre-cropped to
data.image_size, as uint8 arrays, in data.cache_dir. The tree is never held in memory, so it may be
far larger than memory (ImageNet-1k: about 102 GB at 160 px, 200 GB at 224 px). Decoding runs in
worker processes, chunk by chunk; an interrupted build (Ctrl-C, a killed job) resumes where it
stopped when the same command runs again. Files that cannot be decoded are skipped and listed.
Training with the same data settings (data.root, data.image_size, data.classes) then opens this
store without decoding anything.
"""

BUILD_EPILOG = """\
examples:
  python -m ablations data build --data ~/imagenet --set data.image_size=160
  python -m ablations data build --data ~/imagenet --set data.image_size=224 --set data.classes=imagenet100
  python -m ablations data build --data ~/imagenet.tar.gz --set data.image_size=160 --workers 8
  python -m ablations data build configs/cifar10_cpu_small.yaml --data ~/cifar10-jpeg.tar.gz\
   # the store a run config reads

data.classes takes a list ([n01440764, n01443537]), a text file with one class name per line, or
the built-in imagenet100 (the 100 classes of CMC, Tian et al. 2019). Labels follow the sorted class
names, as in torchvision's ImageFolder.
Exit status: 0 built (or already there), 2 bad input (missing path, malformed tree, unknown class).
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``data`` (with its one action, ``build``) on the top-level parser."""
    p = sub.add_parser("data", help="build the on-disk data store of an ImageFolder tree ahead of training",
                       description="Prepare datasets ahead of training.")
    actions = p.add_subparsers(dest="data_action", required=True, metavar="ACTION")
    b = actions.add_parser("build", help="decode an ImageFolder tree or .tar.gz into the store training reads",
                           description=BUILD_DESCRIPTION, epilog=BUILD_EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("config", nargs="?", type=Path,
                   help="run config YAML whose data section to use (default: the defaults)")
    b.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. data.image_size=160 or data.classes=imagenet100 (repeatable)")
    add_data_option(b)
    b.add_argument("--workers", type=int, metavar="N",
                   help="decoding processes (default: every core; trees under 256 MiB decode in this process)")
    b.add_argument("--per-class", action="store_true", help="also list the image count of every class")
    b.add_argument("--no-progress", action="store_true", help="no progress bars (e.g. in batch jobs)")
    b.set_defaults(func=cmd_data_build)


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    raise AssertionError


def _spread(counts: np.ndarray) -> str:
    low, high = int(counts.min()), int(counts.max())
    return f"{low:,}" if low == high else f"{low:,} to {high:,} (mean {counts.mean():,.1f})"


def report(entry: Path, per_class: bool) -> list[str]:
    """What the store holds, in lines: where, how big, images per class, skipped files."""
    meta: dict[str, Any] = json.loads((entry / "meta.json").read_text())
    classes = meta["classes"]
    counts = {
        split: np.bincount(np.load(entry / f"{split}_labels.npy", mmap_mode="r"), minlength=len(classes))
        for split in ("train", "test")
    }
    shape = meta["arrays"]["train_images"]["shape"]
    n_test = meta["arrays"]["test_images"]["shape"][0]
    size = sum(p.stat().st_size for p in entry.iterdir() if p.is_file())
    skipped, truncated = len(meta.get("skipped", [])), len(meta.get("truncated", []))
    lines = [
        f"store: {entry}",
        f"size on disk: {_size(size)} (train {shape[0]:,} and test {n_test:,} images of "
        f"{'x'.join(map(str, shape[1:]))} uint8)",
        f"classes: {len(classes)}; images per class: train {_spread(counts['train'])}, test {_spread(counts['test'])}",
        f"skipped: {skipped} file(s) that could not be decoded; {truncated} truncated file(s) decoded in part"
        + " (meta.json lists both)",
    ]
    if per_class:
        lines += [f"  {c}: train {counts['train'][i]:,}, test {counts['test'][i]:,}" for i, c in enumerate(classes)]
    return lines


def cmd_data_build(args: argparse.Namespace) -> int:
    from core.data import DataError
    from core.data.store import TREE_SOURCES, build_store

    configure_logging()
    if args.data is not None and not args.data.expanduser().exists():
        return _error(f"--data {args.data}: does not exist (expected an ImageFolder tree, train/ and val/ or "
                      "test/ with one folder per class, or a .tar.gz of one)")
    if args.workers is not None and args.workers < 1:
        return _error(f"--workers {args.workers}: expected 1 or more")
    try:
        config = load_run_config_with_data(args.config, args.data, args.overrides)
    except ConfigFileError as exc:
        return _error(str(exc))
    data = config.data
    if data.source not in TREE_SOURCES:
        return _error(f"data.source is {data.source}: `data build` stores ImageFolder trees and .tar.gz files of them "
                      "(give one with --data PATH); other sources are cached on first use")
    start = time.perf_counter()
    try:
        entry = build_store(data, workers=args.workers, progress=not args.no_progress)
    except DataError as exc:
        return _error(str(exc))
    for line in report(entry, args.per_class):
        print(line)
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0
