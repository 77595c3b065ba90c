"""The ``bench`` command line: its options, turned into one ``BenchOptions``, and its handler.

Exit status: 0 measured, 2 bad input (the data named by --data or $SIMCLR_DATA is missing or unreadable).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from ablations.bench.dataset import SYNTHETIC
from ablations.bench.options import CIFAR_TRAIN_IMAGES, BenchOptions
from ablations.data_option import DATA_ENV, add_data_option
from ablations.exit_codes import EXIT_BAD_INPUT, EXIT_OK
from ablations.yamlfile import ConfigFileError
from core.config import COMPILE_MODES

BENCH_EPILOG = f"""\
data:
  The end-to-end rows train on --data PATH, else ${DATA_ENV}, else synthetic CIFAR-10-shaped images
  (the table's data line says which). PATH: a .tar.gz of CIFAR-10's ImageFolder tree (the JPEG
  tarball), such a tree (train/ and test/), or a torchvision root with cifar-10-batches-py/ in it.

examples:
  python -m ablations bench --quick --data ~/data/cifar10-jpeg.tar.gz   # CPU, a few minutes
  {DATA_ENV}=~/data/cifar10-jpeg.tar.gz python -m ablations bench --json bench.json   # full run, CUDA if any
  python -m ablations bench --device cpu --threads 2 --quick --profile --data {SYNTHETIC}

Exit status: 0 measured, 2 bad input (the data named is missing or unreadable).
"""

DATA_HELP = (
    f"the CIFAR-10 the end-to-end rows train on: a .tar.gz of its ImageFolder tree, such a tree or a "
    f"torchvision root; '{SYNTHETIC}' for random CIFAR-10-shaped images (default: ${DATA_ENV}, else {SYNTHETIC})"
)


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="CPU-sized run of a few minutes (fewer iterations, end-to-end batch 128 and 2 steps on CPU)")
    p.add_argument("--json", dest="json_out", type=Path, help="also write every measurement to this JSON file")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--batch-size", type=int, help="end-to-end batch (default 512; 128 with --quick on CPU)")
    p.add_argument("--steps", type=int,
                   help="timed end-to-end steps per pipeline (default 50; 10 quick; 2 quick on CPU)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the torchvision pipeline (default 2)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    # ablations.data_option.add_data_option's parsing, with words for the bench instead of a study's
    add_data_option(p, help=DATA_HELP)
    p.add_argument(
        "--compile", nargs="?", const=True, default=False, metavar="MODE",
        choices=[True, *COMPILE_MODES],
        help="torch.compile the model (train.compile); MODE: default (the same as no MODE), reduce-overhead "
        "(CUDA graphs too), max-autotune, max-autotune-no-cudagraphs",
    )
    p.add_argument("--profile", action="store_true", help="also profile one step of (a) and print where the time goes")
    p.add_argument("--numerics-encoder", default="resnet_small",
                   help="encoder of the numerics comparison (defaults vs forced fp32 NCHW); 'none' skips it "
                   "(default resnet_small)")
    p.add_argument("--numerics-width", type=int, default=16,
                   help="width of a resnet_small numerics encoder (default 16)")
    p.add_argument("--numerics-batch", type=int,
                   help="batch of the numerics comparison (default 256 on CPU, 512 on CUDA)")
    p.add_argument("--numerics-steps", type=int,
                   help="timed steps per round of the numerics comparison (default 3 on CPU, 20 on CUDA)")
    # for tests: keep the run tiny
    p.add_argument("--aug-seconds", type=float, help=argparse.SUPPRESS)
    p.add_argument("--per-image-count", type=int, help=argparse.SUPPRESS)
    p.add_argument("--aug-batch-size", type=int, default=512, help=argparse.SUPPRESS)
    p.add_argument("--image-sizes", type=int, nargs="+", default=[32, 96], help=argparse.SUPPRESS)
    p.add_argument("--encoder", default="resnet18", help=argparse.SUPPRESS)
    p.add_argument("--synthetic-size", type=int, default=CIFAR_TRAIN_IMAGES, help=argparse.SUPPRESS)


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    """The parsed command line as the one object ``run_bench`` reads.

    Each option's dest is the name of its ``BenchOptions`` field, so the fields are taken by name;
    only the three that the command line spells differently are converted here.
    """
    given = {f.name: getattr(args, f.name) for f in fields(BenchOptions) if hasattr(args, f.name)}
    return BenchOptions(**{
        **given,
        "image_sizes": tuple(args.image_sizes),
        "numerics_encoder": None if args.numerics_encoder == "none" else args.numerics_encoder,
        "command": "python -m ablations " + " ".join(args.argv),  # args.command is the subcommand's name
    })


def cmd_bench(args: argparse.Namespace) -> int:
    """Measure, print the tables, write the JSON when asked; bad data is one line and exit 2."""
    import torch  # here: every other command starts without it

    from ablations.bench.report import format_bench_result, write_json
    from ablations.bench.run import run_bench
    from core.data import DataError

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = run_bench(options_from_args(args))
    except (ConfigFileError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(format_bench_result(result))
    if args.json_out is not None:
        write_json(result, args.json_out)
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
