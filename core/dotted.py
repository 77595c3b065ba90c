"""Dotted paths into nested mappings ("loss.temperature" -> data["loss"]["temperature"]).

One home for how a run config is addressed field by field: ``--set`` overrides, a study's axes and
scales, recipes and the identity rules all name fields this way. The data is plain YAML data
(mappings, lists, scalars): every function that stores a value stores a copy, so a config built
from a shared mapping never aliases it.
"""

from __future__ import annotations

from typing import Any


def deep_copy(data: Any) -> Any:
    """A copy of nested mappings and lists that shares nothing with ``data``."""
    if isinstance(data, dict):
        return {k: deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [deep_copy(v) for v in data]
    return data


def deep_merge(parent: Any, child: Any) -> Any:
    """Mappings merge key by key (recursively); anything else in ``child`` replaces ``parent``."""
    if isinstance(parent, dict) and isinstance(child, dict):
        out = {k: deep_copy(v) for k, v in parent.items()}
        for k, v in child.items():
            out[k] = deep_merge(out[k], v) if k in out else deep_copy(v)
        return out
    return deep_copy(child)


def get_path(data: dict[str, Any], dotted: str) -> Any:
    """``data[a][b][c]`` for ``"a.b.c"``; KeyError names the first part that is missing."""
    node: Any = data
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(".".join(parts[: i + 1]))
        node = node[part]
    return node


def set_existing(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set a field that must already exist (a validated config's dump); KeyError names the bad part."""
    *parents, last = dotted.split(".")
    node = get_path(data, ".".join(parents)) if parents else data
    if not isinstance(node, dict) or last not in node:
        raise KeyError(dotted)
    node[last] = deep_copy(value)


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``dotted`` in a partial mapping (a config file's, a study's base), creating sections as
    needed; a mapping set on a section is merged into it rather than replacing it."""
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    if isinstance(value, dict) and isinstance(node.get(last), dict):
        node[last] = deep_merge(node[last], value)
    else:
        node[last] = deep_copy(value)


def with_paths(data: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with every dotted path of ``values`` set (``set_path``), in order."""
    out = deep_copy(data)
    for dotted, value in values.items():
        set_path(out, dotted, value)
    return out


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"loss": {"temperature": 0.5}}`` -> ``{"loss.temperature": 0.5}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out
