"""Load YAML safely and validate it against a pydantic model, with errors that name file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigFileError(ValueError):
    """Bad user input in a config or study file, or in a --set option: one message, exit status 2."""


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Parse ``path`` with the safe loader; return (data, node tree for line numbers)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigFileError(f"{where}: malformed YAML: {problem}") from exc
    return data, node


def line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest node along ``loc`` (mapping keys and sequence indices)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == str(part)), None)
            key = next((k for k, _ in node.value if getattr(k, "value", None) == str(part)), None)
            if match is None:
                return line
            line = key.start_mark.line + 1 if key is not None else match.start_mark.line + 1
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def allowed_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the sub-model that ``loc`` points into, for 'unknown key' messages."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = _model_of(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return None


def is_free_mapping(model: type[BaseModel], loc: tuple[Any, ...]) -> bool:
    """Whether ``loc`` is a field typed as a plain mapping (a plugin's ``params``), whose keys are free."""
    current: Any = model
    for depth, part in enumerate(loc, 1):
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return False
        field = current.model_fields.get(str(part))
        if field is None:
            return False
        if get_origin(field.annotation) is dict:
            return depth == len(loc)
        current = _model_of(field.annotation)
    return False


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def describe_errors(
    exc: ValidationError, model: type[BaseModel], source: str, node: yaml.Node | None, prefix: tuple[Any, ...] = ()
) -> str:
    """Turn a pydantic error into lines 'file:line: dotted.path: message (allowed: ...)'."""
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        line = line_of(node, prefix + loc)
        where = f"{source}:{line}" if line is not None else source
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            allowed = allowed_fields(model, loc[:-1])
            message = f"unknown key '{loc[-1]}'" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
        lines.append(f"{where}: {dotted}: {message}")
    return "\n".join(lines)


def validate(model: type[M], data: Any, source: str, node: yaml.Node | None = None) -> M:
    """Validate ``data`` as ``model`` or raise ConfigFileError with file and line for each problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigFileError(f"{source}:1: expected a mapping of settings, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigFileError(describe_errors(exc, model, source, node)) from None


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """``["loss.temperature=0.1", "augment.ops=[crop,color]"]`` -> {dotted: YAML-parsed value}."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigFileError(f"--set {item!r}: expected KEY=VALUE, e.g. --set loss.temperature=0.1")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigFileError(f"--set {item!r}: the value is not valid YAML ({exc})") from None
    return out
