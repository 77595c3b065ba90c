"""Several trials at once on one machine: one worker process per slot, each bound to one device.

Workers coordinate only through the Optuna storage (see ablations.engine), exactly as workers on
different machines do, so one machine with N workers and N machines with one worker are the
same code path.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from ablations.engine import EngineOptions, WorkerReport, work
from ablations.plan import load_plan
from ablations.stopping import Terminated, raise_on_sigterm
from ablations.study import load_study


def assign_devices(devices: list[str], workers: int, per_worker: int = 1) -> list[str | None]:
    """Round-robin: worker i gets the next ``per_worker`` devices (comma-joined) of ``devices``,
    wrapping around, so several workers may share one GPU; None for every worker without devices."""
    if not devices:
        return [None] * workers
    return [
        ",".join(devices[(i * per_worker + j) % len(devices)] for j in range(per_worker)) for i in range(workers)
    ]


def _worker(
    study_path: str, overrides: dict[str, Any], scale: str | None, name: str, options: EngineOptions,
    started_at: float, threads: int, queue: Any,
) -> None:
    import torch

    from ablations.logs import configure_logging

    raise_on_sigterm()  # a scheduler's SIGTERM reaches every worker: each re-queues its trial
    configure_logging(prefix=f"[worker {os.getpid()}] ")  # a spawned process starts with no logging set up
    torch.set_num_threads(threads)  # N CPU workers share the cores instead of oversubscribing them
    plan = load_plan(Path(study_path), overrides, scale)  # this process's own copy of the plan
    try:
        queue.put(work(plan, name, options, started_at))
    except KeyboardInterrupt:
        queue.put(WorkerReport())


def run_workers(
    study_path: Path,
    overrides: dict[str, Any],
    scale: str | None,
    name: str,
    options: EngineOptions,
    devices: list[str],
    workers: int,
    started_at: float,
) -> list[WorkerReport]:
    """Start ``workers`` processes, wait for all, and return what each did."""
    ctx = mp.get_context("spawn")  # fork after torch/CUDA initialisation is unsafe
    queue = ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // workers)
    procs = []
    per_worker = load_study(study_path, overrides, scale).devices_per_trial
    for device in assign_devices(devices, workers, per_worker):
        opts = replace(options, device=device or options.device)
        args = (str(study_path), overrides, scale, name, opts, started_at, threads, queue)
        proc = ctx.Process(target=_worker, args=args, daemon=False)
        proc.start()
        procs.append(proc)
    reports = []
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt as exc:
        if isinstance(exc, Terminated):  # only this process got it (kill PID): pass it on
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
        for proc in procs:
            proc.join(timeout=60)
        raise
    while not queue.empty():
        reports.append(queue.get())
    failed = [p.exitcode for p in procs if p.exitcode]
    if failed:
        raise RuntimeError(f"{len(failed)} worker process(es) exited with status {failed}; see their output above")
    return reports
