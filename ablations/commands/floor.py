"""``python -m ablations floor STUDY``: a study's floor (its untrained encoder) without running it,
and optionally written into a report folder, for reports made before floors were (``results/``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ablations.exit_codes import EXIT_BAD_INPUT
from ablations.yamlfile import ConfigFileError

EPILOG = """\
examples:
  python -m ablations floor studies/temperature.yaml --scale cpu --data ../shared/data/cifar10-jpeg.tar.gz
  python -m ablations floor studies/temperature.yaml --scale cpu --data ../shared/data/cifar10-jpeg.tar.gz \\
      --into results/cpu/temperature      # add it to a committed report and rebuild that report

The floor is the study's base encoder at each of its seeds, untrained (BatchNorm statistics of the
training images, no learning), evaluated exactly as its trials are. It is logged to MLflow (runs tagged
ablations.role=baseline, in the experiment FLOOR_EXPERIMENT unless the study's own exists) and reused by
every study of the same data, encoder, evaluation and seed; `run` computes it by itself.
"""

FLOOR_EXPERIMENT = "floors"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ablations.commands.study import _common

    p = sub.add_parser("floor", help="a study's floor: its untrained encoder, evaluated like its trials",
                       description="Compute (or find in MLflow) the evaluation of the study's untrained "
                       "encoder at each of its seeds, and print it.",
                       epilog=EPILOG.replace("FLOOR_EXPERIMENT", FLOOR_EXPERIMENT),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--into", type=Path, metavar="FOLDER",
                   help="also write it into this report folder's summary.json and rebuild the report there")
    p.set_defaults(func=cmd_floor)


def cmd_floor(args: argparse.Namespace) -> int:
    from ablations.commands.study import _load, _uris, study_name
    from ablations.preflight import check_data

    try:
        study = _load(args)
        if args.into is not None and not (args.into / "summary.json").is_file():
            raise ConfigFileError(f"--into {args.into}: not a report folder (no summary.json)")
        from ablations.plan import make_plan

        plan = make_plan(study)
        check_data([study.base], where=f"{study.source}: ")
    except ConfigFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from ablations.baseline import ensure_floor
    from ablations.logs import configure_logging
    from ablations.tracking import connect, experiment_id
    from reports.floor import read_floor

    configure_logging()
    tracking_uri, _ = _uris(args)
    client = connect(tracking_uri)
    name = study_name(study, args)
    exp = client.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp is not None else experiment_id(
        client, FLOOR_EXPERIMENT, "Floors: untrained encoders, evaluated like the trials of the studies they serve")
    keys = ensure_floor(plan, client, exp_id, None)
    floor = read_floor(client, keys)
    assert floor is not None
    for seed, metrics in sorted(floor["by_seed"].items()):
        print(f"floor of {name}, seed {seed}: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(metrics.items())))
    if args.into is not None:
        from reports.render import rebuild_report

        summary_path = args.into / "summary.json"
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        summary["floor"] = floor
        summary_path.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
        rendered = rebuild_report(args.into)
        print(f"report: {rendered.html.resolve()}")
    return 0
