"""Shared fixtures: a real `mlflow server` on loopback; one thread per worker under pytest-xdist."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

if "PYTEST_XDIST_WORKER" in os.environ:  # `pytest -n N`: N workers share the cores, one thread each
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MlflowServer:
    """`mlflow server` bound to 127.0.0.1 with its own SQLite store under ``folder``.

    It can be stopped (its whole process group: the server runs uvicorn in a child process) and
    started again on the same port with the same store, as after a crash of the tracking host.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120) -> None:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runner: starts faster
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow-server.db'}",
             "--artifacts-destination", str(self.folder / "artifacts"), "--workers", "1"],
            cwd=self.folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=2)
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise
                time.sleep(0.3)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop every process of the server (SIGKILL: as if its machine went away)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


@pytest.fixture
def mlflow_server_process(tmp_path):
    """A started ``MlflowServer`` the test may stop and start again; stopped at the end."""
    server = MlflowServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mlflow_server(mlflow_server_process):
    """`mlflow server` bound to 127.0.0.1 on a free port, with its own SQLite store; yields its URL."""
    return mlflow_server_process.url


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls of torchvision's decoder as used by core.data.decode (in this process: builds
    small enough to decode without worker processes)."""
    from core.data import decode as decode_module

    calls: list[int] = []
    real = decode_module.decode_image

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(decode_module, "decode_image", counting)
    return calls
