"""Study files: a base run config plus the axes to vary, loaded and checked before anything runs.

A study file (YAML, loaded safely) looks like::

    extends: _cifar10_base.yaml          # optional; path relative to this file
    name: temperature                    # MLflow experiment and Optuna study name ([A-Za-z0-9_.-])
    description: Table 5 ...
    base: {loss: {name: nt_xent}}        # a run config (merged deeply over the parent's base)
    grid:                                # Cartesian product, in the file's key order
      loss.normalize: [true, false]
      loss.temperature: [0.05, 0.1, 0.5, 1.0]
    zip: {}                              # columns varied together (all the same length)
    search: null                         # or an Optuna search (exclusive with grid/zip)
    repeats: 1                           # seeds per point: train.seed = base seed + r
    metric: linear_top1
    direction: maximize
    scales:                              # named variants, picked with --scale NAME
      quick:
        train.epochs: 2                  # dotted run-config paths, set on base
        grid: {train.batch_size: [32, 64]}   # replaces the values of existing axes
        zip: {}                          # same for zip columns
        search: {n_trials: 6}            # merged into search
        repeats: 1
    report: {kind: temperature}

``extends`` chains are resolved first (the child's top-level keys replace the parent's; ``base``,
``scales`` and ``report`` are merged deeply; ``name`` is never inherited), then the chosen scale, then
the ``--set`` overrides. Every grid/zip point (or every search bound and choice) is then turned into
a run config and validated, so an impossible value is reported at load time with the file and line
of its axis, not hours later. Nothing here touches data or torch.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ablations.runconfig_file import check_dotted_path, check_plugins, with_recipe
from ablations.yamlfile import ConfigFileError, allowed_fields, line_of, read_yaml
from core.config import RunConfig
from core.dotted import deep_copy, deep_merge, set_path
from core.recipes import RECIPE_KEY, RecipeError, load_recipe, recipe_names

StudyFileError = ConfigFileError

Metric = Literal["linear_top1", "linear_top5", "knn_top1", "knn_top5", "loss"]
METRICS: tuple[str, ...] = get_args(Metric)
"""What a study can compare (its ``metric``)."""
REPORT_KINDS = (
    "augment_pairs",
    "color_strength",
    "projection_head",
    "batch_size_epochs",
    "temperature",
    "loss_functions",
    "search",
    "generic",
)
FILE_KEYS = (
    "extends",
    "name",
    "description",
    "base",
    "grid",
    "zip",
    "devices_per_trial",
    "search",
    "repeats",
    "metric",
    "direction",
    "scales",
    "report",
)
"""Top-level keys a study file may have."""
SCALE_KEYS = ("grid", "zip", "search", "repeats")
"""Keys of a scale that are not dotted run-config paths."""
_MERGED_KEYS = ("base", "scales", "report")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchParam(_Strict):
    """One searched run-config field: a float/int range (optionally log-uniform) or a list of choices."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "SearchParam":
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty 'choices' list")
            given = [k for k in ("low", "high", "step") if getattr(self, k) is not None] + (["log"] if self.log else [])
            if given:
                raise ValueError(f"categorical takes only 'choices', not {', '.join(given)}")
            return self
        if self.choices is not None:
            raise ValueError(f"{self.type} takes low/high (and log or step), not 'choices'")
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs both 'low' and 'high'")
        if not self.low < self.high:
            raise ValueError(f"expected low < high, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got low={self.low}")
        if self.log and self.step is not None:
            raise ValueError("'log' and 'step' cannot be combined")
        if self.type == "int":
            for k in ("low", "high", "step"):
                v = getattr(self, k)
                if v is not None and v != int(v):
                    raise ValueError(f"int needs a whole-number {k}, got {v}")
        return self

    def bounds(self) -> list[Any]:
        """Values that must be valid for the search to be: both ends of a range, or every choice."""
        if self.type == "categorical":
            return list(self.choices or [])
        if self.type == "int":
            return [int(self.low), int(self.high)]  # type: ignore[arg-type]
        return [self.low, self.high]


class SearchSpec(_Strict):
    """An Optuna search: which fields, how many trials, sampler and pruner."""

    params: dict[str, SearchParam] = Field(min_length=1)
    n_trials: int = Field(ge=1)
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "none"] = Field("median", description="median: on the per-epoch knn_top1.")
    seed: int = Field(0, description="Sampler seed.")


