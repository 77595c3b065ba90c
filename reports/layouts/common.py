"""What every layout shares: the report it returns, cells keyed by value, matching with the paper.

A *cell* is one point of a study (its trials aggregated over seeds), keyed by the values that
place it in the paper's table, so that ours and the paper's meet by value, never by position.
Nothing here draws: the drawing helpers are in :mod:`reports.layouts.plotting`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import pandas as pd

from reports.trials import aggregate
from reports.verdicts import Estimate, Verdict, estimate, from_row, missing, spearman

OPS = "augment.ops"

PaperCells = dict[Any, tuple[float, str, str]]
"""The paper's cells by key: ``(value, source, confidence)`` as :func:`reports.reference.value_of` reads them."""


@dataclass
class Figure:
    """A figure to write: ``draw`` is called only when the report is written, and returns the figure."""

    name: str
    caption: str
    draw: Callable[[], Any]


@dataclass
class KindReport:
    """What a layout hands to :mod:`reports.render`: every table, verdict and figure of one report."""

    kind: str
    title: str
    main: pd.DataFrame
    matched: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["cell", "ours", "paper"]))
    ours_only: list[str] = field(default_factory=list)
    paper_only: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra_tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    paper_source: str = ""
    main_index: bool = False

    @property
    def rho(self) -> float:
        done = self.matched.dropna(subset=["ours", "paper"]) if len(self.matched) else self.matched
        return spearman(done["ours"], done["paper"]) if len(done) else math.nan

    @property
    def has_paper(self) -> bool:
        return bool(self.paper_source)


def cell_text(est: Estimate | None, std: float = math.nan) -> str:
    """``61.23 ± 0.50 (n=3)``, ``61.23`` (one seed), ``failed (2)`` or ``not run``; never 0 for a failure."""
    if est is None:
        return "not run"
    if est.n == 0:
        return f"failed ({est.failed})" if est.failed else "not run"
    text = f"{est.mean:.2f}"
    if est.n > 1 and std == std:
        text += f" ± {std:.2f} (n={est.n})"
    return text


@dataclass
class Cell:
    """One point's estimate and its std over seeds (NaN with one seed): the std is what tables show."""

    est: Estimate
    std: float

    def text(self) -> str:
        return cell_text(self.est, self.std)


def value_text(value: Any, digits: int | None = None) -> str:
    """A value as a reader wants it: a float in its shortest exact form (``0.125``, ``0.25``, ``1``,
    never ``0.12`` or ``0.250000``), or to ``digits`` significant digits (a searched value, drawn by
    a sampler: ``0.250413`` with 3 reads ``0.25``); booleans ``yes``/``no``; anything else as text."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if not math.isfinite(value):
            return str(value)
        if digits is not None:
            return f"{value:.{digits}g}"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def label_of(key: Any) -> str:
    """A cell key as tables and verdicts print it: ``(yes, 0.5)``, ``1``, ``0.125``, ``crop``."""
    if isinstance(key, tuple):
        return "(" + ", ".join(label_of(k) for k in key) + ")"
    return value_text(key)


def cells_by(df: pd.DataFrame, metric: str, axes: list[str], key: Callable[[pd.Series], Any]) -> dict[Any, Cell]:
    """Aggregate over seeds per point of ``axes`` and key each cell by ``key(row)`` (None: skipped)."""
    out: dict[Any, Cell] = {}
    for _, row in aggregate(df, metric, axes).iterrows():
        k = key(row)
        if k is None:
            continue
        where = frozenset({tuple((axis, row[axis]) for axis in axes)})
        std = float(row["std"]) if row["n"] > 1 else math.nan
        out[k] = Cell(replace(from_row(label_of(k), row), points=where), std)
    return out


def ops_list(value: Any) -> list[str]:
    """``augment.ops`` as a list, whether it came as a list or as trials.csv's ``crop+color`` text."""
    if isinstance(value, list):
        return [str(v) for v in value]
    text = str(value)
    return [] if text in ("(none)", "", "nan") else text.split("+")


def as_bool(value: Any) -> bool:
    """A bool axis as MLflow or a CSV may hand it back: ``True``, ``"true"``, ``"1"``."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def est(cells: dict[Any, Cell], key: Any, label: str | None = None) -> Estimate:
    """The cell's estimate, relabelled for a verdict; a missing one where the study has no such cell."""
    cell = cells.get(key)
    if cell is None:
        return missing(label or label_of(key))
    return cell.est if label is None else replace(cell.est, label=label, gap="")


