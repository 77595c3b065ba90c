"""One place to say where the data is: ``--data PATH`` and the ``SIMCLR_DATA`` environment variable.

Both become ordinary ``--set`` overrides (``data.root`` and, where the path says which kind of
source it is, ``data.source``) before a study or run config is loaded, so workers started in
other processes and the study's records see exactly what the user gave, through the mechanism
every other override already uses.

* ``--data PATH`` applies to the study or config being run, whatever its file says.
* ``SIMCLR_DATA=PATH`` applies only where the file leaves ``data.root`` unset (the paper studies and
  the shipped configs): a file that names its own data, such as the quickstart with its shipped
  subset, keeps it.

What PATH may be, and the source it selects:

* a ``.tar.gz`` / ``.tgz`` file -> ``tarball`` (an ImageFolder tree packed, read without extracting);
* a folder with a ``train/`` subfolder -> ``imagefolder``;
* any other folder, or a path that does not exist yet -> a torchvision root for the file's own
  torchvision source (``cifar10``, ``cifar100``, ``stl10``), downloaded there when the file sets
  ``data.download: true``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ablations.runconfig_file import load_run_config
from ablations.yamlfile import ConfigFileError, parse_assignments

T = TypeVar("T")
DATA_ENV = "SIMCLR_DATA"
TORCHVISION_SOURCES = ("cifar10", "cifar100", "stl10")
HELP = (
    "where the data is, for this study or config: a torchvision root (e.g. ~/data with "
    "cifar-10-batches-py/ in it), an ImageFolder tree (train/ and test/ or val/) or a .tar.gz of one; "
    f"sets data.root and data.source (default: ${DATA_ENV}, used where the file sets no data.root)"
)


def add_data_option(parser: Any, help: str = HELP) -> None:
    """Add ``--data PATH`` to a command's parser (``help``: what the path is for in that command)."""
    parser.add_argument("--data", type=Path, metavar="PATH", help=help)


def source_for(path: Path, file_source: str) -> str:
    """The ``data.source`` that ``path`` implies, given the source the file names."""
    p = path.expanduser()
    if p.name.endswith((".tar.gz", ".tgz")):
        return "tarball"  # whether it exists is checked with the rest of the data, before any trial
    if p.is_file():
        raise ConfigFileError(f"--data {path}: a file, but not a .tar.gz of an ImageFolder tree")
    if (p / "train").is_dir():
        return "imagefolder"
    if file_source in TORCHVISION_SOURCES:
        return file_source
    if not p.exists():
        raise ConfigFileError(
            f"--data {path}: does not exist (expected a torchvision root, an ImageFolder tree or a .tar.gz of one)"
        )
    raise ConfigFileError(
        f"--data {path}: a folder without train/, so not an ImageFolder tree, and the file's source "
        f"{file_source} is not a torchvision dataset (cifar10, cifar100, stl10) that could live there"
    )


def data_overrides(
    option: Path | None, overrides: dict[str, Any], file_source: str, file_sets_root: bool
) -> dict[str, Any]:
    """``overrides`` plus what ``--data`` (or ``$SIMCLR_DATA``) means for a file of ``file_source``.

    ``file_sets_root``: whether the file (or a ``--set``) names ``data.root`` itself; the
    environment variable then stays out of it.
    """
    path, origin = option, "--data"
    if path is None:
        env = os.environ.get(DATA_ENV, "").strip()
        if not env or file_sets_root:
            return overrides
        path, origin = Path(env), f"${DATA_ENV}"
    clash = [k for k in ("data.root", "data.source") if k in overrides]
    if clash and origin == "--data":
        raise ConfigFileError(f"--data and --set {clash[0]} both say where the data is: give one of them")
    try:
        source = source_for(path, file_source)
    except ConfigFileError as exc:
        raise ConfigFileError(str(exc).replace("--data", f"{origin}", 1)) from None
    return {**overrides, "data.root": str(path.expanduser()), "data.source": source}


def load_with_data(
    load: Callable[[dict[str, Any]], T], data_of: Callable[[T], Any], option: Path | None, overrides: dict[str, Any]
) -> tuple[T, dict[str, Any]]:
    """``load(overrides)`` with ``--data``/``$SIMCLR_DATA`` applied, and the overrides that did it.

    The file is loaded once to learn its source and whether it names ``data.root`` (which decide
    what the path means), and again only when the path changed something.
    """
    loaded = load(overrides)
    data = data_of(loaded)
    resolved = data_overrides(option, overrides, data.source, "root" in data.model_fields_set)
    return (loaded if resolved is overrides else load(resolved)), resolved


def load_run_config_with_data(path: Path | None, option: Path | None, assignments: list[str] | dict[str, Any]) -> Any:
    """A run config file (or the defaults) with ``--set`` assignments (or parsed overrides) and
    ``--data`` applied."""
    parsed = assignments if isinstance(assignments, dict) else parse_assignments(assignments)
    config, _ = load_with_data(
        lambda overrides: load_run_config(path, overrides), lambda config: config.data, option, parsed
    )
    return config
