"""The study engine: every study (grid or search) is an Optuna study, every trial an MLflow child run.

Exactly-once across processes and machines rests on two atomic operations of Optuna's RDB
storage, nothing home-made:

* ``create_study(load_if_exists=False)`` succeeds in exactly one process (unique study name);
  that process enqueues every grid point as a WAITING trial. The others wait for it.
* ``storage.set_trial_state_values(id, RUNNING)`` moves a WAITING trial to RUNNING in exactly
  one process: that is how a worker claims a trial. It reads the state ``FOR UPDATE``, which
  PostgreSQL honours and SQLite does not; on SQLite a lock file beside the database makes the
  claim atomic (``_claim_lock``).

A worker records a heartbeat from just before it claims a trial until the trial is over. When a
worker dies (kill -9, lost machine), its trial's heartbeat goes stale; the next worker to look
fails it (again atomically), marks its MLflow run failed and enqueues the same point anew, which
resumes from the point's checkpoint. A trial that fails in-process (NaN loss, out of memory, bad
value found late, MLflow unreachable for too long) is recorded as failed and enqueued again for
the *next* ``run`` invocation only (``not_before``), so a deterministic failure does not loop.

Failing a trial and enqueueing its retry are two steps; a worker killed between them leaves a
failed trial without a retry. Workers look for such trials and enqueue the missing retry
(``requeue_lost``); should two do so at once, the retry with the lower number runs and the other
is dropped when claimed (``DUPLICATE_OF``), so a point never runs twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
import traceback
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.storages import RDBStorage, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from ablations import distributed_trial, tracking
from ablations.optuna_access import (
    live_trial,
    storage_of,
    storage_url,
    stored_trial,
    study_id_of,
    trial_id_of,
    trials_of,
)
from ablations.plan import Plan, PlannedTrial, as_plan, changed_fields, identity, point_run_dir
from ablations.progress import Counts, StudyProgress
from ablations.pruning import PruningCallback, pruned_epoch
from ablations.stopping import interruption
from ablations.study import Point, Study
from core.config import RunConfig
from core.recipes import RECIPE_KEY
from core.trainer import Callback, TrainingDiverged, TrainResult, train

log = logging.getLogger(__name__)

NOT_BEFORE = "not_before"  # user attr: a requeued trial may be claimed only by workers started after this time
RETRY_OF = "retry_of"  # user attr: the number of the failed trial this one retries
DUPLICATE_OF = "duplicate_of"  # user attr: a second retry of the same failed trial, dropped unrun
STALE = "worker stopped sending heartbeats"
FINGERPRINT = "fingerprint"
PARENT_RUN = "mlflow_parent_run_id"
READY = "ready"
DEFINITION = "definition"  # study user attr: plan.identity of the definition it was created from
ADDED_SEED = "added_round"  # user attr: a seed beyond the study's repeats, added by `run --until-decided` in this round


class StudyMismatch(ValueError):
    """The storage holds a study of this name built from a different study definition."""


@dataclass
class EngineOptions:
    """Where a study's state lives and how a worker behaves."""

    storage: str
    tracking_uri: str
    runs_dir: Path = Path("runs")
    device: str | None = None  # overrides train.device for this worker
    max_trials: int | None = None  # stop after this many trials in this worker
    heartbeat_interval: int = 5
    grace_period: int = 20  # seconds without heartbeat before a RUNNING trial counts as dead
    poll_s: float = 2.0
    log_checkpoint: bool = False
    progress: bool = True
    tracking_timeout_s: float = 300.0  # how long a trial waits for MLflow to take its final results


@dataclass
class WorkerReport:
    """What one worker did."""

    completed: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    pruned: list[int] = field(default_factory=list)


# ---------------------------------------------------------------------- opening the study
def make_storage(url: str, options: EngineOptions, client: Any = None) -> RDBStorage:
    """RDB storage with heartbeats; a dead worker's trial is enqueued again, at once claimable."""
    with tracking.db_init_lock(url), warnings.catch_warnings():  # table creation is not safe to race
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since 2.9
        return RDBStorage(
            url,
            heartbeat_interval=options.heartbeat_interval,
            grace_period=options.grace_period,
            heartbeat_stale_trial_callback=partial(_requeue_stale, client=client),
        )


