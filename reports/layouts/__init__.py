"""One layout per study kind: the paper's table or figure, our numbers beside the paper's, the claims.

Every builder takes the per-trial DataFrame of :func:`reports.trials.load_trials` and returns a
:class:`KindReport`: the main table (display strings, "ours (paper)" where both exist), the cells
matched by value with the paper's (for the Spearman correlation), the cells without a counterpart,
the verdicts on the paper's headline claims and the figures to draw.

Each kind's builder is ``layout`` in the module named after the kind (``reports.layouts.temperature``);
what they share is in :mod:`reports.layouts.common` (cells, matching, tables) and
:mod:`reports.layouts.plotting` (figures). :data:`BUILDERS` is the one list of kinds: a study file
names one of them (``ablations.study.REPORT_KINDS``, checked against it by tests/test_report_kinds.py).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import matplotlib

matplotlib.use("Agg")  # reports are written headless: before anything below imports pyplot (seaborn does)
import pandas as pd  # noqa: E402

from reports.layouts import (  # noqa: E402
    augment_pairs,
    batch_size_epochs,
    color_strength,
    generic,
    loss_functions,
    projection_head,
    search,
    temperature,
)
from reports.layouts.common import Figure, KindReport  # noqa: E402

__all__ = ["BUILDERS", "Figure", "KindReport", "build"]

BUILDERS: dict[str, Callable[..., KindReport]] = {
    "augment_pairs": augment_pairs.layout,
    "color_strength": color_strength.layout,
    "projection_head": projection_head.layout,
    "batch_size_epochs": batch_size_epochs.layout,
    "temperature": temperature.layout,
    "loss_functions": loss_functions.layout,
    "search": search.layout,
    "generic": generic.layout,
}


def build(kind: str, df: pd.DataFrame, metric: str, cfg: dict[str, Any] | None = None,
          direction: str = "maximize", log_axes: Iterable[str] | None = None) -> KindReport:
    """The kind's layout; a study whose axes do not fit it falls back to the generic layout, saying why.

    ``log_axes``: the parameters a search study searched with ``log: true`` (None: not known)."""
    cfg = cfg or {}
    builder = BUILDERS.get(kind, generic.layout)
    try:
        if kind == "search":
            return search.layout(df, metric, cfg, direction, log_axes)
        return builder(df, metric, cfg)
    except KeyError as exc:
        out = generic.layout(df, metric, cfg)
        out.notes.append(f"report kind {kind!r} not applicable ({exc.args[0] if exc.args else exc}); "
                         "generic layout used")
        return out
