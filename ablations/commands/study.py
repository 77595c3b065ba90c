"""The study commands: ``run``, ``plan`` and ``report``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ablations.commands.recipes import add_recipe_option, overrides_with_recipe
from ablations.data_option import add_data_option, load_with_data
from ablations.exit_codes import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED
from ablations.logs import configure_logging
from ablations.plan import Plan, make_plan, study_plugins
from ablations.preflight import check_data, check_study_devices
from ablations.stopping import Terminated, raise_on_sigterm
from ablations.study import point_id
from ablations.yamlfile import ConfigFileError

RUN_EPILOG = """\
examples:
  python -m ablations run studies/quickstart.yaml
  python -m ablations run studies/augment_pairs.yaml --scale quick --workers 2
  python -m ablations run studies/temperature.yaml --set train.epochs=50 --name temperature-50ep
  python -m ablations run studies/color_strength.yaml --devices cuda:0,cuda:1 --workers 4
  python -m ablations run studies/batch_size_epochs.yaml \\
      --storage postgresql://user:pw@dbhost/optuna --tracking-uri http://mlflow-host:5000
  python -m ablations run studies/color_strength.yaml --scale cpu --until-decided --max-trials 40

Running the same command again skips finished trials and reruns failed or interrupted ones
(resuming from their checkpoints). Several `run` processes, on one machine or many, pointed at
the same --storage share the trials without running any twice. Results go to MLflow:
`mlflow ui` in this folder shows them.
"""

REPORT_EPILOG = """\
examples:
  python -m ablations report quickstart                        # from MLflow, by study name
  python -m ablations report studies/color_strength.yaml --scale cpu
  python -m ablations report --from results/cpu/temperature    # from a report folder, no MLflow
  python -m ablations report --from results/cpu/temperature --out /tmp/temperature

With a STUDY the report is rebuilt from MLflow and written to reports_out/NAME/. With --from FOLDER
it is rebuilt from a folder such a report wrote (summary.json, tables/trials.csv and the study
file), e.g. one committed under results/; no MLflow store is opened or created, and the command
and environment recorded there are kept.
"""


DEFAULT_MAX_SEEDS = 8
"""``--max-seeds-per-point``: with 3 seeds per point, 6 looks, each at level 0.05 / 6."""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", type=Path, help="study file (YAML), e.g. studies/quickstart.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a base run-config field by dotted path, e.g. train.epochs=5 (repeatable)")
    p.add_argument("--scale", help="a named variant from the study's `scales:` section, e.g. quick")
    add_data_option(p)
    add_recipe_option(p)
    p.add_argument("--name", help="the study's name in Optuna and MLflow (default: its `name`, plus -SCALE)")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///optuna.db beside the MLflow store)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLflow's default, sqlite:///mlflow.db here)")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="run (or resume) every unfinished trial of a study, then print its table",
                       description="Run every trial of a study that is not finished yet, log each to MLflow, "
                       "then print the comparison table.", epilog=RUN_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p)
    p.add_argument("--workers", type=int, default=1, help="trials in parallel on this machine (default 1)")
    p.add_argument("--devices", default="", help="comma-separated devices for the workers, round-robin, "
                   "devices_per_trial of them per worker (e.g. cuda:0,cuda:1; default: each trial's train.device)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"),
                   help="checkpoints go to RUNS_DIR/STUDY/POINT (default runs)")
    p.add_argument("--max-trials", type=int, help="stop after this many trials (per worker; with --until-decided: "
                   "the study's trials in all, its own and added, however often the command is resumed)")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan; write nothing")
    p.add_argument("--log-checkpoint", action="store_true", help="also store each trial's final checkpoint in MLflow")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (e.g. in batch jobs)")
    p.add_argument("--no-floor", action="store_true",
                   help="skip the floor: the untrained encoder's evaluation the report compares with (computed "
                   "once per scale, data and seed, then reused; about one linear evaluation per seed)")
    p.add_argument("--grace-period", type=int, default=20, metavar="S",
                   help="seconds without a heartbeat before another worker takes over a trial whose worker died "
                   "(default 20)")
    seq = p.add_argument_group("adding seeds until the claims are decided (docs/results.md)")
    seq.add_argument("--until-decided", action="store_true",
                     help="after the study's own trials, add one seed per round to the points each undecided "
                     "claim compares, until every claim is decided or the budget is spent; claims are then judged "
                     "by a sequential rule with a stated error rate (a t test at alpha/looks per look)")
    seq.add_argument("--max-seeds-per-point", type=int, default=DEFAULT_MAX_SEEDS, metavar="N",
                     help=f"with --until-decided: at most N seeds per point, which fixes the number of looks "
                     f"(N - repeats + 1; default {DEFAULT_MAX_SEEDS})")
    seq.add_argument("--alpha", type=float, default=0.05,
                     help="with --until-decided: the chance of any false decision per claim, over all its looks "
                     "(default 0.05)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("plan", help="list a study's trials, which are done, and what they cost",
                       description="Print one row per trial with its varied values and status (if the "
                       "storage knows the study), then the total cost in pretraining images.")
    _common(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("report", help="print a study's comparison table again, from MLflow or a report folder",
                       description="Rebuild a study's table and report from what MLflow holds, or from a "
                       "report folder alone (--from).", epilog=REPORT_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", nargs="?", metavar="STUDY",
                   help="a study file or a study name (as shown in MLflow); not with --from")
    p.add_argument("--from", dest="from_dir", type=Path, metavar="FOLDER",
                   help="rebuild from this report folder (summary.json, tables/trials.csv), without MLflow")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="with --from: write the report here (default: FOLDER itself)")
    p.add_argument("--scale", help="with a study file: the scale it was run at")
    p.add_argument("--name", help="the study's name, when it was run with --name")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///mlflow.db here)")
    p.add_argument("--metric", help="metric to tabulate (default: the study's metric, else linear_top1; "
                   "with --from: the one the report was made with)")
    p.set_defaults(func=cmd_report, report_parser=p)


# ---------------------------------------------------------------------- helpers
def study_name(study: Any, args: argparse.Namespace) -> str:
    if getattr(args, "name", None):
        return str(args.name)
    return f"{study.name}-{args.scale}" if getattr(args, "scale", None) else str(study.name)


def default_storage(tracking_uri: str) -> str:
    """``sqlite:///optuna.db`` in the folder of a SQLite MLflow store, else in the working directory."""
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix):
        return prefix + str(Path(tracking_uri[len(prefix):]).parent / "optuna.db")
    return prefix + "optuna.db"