def _sampler(study: Study, n_points: int) -> optuna.samplers.BaseSampler:
    if study.search is None:
        # Grid points are enqueued trials with fixed params, so the sampler never samples. Optuna's
        # GridSampler is not used: with several workers it may run a point twice (its docs say so)
        # and it cannot finish enqueued trials (it expects its own grid ids).
        return optuna.samplers.RandomSampler(seed=0)
    if study.search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=study.search.seed)
    return optuna.samplers.TPESampler(seed=study.search.seed)


def _pruner(study: Study) -> optuna.pruners.BasePruner:
    if study.search is not None and study.search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    return optuna.pruners.NopPruner()


def load_or_create(
    study: Study | Plan, name: str, storage: RDBStorage, client: Any, wait_s: float = 120.0
) -> optuna.Study:
    """Open the Optuna study ``name``; the one process that creates it also enqueues its points."""
    plan = as_plan(study)
    study = plan.study
    kwargs = dict(study_name=name, storage=storage, sampler=_sampler(study, len(plan.trials)), pruner=_pruner(study))
    fp = plan.fingerprint
    try:
        opt = optuna.create_study(direction=study.direction, load_if_exists=False, **kwargs)
    except DuplicatedStudyError:
        opt = optuna.load_study(**kwargs)
        _wait_ready(opt, name, wait_s)
        if opt.user_attrs.get(FINGERPRINT) != fp:
            raise StudyMismatch(_mismatch_message(name, opt.user_attrs.get(DEFINITION), plan)) from None
        return opt
    parent = None
    try:
        exp_id = tracking.experiment_id(client, name, study.description.strip())
        parent = tracking.create_parent_run(
            client, exp_id, name, {"study": name, "git_commit": tracking.git_commit(), "fingerprint": fp,
                                   **({RECIPE_KEY: study.recipe} if study.recipe else {})}
        )
        client.log_text(parent, study.text, Path(study.source).name if study.source else "study.yaml")
        opt.set_user_attr(FINGERPRINT, fp)
        opt.set_user_attr(DEFINITION, identity(study))  # what a changed definition is compared with
        with warnings.catch_warnings():  # experimental in some Optuna versions
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            opt.set_metric_names([study.metric])  # named in optuna-dashboard, not "Objective 0"
        opt.set_user_attr(PARENT_RUN, parent)
        opt.set_user_attr("description", study.description)
        opt.set_user_attr("metric", study.metric)
        for planned in plan.trials:
            opt.enqueue_trial({"point": planned.point.index}, user_attrs=_point_attrs(planned.point))
        opt.set_user_attr(READY, True)
    except BaseException:
        _undo_creation(name, storage, client, parent)
        raise
    return opt


def _mismatch_message(name: str, stored: dict[str, Any] | None, plan: Plan) -> str:
    """The refusal of a changed definition under a stored name: which fields differ, what to do."""
    if stored is None:
        what = "a different study definition (it was created before definitions were recorded)"
    else:
        changed = changed_fields(stored, identity(plan.study))
        shown = "; ".join(changed[:8]) + (f"; and {len(changed) - 8} more" if len(changed) > 8 else "")
        what = f"a different study definition ({shown})"
    return (f"the storage already holds a study named '{name}' built from {what}. Run this definition "
            f"under another name (--name NEW), or remove the stored study everywhere it lives "
            f"(python -m ablations delete {name}, with the same --storage/--tracking-uri/--runs-dir) and run again")


