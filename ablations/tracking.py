"""MLflow tracking for studies: one experiment per study, a parent run per study, a child run per trial.

Everything goes through an explicit ``MlflowClient`` bound to one tracking URI, never through
MLflow's global "active run", so several trials (threads or processes) cannot mix their logs.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException

from core import registry
from core.config import RunConfig
from core.dotted import flatten
from core.evaluate import Accuracy
from core.trainer import Callback

log = logging.getLogger(__name__)

PARENT_TAG = "ablations.role"
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
MAX_PAUSE_S = 10.0  # longest wait between two tries of an unreachable server
BATCH_METRICS, BATCH_TAGS = 900, 100  # MLflow takes at most 1000 entries (100 tags) per log_batch
T = TypeVar("T")


class TrackingError(RuntimeError):
    """The tracking server cannot be used (unreachable, refused, misconfigured)."""


def default_tracking_uri() -> str:
    """MLflow's own default: ``sqlite:///mlflow.db`` in the working directory, what ``mlflow ui`` opens."""
    from mlflow.tracking._tracking_service.utils import get_tracking_uri

    return get_tracking_uri()


def _probe_http(uri: str, timeout: float = 10.0) -> None:
    """Fail fast on a server nobody answers at (MLflow's own client retries for minutes)."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1", timeout=timeout)
    except urllib.error.HTTPError:
        return  # something answered (perhaps asking for credentials): let the client handle it
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(f"MLflow tracking server {uri} is unreachable ({reason})") from exc


def connect(uri: str) -> MlflowClient:
    """A client for ``uri``, checked with one cheap request so a wrong URI fails before any training."""
    if uri.startswith(("http://", "https://")):
        _probe_http(uri)
    try:
        with db_init_lock(uri):  # two processes creating one store's tables would collide
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)
    except Exception as exc:  # connection errors surface as several exception types
        raise TrackingError(f"MLflow tracking server {uri} is not usable: {type(exc).__name__}: {exc}") from exc
    return client


_PG_INIT_LOCK = 0x51AC1_0A7  # PostgreSQL advisory-lock key: "first use of this database by simclr-ablations"


@contextmanager
def db_init_lock(uri: str) -> Iterator[None]:
    """Serialise first use of a database across processes, so table creation is never raced.

    Optuna's and MLflow's stores create their tables on first connection, and neither is safe when
    several workers (a SLURM array, say) open a fresh database at the same moment: on PostgreSQL
    the loser fails with ``duplicate key ... pg_type_typname_nsp_index``. SQLite gets a lock file
    beside the database, PostgreSQL a session advisory lock (released when its connection closes,
    so a killed holder never leaves it taken). Other URIs are used as they are.
    """
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=300):
            yield
    elif uri.startswith(("postgresql:", "postgresql+", "postgres:")):
        with _pg_advisory_lock(uri):
            yield
    else:
        yield


@contextmanager
def _pg_advisory_lock(uri: str) -> Iterator[None]:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(uri.replace("postgres://", "postgresql://", 1), poolclass=NullPool)
    try:
        conn = engine.connect()
    except sqlalchemy.exc.SQLAlchemyError:
        conn = None
    if conn is None:
        # unreachable or refused: the store's own connection reports it in its own words (yielding
        # outside the except block, so that error is not shown as raised while handling this one)
        engine.dispose()
        yield
        return
    try:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": _PG_INIT_LOCK})
        yield
    finally:
        conn.close()  # closing the session releases its advisory locks
        engine.dispose()


EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
"""MLflow 3 opens an experiment without this tag on its GenAI overview (traces, a pop-up asking for
the experiment's type); with it, on the runs. The value is the UI's classic model-training kind."""
NOTE_TAG = "mlflow.note.content"  # the description MLflow shows for an experiment or a run


def experiment_id(client: MlflowClient, name: str, description: str = "") -> str:
    """The experiment called ``name``, created if missing (safe when two processes race to create
    it), marked as a model-training experiment and described (also an experiment made before)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        exp_id = found.experiment_id
    else:
        try:
            exp_id = client.create_experiment(name)
        except MlflowException:
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            exp_id = found.experiment_id
    tags = (found.tags if found is not None else {}) or {}
    if tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:
        client.set_experiment_tag(exp_id, *EXPERIMENT_KIND)
    if description and tags.get(NOTE_TAG) != description:
        client.set_experiment_tag(exp_id, NOTE_TAG, description)
    return exp_id


def git_commit() -> str:
    """The commit of the working tree the code runs from, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def param_value(value: Any) -> str:
    """Params are strings in MLflow; lists and None as JSON so they read back unambiguously."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:MAX_PARAM_LENGTH]


def plugins_tag(config: RunConfig) -> str:
    """The plugins a trial uses, for its ``plugins`` tag ('' with built-ins only)."""
    if not registry.uses_plugins(config):
        return ""
    return "; ".join(c.describe() for c in registry.plugins_of(config))


def create_parent_run(client: MlflowClient, exp_id: str, study_name: str, tags: dict[str, str]) -> str:
    """The study's parent run; its children are the trials."""
    run = client.create_run(exp_id, run_name=study_name, tags={PARENT_TAG: "study", **tags})
    return run.info.run_id


def create_trial_run(client: MlflowClient, exp_id: str, parent_run_id: str, run_name: str, tags: dict[str, str]) -> str:
    """A child run of the study's parent run; ``log_config`` fills it in."""
    run = client.create_run(
        exp_id,
        run_name=run_name,
        tags={PARENT_TAG: "trial", "mlflow.parentRunId": parent_run_id, **tags},
    )
    return run.info.run_id


def log_config(client: MlflowClient, run_id: str, config: RunConfig) -> None:
    """The resolved config as params and as a YAML artifact."""
    import yaml

    params = [Param(k, param_value(v)) for k, v in flatten(config.model_dump(mode="json")).items()]
    params += [Param(f"plugin.{c.kind}.{c.name}", param_value(c.origin())) for c in registry.plugins_of(config)]
    for start in range(0, len(params), 100):  # MLflow accepts at most 100 params per batch
        client.log_batch(run_id, params=params[start : start + 100])
    client.log_text(run_id, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), "config.yaml")