def _uris(args: argparse.Namespace) -> tuple[str, str]:
    from ablations.tracking import default_tracking_uri

    tracking_uri = args.tracking_uri or default_tracking_uri()
    return tracking_uri, args.storage or default_storage(tracking_uri)


def _load(args: argparse.Namespace) -> Any:
    """The study with ``--set`` and ``--data`` applied; ``args.resolved_overrides`` holds both, for workers."""
    from ablations.study import load_study

    study, args.resolved_overrides = load_with_data(
        lambda overrides: load_study(args.study, overrides, args.scale),
        lambda study: study.base.data,
        args.data,
        overrides_with_recipe(args.overrides, getattr(args, "recipe", None)),
    )
    return study


def check_writable_folder(path: Path, option: str) -> None:
    """Fail before anything is written when ``path`` cannot become a writable folder.

    Only looks (nothing is created): the nearest existing ancestor must be a folder this user may
    write into, and ``path`` itself, if it exists, a writable folder.
    """
    existing = path.expanduser().absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigFileError(f"{option} {path}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigFileError(f"{option} {path}: {existing} is not writable")


def _bad(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _stored_trials(storage_url: str, name: str) -> list[Any]:
    """The study's trials in the storage, without creating anything there ([] when it has none)."""
    import optuna

    if storage_url.startswith("sqlite:///") and not Path(storage_url[len("sqlite:///"):]).exists():
        return []
    try:
        return optuna.load_study(study_name=name, storage=storage_url).get_trials(deepcopy=False)
    except KeyError:
        return []


def _storage_status(trials: list[Any]) -> dict[str, str]:
    """Point key -> Optuna state of its latest trial (a finished one wins over its retries)."""
    status: dict[str, str] = {}
    for t in trials:
        key = t.user_attrs.get("key")
        if key and (status.get(key) != "COMPLETE"):
            status[key] = t.state.name
    return status


def _added_seeds(trials: list[Any]) -> list[tuple[str, str, str]]:
    """(key, label, axis values as sorted JSON) of each seed ``run --until-decided`` added, in the order added."""
    from ablations.engine import ADDED_SEED

    seen: dict[str, tuple[str, str, str]] = {}
    for t in trials:
        key = t.user_attrs.get("key")
        if ADDED_SEED in t.user_attrs and key and key not in seen:
            axes = point_id(json.loads(t.user_attrs.get("axes", "{}")))
            seen[key] = (key, t.user_attrs.get("label", key), axes)
    return list(seen.values())


def _time_per_trial(trials: list[Any]) -> str:
    """'about 1.5 min a trial (mean of 3 finished)', from the finished trials' start and end times."""
    from ablations.progress import duration_text

    spans = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials
             if t.state.name == "COMPLETE" and t.datetime_start and t.datetime_complete]
    if not spans:
        return ""
    return f"; about {duration_text(sum(spans) / len(spans))} a trial (mean of {len(spans)} finished)"


def _pretrain_images(config: Any) -> int | None:
    """Images in the pretraining split, known without decoding anything (None when unknown)."""
    known = {"cifar10": 50000, "cifar100": 50000, "stl10": 5000, "tarball": 50000}
    n = config.data.synthetic.train_size if config.data.source == "synthetic" else known.get(config.data.source)
    if config.data.subset is not None:
        n = config.data.subset if n is None else min(n, config.data.subset)
    return n


def print_plan(plan: Plan, name: str, storage_url: str | None) -> None:
    study = plan.study
    trials = _stored_trials(storage_url, name) if storage_url else []
    status = _storage_status(trials)
    print(f"study {name}: {study.description.strip().splitlines()[0] if study.description.strip() else ''}")
    if study.search is not None:
        print(f"Optuna search, {study.search.n_trials} trials over: "
              + ", ".join(f"{k} ({p.type}{', log' if p.log else ''})" for k, p in study.search.params.items()))
        states = [t.state.name for t in trials]
        done = sum(states.count(s) for s in ("COMPLETE", "PRUNED"))
        running = states.count("RUNNING")
        print(f"{study.search.n_trials} trials, {done} done ({states.count('PRUNED')} pruned), {running} running, "
              f"{max(0, study.search.n_trials - done - running)} to run{_time_per_trial(trials)}")
        cfgs = [study.base] * study.search.n_trials
    else:
        cfgs = [t.config for t in plan.trials]
        added = _added_seeds(trials)
        rows = [(t.key, t.label) for t in plan.trials] + [(k, f"{label} (added)") for k, label, _ in added]
        width = max((len(label) for _, label in rows), default=10)
        for i, (key, label) in enumerate(rows):
            print(f"  {i:>4}  {label:<{width}}  {status.get(key, 'todo').lower()}")
        done = sum(1 for key, _ in rows if status.get(key) == "COMPLETE")
        more = f" ({len(plan.trials)} of the study, {len(added)} added by --until-decided)" if added else ""
        print(f"{len(rows)} trials{more}, {done} done, {len(rows) - done} to run{_time_per_trial(trials)}")
        by_point = {point_id(t.point.params): t.config for t in plan.trials}
        cfgs += [by_point[axes] for _, _, axes in added if axes in by_point]  # a point's seeds cost alike
    images = [(_pretrain_images(c), c.train.epochs) for c in cfgs]
    if all(n is not None for n, _ in images):
        total = sum(2 * n * e for n, e in images if n is not None)
        print(f"cost: {total:,} augmented views through the encoder in pretraining "
              f"(2 views x images x epochs, summed over trials)")
    plugins = study_plugins(study)
    if plugins:
        print("plugins: " + "; ".join(f"{key.replace('.', ' ', 1)}: {origin}" for key, origin in plugins.items()))


def print_table(tracking_uri: str, name: str, metric: str, fingerprint: str | None = None) -> int:
    """The study's table and report, from the MLflow runs of the definition ``fingerprint`` only
    (None: the latest definition run under this name)."""
    from reports.trials import aggregate, load_trials, markdown_table

    df = load_trials(tracking_uri, name, fingerprint)
    if df.empty:
        print(f"no trials of study '{name}' in MLflow at {tracking_uri}")
        return 0
    print(f"\nstudy {name}: {metric} (%), mean over seeds\n")
    print(markdown_table(aggregate(df, metric), metric))
    failed = df[df["status"] == "failed"]
    for _, row in failed.iterrows():
        print(f"failed: trial {row['trial']}: {row['failure_reason']}")
    from reports.render import print_report

    # paper-layout table, verdicts, reports_out/NAME/report.html
    print_report(tracking_uri, name, metric, fingerprint=fingerprint)
    return 0


# ---------------------------------------------------------------------- commands
def cmd_plan(args: argparse.Namespace) -> int:
    try:
        study = _load(args)
    except ConfigFileError as exc:
        return _bad(str(exc))
    tracking_uri, storage_url = _uris(args)
    plan = make_plan(study)
    print_plan(plan, study_name(study, args), storage_url)
    print_claims(tracking_uri, study_name(study, args), plan)
    return 0


def print_claims(tracking_uri: str, name: str, plan: Plan) -> None:
    """For a study that has run: each of its claims' verdict so far and, when undecided, the seeds
    per point that would decide it (nothing, and no store created, for a study that has not run)."""
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix) and not Path(tracking_uri[len(prefix):]).is_file():
        return
    from reports.looks import study_verdicts
    from reports.render import parent_run
    from reports.sequential import rule_from_tags
    from reports.trials import load_trials

    df = load_trials(tracking_uri, name, plan.fingerprint)
    if df.empty:
        return
    import mlflow

    run = parent_run(mlflow.MlflowClient(tracking_uri), name, plan.fingerprint)
    rule = rule_from_tags(run.data.tags) if run is not None else None
    if rule is not None:
        print(f"claims judged by the study's sequential rule (--until-decided): {rule.describe()}")
    study = plan.study
    for v in study_verdicts(df, study.report.get("kind", "generic"), study.metric, dict(study.report),
                            study.direction, rule):
        need = v.extra.get("seeds_to_decide", "")
        more = ("" if "seeds_to_decide" not in v.extra else
                f": about {need} seeds per point would decide it" if need else ": zero within noise")
        print(f"claim: {v.claim}: {v.verdict} (n={v.seeds}){more}")