def _undo_creation(name: str, storage: RDBStorage, client: Any, parent: str | None) -> None:
    """Ctrl-C (or an error) while the study is being created: delete the half-made study, so the
    next ``run`` creates it afresh instead of waiting for a creator that is gone. No trial has run
    yet, so nothing is lost. Only a SIGKILL in this window (a second or two) still leaves it behind."""
    try:
        optuna.delete_study(study_name=name, storage=storage)
        if parent is not None:
            client.delete_run(parent)  # it holds only the study file; the next creation logs it again
    except Exception as exc:  # the original error matters more; say what is left to clean
        log.warning("could not remove the half-created study '%s' (%s): remove it with "
                    "python -m ablations delete %s --yes", name, exc, name)


def _wait_ready(opt: optuna.Study, name: str, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while not optuna.load_study(study_name=name, storage=storage_of(opt)).user_attrs.get(READY):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"study '{name}' exists in the storage but was never fully created (its creator "
                f"died while enqueuing); remove it with python -m ablations delete {name} --yes and run again"
            )
        time.sleep(0.5)


def _point_attrs(pt: Point) -> dict[str, Any]:
    return {
        "key": pt.key(),
        "label": pt.label(),
        "seed": pt.seed,
        "repeat": pt.repeat,
        "axes": json.dumps(pt.params),
    }


def _requeue(opt: optuna.Study, trial: FrozenTrial, not_before: float, reason: str) -> None:
    """Enqueue the same point (or the same sampled values, for a search) once more."""
    if DUPLICATE_OF in trial.user_attrs:
        return  # its twin carries the point on
    params = trial.system_attrs.get("fixed_params") or trial.params
    dropped = ("mlflow_run_id", "failure_reason", NOT_BEFORE, DUPLICATE_OF)
    attrs = {k: v for k, v in trial.user_attrs.items() if k not in dropped}
    attrs.update({NOT_BEFORE: not_before, RETRY_OF: trial.number, "retry_reason": reason})
    opt.enqueue_trial(dict(params), user_attrs=attrs)


def _mark_run_failed(opt: optuna.Study, client: Any, trial: FrozenTrial, reason: str) -> None:
    """The MLflow run of a trial that died with its worker: failed, like its Optuna trial."""
    if client is None:
        return
    run_id = trial.user_attrs.get("mlflow_run_id")
    run_ids = [run_id] if run_id is not None else _unrecorded_runs(opt, client, trial)
    for found in run_ids:
        _record_failed_run(client, found, trial.number, reason)


def _unrecorded_runs(opt: optuna.Study, client: Any, trial: FrozenTrial) -> list[str]:
    """Running MLflow runs of ``trial`` whose id its worker died before saving on the trial (the
    moment between creating the run and recording it): found by the study and trial tags."""
    try:
        experiment = client.get_experiment_by_name(opt.study_name)
        if experiment is None:
            return []
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.study = '{opt.study_name}' and tags.trial = '{trial.number}' "
            "and attributes.status = 'RUNNING'",
        )
    except Exception:
        log.warning("could not look up the MLflow run of dead trial %d", trial.number, exc_info=True)
        return []
    parent = opt.user_attrs.get(PARENT_RUN)
    return [r.info.run_id for r in runs if r.data.tags.get("mlflow.parentRunId") == parent]


def _requeue_stale(opt: optuna.Study, trial: FrozenTrial, client: Any = None) -> None:
    """Optuna calls this in exactly one process per trial it found dead."""
    _requeue(opt, trial, not_before=0.0, reason=STALE)
    _mark_run_failed(opt, client, trial, STALE)  # it may have died after telling MLflow it had finished


