"""A study's claims as a sequential rule judges them: the trials as they stood at each look.

Seeds are added to a point in order (first seed, +1, +2, ...), so the study at look ``j`` is each
point's first ``rule.seeds_at(j)`` seeds: judging every look from the final trial table gives the
verdicts ``run --until-decided`` saw when it decided, and a rebuilt report gives them again.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

from reports.layouts import build
from reports.sequential import SequentialRule, judge_by_looks
from reports.trials import axis_columns
from reports.verdicts import Verdict


def first_seeds(df: pd.DataFrame, n: int) -> pd.DataFrame:
    """Each point's trials at its ``n`` lowest seeds (every attempt kept, failed ones too)."""
    axes = axis_columns(df)
    if df.empty or "seed" not in df:
        return df
    if not axes:
        return df[df["seed"].rank(method="dense") <= n]
    keys = df[axes].astype(str).agg("\x1f".join, axis=1)
    rank = df.groupby(keys)["seed"].rank(method="dense")
    return df[rank <= n]


def study_verdicts(df: pd.DataFrame, kind: str, metric: str, cfg: dict[str, Any] | None, direction: str,
                   rule: SequentialRule | None) -> list[Verdict]:
    """The claims' verdicts: by the fixed rule of :mod:`reports.verdicts` (``rule`` None), or by
    ``rule`` look by look."""
    if rule is None:
        return build(kind, df, metric, cfg, direction).verdicts
    return judge_by_looks(rule, lambda n: build(kind, first_seeds(df, n), metric, cfg, direction).verdicts)


def _same(a: Any, b: Any) -> bool:
    """An axis value as the plan holds it against one as a trial table holds it (1 == 1.0 == "1")."""
    def norm(v: Any) -> Any:
        if isinstance(v, (bool, np.bool_)):
            return str(bool(v)).lower()
        if isinstance(v, (list, tuple)):
            return "+".join(str(x) for x in v) if v else "(none)"
        if isinstance(v, (int, float, np.integer, np.floating)):
            return float(v)
        text = str(v)
        if text.lower() in ("true", "false"):
            return text.lower()
        try:
            return float(text)
        except ValueError:
            return text

    x, y = norm(a), norm(b)
    if isinstance(x, float) and isinstance(y, float):
        return math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-12)
    return x == y


def matching_points(where: Iterable[tuple[tuple[str, Any], ...]], params_of_points: list[dict[str, Any]]) -> list[int]:
    """Indices of the points whose axis values agree with any of ``where`` (a verdict's ``points``:
    each a partial assignment, ((axis, value), ...), as a layout's cell read it)."""
    wanted = list(where)
    return [i for i, params in enumerate(params_of_points)
            if any(all(axis in params and _same(params[axis], value) for axis, value in cell) for cell in wanted)]
