"""Named recipes: sets of run-config fields that reproduce a published training setup, each value
with the place in its source that states it.

A recipe is data, not code: ``core/recipes/NAME.yaml`` holds

    name: official_v2_cifar10
    summary: one line on what it is
    source: the repository (and commit) or paper it follows
    extends: official_v1_cifar10                # optional: start from another recipe's fields
    sets:
      optim.weight_decay:                       # a dotted run-config path
        value: 1.0e-4
        source: google-research/simclr@<commit> README.md:NN  (what that line says)

A recipe is shorthand for its fields: wherever one is named (``recipe: NAME`` in a run config file or
a study's base, ``--recipe NAME``, a study axis), its fields apply first and the file's own on top,
and only the resolved run config is what a run is, is fingerprinted and logged. Fields a recipe does
not set keep the run config's defaults, which the README's Recipes section states.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from core.dotted import with_paths

RECIPE_KEY = "recipe"
"""The key that names a recipe in a run config file, a study's base, ``--set`` or a study axis."""

_HERE = Path(__file__).parent


class RecipeError(ValueError):
    """An unknown recipe name, or a recipe file that is not well formed."""


@dataclass(frozen=True)
class Recipe:
    """One named recipe: its fields (dotted path -> value) and where each value comes from."""

    name: str
    summary: str
    source: str
    values: dict[str, Any]
    citations: dict[str, str]


def recipe_names() -> list[str]:
    """Every shipped recipe, sorted."""
    return sorted(p.stem for p in _HERE.glob("*.yaml"))


@cache
def load_recipe(name: str) -> Recipe:
    """The recipe ``name``; RecipeError names the shipped ones when there is no such recipe."""
    if not isinstance(name, str) or name not in recipe_names():
        raise RecipeError(f"unknown recipe {name!r} (recipes: {', '.join(recipe_names())})")
    path = _HERE / f"{name}.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: malformed YAML: {exc}") from None
    keys = set(data) - {"extends"} if isinstance(data, dict) else set()
    if keys != {"name", "summary", "source", "sets"} or data["name"] != name:
        raise RecipeError(f"{path}: expected the keys name ({name}), summary, source, sets and optionally extends")
    values: dict[str, Any] = {}
    citations: dict[str, str] = {}
    if data.get("extends") is not None:
        parent = load_recipe(data["extends"])
        values, citations = dict(parent.values), dict(parent.citations)
    for dotted, entry in (data["sets"] or {}).items():
        if not isinstance(entry, dict) or set(entry) != {"value", "source"} or not str(entry["source"]).strip():
            raise RecipeError(f"{path}: sets.{dotted}: expected a value and the source that states it")
        values[str(dotted)] = entry["value"]
        citations[str(dotted)] = str(entry["source"]).strip()
    return Recipe(name, str(data["summary"]).strip(), str(data["source"]).strip(), values, citations)


def nested_fields(name: str) -> dict[str, Any]:
    """The recipe's fields as nested sections ({"optim": {"weight_decay": 1e-4}}), a fresh copy."""
    return with_paths({}, load_recipe(name).values)