def requeue_lost(opt: optuna.Study, client: Any) -> None:
    """Enqueue the retry of every failed trial whose worker died before enqueueing it."""
    trials = trials_of(opt)
    retried = {t.user_attrs.get(RETRY_OF) for t in trials}
    done = {t.user_attrs.get("key") for t in trials if t.state == TrialState.COMPLETE}
    for t in trials:
        key = t.user_attrs.get("key")
        lost = t.state == TrialState.FAIL and t.number not in retried and DUPLICATE_OF not in t.user_attrs
        if lost and (key is None or key not in done):
            # Only two things fail a trial: the engine's _fail, which records failure_reason first
            # (so that retry waits for the next `run`), and Optuna's stale-trial check, which means
            # the worker really stopped (retried at once). The engine never tells Optuna a value
            # it would refuse (NoUsableValue), which failed trials without either mark and looped.
            in_process = "failure_reason" in t.user_attrs
            reason = t.user_attrs.get("failure_reason", STALE)
            log.warning("trial %d failed without a retry (its worker died); enqueueing one", t.number)
            _requeue(opt, t, not_before=time.time() if in_process else 0.0, reason=reason)
            if not in_process:
                _mark_run_failed(opt, client, t, STALE)


# ---------------------------------------------------------------------- claiming
def claim(opt: optuna.Study, study: Study, started_at: float, client: Any = None) -> optuna.Trial | None:
    """Atomically take one trial to run, or None when nothing is left for this worker now."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        fail_stale_trials(opt)
    requeue_lost(opt, client)
    storage = storage_of(opt)
    for waiting in trials_of(opt, states=(TrialState.WAITING,)):
        if waiting.user_attrs.get(NOT_BEFORE, 0.0) > started_at:
            continue  # failed during this invocation: retried by the next `run`
        if _take(storage, waiting) and not _drop_if_duplicate(opt, waiting):
            return live_trial(opt, trial_id_of(waiting))
    if study.search is not None:
        live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
        if len(trials_of(opt, states=live)) < study.search.n_trials:
            trial_id = storage.create_new_trial(study_id_of(opt))
            storage.record_heartbeat(trial_id)
            return live_trial(opt, trial_id)
    return None


def _claim_lock(storage: Any) -> AbstractContextManager[Any]:
    """What makes Optuna's read-check-update of a trial's state atomic between processes.

    PostgreSQL (and MySQL): nothing more is needed, Optuna reads the trial ``FOR UPDATE`` and the
    row lock holds until the update commits. SQLite ignores ``FOR UPDATE``, and Python's sqlite3
    driver begins the transaction only at the UPDATE, after the state was read: two workers can
    both read WAITING and both claim (measured: 1 double claim in 300 with 6 processes). A lock
    file beside the database serialises claims; SQLite serves the processes of one machine only,
    which is exactly where a lock file works. (``BEGIN IMMEDIATE`` on every transaction would do it
    too, but it would also serialise every read of the storage, and it has to be wired into the
    engine Optuna builds.)
    """
    url = storage_url(storage)
    if url.startswith("sqlite:///"):
        return FileLock(url[len("sqlite:///"):] + ".claim.lock", timeout=300)
    return nullcontext()


def _take(storage: RDBStorage, frozen: FrozenTrial) -> bool:
    """WAITING -> RUNNING in exactly one process, with a heartbeat recorded first.

    Optuna never declares a RUNNING trial without heartbeats dead, so a worker killed between
    claiming and its first heartbeat would hold the trial forever.
    """
    lock = _claim_lock(storage)
    try:
        with lock:
            storage.record_heartbeat(trial_id_of(frozen))
            return storage.set_trial_state_values(trial_id_of(frozen), state=TrialState.RUNNING)
    except UpdateFinishedTrialError:
        return False
    except Exception:  # e.g. two workers inserting the first heartbeat at once: the other one claims it
        log.debug("could not claim trial %d", frozen.number, exc_info=True)
        return False


def _drop_if_duplicate(opt: optuna.Study, frozen: FrozenTrial) -> bool:
    """Fail a just-claimed retry when a lower-numbered retry of the same failed trial exists, and an
    added seed when a lower-numbered trial adds the same one."""
    retry_of = frozen.user_attrs.get(RETRY_OF)
    if retry_of is not None:
        twins = [t.number for t in trials_of(opt)
                 if t.user_attrs.get(RETRY_OF) == retry_of and t.number < frozen.number]
        why = f"both retry trial {retry_of}"
    elif ADDED_SEED in frozen.user_attrs:  # two processes added the same seed in the same round
        key = frozen.user_attrs.get("key")
        twins = [t.number for t in trials_of(opt) if ADDED_SEED in t.user_attrs and RETRY_OF not in t.user_attrs
                 and DUPLICATE_OF not in t.user_attrs and t.user_attrs.get("key") == key and t.number < frozen.number]
        why = "both add the same seed"
    else:
        return False
    if not twins:
        return False
    log.info("trial %d duplicates trial %d (%s); dropping it", frozen.number, twins[0], why)
    storage_of(opt).set_trial_user_attr(trial_id_of(frozen), DUPLICATE_OF, twins[0])
    storage_of(opt).set_trial_state_values(trial_id_of(frozen), state=TrialState.FAIL)
    return True


def others_running(opt: optuna.Study) -> int:
    return len(trials_of(opt, states=(TrialState.RUNNING,)))


@contextmanager
def heartbeat(storage: RDBStorage, trial_id: int, interval: float) -> Iterator[None]:
    """Record the trial's heartbeat from a background thread while the body runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                storage.record_heartbeat(trial_id)
            except Exception:  # a blinking database must not kill the training thread
                log.warning("could not record heartbeat for trial %s", trial_id, exc_info=True)

    storage.record_heartbeat(trial_id)
    thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial_id}")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        # bounded: a beat stuck on a locked database (say, after Ctrl-C cut a transaction short in
        # this thread) must not keep the worker from ending; the thread is a daemon
        thread.join(timeout=interval + 10.0)


