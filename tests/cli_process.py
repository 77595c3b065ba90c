"""``python -m ablations`` for the tests, as a real process, without paying the interpreter's start each time.

Why: a fresh ``python -m ablations`` spends about 10 s importing torch, torchvision (which pulls in
torch._dynamo), MLflow, Optuna and seaborn before it reads its arguments, against 1-2 s for one of
the tests' tiny trials; the suite starts some 200 of them, and on CI's 2 cores that start-up was
most of its 20 minutes (2026-12-03: `plan` on the tiny study 10.8 s from a fresh interpreter, 2.3 s
forked from a preloaded one, both beside a one-thread background job).

How: one ``multiprocessing`` fork server per test process imports those modules once; each call
forks from it a new process that runs ``ablations.cli.main`` in the given folder, with stdout and
stderr in files, and exits with main's status. It is still a separate process with its own pid, so
signals (SIGKILL, SIGTERM, SIGINT), concurrent workers, crashes and exit statuses are the real
ones. The fork server is started with ``OMP_NUM_THREADS=1`` and the repository on ``PYTHONPATH``,
the environment ``cli`` always gave, since OpenMP reads its thread count when torch loads.

Rejected: calling ``main`` inside the test process (no pid to signal, state shared between calls);
``os.fork`` of the test process itself (pytest's and xdist's threads make forking it unsafe). A call
that needs another environment (``popen(..., env=...)``) starts a fresh interpreter as before.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.forkserver
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
# the modules every command imports sooner or later: imported once in the fork server
PRELOAD = ["tests.cli_preload"]
BASE_ENV = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _context() -> multiprocessing.context.BaseContext:
    """The fork server's context, the server started on first use with the tests' CLI environment."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    with _environ(**BASE_ENV):
        multiprocessing.forkserver.ensure_running()
    return ctx


def _main_in_child(argv: list[str], cwd: str, out: str, err: str) -> None:
    """Run in the forked process: what ``python -m ablations ARGV`` does, then exit with its status."""
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(target, fd)
        os.close(target)
    os.chdir(cwd)
    os.environ.update(BASE_ENV)
    sys.argv = [str(REPO / "ablations" / "__main__.py"), *argv]
    code: int
    try:
        from ablations.cli import main

        result = main(argv)
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int) and exc.code is not None:
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:  # as the interpreter does: the traceback, then death by SIGINT
        traceback.print_exc()
        code = -signal.SIGINT
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()  # the interpreter's exit, which multiprocessing's children skip
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


class CLIProcess:
    """The part of ``subprocess.Popen`` the tests use, for a CLI run forked from the fork server."""

    def __init__(self, folder: Path, args: tuple[str, ...], log: Path | None) -> None:
        self.args = ["python", "-m", "ablations", *args]
        # stdout and stderr: both to ``log``, or each to its own file in a scratch folder
        self._scratch = None if log is not None else Path(tempfile.mkdtemp(prefix="cli-"))
        # a run never read (output() not called) still leaves no folder behind: removed when the
        # object goes or the test process exits
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self._scratch), True) if self._scratch else None
        self._out = log if self._scratch is None else self._scratch / "stdout"
        self._err = log if self._scratch is None else self._scratch / "stderr"
        for path in {self._out, self._err}:
            path.write_text("")
        self._proc = _context().Process(
            target=_main_in_child, args=(list(args), str(folder), str(self._out), str(self._err)), daemon=False
        )
        self._proc.start()
        self.pid: int = self._proc.pid  # type: ignore[assignment]
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._proc.exitcode
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._proc.join(timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def output(self) -> tuple[str, str]:
        """stdout and stderr once the process has ended; the scratch folder goes with them."""
        out, err = self._out.read_text(), self._err.read_text()
        if self._cleanup is not None:
            self._cleanup()
        return out, err

    def communicate(self, timeout: float | None = None) -> tuple[str, None]:
        """Wait for the exit; stdout and stderr together, as ``popen`` gave them (stderr=STDOUT)."""
        self.wait(timeout)
        out, err = self.output()
        return (out if self._out == self._err else out + err), None


def _fresh_env(env: dict[str, str]) -> dict[str, str]:
    """A fresh interpreter's environment: this process's, the tests' CLI environment, then ``env``."""
    return {**os.environ, **BASE_ENV, **env}


def cli(
    folder: Path, *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m ablations ARGS`` in ``folder``, one thread: its exit status, stdout and stderr.

    With ``env`` (variables to add), a fresh interpreter, since the fork server's environment is fixed.
    """
    if env is not None:
        return subprocess.run([sys.executable, "-m", "ablations", *args], cwd=folder, env=_fresh_env(env),
                              capture_output=True, text=True, timeout=timeout)
    proc = CLIProcess(folder, args, None)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)
        raise
    out, err = proc.output()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)  # type: ignore[arg-type]


def popen(
    folder: Path, *args: str, log: Path | None = None, env: dict[str, str] | None = None
) -> CLIProcess | subprocess.Popen[str]:
    """The CLI in the background: stdout and stderr together, to ``log`` or kept for ``communicate``.

    With ``env`` (variables to add), a fresh interpreter, since the fork server's environment is fixed.
    """
    if env is None:
        return CLIProcess(folder, args, log)
    return subprocess.Popen(
        [sys.executable, "-m", "ablations", *args], cwd=folder, env=_fresh_env(env),
        stdout=subprocess.PIPE if log is None else log.open("w"), stderr=subprocess.STDOUT, text=True,
    )
