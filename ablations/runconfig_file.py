"""Read a run config from YAML plus ``--set`` overrides, validated with file and line in every error."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ablations.yamlfile import ConfigFileError, allowed_fields, read_yaml, validate
from core.config import RunConfig, identity_exclusions


def check_dotted_path(model: type[BaseModel], dotted: str, option: str = "--set") -> None:
    """Raise ConfigFileError unless ``dotted`` names a field of ``model`` (e.g. 'loss.temperature')."""
    parts = tuple(dotted.split("."))
    for i in range(len(parts)):
        allowed = allowed_fields(model, parts[:i])
        if allowed is None:
            parent = ".".join(parts[:i])
            raise ConfigFileError(f"{option} {dotted}: '{parent}' is a value, not a section")
        if parts[i] not in allowed:
            where = ".".join(parts[:i]) or "the run config"
            raise ConfigFileError(f"{option} {dotted}: no field '{parts[i]}' in {where} (allowed: {', '.join(allowed)})")


def merge_dotted(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``data`` with each dotted override set, creating sections as needed."""
    out = _deep_copy(data)
    for dotted, value in overrides.items():
        node = out
        *parents, last = dotted.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[last] = value
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def load_run_config(path: Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """The file's settings (or the paper's defaults when ``path`` is None) with ``overrides`` applied."""
    overrides = overrides or {}
    for dotted in overrides:
        check_dotted_path(RunConfig, dotted)
    data: Any
    node = None
    if path is None:
        data, source = {}, "defaults"
    else:
        data, node = read_yaml(path)
        source = str(path)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigFileError(f"{path}:1: expected a mapping of run-config sections, got {type(data).__name__}")
    return validate(RunConfig, merge_dotted(data, overrides), source, node)


def config_digest(config: RunConfig) -> str:
    """Short stable hash of every setting: the same config always maps to the same run directory."""
    neutral = identity_exclusions(config, {"train": {"progress", "log_every"}})
    return hashlib.sha256(config.model_dump_json(exclude=neutral).encode()).hexdigest()[:10]
