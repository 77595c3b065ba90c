"""SIGTERM handled like Ctrl-C: how SLURM, Kubernetes and most schedulers stop (or preempt) a job.

Python's default for SIGTERM is to die on the spot: the trial stayed RUNNING in Optuna until a
later worker's heartbeat check (``--grace-period``) failed it, and the study's MLflow run stayed
RUNNING. ``raise_on_sigterm`` turns the signal into ``Terminated``, a ``KeyboardInterrupt``, so every
place that already cleans up after Ctrl-C does so after SIGTERM too: the trial is marked
interrupted and queued again at once (the next ``run`` resumes it from its checkpoint without
waiting), the study's run is marked KILLED, and ``run`` exits with 143 (128 + SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM."""


def raise_on_sigterm() -> None:
    """From now on, the first SIGTERM raises ``Terminated`` in the main thread; later ones are
    ignored, so the clean-up it starts is not cut short (a scheduler's SIGKILL still ends it)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated("SIGTERM")

    signal.signal(signal.SIGTERM, handler)


def interruption(exc: BaseException) -> str:
    """How a trial stopped by ``exc`` is recorded: by SIGTERM or by Ctrl-C."""
    return "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"
