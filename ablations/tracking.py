"""MLflow tracking for studies: one experiment per study, a parent run per study, a child run per trial.

Everything goes through an explicit ``MlflowClient`` bound to one tracking URI, never through
MLflow's global "active run", so several trials (threads or processes) cannot mix their logs.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException

from core.config import RunConfig
from core.evaluate import Accuracy
from core.trainer import Callback

PARENT_TAG = "ablations.role"
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value


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
        with sqlite_init_lock(uri):  # two processes creating one SQLite store's tables would collide
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)
    except Exception as exc:  # connection errors surface as several exception types
        raise TrackingError(f"MLflow tracking server {uri} is not usable: {type(exc).__name__}: {exc}") from exc
    return client


@contextmanager
def sqlite_init_lock(uri: str) -> Iterator[None]:
    """Serialise first use of a SQLite database across processes (a lock file beside it)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        yield
        return
    path = Path(uri[len(prefix) :])
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=300):
        yield


def experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment called ``name``, created if missing (safe when two processes race to create it)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


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


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"loss": {"temperature": 0.5}}`` -> ``{"loss.temperature": 0.5}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def param_value(value: Any) -> str:
    """Params are strings in MLflow; lists and None as JSON so they read back unambiguously."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:MAX_PARAM_LENGTH]


def create_parent_run(client: MlflowClient, exp_id: str, study_name: str, tags: dict[str, str]) -> str:
    """The study's parent run; its children are the trials."""
    run = client.create_run(exp_id, run_name=study_name, tags={PARENT_TAG: "study", **tags})
    return run.info.run_id


def create_trial_run(
    client: MlflowClient,
    exp_id: str,
    parent_run_id: str,
    run_name: str,
    config: RunConfig,
    tags: dict[str, str],
) -> str:
    """A child run holding the resolved config as params and the config YAML as an artifact."""
    import yaml

    run = client.create_run(
        exp_id,
        run_name=run_name,
        tags={PARENT_TAG: "trial", "mlflow.parentRunId": parent_run_id, **tags},
    )
    run_id = run.info.run_id
    params = [Param(k, param_value(v)) for k, v in flatten(config.model_dump(mode="json")).items()]
    for start in range(0, len(params), 100):  # MLflow accepts at most 100 params per batch
        client.log_batch(run_id, params=params[start : start + 100])
    client.log_text(run_id, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), "config.yaml")
    return run_id


def log_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float], step: int, retries: int = 5) -> None:
    """Log metrics, retrying with backoff so a tracking server that blinks does not lose them."""
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    for attempt in range(retries):
        try:
            client.log_batch(run_id, metrics=batch)
            return
        except Exception:
            if attempt == retries - 1:
                raise
            time.sleep(min(2**attempt, 30))


def finish_run(client: MlflowClient, run_id: str, status: str, reason: str | None = None) -> None:
    """Set the terminal status (FINISHED, FAILED, KILLED) and, when failed, the reason as a tag."""
    tags = [RunTag("failure_reason", reason[:5000])] if reason else []
    tags.append(RunTag("ablations.status", status.lower()))
    client.log_batch(run_id, tags=tags)
    client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.from_string(status)))


class MlflowCallback(Callback):
    """Streams a trial's per-step and per-epoch metrics into its MLflow run."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self.final_step = 0

    def on_train_start(self, config: RunConfig, start_epoch: int) -> None:
        # final metrics go at the last epoch's step, so MLflow's "latest value" is the final one
        self.final_step = config.train.epochs
        if start_epoch > 0:
            self.client.set_tag(self.run_id, "resumed_from_epoch", str(start_epoch))

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        log_metrics(self.client, self.run_id, {f"step_{k}": v for k, v in metrics.items()}, step)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        log_metrics(self.client, self.run_id, metrics, epoch)

    def on_train_end(self, metrics: dict[str, float], accuracies: list[Accuracy]) -> None:
        log_metrics(self.client, self.run_id, metrics, step=self.final_step)
        self.client.log_batch(self.run_id, tags=[RunTag(f"protocol.{a.name}", a.protocol) for a in accuracies])