def cmd_run(args: argparse.Namespace) -> int:
    raise_on_sigterm()  # SLURM's stop (or preemption) is handled like Ctrl-C: the trial is queued again
    try:
        study = _load(args)
        if args.workers < 1:
            raise ConfigFileError(f"--workers {args.workers}: expected a whole number >= 1")
        if args.grace_period < 2:
            raise ConfigFileError(f"--grace-period {args.grace_period}: expected at least 2 seconds")
        if args.max_trials is not None and args.max_trials < 1:
            raise ConfigFileError(f"--max-trials {args.max_trials}: expected a whole number >= 1")
        rule = _sequential_rule(args, study)
        check_writable_folder(args.runs_dir, "--runs-dir")
        devices = [d.strip() for d in args.devices.split(",") if d.strip()]
        plan = make_plan(study)
        configs = plan.configs()
        check_study_devices(study, devices, configs)
        check_data(configs, where=f"{study.source}: ")
    except ConfigFileError as exc:
        return _bad(str(exc))
    # imported only now: bad input is reported without loading MLflow and Optuna
    from ablations.added_seeds import RuleMismatch
    from ablations.engine import PARENT_RUN, EngineOptions, StudyMismatch, load_or_create, make_storage, work
    from ablations.parallel import assign_devices, run_workers
    from ablations.study_status import close_study_run, mark_running
    from ablations.tracking import TrackingError, connect
    name = study_name(study, args)
    tracking_uri, storage_url = _uris(args)
    if args.dry_run:
        print_plan(plan, name, storage_url)
        print("dry run: nothing was trained or written")
        return 0
    try:
        connect(tracking_uri)
    except TrackingError as exc:
        return _bad(str(exc))
    configure_logging()
    options = EngineOptions(
        storage=storage_url,
        tracking_uri=tracking_uri,
        runs_dir=args.runs_dir,
        device=assign_devices(devices, 1, study.devices_per_trial)[0] if args.workers == 1 else None,
        max_trials=args.max_trials,
        log_checkpoint=args.log_checkpoint,
        progress=not args.no_progress,
        heartbeat_interval=max(1, args.grace_period // 4),
        grace_period=args.grace_period,
    )
    started_at = time.time()
    overrides = args.resolved_overrides
    client = connect(tracking_uri)
    opt, parent = None, None
    try:
        opt = load_or_create(plan, name, make_storage(storage_url, options, client), client)
        parent = opt.user_attrs[PARENT_RUN]
        mark_running(client, parent, study)
        if not args.no_floor:  # first: a report taken while the study runs (or after a kill) has its floor too
            _floor(plan, client, name, parent)

        def run_once(budget: int | None) -> list[Any]:
            opts = replace(options, max_trials=budget)
            if args.workers == 1:
                return [work(plan, name, opts, started_at)]
            return run_workers(args.study, overrides, args.scale, name, opts, devices, args.workers, started_at)

        if rule is None:
            reports = run_once(args.max_trials)
        else:
            from ablations.until_decided import run_until_decided

            outcome = run_until_decided(opt, plan, name, tracking_uri, client, parent, rule, run_once,
                                        args.max_trials)
            reports = outcome.reports
            print(f"\n--until-decided: {plural(outcome.rounds, 'round')} of added seeds; stopped: {outcome.stopped} "
                  f"(rule: {rule.describe()})")
    except (StudyMismatch, RuleMismatch) as exc:
        return _bad(str(exc))
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM from a scheduler (ablations.stopping)
        how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"\n{how}: the running trial is queued again with its last checkpoint; run the same command "
              "to resume it", file=sys.stderr)
        if opt is not None and parent is not None:
            try:
                close_study_run(client, opt, parent, interrupted=True)
            except Exception as exc:  # the store may be what was interrupted; the next run sets it again
                print(f"warning: could not mark the study's MLflow run KILLED: {exc}", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    state = close_study_run(client, opt, parent, interrupted=False)
    print("\n" + run_summary(reports, opt, state) + f" (storage {storage_url}, MLflow {tracking_uri})")
    print_table(tracking_uri, name, study.metric, plan.fingerprint)
    print(f"MLflow: {ui_link(tracking_uri, client.get_experiment_by_name(name).experiment_id)}")
    return 0


def _sequential_rule(args: argparse.Namespace, study: Any) -> Any:
    """The rule ``--until-decided`` asks for (None without it), or a ConfigFileError saying why not."""
    if not args.until_decided:
        return None
    if study.search is not None:
        raise ConfigFileError(f"{study.source}: --until-decided adds seeds to a grid study's points; "
                              "this is a search (its trials are not points to repeat)")
    kind = study.report.get("kind", "generic")
    if kind in ("generic", "search"):
        raise ConfigFileError(f"{study.source}: --until-decided needs claims to decide, and report kind "
                              f"{kind!r} makes none (the paper's studies do: report.kind color_strength, ...)")
    if study.repeats < 2:
        raise ConfigFileError(f"{study.source}: --until-decided needs repeats >= 2 (the seed spread is what "
                              f"decides); the study has {study.repeats} (set repeats, or --scale one that does)")
    if not 0 < args.alpha < 1:
        raise ConfigFileError(f"--alpha {args.alpha}: expected a number between 0 and 1")
    if args.max_seeds_per_point < study.repeats:
        raise ConfigFileError(f"--max-seeds-per-point {args.max_seeds_per_point}: fewer than the study's own "
                              f"{study.repeats} seeds per point")
    from reports.sequential import SequentialRule

    return SequentialRule.up_to(study.repeats, args.max_seeds_per_point, args.alpha)


def _floor(plan: Plan, client: Any, name: str, parent: str | None) -> None:
    """The study's floor for its report (``ablations.baseline``); a failure costs a warning, not the study."""
    from ablations.baseline import ensure_floor

    try:
        ensure_floor(plan, client, client.get_experiment_by_name(name).experiment_id, parent)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        print(f"warning: the floor (untrained encoder) was not computed: {type(exc).__name__}: {exc}",
              file=sys.stderr)


def ui_link(tracking_uri: str, experiment_id: str) -> str:
    """Where the study's runs are in MLflow's UI. MLflow 3 opens an experiment on its GenAI pages
    unless the browser was switched to "Model training" once; the workflowType query opens the runs."""
    page = f"#/experiments/{experiment_id}?workflowType=machine_learning"
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri.rstrip('/')}/{page}"
    return f"`mlflow ui` here, then http://127.0.0.1:5000/{page}"


