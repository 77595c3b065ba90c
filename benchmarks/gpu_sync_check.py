"""Host-device synchronisations in the training hot loop, on CUDA.

Runs the trainer's own epoch iterator and step (``Trainer.view_batches`` and ``Trainer.step``, as
``Trainer._run_epoch`` does, minus its once-per-``log_every`` loss read) for a few steps under
``torch.cuda.set_sync_debug_mode("warn")``, which makes every synchronising CUDA call warn, and lists
each distinct Python line that synchronised. A sync in the hot loop stalls the host until the GPU
catches up, so the host can no longer queue work ahead of it.

    python benchmarks/gpu_sync_check.py --json sync.json

Exit status 0 when the loop is sync-free, 1 when it is not (the lines are printed), 2 without CUDA.
Needs a CUDA device; on CPU there is nothing to check.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from core.config import RunConfig


WARM_UP_STEPS = 2


def check_config(batch_size: int, steps: int, optimizer: str, device: str) -> "RunConfig":
    """ResNet-18 on synthetic CIFAR-shaped data, with one epoch long enough for the warm-up and the
    checked steps (an epoch's iterator ends after its last full batch)."""
    from core.config import RunConfig

    images = (WARM_UP_STEPS + steps) * batch_size
    return RunConfig.model_validate(
        {
            "data": {
                "source": "synthetic",
                "synthetic": {"num_classes": 10, "train_size": images, "test_size": 64, "image_size": 32},
            },
            "augment": {"ops": ["crop", "color", "blur"]},
            "model": {"encoder": "resnet18", "cifar_stem": True},
            "optim": {"name": optimizer, "warmup_epochs": 1},
            "train": {"batch_size": batch_size, "epochs": 2, "device": device, "progress": False, "checkpoint": False},
        }
    )


def synchronising_lines(run: Callable[[], object]) -> collections.Counter[str]:
    """Run ``run`` under ``torch.cuda.set_sync_debug_mode("warn")``; the Python lines (file:line and
    message) that synchronised, counted. The mode's own notice that it is a prototype is not a sync."""
    found: collections.Counter[str] = collections.Counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for w in caught:
        if "called a synchronizing CUDA operation" in str(w.message):
            found[f"{w.filename}:{w.lineno}: {str(w.message).splitlines()[0]}"] += 1
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="checked steps after 2 warm-up steps")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--optimizer", default="lars", help="lars, sgd or adam")
    parser.add_argument("--json", dest="json_out", type=Path, help="write the findings to this JSON file")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: no CUDA device; the sync check needs one", file=sys.stderr)
        return 2

    from core.trainer import Trainer

    config = check_config(args.batch_size, args.steps, args.optimizer, "cuda")
    trainer = Trainer(config)
    trainer.model.train()
    batches = trainer.view_batches(0)
    for _ in range(WARM_UP_STEPS):  # cuDNN autotuning and lazy state allocate here
        trainer.step(*next(batches))
    torch.cuda.synchronize()
    found = synchronising_lines(lambda: [trainer.step(*next(batches)) for _ in range(args.steps)])
    torch.cuda.synchronize()
    report = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "augment": config.augment.ops,
        "syncs": [{"where": k, "count": v} for k, v in found.most_common()],
    }
    print(f"sync check ({args.steps} steps, {args.optimizer}, augment {'+'.join(config.augment.ops)}): "
          f"{sum(found.values())} synchronising calls")
    for where, count in found.most_common():
        print(f"  {count:4d}  {where}")
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