def refused(exc: Exception) -> bool:
    """MLflow turned the request down for what it is (HTTP 4xx), not for how the server is doing:
    sending it again cannot help."""
    if not isinstance(exc, MlflowException):
        return False
    status = exc.get_http_status_code()
    return 400 <= status < 500 and status not in (408, 429)


def retrying(call: Callable[[], T], what: str, timeout_s: float, pause_s: float = 2.0) -> T:
    """``call()``, tried again with backoff until ``timeout_s`` has passed (a blinking server is not an error)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except Exception as exc:  # connection errors surface as several exception types
            left = deadline - time.monotonic()
            if refused(exc) or left <= 0:
                raise TrackingError(
                    f"could not {what} in MLflow within {timeout_s:g} s: {type(exc).__name__}: {exc}"
                ) from exc
            time.sleep(min(pause_s, left))
            pause_s = min(2 * pause_s, MAX_PAUSE_S)


class RunLog:
    """A run's metrics and tags, kept in memory and sent by a background thread, in order.

    Training never waits for MLflow: while the tracking server is unreachable the entries stay
    here and go out once it answers again. ``flush`` is where a trial waits (with a deadline) for
    everything to be stored, so nothing is reported finished before MLflow holds it.
    """

    def __init__(self, client: MlflowClient, run_id: str, pause_s: float = 2.0) -> None:
        self.client, self.run_id, self.pause_s = client, run_id, pause_s
        self.last_error = ""
        self.refusal = ""  # set when MLflow refused a batch outright: nothing more will be sent
        self._metrics: list[Metric] = []
        self._tags: list[RunTag] = []
        self._sending = False
        self._stopped = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._send_loop, daemon=True, name=f"mlflow-{run_id[:8]}")
        self._thread.start()

    def log(self, metrics: dict[str, float], step: int, tags: dict[str, str] | None = None) -> None:
        """Queue metrics (timestamped now) and tags; returns at once (raises once MLflow refused some)."""
        now = int(time.time() * 1000)
        with self._cond:
            if self.refusal:
                raise TrackingError(self.refusal)
            self._metrics += [Metric(k, float(v), now, step) for k, v in metrics.items()]
            self._tags += [RunTag(k, v) for k, v in (tags or {}).items()]
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._metrics) + len(self._tags) + int(self._sending)

    def flush(self, timeout_s: float) -> None:
        """Wait until MLflow holds everything queued; TrackingError if it has not within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._metrics or self._tags or self._sending:
                if self.refusal:
                    raise TrackingError(self.refusal)
                left = deadline - time.monotonic()
                if left <= 0:
                    n = len(self._metrics) + len(self._tags)
                    raise TrackingError(
                        f"{n} metrics/tags of MLflow run {self.run_id} could not be stored within "
                        f"{timeout_s:g} s ({self.last_error or 'no answer'})"
                    )
                self._cond.wait(left)

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what is left (best effort, ``timeout_s`` at most), then stop the thread."""
        try:
            self.flush(timeout_s)
        except TrackingError as exc:
            log.warning("giving up on metrics: %s", exc)
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=1.0)  # it may be inside a client call that MLflow itself retries

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        gave_up = exc_type is not None and issubclass(exc_type, TrackingError)  # flush already waited
        self.close(0.0 if gave_up else 10.0)

    def _next_batch(self) -> tuple[list[Metric], list[RunTag]] | None:
        with self._cond:
            while not (self._metrics or self._tags or self._stopped):
                self._cond.wait()
            if self._stopped:
                return None
            self._sending = True
            return self._metrics[:BATCH_METRICS], self._tags[:BATCH_TAGS]

    def _sent(self, batch: tuple[list[Metric], list[RunTag]], error: Exception | None) -> None:
        with self._cond:
            self._sending = False
            if error is None:
                del self._metrics[: len(batch[0])]
                del self._tags[: len(batch[1])]
                if self.last_error:
                    log.warning("MLflow run %s: the tracking server answers again; sending what was kept", self.run_id)
                self.last_error = ""
            elif refused(error):
                self.refusal = f"MLflow refused metrics of run {self.run_id}: {type(error).__name__}: {error}"
            else:
                if not self.last_error:
                    log.warning("MLflow run %s: cannot log (%s: %s); keeping metrics in memory and retrying",
                                self.run_id, type(error).__name__, error)
                self.last_error = f"{type(error).__name__}: {error}"
            self._cond.notify_all()

    def _send_loop(self) -> None:
        pause = self.pause_s
        while (batch := self._next_batch()) is not None:
            try:
                self.client.log_batch(self.run_id, metrics=batch[0], tags=batch[1])
            except Exception as exc:  # unreachable, timed out, 5xx: keep the entries and try again
                self._sent(batch, exc)
                if refused(exc):
                    return
                with self._cond:
                    self._cond.wait_for(lambda: self._stopped, timeout=pause)
                pause = min(2 * pause, MAX_PAUSE_S)
                continue
            self._sent(batch, None)
            pause = self.pause_s


def finish_run(
    client: MlflowClient, run_id: str, status: str, reason: str | None = None, pruned_epoch: int | None = None
) -> None:
    """Set the terminal status (FINISHED, FAILED, KILLED) and, when failed, the reason as a tag.

    A pruned trial ends KILLED (MLflow has no pruned state) with ``ablations.status`` "pruned" and
    ``pruned_epoch``, so tables and reports can tell it from a trial someone killed."""
    tags = [RunTag("failure_reason", reason[:5000])] if reason else []
    tags.append(RunTag("ablations.status", "pruned" if pruned_epoch is not None else status.lower()))
    if pruned_epoch is not None:
        tags.append(RunTag("pruned_epoch", str(pruned_epoch)))
    client.log_batch(run_id, tags=tags)
    client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.from_string(status)))


class MlflowCallback(Callback):
    """Streams a trial's per-step and per-epoch metrics into its MLflow run through a ``RunLog``.

    ``on_train_end`` returns only once MLflow holds the final metrics (or raises TrackingError
    after ``timeout_s``), so a trial is never reported finished with its results missing. Use it
    as a context manager (or call ``close``) so its sending thread stops with the trial.
    """

    def __init__(self, client: MlflowClient, run_id: str, timeout_s: float = 300.0) -> None:
        self.run_log, self.timeout_s = RunLog(client, run_id), timeout_s
        self.final_step = 0

    def __enter__(self) -> MlflowCallback:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.run_log.__exit__(exc_type, *rest)

    def close(self) -> None:
        self.run_log.close()

    def on_run_info(self, info: dict[str, str]) -> None:
        # the resolved device replaces the config's (often "auto") given when the run was opened
        self.run_log.log({}, 0, tags=info)

    def on_train_start(self, config: RunConfig, start_epoch: int) -> None:
        # final metrics go at the last epoch's step, so MLflow's "latest value" is the final one
        self.final_step = config.train.epochs
        if start_epoch > 0:
            self.run_log.log({}, 0, tags={"resumed_from_epoch": str(start_epoch)})

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        self.run_log.log({f"step_{k}": v for k, v in metrics.items()}, step)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        self.run_log.log(metrics, epoch)

    def on_train_end(self, metrics: dict[str, float], accuracies: list[Accuracy]) -> None:
        self.run_log.log(metrics, self.final_step, tags={f"protocol.{a.name}": a.protocol for a in accuracies})
        self.run_log.flush(self.timeout_s)