def paper_cells(paper: PaperCells) -> dict[Any, Cell]:
    """The paper's ``(value, source, confidence)`` entries as cells of one "seed", without spread."""
    return {k: Cell(estimate(label_of(k), float(v[0]), math.nan, 1), math.nan) for k, v in paper.items()}


def paper_twin(cells: dict[Any, Cell], paper: PaperCells) -> dict[Any, Cell]:
    """The paper's cell for each of our cells, missing where it has none: the same keys as
    ``cells``, so a claim judged on both compares the same cells."""
    theirs = paper_cells(paper)
    return {k: theirs.get(k, Cell(missing(cell.est.label), math.nan)) for k, cell in cells.items()}


def paper_value(paper: PaperCells, key: Any) -> float | None:
    """The paper's number for ``key``, None where the paper has no such cell."""
    return paper[key][0] if key in paper else None


def ours_paper(cell: Cell | None, paper: float | None) -> str:
    """One cell of a grid that shows both: ``61.23 ± 0.50 (n=3) (63.2)``."""
    text = cell.text() if cell is not None else "not run"
    return f"{text} ({paper:.1f})" if paper is not None else text


def ours_text(cells: dict[Any, Cell], key: Any) -> str:
    """Our cell as a table shows it, ``not run`` where the study has no such point."""
    return cells[key].text() if key in cells else "not run"


def paper_text(paper: PaperCells, key: Any) -> str:
    """The paper's number to the one decimal it prints, ``—`` where it has no such cell."""
    value = paper_value(paper, key)
    return f"{value:.1f}" if value is not None else "—"


def ours_vs_paper(cells: dict[Any, Cell], paper: PaperCells, keys: list[Any], labels: dict[Any, str],
                  rows: tuple[str, str], index_name: str) -> pd.DataFrame:
    """A one-row table of the paper's (Tables 1 and 4) with ours above it: one column per key, in
    ``keys`` order, headed ``labels[key]``; ``rows`` names our row and the paper's."""
    table = pd.DataFrame([[ours_text(cells, k) for k in keys], [paper_text(paper, k) for k in keys]],
                         index=list(rows), columns=[labels[k] for k in keys])
    table.index.name = index_name
    return table


def paper_report(kind: str, sec: dict[str, Any], title: str, main: pd.DataFrame,
                 matching: tuple[pd.DataFrame, list[str], list[str]], verdicts: list[Verdict], figure: Figure,
                 **more: Any) -> KindReport:
    """A report beside the paper's section ``sec``: its title (``title`` where it has none), its source
    and confidence, what :func:`match` found (``matched, ours_only, paper_only``) and one figure."""
    matched, ours_only, paper_only = matching
    return KindReport(kind=kind, title=sec.get("title", title), main=main, matched=matched, ours_only=ours_only,
                      paper_only=paper_only, verdicts=verdicts, figures=[figure],
                      paper_source=f"{sec.get('source', '')}, {sec.get('confidence', '')}", **more)


def matched_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """tables/matched.csv's columns, also when no cell matched."""
    return pd.DataFrame(rows, columns=["cell", "ours", "ours_std", "n", "paper", "source", "confidence"])


def match(ours: dict[Any, Cell], paper: PaperCells,
          names: dict[Any, str] | None = None) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Cells with a result on both sides (by value), the labels of our cells the paper lacks, and the
    labels of the paper's cells without a result here (not in the study, or no finished trial);
    ``names`` overrides :func:`label_of` for the keys it has (the paper's column headings)."""
    names = names or {}

    def name_of(key: Any) -> str:
        return names.get(key) or label_of(key)

    rows = []
    for key, cell in ours.items():
        if key in paper and not cell.est.missing:
            value, source, confidence = paper[key]
            rows.append(dict(cell=name_of(key), ours=cell.est.mean, ours_std=cell.std, n=cell.est.n,
                             paper=value, source=source, confidence=confidence))
    ours_only = [name_of(k) for k in ours if k not in paper]
    # a paper cell the study has but no finished trial of: without a result here, as one never run
    unfinished = {k: c.est.absence for k, c in ours.items() if c.est.missing}
    paper_only = [name_of(k) + (f" ({unfinished[k]})" if k in unfinished else "") for k in paper
                  if k not in ours or k in unfinished]
    return matched_frame(rows), ours_only, paper_only


def accuracy_metric(metric: str) -> bool:
    """The paper's claims are about accuracy: a study reporting its loss gets no verdicts."""
    return metric != "loss"


def need(df: pd.DataFrame, columns: list[str]) -> None:
    """Raise KeyError (build() falls back to the generic layout) when the study does not vary ``columns``."""
    absent = [c for c in columns if c not in df.columns]
    if absent:
        raise KeyError(f"the trials do not vary {', '.join(absent)}")
