"""``python -m ablations bench``: how fast the data pipeline and the training step are, in one run.

Measures, on one device:

* augmentation throughput (images/s, one view per image) of crop+flip+color jitter+grayscale at
  32x32 and 96x96, batch 512: the batched ``core.augment`` pipeline, the per-image torchvision v2
  pipeline (the ``train.loader: torchvision`` backend, one process) and, when installed,
  ``kornia.augmentation``; each with its speed-up over torchvision;
* end-to-end pretraining throughput (images/s and s/epoch) of ResNet-18 (CIFAR stem) on CIFAR-10
  (``--data PATH``, else ``$SIMCLR_DATA``, else synthetic CIFAR-10-shaped images):
  (a) our pipeline (``train.loader: batched``), (b) the per-image torchvision pipeline in DataLoader
  workers (``train.loader: torchvision``), (c) the model alone on random views already on the device
  (the ceiling a data pipeline can reach);
* end-to-end pretraining images/s under the default numerics (``train.precision: auto``,
  ``train.channels_last`` unset: bf16 autocast and channels_last where the device computes them
  natively) against forced fp32 NCHW, interleaved, with the speed-up (``core.numerics``);
* peak memory, the device and the library versions.

It prints a table and writes everything as JSON (``--json``). ``--quick`` is a CPU-sized run of a
few minutes: fewer timed iterations, a smaller end-to-end batch, a few steps extrapolated to s/epoch.

The package, one job a module: ``timing`` (clocks, syncs, peak memory, ``time_steps``),
``augmentation`` and ``training`` (the measurements), ``dataset`` (which data the end-to-end rows
read), ``options`` (``BenchOptions``), ``run`` (``run_bench``: all of it, in order), ``report``
(the tables and the JSON file); the command line is ``ablations.commands.bench``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOMES = {"BenchOptions": "options", "format_bench_result": "report", "run_bench": "run", "time_steps": "timing"}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    """The package's names, imported when first used: the command line imports this package to
    register ``bench`` and must not pay for torch (about 2 s) on every other command."""
    if name not in _HOMES:
        raise AttributeError(f"module 'ablations.bench' has no attribute {name!r}")
    return getattr(import_module(f"ablations.bench.{_HOMES[name]}"), name)
