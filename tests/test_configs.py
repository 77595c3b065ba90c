"""The run configs shipped in configs/ validate, and every file the CLI's help names exists."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import ablations
from ablations.data_option import data_overrides
from ablations.runconfig_file import load_run_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def test_configs_folder_is_not_empty():
    assert {p.name for p in CONFIGS} >= {"cifar10_cpu_small.yaml", "cifar10_resnet18_200ep.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_run_config_validates(path):
    config = load_run_config(path)
    # CIFAR-10 through torchvision wherever the user keeps it (--data / $SIMCLR_DATA), fetched when missing
    assert config.data.source == "cifar10" and config.data.download
    assert "root" not in config.data.model_fields_set


def test_the_readme_cpu_run_is_the_shipped_small_config():
    # the README names the file of the measured CPU run; docs/results.md gives it as --set options too,
    # and the file must be the same run
    assert "python -m ablations train configs/cifar10_cpu_small.yaml --data" in (REPO / "README.md").read_text()
    readme = (REPO / "docs" / "results.md").read_text()
    command = readme.split(
        "python -m ablations train --data ../shared/data/cifar10-jpeg.tar.gz --set", 1
    )[1].split("```", 1)[0]
    pairs = dict(re.findall(r"--set (\S+?)=(\S+)", "--set" + command))
    tarball = Path("../shared/data/cifar10-jpeg.tar.gz")
    as_set = load_run_config(None, data_overrides(tarball, pairs, "cifar10", False))
    as_file = load_run_config(REPO / "configs" / "cifar10_cpu_small.yaml", data_overrides(tarball, {}, "cifar10", True))
    assert as_set.data.source == "tarball" and as_set.data.root == tarball
    # data.download only matters for torchvision roots; everything else must match
    assert as_set.model_dump(exclude={"data": {"download"}}) == as_file.model_dump(exclude={"data": {"download"}})


def test_every_file_named_in_the_cli_help_exists():
    modules = [
        importlib.import_module(f"ablations.{m.name}")
        for m in pkgutil.iter_modules(ablations.__path__)
        if m.name != "__main__"
    ]
    texts = [
        text
        for module in modules
        for text in (module.__doc__ or "", *(getattr(module, n) for n in dir(module) if n.endswith("EPILOG")))
    ]
    named = {m for text in texts for m in re.findall(r"\b((?:configs|studies)/[\w./-]+\.yaml)", text)}
    assert named, "the help names no example file"
    assert not [n for n in named if not (REPO / n).is_file()], named