# ---------------------------------------------------------------------- running one trial
def trial_point(trial: optuna.Trial, plan: Plan) -> tuple[dict[str, Any], int, str, str, RunConfig]:
    """(axis values, seed, key, label, run config) of a claimed trial: a grid trial's from the
    plan; a search trial samples its values here."""
    study = plan.study
    if study.search is None:
        planned: PlannedTrial = plan.trials[trial.suggest_categorical("point", list(range(len(plan.trials))))]
        pt = planned.point
        if ADDED_SEED in trial.user_attrs:  # the same point at a seed beyond the study's repeats
            pt = Point(pt.index, pt.params, int(trial.user_attrs["repeat"]), int(trial.user_attrs["seed"]))
            return pt.params, pt.seed, pt.key(), pt.label(), plan.config_for(pt.params, pt.seed)
        return pt.params, pt.seed, planned.key, planned.label, planned.config
    params: dict[str, Any] = {}
    for dotted, spec in study.search.params.items():
        if spec.type == "float":
            params[dotted] = trial.suggest_float(dotted, spec.low, spec.high, log=spec.log, step=spec.step)
        elif spec.type == "int":
            step = int(spec.step or 1)
            params[dotted] = trial.suggest_int(dotted, int(spec.low), int(spec.high), log=spec.log, step=step)
        else:
            params[dotted] = trial.suggest_categorical(dotted, spec.choices)
    seed = study.base.train.seed
    key = hashlib.sha256(json.dumps([params, seed], sort_keys=True).encode()).hexdigest()[:10]
    label = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    for name, value in (("key", key), ("label", label), ("seed", seed), ("axes", json.dumps(params))):
        trial.set_user_attr(name, value)
    return params, seed, key, label, plan.config_for(params, seed)


