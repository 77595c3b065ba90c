"""Read a run config from YAML plus ``--set`` overrides, validated with file and line in every error."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel

from ablations.yamlfile import ConfigFileError, allowed_fields, is_free_mapping, line_of, read_yaml, validate
from core import registry
from core.config import RunConfig, identity_exclusions
from core.dotted import deep_copy, deep_merge, with_paths
from core.recipes import RECIPE_KEY, RecipeError, nested_fields


def check_dotted_path(model: type[BaseModel], dotted: str, option: str = "--set") -> None:
    """Raise ConfigFileError unless ``dotted`` names a field of ``model`` (e.g. 'loss.temperature');
    for the run config, ``recipe`` (a name standing for fields, core.recipes) is allowed too."""
    if model is RunConfig and dotted == RECIPE_KEY:
        return
    parts = tuple(dotted.split("."))
    for i in range(len(parts)):
        if i and is_free_mapping(model, parts[:i]):
            return  # below a plugin's params (augment.params.NAME.KEY): its own keys, checked by the plugin
        allowed = allowed_fields(model, parts[:i])
        if allowed is None:
            parent = ".".join(parts[:i])
            raise ConfigFileError(f"{option} {dotted}: '{parent}' is a value, not a section")
        if parts[i] not in allowed:
            where = ".".join(parts[:i]) or "the run config"
            raise ConfigFileError(
                f"{option} {dotted}: no field '{parts[i]}' in {where} (allowed: {', '.join(allowed)})"
            )


def with_recipe(fields: dict[str, Any], name: Any, where: str) -> dict[str, Any]:
    """The run-config mapping ``fields`` on top of recipe ``name``'s fields (``fields`` unchanged
    when ``name`` is None); ConfigFileError at ``where`` for an unknown recipe."""
    if name is None:
        return deep_copy(fields)
    try:
        return deep_merge(nested_fields(name), fields)
    except RecipeError as exc:
        raise ConfigFileError(f"{where}: {exc}") from None


def load_run_config(path: Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """The file's settings (or the paper's defaults when ``path`` is None) with ``overrides`` applied.

    A ``recipe: NAME`` at the file's top level (or ``recipe`` among the overrides, as ``--recipe``
    gives it, which wins) lays that recipe's fields under the file's own."""
    overrides = dict(overrides or {})
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
    data = dict(data)
    where = f"{source}:{line_of(node, (RECIPE_KEY,)) or 1}: {RECIPE_KEY}"
    name = data.pop(RECIPE_KEY, None)
    if RECIPE_KEY in overrides:
        name = overrides.pop(RECIPE_KEY)
        where = "--recipe"
    config = validate(RunConfig, with_paths(with_recipe(data, name, where), overrides), source, node)
    check_plugins(config, lambda loc: f"{source}:{line_of(node, loc) or 1}")
    return config


def check_plugins(config: RunConfig, where: Callable[[tuple[Any, ...]], str]) -> None:
    """Try the plugins ``config`` uses on a tiny batch (``core.components``); ConfigFileError at
    ``where(loc)`` of the field to blame when one breaks its contract. Built-ins only: nothing to do
    (and no torch import)."""
    if not registry.uses_plugins(config):
        return
    from core.components import ComponentError, check_components

    try:
        check_components(config)
    except ComponentError as exc:
        raise ConfigFileError(f"{where(exc.loc)}: {'.'.join(str(p) for p in exc.loc)}: {exc}") from None


def recipe_of(path: Path | None, overrides: dict[str, Any] | None = None) -> str | None:
    """The recipe a run config file (or ``--recipe``) names, for the record; None for none."""
    if overrides and RECIPE_KEY in overrides:
        return overrides[RECIPE_KEY]
    if path is None:
        return None
    data, _ = read_yaml(path)
    return data.get(RECIPE_KEY) if isinstance(data, dict) else None


def config_digest(config: RunConfig) -> str:
    """Short stable hash of every setting: the same config always maps to the same run directory."""
    neutral = identity_exclusions(config, {"train": {"progress", "log_every"}})
    text = config.model_dump_json(exclude=neutral) + registry.identity_text(config)  # a plugin's version too
    return hashlib.sha256(text.encode()).hexdigest()[:10]
