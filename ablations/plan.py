"""A study expanded once into what will run: its trials, each trial's resolved run config, and the
study's identity. The checks before a run (devices, data), the engine and ``plan`` all read this
one plan, so points and configs are derived from the study in one place, once per process.

The plan is immutable (frozen dataclasses, tuples): the engine cannot change what the checks
checked. A search study's trials are not known in advance; its plan holds the base config (what
every searched trial starts from) and builds a searched trial's config from its sampled values.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablations.study import Point, Study, distinct_configs, load_study, points, trial_config, trial_recipe
from core import registry
from core.config import RunConfig, identity_exclusions
from core.dotted import flatten
from core.recipes import RECIPE_KEY, load_recipe

NEUTRAL_TRAIN = {"progress", "log_every", "device", "checkpoint"}
"""Train fields that never change a trial's result: progress bars, logging, the device's name."""
NEUTRAL_DATA = {"root", "download", "cache_dir"}
"""Where the data lives, not which data: moving it keeps the study."""


@dataclass(frozen=True)
class PlannedTrial:
    """One grid/zip point and seed, with the run config it trains."""

    point: Point
    config: RunConfig
    recipe: str | None

    @property
    def key(self) -> str:
        return self.point.key()

    @property
    def label(self) -> str:
        return self.point.label()


@dataclass(frozen=True)
class Plan:
    """What a study runs: every planned trial (none for a search) and the study's fingerprint."""

    study: Study
    trials: tuple[PlannedTrial, ...]
    fingerprint: str

    @property
    def is_search(self) -> bool:
        return self.study.search is not None

    def configs(self) -> list[RunConfig]:
        """The base config and every planned trial's: what the checks before a run look at (a
        search's trials share the base's data and devices)."""
        return [self.study.base, *(t.config for t in self.trials)]

    def config_for(self, params: dict[str, Any], seed: int) -> RunConfig:
        """The run config of a searched trial's sampled ``params`` (grid trials: ``trials[i].config``)."""
        return trial_config(self.study, params, seed)


def varied_recipes(study: Study) -> list[str]:
    """The recipes a study varies (a grid or zip axis, or searched choices), sorted."""
    names = [*study.grid.get(RECIPE_KEY, []), *study.zip.get(RECIPE_KEY, [])]
    if study.search is not None and RECIPE_KEY in study.search.params:
        names += list(study.search.params[RECIPE_KEY].choices or [])
    return sorted(set(names))


def identity(study: Study) -> dict[str, Any]:
    """Everything that decides the trials' results (JSON data): the base config without progress
    bars, devices and data paths, the axes, repeats and search, and a varied recipe's fields."""
    exclude = identity_exclusions(study.base, {"train": NEUTRAL_TRAIN, "data": NEUTRAL_DATA})
    base = study.base.model_dump(mode="json", exclude=exclude)
    axes = {
        "base": base,
        "grid": study.grid,
        "zip": study.zip,
        "repeats": study.repeats,
        "search": study.search.model_dump(mode="json") if study.search else None,
    }
    varied = varied_recipes(study)
    if varied:  # a varied recipe is its fields: a recipe file that changes makes another study
        axes["recipes"] = {n: load_recipe(n).values for n in varied}
    plugins = study_plugins(study)
    if plugins:  # a plugin is its code: a new version, or an edited module:attr file, makes another study
        axes["plugins"] = plugins
    return json.loads(json.dumps(axes, default=str))


def study_plugins(study: Study) -> dict[str, str]:
    """'KIND.NAME' -> origin of every plugin the study's trials use ({} for built-ins only)."""
    found: dict[str, str] = {}
    for config in distinct_configs(study):
        if registry.uses_plugins(config):
            found.update(registry.provenance(config))
    return dict(sorted(found.items()))


def fingerprint(study: Study) -> str:
    """Hash of ``identity``: two studies with the same fingerprint run the same trials."""
    return hashlib.sha256(json.dumps(identity(study), sort_keys=True).encode()).hexdigest()[:16]


def changed_fields(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The dotted fields whose values differ between two ``identity`` dicts, each with both values
    ('base.train.epochs: 10 -> 5'), for a refusal that says what changed."""
    old, new = flatten(stored), flatten(current)
    return [f"{k}: {_short(old.get(k, '(absent)'))} -> {_short(new.get(k, '(absent)'))}"
            for k in sorted(set(old) | set(new)) if old.get(k, _ABSENT) != new.get(k, _ABSENT)]


_ABSENT = object()


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def trial_digest(config: RunConfig) -> str:
    """Short hash of what decides one trial's result (the fields ``identity`` keeps): part of its
    run directory's name, so a point whose config changed never meets an old checkpoint."""
    exclude = identity_exclusions(config, {"train": NEUTRAL_TRAIN, "data": NEUTRAL_DATA})
    # another version of a plugin never resumes the old one's checkpoint
    text = config.model_dump_json(exclude=exclude) + registry.identity_text(config)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def point_run_dir(study_dir: Path, key: str, config: RunConfig) -> Path:
    """``STUDY_DIR/KEY-DIGEST``: the point's run directory, named by its key and its config.

    Directories were once named by the key alone: such a directory whose checkpoint was written by
    this very config is renamed to the new name (the trial resumes from it); one written by another
    config is left alone, and the trial starts afresh in its own directory.
    """
    from core.trainer import saved_config  # torch: only when a trial runs

    digest = trial_digest(config)
    current = study_dir / f"{key}-{digest}"
    legacy = study_dir / key
    if not current.exists() and legacy.is_dir():
        saved = saved_config(legacy)
        if saved is not None and trial_digest(saved) == digest:
            legacy.rename(current)
    return current


def make_plan(study: Study) -> Plan:
    """Expand ``study`` (already validated by ``load_study``) into its plan."""
    trials = tuple(
        PlannedTrial(p, trial_config(study, p.params, p.seed), trial_recipe(study, p.params)) for p in points(study)
    )
    return Plan(study, trials, fingerprint(study))


def as_plan(study_or_plan: Study | Plan) -> Plan:
    """A plan for callers that hold either (tests and library users may pass a Study)."""
    return study_or_plan if isinstance(study_or_plan, Plan) else make_plan(study_or_plan)


def load_plan(path: Path, overrides: dict[str, Any] | None = None, scale: str | None = None) -> Plan:
    """``load_study`` then ``make_plan``: a study file, checked and expanded."""
    return make_plan(load_study(path, overrides, scale))