def failure_reason(exc: BaseException) -> str:
    """One line a researcher can act on."""
    import torch

    if isinstance(exc, TrainingDiverged):
        return f"diverged: {exc}"
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "out of memory on the GPU: lower train.batch_size or give the trial more devices"
    if isinstance(exc, (ValueError, RuntimeError)) and "pydantic" not in type(exc).__module__:
        return f"{type(exc).__name__}: {exc}"
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def run_trial(
    opt: optuna.Study,
    trial: optuna.Trial,
    plan: Plan,
    client: Any,
    exp_id: str,
    options: EngineOptions,
    report: WorkerReport,
) -> tuple[str, str]:
    """Train and evaluate one claimed trial; record the outcome in MLflow first, then in Optuna.
    Returns the trial's label and its outcome in words, for the study's progress line."""
    study = plan.study
    params, seed, key, label, config = trial_point(trial, plan)
    run_dir = point_run_dir(options.runs_dir / opt.study_name, key, config)  # before the device override
    overrides: dict[str, Any] = {"progress": options.progress}
    devices = options.device.split(",") if options.device else []
    if devices:  # a group of several takes its GPUs through CUDA_VISIBLE_DEVICES, rank r -> cuda:r
        overrides["device"] = devices[0] if len(devices) == 1 else devices[0].split(":")[0]
    config = config.model_copy(update={"train": config.train.model_copy(update=overrides)})
    RunConfig.model_validate(config.model_dump())  # the device override must still be valid
    tags = {
        "study": opt.study_name,
        "trial": str(trial.number),
        "point": key,
        "seed": str(seed),
        "git_commit": tracking.git_commit(),
        "device": config.train.device,
        **{f"axis.{k}": tracking.param_value(v) for k, v in params.items()},
    }
    recipe = params.get(RECIPE_KEY, study.recipe)
    if recipe is not None:  # the config it resolved to is logged as params; this says where it came from
        tags[RECIPE_KEY] = recipe
    plugins = tracking.plugins_tag(config)
    if plugins:  # each plugin with its distribution and version (also params plugin.KIND.NAME)
        tags["plugins"] = plugins
    try:
        # opening may wait out an outage
        with heartbeat(storage_of(opt), trial_id_of(trial), options.heartbeat_interval):
            run_id = _open_run(opt, trial, study, client, exp_id, f"{trial.number}: {label}", config, tags,
                               options.tracking_timeout_s)
    except tracking.TrackingError as exc:
        reason = f"could not open the trial's MLflow run: {exc}"
        log.error("trial %d failed: %s", trial.number, reason)
        _fail(opt, trial, client, trial.user_attrs.get("mlflow_run_id"), reason, not_before=time.time())
        report.failed.append((trial.number, reason))
        return label, f"failed ({reason})"
    log.info("trial %d: %s", trial.number, label)
    try:
        result = _train_and_finish(opt, trial, config, run_dir, client, run_id, options, study, devices)
    except optuna.TrialPruned as exc:
        tracking.finish_run(client, run_id, "KILLED", f"pruned: {exc}", pruned_epoch=pruned_epoch(exc))
        opt.tell(trial, state=TrialState.PRUNED)
        report.pruned.append(trial.number)
        return label, f"pruned at epoch {pruned_epoch(exc)}"
    except TrialTakenOver as exc:
        log.error("trial %d: %s", trial.number, exc)
        _record_failed_run(client, run_id, trial.number, str(exc))
        report.failed.append((trial.number, str(exc)))
        return label, "taken over by another worker"
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (ablations.stopping)
        reason = f"{interruption(exc)}; resumes from its last checkpoint on the next run"
        _fail(opt, trial, client, run_id, reason, not_before=0.0)
        raise
    except Exception as exc:
        reason = failure_reason(exc)
    else:
        opt.tell(trial, result.metrics[study.metric])  # finite: _train_and_finish checked it
        report.completed.append(trial.number)
        return label, _finished_text(study.metric, result)
    # out of the except block, so the exception's frames (and the tensors they hold) can be freed
    log.error("trial %d failed: %s", trial.number, reason)
    _fail(opt, trial, client, run_id, reason, not_before=time.time())
    report.failed.append((trial.number, reason))
    return label, "failed (retried by the next run)"


def _finished_text(metric: str, result: TrainResult) -> str:
    """'finished: linear_top1 40.40, 12.1 s/epoch'."""
    epochs = [h["epoch_time_s"] for h in result.history if "epoch_time_s" in h]
    per_epoch = f", {sum(epochs) / len(epochs):.1f} s/epoch" if epochs else ""
    return f"finished: {metric} {result.metrics[metric]:.2f}{per_epoch}"


