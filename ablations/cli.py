"""Command line: ``python -m ablations <command>``; each command lives in ``ablations.commands``.

Exit status: 0 success, 2 bad input (config file, option, data), 3 the run diverged, 130
interrupted, 1 anything else (``ablations.exit_codes``).
"""

from __future__ import annotations

import argparse
import os
import sys

from core.hostmem import keep_freed_memory

MAIN_EPILOG = """\
examples:
  python -m ablations run studies/quickstart.yaml            # run or resume a study, print its table
  python -m ablations run studies/augment_pairs.yaml --scale quick --workers 2
  python -m ablations plan studies/temperature.yaml          # the trials, which are done, the cost
  python -m ablations report quickstart                      # the table again, from MLflow
  python -m ablations report --from results/cpu/temperature  # a committed report folder, rebuilt without MLflow
  python -m ablations train --set data.source=synthetic      # one run config, no study
  python -m ablations bench --quick --data DATA              # data pipeline and training throughput
  python -m ablations data build --data ~/imagenet --set data.image_size=160  # decode a big tree once, ahead
  python -m ablations recipes                                # the named recipes and their sources
  python -m ablations config --recipe lightly_cifar10        # the resolved run config a recipe gives

Run `python -m ablations COMMAND --help` for each command's options.
"""

def build_parser() -> argparse.ArgumentParser:
    from ablations.commands import COMMANDS

    parser = argparse.ArgumentParser(
        prog="python -m ablations",
        description="Reproduce and extend the ablations of SimCLR (Chen et al., ICML 2020).",
        epilog=MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # MLflow draws a progress bar for every small artifact it reads back (the study file): noise here
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    keep_freed_memory()  # CPU steps stop page-faulting their buffers afresh (core.hostmem)
    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # the command as given, for records
    return int(args.func(args))
