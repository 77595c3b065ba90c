"""The run configs shipped in configs/ validate, and every file the CLI's help names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import importlib
import pkgutil

import ablations
from ablations.runconfig_file import load_run_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def test_configs_folder_is_not_empty():
    assert {p.name for p in CONFIGS} >= {"cifar10_cpu_small.yaml", "cifar10_resnet18_200ep.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_run_config_validates(path):
    config = load_run_config(path)
    assert config.data.source == "tarball" and config.data.root.name == "cifar10-jpeg.tar.gz"


def test_the_readme_cpu_run_is_the_shipped_small_config():
    # the README gives the measured CPU run as --set options; the file must be the same run
    readme = (REPO / "README.md").read_text()
    command = readme.split("python -m ablations train --set data.source=tarball", 1)[1].split("```", 1)[0]
    pairs = dict(re.findall(r"--set (\S+?)=(\S+)", "--set data.source=tarball" + command))
    as_set = load_run_config(None, pairs)
    assert as_set == load_run_config(REPO / "configs" / "cifar10_cpu_small.yaml")


def test_every_file_named_in_the_cli_help_exists():
    modules = [importlib.import_module(f"ablations.{m.name}") for m in pkgutil.iter_modules(ablations.__path__) if m.name != "__main__"]
    texts = [
        text
        for module in modules
        for text in (module.__doc__ or "", *(getattr(module, n) for n in dir(module) if n.endswith("EPILOG")))
    ]
    named = {m for text in texts for m in re.findall(r"\b((?:configs|studies)/[\w./-]+\.yaml)", text)}
    assert named, "the help names no example file"
    assert not [n for n in named if not (REPO / n).is_file()], named