def study_counts(opt: optuna.Study, plan: Plan) -> Counts:
    """The study's points done (a finished or pruned trial), running and still to run."""
    trials = trials_of(opt)
    total = plan.study.search.n_trials if plan.study.search is not None else len(plan.trials)
    total += len({t.user_attrs.get("key") for t in trials if ADDED_SEED in t.user_attrs})
    ended = (TrialState.COMPLETE, TrialState.PRUNED)
    done_keys = {t.user_attrs.get("key", t.number) for t in trials if t.state in ended}
    running = sum(1 for t in trials if t.state == TrialState.RUNNING)
    done = min(total, len(done_keys))
    return Counts(done=done, running=running, todo=max(0, total - done - running))


def _open_run(
    opt: optuna.Study,
    trial: optuna.Trial,
    study: Study,
    client: Any,
    exp_id: str,
    run_name: str,
    config: RunConfig,
    tags: dict[str, str],
    timeout_s: float,
) -> str:
    """The trial's MLflow child run, known to its Optuna trial before anything else is logged
    (so whoever finds the trial dead can mark its run failed).

    Every call is retried with backoff for ``timeout_s`` (a server that blinks while a trial opens
    is not a failure), then raises ``TrackingError``. A creation that reached the server but whose
    answer was lost is found again by its study and trial tags instead of being made twice.
    """
    parent = opt.user_attrs[PARENT_RUN]
    attempts = 0

    def create() -> str:
        nonlocal attempts
        attempts += 1
        made = _unrecorded_runs(opt, client, trial) if attempts > 1 else []  # type: ignore[arg-type]  # .number only
        return made[0] if made else tracking.create_trial_run(client, exp_id, parent, run_name, tags)

    run_id = tracking.retrying(create, "open the trial's run", timeout_s)
    trial.set_user_attr("mlflow_run_id", run_id)
    tracking.retrying(lambda: tracking.log_config(client, run_id, config), "log the trial's config", timeout_s)
    if study.source:
        tracking.retrying(lambda: client.log_text(run_id, study.text, Path(study.source).name),
                          "store the study file", timeout_s)
    return run_id


def _train_and_finish(
    opt: optuna.Study,
    trial: optuna.Trial,
    config: RunConfig,
    run_dir: Path,
    client: Any,
    run_id: str,
    options: EngineOptions,
    study: Study,
    devices: list[str],
) -> TrainResult:
    """Train, then store the results in MLflow, all under the trial's heartbeat.

    MLflow may be unreachable for a while: metrics wait in a ``RunLog`` and every final write is
    retried for ``options.tracking_timeout_s``; only then does the trial fail (and get retried).
    With ``devices_per_trial`` > 1 the training runs in a torchrun group (ablations.distributed_trial)
    whose rank 0 logs to the same run; this worker keeps the claim and the heartbeats.
    """
    timeout = options.tracking_timeout_s
    with heartbeat(storage_of(opt), trial_id_of(trial), options.heartbeat_interval):
        if study.devices_per_trial > 1:
            spec = distributed_trial.TrialSpec(
                config=config.model_dump(mode="json"), run_dir=str(run_dir), tracking_uri=options.tracking_uri,
                run_id=run_id, storage=options.storage, study_name=opt.study_name, trial_id=trial_id_of(trial),
                prune=study.search is not None, tracking_timeout_s=timeout,
            )
            result = distributed_trial.launch(spec, study.devices_per_trial, devices)
        else:
            with tracking.MlflowCallback(client, run_id, timeout) as to_mlflow:
                callbacks: list[Callback] = [to_mlflow]
                if study.search is not None:
                    callbacks.append(PruningCallback(trial))
                result = train(config, run_dir=run_dir, callbacks=callbacks)
        checkpoint = result.checkpoint
        if options.log_checkpoint and checkpoint is not None and checkpoint.exists():
            tracking.retrying(lambda: client.log_artifact(run_id, str(checkpoint)), "store the checkpoint", timeout)
        for name, metric in result.metrics.items():
            trial.set_user_attr(f"metric.{name}", metric)
        value = result.metrics.get(study.metric)
        if value is None or not math.isfinite(value):
            raise NoUsableValue(
                f"the trial ended without a usable {study.metric} ({value}); the study compares {study.metric}"
            )
        _check_still_running(opt, trial)
        tracking.retrying(lambda: tracking.finish_run(client, run_id, "FINISHED"), "mark the run finished", timeout)
    return result


