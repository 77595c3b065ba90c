"""The ``train`` command: pretrain and evaluate one run config (what each trial of a study runs).

Exit status: 0 done (or already done), 2 bad input (file, option, data), 3 the run diverged.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from ablations.commands.recipes import add_recipe_option, overrides_with_recipe
from ablations.data_option import add_data_option, load_run_config_with_data
from ablations.exit_codes import EXIT_BAD_INPUT, EXIT_DIVERGED
from ablations.runconfig_file import config_digest, recipe_of
from ablations.summary import format_result
from ablations.yamlfile import ConfigFileError

TRAIN_EPILOG = """\
examples:
  python -m ablations train configs/cifar10_cpu_small.yaml          # CIFAR-10, ~4 min on 2 CPU cores
  python -m ablations train configs/cifar10_cpu_small.yaml --set loss.temperature=0.2 --set train.epochs=5
  python -m ablations train --set data.source=synthetic --set model.encoder=resnet_small --set train.epochs=2

Without CONFIG the paper's CIFAR-10 defaults are used (ResNet-18 CIFAR stem, batch 512, 1000 epochs,
LARS lr 1.0 x B/256, temperature 0.5, colour strength 0.5), reading CIFAR-10 from data.root (./data).
The run directory holds checkpoint.pt (written every epoch) and result.json; running the same
command again resumes from the checkpoint, or returns the stored result if the run had finished.

Data parallel (one run over K processes; train.batch_size is the global batch, global BN on):
  torchrun --standalone --nproc-per-node 4 -m ablations train CONFIG.yaml
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``train``: one run config, no study."""
    p = sub.add_parser(
        "train",
        help="train and evaluate one run config",
        description="Pretrain SimCLR with one run config, then evaluate it (kNN and linear).",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "config", nargs="?", type=Path,
        help="run config YAML (sections: data, augment, model, loss, optim, train, eval)",
    )
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one field by dotted path (repeatable)",
    )
    add_data_option(p)
    add_recipe_option(p)
    p.add_argument(
        "--run-dir", type=Path, help="where checkpoint and result go (default: runs/train/<config name>-<config hash>)"
    )
    p.add_argument(
        "--fresh", action="store_true", help="discard an existing checkpoint in the run directory and start over"
    )
    p.add_argument("--json", dest="json_out", type=Path, help="also write the final metrics to this JSON file")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from core import distributed
    from core.data import DataError
    from core.trainer import TrainingDiverged, resolve_device, train

    try:
        overrides = overrides_with_recipe(args.overrides, args.recipe)
        config = load_run_config_with_data(args.config, args.data, overrides)
        recipe = recipe_of(args.config, overrides)
    except ConfigFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    stem = args.config.stem if args.config else "defaults"
    run_dir = args.run_dir or Path("runs") / "train" / f"{stem}-{config_digest(config)}"
    result_path = run_dir / "result.json"
    # under torchrun rank 0 decides for the group (the run directory may exist on its machine only)
    info = distributed.env_info()
    distributed.join(info, resolve_device(config.train.device))
    if info.is_main and args.fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    if distributed.broadcast_object(result_path.exists() if info.is_main else None, info):
        if info.is_main:
            print(f"{run_dir}: already finished (use --fresh to train again)", file=sys.stderr)
            print(format_result(json.loads(result_path.read_text())))
        distributed.shutdown()
        return 0
    try:
        outcome = train(config, run_dir=run_dir)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"status: diverged (run directory {run_dir})", file=sys.stderr)
        return EXIT_DIVERGED
    finally:
        distributed.shutdown()
    if not info.is_main:  # rank 0 reports for the group
        return 0
    result = {
        "run_dir": str(run_dir),
        "recipe": recipe,
        "metrics": outcome.metrics,
        "protocols": {a.name: a.protocol for a in outcome.accuracies},
        "history": outcome.history,
        "config": config.model_dump(mode="json"),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2))
    print(format_result(result))
    return 0
