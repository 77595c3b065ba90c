"""The ``delete`` command: remove a study everywhere it lives, so it can be run again from scratch.

A study lives in three places: its Optuna study (the trials and their states), its MLflow runs (the
study's parent run and one child run per trial) and its run directories (checkpoints, under
``--runs-dir``), plus the report ``run`` wrote to ``reports_out/NAME``. Removing only the Optuna
study (``optuna delete-study``) left the other two behind, and a rerun under the same name then
mixed the old MLflow results into its table and found the old checkpoints. MLflow runs are deleted
the way MLflow deletes (moved to its trash), so ``mlflow gc`` can purge them for good; the
experiment itself stays, empty, for the next run of that name.

Exit status: 0 removed (or nothing confirmed), 2 bad input (no such study anywhere, or no answer to
the question with no terminal and no ``--yes``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablations.exit_codes import EXIT_BAD_INPUT
from ablations.yamlfile import ConfigFileError

DELETE_EPILOG = """\
examples:
  python -m ablations delete quickstart                         # asks before removing anything
  python -m ablations delete studies/temperature.yaml --scale cpu --yes
  python -m ablations delete augment_pairs --storage postgresql://u:pw@db/optuna \\
      --tracking-uri http://mlflow-host:5000 --runs-dir /shared/runs --yes

It names what it will remove, then asks (unless --yes). The MLflow runs go to MLflow's trash:
`mlflow gc` purges them.
"""


@dataclass
class Found:
    """Where a study lives, as found before anything is removed."""

    name: str
    optuna_trials: int | None = None  # None: no Optuna study of that name
    mlflow_runs: list[str] = field(default_factory=list)
    parent_runs: int = 0
    floor_runs: int = 0
    folders: list[Path] = field(default_factory=list)

    def empty(self) -> bool:
        return self.optuna_trials is None and not self.mlflow_runs and not self.folders

    def lines(self, storage: str, tracking_uri: str) -> list[str]:
        out = []
        if self.optuna_trials is not None:
            out.append(f"the Optuna study '{self.name}' ({self.optuna_trials} trials) in {storage}")
        if self.mlflow_runs:
            trials = len(self.mlflow_runs) - self.parent_runs - self.floor_runs
            floors = f", {self.floor_runs} floor run(s)" if self.floor_runs else ""
            out.append(f"{len(self.mlflow_runs)} MLflow runs of experiment '{self.name}' ({self.parent_runs} study "
                       f"run(s), {trials} trial runs{floors}) at {tracking_uri}, moved to MLflow's trash "
                       "(`mlflow gc` purges)")
        for folder in self.folders:
            out.append(f"the folder {folder} ({_size(folder)})")
        return out


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``delete``: a study's Optuna study, MLflow runs and run directories."""
    p = sub.add_parser("delete", help="remove a study everywhere it lives (Optuna, MLflow, run directories)",
                       description="Remove a study's Optuna study, its MLflow runs (the study's and its trials') "
                       "and its run directories and report, so that it can be run again from scratch.",
                       epilog=DELETE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", metavar="STUDY", help="a study file or a study name (as `run` named it)")
    p.add_argument("--scale", help="with a study file: the scale it was run at (the name gets -SCALE)")
    p.add_argument("--name", help="the study's name, when it was run with --name")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///optuna.db beside the MLflow store)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///mlflow.db here)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where `run` put checkpoints (default runs)")
    p.add_argument("--reports-dir", type=Path, default=Path("reports_out"),
                   help="where `run` wrote the report (default reports_out)")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_delete)


def _size(folder: Path) -> str:
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return f"{total / 1e6:.1f} MB" if total >= 1e5 else f"{total / 1e3:.1f} kB"


def _name(args: argparse.Namespace) -> str:
    if args.name:
        return str(args.name)
    path = Path(args.study)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        from ablations.study import load_study

        study = load_study(path, {}, args.scale)
        return f"{study.name}-{args.scale}" if args.scale else study.name
    if args.scale:
        raise ConfigFileError(f"--scale {args.scale}: only with a study file (a name already includes its scale)")
    return str(args.study)


def find(name: str, storage: str, tracking_uri: str, runs_dir: Path, reports_dir: Path) -> Found:
    """Everything of study ``name``, looked up without creating a store that is not there."""
    found = Found(name)
    if not (storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).exists()):
        import optuna

        try:
            found.optuna_trials = len(optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False))
        except KeyError:
            pass
    if not (tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///"):]).exists()):
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            runs = _all_runs(client, exp.experiment_id)
            found.mlflow_runs = [r.info.run_id for r in runs]
            found.parent_runs = sum(1 for r in runs if r.data.tags.get("ablations.role") == "study")
            found.floor_runs = sum(1 for r in runs if r.data.tags.get("ablations.role") == "baseline")
    found.folders = [d for d in (runs_dir / name, reports_dir / name) if d.is_dir()]
    return found


def _all_runs(client: Any, experiment_id: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def remove(found: Found, storage: str, tracking_uri: str) -> None:
    """Delete what ``find`` found: MLflow runs first (a study without Optuna trials but with runs
    would still show in tables), then the Optuna study, then the folders."""
    if found.mlflow_runs:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
        for run_id in found.mlflow_runs:
            client.delete_run(run_id)
    if found.optuna_trials is not None:
        import optuna

        optuna.delete_study(study_name=found.name, storage=storage)
    for folder in found.folders:
        shutil.rmtree(folder)


def cmd_delete(args: argparse.Namespace) -> int:
    from ablations.commands.study import default_storage
    from ablations.tracking import default_tracking_uri

    try:
        name = _name(args)
    except ConfigFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    tracking_uri = args.tracking_uri or default_tracking_uri()
    storage = args.storage or default_storage(tracking_uri)
    found = find(name, storage, tracking_uri, args.runs_dir, args.reports_dir)
    if found.empty():
        print(f"error: study '{name}': nothing to delete (no Optuna study in {storage}, no MLflow experiment "
              f"runs at {tracking_uri}, no {args.runs_dir / name})", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"study '{name}' lives in:")
    for line in found.lines(storage, tracking_uri):
        print(f"  {line}")
    if not args.yes:
        if not sys.stdin.isatty():
            print("error: not deleted: no terminal to ask (give --yes to delete without asking)", file=sys.stderr)
            return EXIT_BAD_INPUT
        if input("delete all of it? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 0
    remove(found, storage, tracking_uri)
    print(f"deleted study '{name}': run the study again to start it afresh")
    return 0
