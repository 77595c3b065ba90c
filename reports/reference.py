"""The paper's numbers (``paper_reference.yaml``, shipped with the package), each with source and confidence."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

EXACT = "exact"
FROM_FIGURE = "approximate-read-from-figure"
CONFIDENCES = (EXACT, FROM_FIGURE)


@lru_cache(maxsize=1)
def load_reference() -> dict[str, Any]:
    """Every section of ``reports/paper_reference.yaml``, keyed by report kind."""
    text = resources.files("reports").joinpath("paper_reference.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def section(kind: str) -> dict[str, Any] | None:
    return load_reference().get(kind)


def value_of(entry: Any, sec: dict[str, Any]) -> tuple[float, str, str]:
    """(value, source, confidence) of one entry: a bare number inherits its section's source."""
    if isinstance(entry, dict) and "value" in entry and "source" in entry:
        return float(entry["value"]), str(entry["source"]), str(entry.get("confidence", sec["confidence"]))
    return float(entry), str(sec["source"]), str(sec["confidence"])


def records(kind: str) -> list[dict[str, Any]]:
    """Every number of a section as {cell, value, source, confidence} (for listing and checking)."""
    sec = section(kind)
    if sec is None:
        return []
    out: list[dict[str, Any]] = []

    def add(cell: str, entry: Any) -> None:
        value, source, confidence = value_of(entry, sec)
        out.append(dict(cell=cell, value=value, source=source, confidence=confidence))

    cells = sec["cells"]
    if isinstance(cells, dict):
        for row, cols in cells.items():
            for col, entry in cols.items():
                add(f"{row}/{col}", entry)
    else:
        for item in cells:
            for field in ("value", "top1", "contrastive_acc", "entropy"):
                if field in item:
                    label = item.get("label") or ", ".join(f"{k}={v}" for k, v in item.items() if k not in
                                                           ("value", "top1", "contrastive_acc", "entropy"))
                    add(f"{label}/{field}", item[field])
    for name, entry in (sec.get("row_average") or {}).items():
        add(f"{name}/row average", entry)
    for name, entry in (sec.get("not_reproduced") or {}).items():
        add(name, entry)
    return out