class NoUsableValue(ValueError):
    """Training ended, but the study's metric is missing or not finite: a failed trial, retried once by the next run
    (Optuna would refuse the value and fail the trial without the engine's bookkeeping)."""


class TrialTakenOver(RuntimeError):
    """Another worker declared this trial dead (its heartbeats came late) and enqueued its retry."""


def _check_still_running(opt: optuna.Study, trial: optuna.Trial) -> None:
    """Refuse to mark a run finished whose trial was failed behind this worker's back: its retry will."""
    state = stored_trial(opt, trial).state
    if state != TrialState.RUNNING:
        raise TrialTakenOver(
            f"another worker marked this trial {state.name} (heartbeats came late); its retry reruns it"
        )


def _release_gpu_memory() -> None:
    """After a failed trial (out of memory above all), give its cached GPU memory back for the next one."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _record_failed_run(client: Any, run_id: str | None, number: int, reason: str) -> None:
    """Mark the MLflow run failed with its reason; a tracking outage here must not stop the worker."""
    if run_id is None:
        return  # the run was never opened
    try:
        tracking.finish_run(client, run_id, "FAILED", reason)
    except Exception:
        log.warning("could not record the failure of trial %d in MLflow", number, exc_info=True)


def _fail(
    opt: optuna.Study, trial: optuna.Trial, client: Any, run_id: str | None, reason: str, not_before: float
) -> None:
    _release_gpu_memory()
    _record_failed_run(client, run_id, trial.number, reason)
    trial.set_user_attr("failure_reason", reason)
    opt.tell(trial, state=TrialState.FAIL)
    _requeue(opt, stored_trial(opt, trial), not_before=not_before, reason=reason)


# ---------------------------------------------------------------------- the worker loop
def _display_number(opt: optuna.Study, trial: optuna.Trial, plan: Plan) -> int:
    """The trial's place in the study, 0-based: a grid trial's point, an added seed's place after
    them (in the order the seeds were added), a search's trial number."""
    if ADDED_SEED not in trial.user_attrs:
        return trial.params.get("point", trial.number)
    order: list[str] = []
    for t in trials_of(opt):
        key = t.user_attrs.get("key")
        if ADDED_SEED in t.user_attrs and key not in order:
            order.append(key)
    key = trial.user_attrs.get("key")
    return len(plan.trials) + (order.index(key) if key in order else len(order))


def work(study: Study | Plan, name: str, options: EngineOptions, started_at: float | None = None) -> WorkerReport:
    """Claim and run trials until none is left (waiting while other workers finish theirs)."""
    plan = as_plan(study)
    started_at = time.time() if started_at is None else started_at
    client = tracking.connect(options.tracking_uri)
    storage = make_storage(options.storage, options, client)
    opt = load_or_create(plan, name, storage, client)
    exp_id = tracking.experiment_id(client, name, plan.study.description.strip())
    report = WorkerReport()
    progress = StudyProgress()
    ran = 0
    while options.max_trials is None or ran < options.max_trials:
        trial = claim(opt, plan.study, started_at, client)
        if trial is None:
            if others_running(opt) == 0:
                break
            time.sleep(options.poll_s)  # another worker's trial may yet die and come back
            continue
        started = time.monotonic()
        label, outcome = run_trial(opt, trial, plan, client, exp_id, options, report)
        seconds = time.monotonic() - started
        if outcome.startswith("finished"):
            progress.finished(seconds)
        number = _display_number(opt, trial, plan)
        log.info("%s", progress.line(number, label, outcome, seconds, study_counts(opt, plan)))
        ran += 1
    return report
