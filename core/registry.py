"""One lookup for the components a run config names by string: transformations, losses, encoders.

A name resolves, in this order, to a built-in (``BUILTINS``: the paper's components), an installed
entry point of the kind's group (``GROUPS``: what a user's own package declares, the way pytest
finds its plugins), or ``module.path:attribute`` imported from the working directory or
``PYTHONPATH`` (a quick try without packaging). Built-ins are found the same way a plugin is, from a
``module:attribute`` string, so there is one lookup path, and nothing heavier than this module is
imported to validate a config.

Each kind's factory has one signature (the plugin contract, ``docs/plugins.md``):

- transform: ``factory(params: dict) -> Transform`` (``core.augment.transforms.Transform``);
- loss: ``factory(params: dict) -> callable(z1, z2) -> scalar tensor``;
- encoder: ``factory(params: dict, in_channels: int) -> (nn.Module, feature_dim)``.

A built-in's params are its config section (``augment.crop``, the ``loss`` or ``model`` fields); a
plugin's are the mapping ``augment.params.NAME``, ``loss.params`` or ``model.params``.

This is the only module of ``core`` that knows about ``importlib.metadata``.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

GROUPS: dict[str, str] = {
    "transform": "simclr_ablations.transforms",
    "loss": "simclr_ablations.losses",
    "encoder": "simclr_ablations.encoders",
}
"""The entry-point group a plugin of each kind is declared in (``[project.entry-points."GROUP"]``)."""

WORDS = {"transform": "transformation", "loss": "loss", "encoder": "encoder"}

BUILTIN_TRANSFORMS = ("crop", "cutout", "color", "sobel", "noise", "blur", "rotate")
BUILTIN_LOSSES = ("nt_xent", "nt_logistic", "margin_triplet")
BUILTIN_ENCODERS = ("resnet18", "resnet34", "resnet50", "resnet_small")

BUILTINS: dict[str, dict[str, str]] = {
    "transform": {name: f"core.builtins:transform_{name}" for name in BUILTIN_TRANSFORMS},
    "loss": {name: "core.builtins:loss" for name in BUILTIN_LOSSES},
    "encoder": {name: "core.builtins:encoder" for name in BUILTIN_ENCODERS},
}
"""The paper's components, each a ``module:attribute`` factory like a plugin's."""


class PluginError(ValueError):
    """A name that resolves to nothing, or a plugin that cannot be imported or breaks its contract."""


@dataclass(frozen=True)
class Component:
    """A resolved name: its factory and where it came from (what a study's identity records)."""

    kind: str
    name: str
    factory: Callable[..., Any]
    target: str
    """``module:attribute`` of the factory."""
    distribution: str | None = None
    """The installed distribution that declares it (entry points), else None."""
    version: str | None = None
    """The distribution's version, or ``sha256:<hex>`` of the factory's source file (``module:attr``)."""

    @property
    def builtin(self) -> bool:
        return self.distribution is None and self.version is None

    def origin(self) -> str:
        """Where its code comes from, as identity and reports record it: 'simclr-plugin-example 0.1.0
        (entry point simclr_plugin_example.solarize:solarize)', 'my_plugins:solarize (sha256:...)'."""
        if self.builtin:
            return "built-in"
        if self.distribution:
            return f"{self.distribution} {self.version} (entry point {self.target})"
        return f"{self.target} ({self.version})"

    def describe(self) -> str:
        """One line for messages and reports, e.g. 'transformation solarize: simclr-plugin-example 0.1.0 (...)'."""
        return f"{WORDS[self.kind]} {self.name}: {self.origin()}"


def is_builtin(kind: str, name: str) -> bool:
    return name in BUILTINS[kind]


def installed(kind: str) -> dict[str, metadata.EntryPoint]:
    """The installed plugins of ``kind`` by name (entry points of its group)."""
    return {ep.name: ep for ep in metadata.entry_points(group=GROUPS[kind])}


def choices(kind: str) -> str:
    """The names ``kind`` accepts, for an 'unknown name' message."""
    plugins = installed(kind)
    text = f"built-in: {', '.join(BUILTINS[kind])}"
    if plugins:
        listed = ", ".join(f"{n} ({_dist_label(ep)})" for n, ep in sorted(plugins.items()))
        text += f"; installed plugins: {listed}"
    else:
        text += f"; installed plugins: none (group {GROUPS[kind]})"
    return text + "; or module.path:attribute"


def resolve(kind: str, name: str) -> Component:
    """The component ``name`` of ``kind``; PluginError says why there is none (with the plugin's own error)."""
    if kind not in GROUPS:
        raise ValueError(f"unknown component kind {kind!r}; expected one of {sorted(GROUPS)}")
    if name in BUILTINS[kind]:
        target = BUILTINS[kind][name]
        return Component(kind, name, _load(target, f"built-in {WORDS[kind]} {name!r}"), target)
    if ":" in name:
        factory = _load(name, f"{WORDS[kind]} {name!r}", from_cwd=True)
        return Component(kind, name, factory, name, version=_source_digest(factory, name))
    ep = installed(kind).get(name)
    if ep is None:
        raise PluginError(f"unknown {WORDS[kind]} {name!r}; {choices(kind)}")
    try:
        factory = ep.load()
    except Exception as exc:  # a plugin's import may fail in any way: report it as the plugin's error
        raise PluginError(
            f"{WORDS[kind]} {name!r} (entry point {ep.value} of {_dist_label(ep)}) failed to import: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    _check_callable(factory, f"{WORDS[kind]} {name!r}")
    dist = ep.dist
    return Component(kind, name, factory, ep.value,
                     dist.name if dist else "unknown", dist.version if dist else "unknown")


def check_name(kind: str, name: str) -> str:
    """``name`` when it resolves (a config validator's check), else PluginError. A built-in's name is
    enough: validating a config imports nothing (no torch for ``plan``, ``report`` or bad input)."""
    if not is_builtin(kind, name):
        resolve(kind, name)
    return name


def _dist_label(ep: metadata.EntryPoint) -> str:
    return f"{ep.dist.name} {ep.dist.version}" if ep.dist else "unknown distribution"


def _load(target: str, what: str, from_cwd: bool = False) -> Callable[..., Any]:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise PluginError(f"{what}: expected module.path:attribute, e.g. my_plugins:solarize")
    if from_cwd and os.getcwd() not in sys.path and "" not in sys.path:
        # `python -m` puts the working directory first; worker processes and the console script may not
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # ImportError, AttributeError, or anything the module raises on import
        raise PluginError(f"{what} failed to import: {type(exc).__name__}: {exc}") from exc
    _check_callable(obj, what)
    return obj


def _check_callable(obj: Any, what: str) -> None:
    if not callable(obj):
        raise PluginError(f"{what}: expected a factory (a callable), got {type(obj).__name__}")


def _source_digest(factory: Callable[..., Any], target: str) -> str:
    """``sha256:<first 16 hex>`` of the file that defines ``factory``: its code's identity."""
    module = sys.modules.get(target.partition(":")[0])
    try:
        path = inspect.getsourcefile(module) if module is not None else None
    except TypeError:
        path = None
    if path is None:
        raise PluginError(f"{target}: its source file cannot be found, so its version cannot be recorded")
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def names_of(config: Any) -> list[tuple[str, str]]:
    """(kind, name) of every component ``config`` (a RunConfig) names: its ops, its loss, its encoder."""
    return [*(("transform", op) for op in config.augment.ops), ("loss", config.loss.name),
            ("encoder", config.model.encoder)]


def uses_plugins(config: Any) -> bool:
    """Whether ``config`` names any plugin (decided from the names alone: nothing is imported)."""
    return any(not is_builtin(kind, name) for kind, name in names_of(config))


def plugins_of(config: Any) -> list[Component]:
    """The plugins (not built-ins) ``config`` uses, resolved, each once."""
    wanted = dict.fromkeys((k, n) for k, n in names_of(config) if not is_builtin(k, n))
    return [resolve(kind, name) for kind, name in wanted]


def identity_text(config: Any) -> str:
    """What a digest of ``config`` appends so that another version of a plugin is another run: its
    provenance as JSON ('' for built-ins only, so their digests stay as they were)."""
    return json.dumps(provenance(config), sort_keys=True) if uses_plugins(config) else ""


def provenance(config: Any) -> dict[str, str]:
    """The plugins ``config`` uses, 'KIND.NAME' -> origin (distribution and version, or the source
    file's hash): part of a trial's identity, so another version of a plugin is another study."""
    return {f"{c.kind}.{c.name}": c.origin() for c in plugins_of(config)}