class Study(_Strict):
    """A validated study: the base run config (extends, scale and --set already applied) and its axes."""

    name: str
    description: str = ""
    base: RunConfig
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = {}
    zip: dict[str, Annotated[list[Any], Field(min_length=1)]] = {}
    search: SearchSpec | None = None
    repeats: int = Field(1, ge=1)
    devices_per_trial: int = Field(
        1, ge=1, description="processes (devices) per trial; above 1 each trial runs under torchrun, data parallel"
    )
    metric: Metric = "linear_top1"
    direction: Literal["maximize", "minimize"] = "maximize"
    scales: dict[str, dict[str, Any]] = {}
    report: dict[str, Any] = {}
    # set by the loader, not part of the YAML schema
    recipe: str | None = None  # the recipe the base names (core.recipes), already applied to base
    base_fields: dict[str, Any] = {}  # the base as the files, scale and --set give it, before the recipe
    source: Path = Path("<memory>")
    text: str = ""
    scale: str | None = None
    overrides: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"must be non-empty and use only letters, digits, '_', '.', '-' (got {v!r})")
        return v

    @field_validator("report")
    @classmethod
    def _report_kind(cls, v: dict[str, Any]) -> dict[str, Any]:
        v = dict(v)
        kind = v.setdefault("kind", "generic")
        if kind not in REPORT_KINDS:
            raise ValueError(f"unknown report kind {kind!r} (allowed: {', '.join(REPORT_KINDS)})")
        return v

    def axes(self) -> list[str]:
        """Every varied dotted path: grid keys, then zip keys (or the searched params)."""
        if self.search is not None:
            return list(self.search.params)
        return list(self.grid) + list(self.zip)