def run_summary(reports: list[Any], opt: Any, state: str) -> str:
    """What this `run` did and where the study stands: 'this run: 3 trials finished, ...', 'all 4
    trials already finished' for a rerun with nothing to do, and a partial study said as such."""
    from ablations.study_status import summary

    completed = sum(len(r.completed) for r in reports)
    failed = [f for r in reports for f in r.failed]
    pruned = sum(len(r.pruned) for r in reports)
    counts = summary(opt)
    finished = int(counts["trials_finished"])
    if not (completed or failed or pruned) and state == "finished":
        return f"all {plural(finished, 'trial')} already finished: nothing to run"
    text = f"this run: {plural(completed, 'trial')} finished, {len(failed)} failed, {pruned} pruned"
    if state == "partial":
        left = int(counts["trials_open"])
        text += (f"; the study is partial: {finished} finished, {plural(left, 'trial')} still to run "
                 "(run the same command to continue)")
    return text


def plural(n: int, word: str) -> str:
    """'1 trial', '2 trials'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _check_report_args(args: argparse.Namespace) -> None:
    """STUDY or --from, not both; the MLflow options only with STUDY, --out only with --from (argparse exit 2)."""
    parser: argparse.ArgumentParser = args.report_parser
    if (args.study is None) == (args.from_dir is None):
        parser.error("give a STUDY (from MLflow) or --from FOLDER (from a report folder), not both" if args.study
                     else "give a STUDY (from MLflow) or --from FOLDER (from a report folder)")
    if args.from_dir is not None:
        clash = [o for o, v in (("--scale", args.scale), ("--name", args.name), ("--tracking-uri", args.tracking_uri))
                 if v]
        if clash:
            parser.error(f"{', '.join(clash)}: only with a STUDY, not with --from")
    elif args.out is not None:
        parser.error("--out: only with --from (a report from MLflow goes to reports_out/NAME/)")


def report_from_folder(folder: Path, out: Path | None, metric: str | None) -> int:
    """``report --from``: the report written again from its folder alone; MLflow is not even imported."""
    from reports.render import ReportFolderError, rebuild_report

    try:
        if out is not None:
            check_writable_folder(out, "--out")
        elif folder.is_dir():
            check_writable_folder(folder, "--from")  # written in place
        rendered = rebuild_report(folder, out, metric)
    except (ReportFolderError, ConfigFileError) as exc:
        return _bad(str(exc))
    if rendered.terminal_text:
        print(rendered.terminal_text)
    print(f"\nreport: {rendered.html.resolve()}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    _check_report_args(args)
    if args.from_dir is not None:
        return report_from_folder(args.from_dir, args.out, args.metric)
    from ablations.tracking import TrackingError, connect, default_tracking_uri

    tracking_uri = args.tracking_uri or default_tracking_uri()
    path = Path(args.study)
    metric = args.metric or "linear_top1"
    if path.suffix in (".yaml", ".yml") or path.exists():
        from ablations.study import load_study

        try:
            study = load_study(path, {}, args.scale)
        except ConfigFileError as exc:
            return _bad(str(exc))
        name = study_name(study, args)
        metric = args.metric or study.metric
    else:
        name = args.name or args.study
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///"):]).exists():
        return _bad(f"study '{name}': no MLflow store at {tracking_uri} (run the study first, or give --tracking-uri)")
    try:
        connect(tracking_uri)
    except TrackingError as exc:
        return _bad(str(exc))
    from reports.trials import load_trials

    if load_trials(tracking_uri, name).empty:
        return _bad(f"study '{name}': no trials in MLflow at {tracking_uri} "
                    f"(names there: {', '.join(_study_names(tracking_uri)) or 'none'})")
    return print_table(tracking_uri, name, metric)


def _study_names(tracking_uri: str) -> list[str]:
    """The experiments of an MLflow store, for an error message that shows what could be meant."""
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri)
    return sorted(e.name for e in client.search_experiments() if e.name != "Default")
