"""Checks that run before a study's stores exist: the devices are there and the data opens.

A trial that fails on a missing GPU or an empty data folder would otherwise be found only after
the MLflow and Optuna stores were created and a trial recorded as failed (exit 0, files written).
Both checks here raise ``ConfigFileError`` (one line, exit 2 in the CLI) and write nothing to
the study's stores. Opening the data decodes it into the data cache (``data.cache_dir``), which
is what the first trial would do anyway, so the check costs one cache read on every later run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ablations.data_option import DATA_ENV, TORCHVISION_SOURCES
from ablations.yamlfile import ConfigFileError

_WHERE_HINT = f"point --data (or ${DATA_ENV}) at a torchvision root, an ImageFolder tree or a .tar.gz of one"


def check_devices(devices: list[str], option: str = "--devices") -> None:
    """Each of ``devices`` names a device this machine has (cpu, cuda, cuda:N with N in range)."""
    import torch

    for name in devices:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ConfigFileError(f"{option} {name}: not a device name (expected cpu, cuda or cuda:N)") from None
        if device.type == "cpu":
            continue
        if device.type != "cuda":
            raise ConfigFileError(f"{option} {name}: only cpu and cuda devices are supported")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigFileError(
                f"{option} {name}: this machine has no CUDA device (use cpu, or run where the GPUs are)"
            )
        if device.index is not None and device.index >= count:
            raise ConfigFileError(
                f"{option} {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )


def check_study_devices(study: Any, devices: list[str], configs: list[Any]) -> None:
    """``--devices`` when given, else every trial's own ``train.device`` (``auto`` always works).

    ``configs``: the plan's configs (``ablations.plan.Plan.configs``), shared with ``check_data``.
    """
    if devices:
        check_devices(devices)
        return
    names = sorted({c.train.device for c in configs} - {"auto"})
    for name in names:
        check_devices([n for n in name.split(",") if n], option=f"{study.source}: train.device")


def check_data(configs: list[Any], where: str = "") -> None:
    """Open every distinct dataset among ``configs`` (run configs) once, as a trial would.

    Missing roots, empty or malformed folders, a failed download (offline) and subsets larger
    than the data all end here. A torchvision root the download created is removed again when
    the download fails, so a failed check leaves nothing behind.
    """
    from core.data import DataError, load_dataset

    seen: set[str] = set()
    for config in configs:
        data = config.data
        key = json.dumps(data.model_dump(mode="json"), sort_keys=True)
        if data.source == "synthetic" or key in seen:
            continue
        seen.add(key)
        root = Path(data.root).expanduser()
        downloads = data.download and data.source in TORCHVISION_SOURCES
        if not root.exists() and not downloads:
            raise ConfigFileError(
                f"{where}data.root {data.root} does not exist (source {data.source}; resolved against "
                f"{Path.cwd()}): {_WHERE_HINT}"
                + (", or set data.download: true" if data.source in TORCHVISION_SOURCES else "")
            )
        created = not root.exists()
        try:
            load_dataset(data, config.train.seed)
        except DataError as exc:
            if created and root.is_dir():
                shutil.rmtree(root, ignore_errors=True)
            text = " ".join(str(exc).split())  # one line, whatever the library's message held
            fetched = " (the download failed: offline?)" if created else ""
            raise ConfigFileError(
                f"{where}data.root {text}{fetched}. {_WHERE_HINT[0].upper()}{_WHERE_HINT[1:]}"
            ) from None