@dataclass(frozen=True)
class Point:
    """One trial of a grid/zip study: the axis values and the seed."""

    index: int
    params: dict[str, Any]
    repeat: int
    seed: int

    def key(self) -> str:
        """Short stable id of (params, seed): the same point always has the same key."""
        blob = json.dumps({"params": self.params, "seed": self.seed}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    def label(self) -> str:
        """Human text, e.g. 'loss.temperature=0.1, loss.normalize=true, seed=0'."""
        parts = [f"{k}={format_value(v)}" for k, v in self.params.items()]
        return ", ".join(parts + [f"seed={self.seed}"])


def point_id(params: dict[str, Any]) -> str:
    """A point's axis values as one comparable text (the seed left out: every seed of a point has it)."""
    return json.dumps(params, sort_keys=True, default=str)


def format_value(value: Any) -> str:
    """YAML-like short text of a value: true/false, null, [crop, color]."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    return str(value)


# ---------------------------------------------------------------------------------------- expansion


def points(study: Study) -> list[Point]:
    """Every grid x zip point times ``repeats`` (repeats innermost); [] for a search study."""
    if study.search is not None:
        return []
    grid_keys = list(study.grid)
    zip_keys = list(study.zip)
    n_rows = len(next(iter(study.zip.values()))) if study.zip else 1
    zip_rows = [{k: study.zip[k][i] for k in zip_keys} for i in range(n_rows)]
    out: list[Point] = []
    for combo in itertools.product(*(study.grid[k] for k in grid_keys)):
        for row in zip_rows:
            params = dict(zip(grid_keys, combo))
            params.update(row)
            start = params.get("train.seed", study.base.train.seed)
            for r in range(study.repeats):
                out.append(Point(index=len(out), params=deep_copy(params), repeat=r, seed=int(start) + r))
    return out


def trial_config(study: Study, params: dict[str, Any], seed: int) -> RunConfig:
    """The base run config with ``params`` (dotted paths) and ``train.seed = seed`` applied, validated.

    A ``recipe`` among ``params`` (a study varying the recipe) replaces the base's recipe: its
    fields go under the base's own, then the other params on top."""
    for dotted in params:
        check_dotted_path(RunConfig, dotted, option=f"{study.source}: trial parameter")
    try:
        return _build(study, params, seed)
    except ValidationError as exc:
        where = ", ".join(f"{k}={format_value(v)}" for k, v in params.items())
        msgs = "; ".join(f"{_dotted(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigFileError(f"{study.source}: invalid trial ({where}, seed={seed}): {msgs}") from None


def trial_recipe(study: Study, params: dict[str, Any]) -> str | None:
    """The recipe a trial of ``study`` with axis values ``params`` trains under (None: none)."""
    return params.get(RECIPE_KEY, study.recipe)


def _build(study: Study, params: dict[str, Any], seed: int | None) -> RunConfig:
    if RECIPE_KEY in params:
        base = RunConfig.model_validate(with_recipe(study.base_fields, params[RECIPE_KEY], str(study.source)))
        data = base.model_dump(mode="python")
    else:
        data = study.base.model_dump(mode="python")
    for dotted, value in params.items():
        if dotted != RECIPE_KEY:
            set_path(data, dotted, value)
    if seed is not None:
        data["train"]["seed"] = seed
    config = RunConfig.model_validate(data)
    _check_sizes(config)
    return config


def _check_sizes(config: RunConfig) -> None:
    """Impossible combinations known without reading data: a batch larger than the training set."""
    d, b = config.data, config.train.batch_size
    limit, what = (
        (d.synthetic.train_size, "data.synthetic.train_size") if d.source == "synthetic" else (d.subset, "data.subset")
    )
    if limit is not None and b > limit and not (d.source == "stl10" and d.stl10_unlabeled):
        raise ValidationError.from_exception_data(
            "RunConfig",
            [
                {
                    "type": "value_error",
                    "loc": ("train", "batch_size"),
                    "input": b,
                    "ctx": {"error": ValueError(f"batch size {b} is larger than the training set ({what} = {limit})")},
                }
            ],
        )


def _dotted(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-"))]
    return ".".join(parts) or "(top level)"


# ------------------------------------------------------------------------------------------ loading


class _Locator:
    """Maps a location in the merged study (a tuple of keys) to 'file:line' across the extends chain.

    The file that holds the longest prefix of the location wins (the most derived file on ties).
    ``provenance`` records values that came from a scale or a --set option, so their errors point there.
    """

    def __init__(self) -> None:
        self.chain: list[tuple[Path, yaml.Node | None]] = []  # most derived file first
        self.provenance: dict[tuple[str, ...], str] = {}

    def where(self, loc: tuple[Any, ...]) -> str:
        loc = tuple(loc)
        for n in range(len(loc), 0, -1):
            hit = self.provenance.get(tuple(str(p) for p in loc[:n]))
            if hit is not None:
                return hit
        best: tuple[int, Path, int] | None = None
        for path, node in self.chain:
            depth = _depth(node, loc)
            if best is None or depth > best[0]:
                best = (depth, path, line_of(node, loc[:depth]) or 1)
        return f"{best[1]}:{best[2]}" if best is not None else "<study>"


def _depth(node: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    """How many leading parts of ``loc`` exist in ``node``."""
    depth = 0
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if getattr(k, "value", None) == str(part)), None)
            if node is None:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        depth += 1
    return depth


def _fail(where: str, what: str, message: str) -> ConfigFileError:
    return ConfigFileError(f"{where}: {what}: {message}" if what else f"{where}: {message}")


def _read_chain(path: Path, locator: _Locator, seen: list[Path]) -> tuple[dict[str, Any], str]:
    """The merged raw mapping of ``path`` and its ``extends`` ancestors, and ``path``'s own text."""
    data, node = read_yaml(path)
    text = Path(path).read_text()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{path}:1: expected a mapping of study settings, got {type(data).__name__}")
    locator.chain.append((Path(path), node))
    for key in data:
        if key not in FILE_KEYS:
            raise ConfigFileError(
                f"{path}:{line_of(node, (key,)) or 1}: unknown key '{key}' (allowed: {', '.join(FILE_KEYS)})"
            )
    parent_ref = data.pop("extends", None)
    if parent_ref is None:
        return data, text
    where = f"{path}:{line_of(node, ('extends',)) or 1}"
    if not isinstance(parent_ref, str) or not parent_ref.strip():
        raise _fail(where, "extends", f"expected a file path, got {parent_ref!r}")
    parent = Path(path).parent / parent_ref
    resolved = parent.resolve()
    if resolved in seen:
        cycle = " -> ".join(str(p) for p in [*seen, resolved])
        raise _fail(where, "extends", f"cycle: {cycle}")
    if not parent.is_file():
        raise _fail(where, "extends", f"no such file: {parent}")
    parent_data, _ = _read_chain(parent, locator, [*seen, resolved])
    parent_data.pop("name", None)  # a study's name is its own, never inherited
    merged = {k: deep_copy(v) for k, v in parent_data.items()}
    for key, value in data.items():
        if key in _MERGED_KEYS and key in merged:
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = deep_copy(value)
    return merged, text


def load_study(path: Path, overrides: dict[str, Any] | None = None, scale: str | None = None) -> Study:
    """Read, merge (extends), scale, override and fully validate a study file.

    Raises ConfigFileError (one message, each line 'file:line: where: what') on any bad input.
    """
    path = Path(path)
    overrides = dict(overrides or {})
    locator = _Locator()
    raw, text = _read_chain(path, locator, [path.resolve()])
    if "name" not in raw:
        raise ConfigFileError(f"{path}:1: name: missing (every study file names its own study; it is not inherited)")
    base = raw.get("base")
    if base is None:
        base = {}
    if not isinstance(base, dict):
        raise _fail(
            locator.where(("base",)),
            "base",
            f"expected a mapping of run-config sections, got {type(base).__name__}",
        )
    raw["base"] = base
    raw.setdefault("grid", {})
    raw.setdefault("zip", {})
    for key in ("grid", "zip"):
        if raw[key] is None:
            raw[key] = {}
    _apply_scale(raw, scale, locator)
    axis_names = set((raw.get("grid") or {}) if isinstance(raw.get("grid"), dict) else ()) | set(
        (raw.get("zip") or {}) if isinstance(raw.get("zip"), dict) else ()
    )
    for dotted, value in overrides.items():
        check_dotted_path(RunConfig, dotted)
        if dotted in axis_names:
            raise ConfigFileError(
                f"--set {dotted}: '{dotted}' is an axis of this study (varied by grid/zip); "
                f"set it on the axis in {path} or with a scale instead"
            )
        set_path(raw["base"], dotted, value)
        option = "--recipe" if dotted == RECIPE_KEY else f"--set {dotted}"
        locator.provenance[("base", *dotted.split("."))] = f"{option}={format_value(value)}"
    fields = raw["base"] if isinstance(raw["base"], dict) else {}
    recipe = fields.pop(RECIPE_KEY, None)
    raw["base"] = with_recipe(fields, recipe, f"{locator.where(('base', RECIPE_KEY))}: base.{RECIPE_KEY}")
    try:
        study = Study.model_validate(
            {**raw, "source": path, "text": text, "scale": scale, "overrides": overrides,
             "recipe": recipe, "base_fields": fields}
        )
    except ValidationError as exc:
        raise ConfigFileError(_describe(exc, locator)) from None
    _check_axes(study, locator)
    _check_trials(study, locator)
    _check_plugins(study, locator)
    _check_metric(study, locator)
    return study


def _check_metric(study: Study, locator: _Locator) -> None:
    """Refuse a metric the trials cannot produce: every trial would end without a value."""
    if not study.metric.startswith("linear_"):
        return  # kNN runs at the end of every trial, and the loss is always there
    configs = [study.base] if study.search is not None else [_build(study, p.params, p.seed) for p in points(study)]
    off = [c for c in configs if not c.eval.linear]
    if off:
        where = "the base config" if off[0].eval.linear == study.base.eval.linear else "some points"
        raise _fail(
            locator.where(("metric",)),
            "metric",
            f"{study.metric} needs the linear evaluation, but eval.linear is false in {where}: "
            "set eval.linear: true, or compare knn_top1/knn_top5/loss instead",
        )


def _describe(exc: ValidationError, locator: _Locator) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            allowed = _allowed_at(loc[:-1])
            message = f"unknown key '{loc[-1]}'" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
        lines.append(f"{locator.where(loc)}: {_dotted(loc)}: {message}")
    return "\n".join(lines)


def _allowed_at(loc: tuple[Any, ...]) -> list[str] | None:
    if not loc:
        return list(FILE_KEYS)
    if loc[0] == "base":
        return allowed_fields(RunConfig, loc[1:])
    if loc[0] == "search":
        if len(loc) == 1:
            return sorted(SearchSpec.model_fields)
        if len(loc) == 3 and loc[1] == "params":
            return sorted(SearchParam.model_fields)
    return None


def _apply_scale(raw: dict[str, Any], scale: str | None, locator: _Locator) -> None:
    scales = raw.get("scales") or {}
    if not isinstance(scales, dict):
        raise _fail(
            locator.where(("scales",)),
            "scales",
            f"expected a mapping of scale names, got {type(scales).__name__}",
        )
    for name, spec in scales.items():
        if spec is None:
            scales[name] = {}
        elif not isinstance(spec, dict):
            raise _fail(
                locator.where(("scales", name)),
                f"scales.{name}",
                f"expected a mapping, got {type(spec).__name__}",
            )
        for key in scales[name]:
            if key in SCALE_KEYS:
                continue
            try:
                check_dotted_path(RunConfig, str(key), option="\0")
            except ConfigFileError as exc:
                where = locator.where(("scales", name, key))
                detail = str(exc).split(": ", 1)[-1]
                raise ConfigFileError(
                    f"{where}: scales.{name}.{key}: {detail} "
                    f"(a scale holds dotted run-config paths and optionally {', '.join(SCALE_KEYS)})"
                ) from None
    raw["scales"] = scales
    if scale is None:
        return
    if scale not in scales:
        where = locator.where(("scales",))
        if not scales:
            raise ConfigFileError(f"{where}: --scale {scale}: this study (and the files it extends) defines no scales")
        close = difflib.get_close_matches(scale, list(scales), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigFileError(f"{where}: --scale {scale}: no such scale (available: {', '.join(scales)}){hint}")
    spec = scales[scale]
    for key, value in spec.items():
        at = ("scales", scale, key)
        if key in ("grid", "zip"):
            axes = raw.get(key)
            if not isinstance(value, dict):
                raise _fail(
                    locator.where(at),
                    f"scales.{scale}.{key}",
                    f"expected a mapping of axis -> values, got {type(value).__name__}",
                )
            if not isinstance(axes, dict):
                axes = {}
            for axis, values in value.items():
                if axis not in axes:
                    raise _fail(
                        locator.where((*at, axis)),
                        f"scales.{scale}.{key}.{axis}",
                        f"a scale can only replace the values of an existing {key} axis "
                        f"(axes: {', '.join(axes) or 'none'})",
                    )
                axes[axis] = deep_copy(values)
                locator.provenance[(key, axis)] = locator.where((*at, axis))
        elif key == "search":
            if not isinstance(value, dict):
                raise _fail(
                    locator.where(at),
                    f"scales.{scale}.search",
                    f"expected a mapping, got {type(value).__name__}",
                )
            if not isinstance(raw.get("search"), dict):
                raise _fail(locator.where(at), f"scales.{scale}.search", "the study has no search to adjust")
            raw["search"] = deep_merge(raw["search"], value)
            _record(locator, ("search",), value, at)
        elif key == "repeats":
            raw["repeats"] = value
            locator.provenance[("repeats",)] = locator.where(at)
        else:
            set_path(raw["base"], key, value)
            locator.provenance[("base", *key.split("."))] = locator.where(at)


def _record(locator: _Locator, target: tuple[str, ...], value: Any, at: tuple[Any, ...]) -> None:
    """Point errors at the scale's lines for every leaf it sets."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _record(locator, (*target, str(k)), v, (*at, k))
    else:
        locator.provenance[target] = locator.where(at)


def _check_axes(study: Study, locator: _Locator) -> None:
    if study.search is not None and (study.grid or study.zip):
        which = "grid" if study.grid else "zip"
        raise _fail(
            locator.where(("search",)),
            "search",
            f"a study has either a search or grid/zip axes, not both (remove '{which}' or 'search')",
        )
    sections: list[tuple[str, list[str]]] = [("grid", list(study.grid)), ("zip", list(study.zip))]
    if study.search is not None:
        sections.append(("search.params", list(study.search.params)))
    for section, keys in sections:
        for key in keys:
            loc = (*section.split("."), key)
            try:
                check_dotted_path(RunConfig, key, option="\0")
            except ConfigFileError as exc:
                detail = str(exc).split(": ", 1)[-1]
                raise _fail(locator.where(loc), f"{section}.{key}", detail) from None
    both = set(study.grid) & set(study.zip)
    if both:
        key = sorted(both)[0]
        raise _fail(
            locator.where(("zip", key)),
            f"zip.{key}",
            "is also a grid axis; an axis is either in grid or in zip",
        )
    if study.zip:
        lengths = {k: len(v) for k, v in study.zip.items()}
        if len(set(lengths.values())) > 1:
            first = next(iter(lengths))
            bad = next(k for k, n in lengths.items() if n != lengths[first])
            listing = ", ".join(f"{k}: {n}" for k, n in lengths.items())
            raise _fail(
                locator.where(("zip", bad)),
                f"zip.{bad}",
                f"zip lists must all have the same length ({listing})",
            )


def _check_recipe_axes(study: Study, locator: _Locator) -> None:
    """A varied ``recipe`` names shipped recipes only (checked before any trial is built)."""
    named: list[tuple[tuple[str, ...], list[Any]]] = [
        ((section, RECIPE_KEY), axes[RECIPE_KEY]) for section, axes in (("grid", study.grid), ("zip", study.zip))
        if RECIPE_KEY in axes
    ]
    if study.search is not None and RECIPE_KEY in study.search.params:
        param = study.search.params[RECIPE_KEY]
        loc = ("search", "params", RECIPE_KEY)
        if param.type != "categorical":
            raise _fail(locator.where(loc), ".".join(loc), f"a recipe is a name: search it as categorical "
                        f"choices ({', '.join(recipe_names())})")
        named.append((loc, list(param.choices or [])))
    for loc, names in named:
        for name in names:
            try:
                load_recipe(name)
            except RecipeError as exc:
                raise _fail(locator.where(loc), ".".join(loc), str(exc)) from None


def _check_trials(study: Study, locator: _Locator) -> None:
    """Build every trial's run config (or every search bound) so bad values fail now, at their axis."""
    _check_recipe_axes(study, locator)
    if study.search is not None:
        for key, param in study.search.params.items():
            for value in param.bounds():
                try:
                    _build(study, {key: value}, None)
                except ValidationError as exc:
                    raise _fail(
                        locator.where(("search", "params", key)),
                        f"search.params.{key}",
                        f"value {format_value(value)} gives an invalid run config: {_errors_text(exc)}",
                    ) from None
        return
    for point in points(study):
        if point.repeat:
            continue  # repeats differ only in the seed
        try:
            _build(study, point.params, point.seed)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = tuple(str(p) for p in err["loc"] if not str(p).startswith("function-"))
            axis = _axis_for(study, loc)
            if axis is None:  # only a combination of axes is invalid: point at the first axis
                section, key = ("grid", next(iter(study.grid))) if study.grid else ("zip", next(iter(study.zip)))
                raise _fail(
                    locator.where((section, key)),
                    f"point {point.label()}",
                    f"{_dotted(loc)}: {err['msg']}",
                ) from None
            section, key = axis
            detail = err["msg"] if _dotted(loc) == key else f"{_dotted(loc)}: {err['msg']}"
            raise _fail(
                locator.where((section, key)),
                f"{section}.{key}",
                f"{detail} (value {format_value(point.params.get(key))})",
            ) from None


def distinct_configs(study: Study) -> list[RunConfig]:
    """The base and one run config per point (a search: per bound of each searched parameter),
    repeats left out: every config the study's trials can differ in, but their seeds."""
    configs = [study.base]
    if study.search is not None:
        configs += [_build(study, {k: v}, None) for k, p in study.search.params.items() for v in p.bounds()]
    else:
        configs += [_build(study, p.params, p.seed) for p in points(study) if not p.repeat]
    return configs


def _check_plugins(study: Study, locator: _Locator) -> None:
    """Try each plugin the trials use on a tiny batch (``runconfig_file.check_plugins``), so one that
    breaks its contract is refused now, at its field (an axis, else the base), before any store exists."""
    def where(loc: tuple[Any, ...]) -> str:
        loc = tuple(str(p) for p in loc)
        axis = _axis_for(study, loc)
        return locator.where(axis if axis is not None else ("base", *loc))

    seen: set[str] = set()
    for config in distinct_configs(study):
        key = config.model_dump_json()
        if key not in seen:  # built-ins only: returns at once, without importing torch
            seen.add(key)
            check_plugins(config, where)


def _axis_for(study: Study, loc: tuple[str, ...]) -> tuple[str, str] | None:
    """The grid/zip axis responsible for an error at ``loc`` (same path, or one containing the other)."""
    dotted = ".".join(loc)
    for section, keys in (("grid", study.grid), ("zip", study.zip)):
        for key in keys:
            if dotted == key or dotted.startswith(key + ".") or key.startswith(dotted + "."):
                return section, key
    return None


def _errors_text(exc: ValidationError) -> str:
    return "; ".join(f"{_dotted(e['loc'])}: {e['msg']}" for e in exc.errors())
