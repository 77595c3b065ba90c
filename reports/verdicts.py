"""Did the paper's finding reproduce? Claims as comparisons of estimates that carry their seed spread.

An :class:`Estimate` is a mean over seeds with its standard error (std / sqrt(n)); cells are
combined (averaged, the best picked, subtracted) with the errors propagated as if independent.
A claim "A beats B by more than m points" is

* **reproduced** when ``mean_A - mean_B - m > k * se`` (``se = sqrt(se_A^2 + se_B^2)``, ``k = 2``),
* **not reproduced** when ``mean_A - mean_B - m < -k * se`` (clearly below the claim; a clear
  reversal when ``mean_A - mean_B < -k * se`` too),
* **inconclusive** otherwise, and always when a side has fewer than 2 seeds (the spread over seeds
  is then unknown: the direction is reported, not judged) or no finished trial at all.

Trends are compared with the Spearman rank correlation between our cells and the paper's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
K_SE = 2.0
"""How many standard errors a difference must clear to count."""


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds: ``se`` is std / sqrt(n) (NaN when n < 2); ``n`` the fewest seeds behind it;
    ``gap`` says which of the cells it combines have no finished trial, when some have; ``df`` the
    degrees of freedom of ``se`` (n - 1 for one cell, Welch-Satterthwaite for combinations: what a
    t test of it uses); ``points`` the study points it reads, each as ((axis, value), ...): what
    ``run --until-decided`` adds seeds to."""

    label: str
    mean: float
    se: float
    n: int
    failed: int = 0
    gap: str = ""
    df: float = math.nan
    points: frozenset[tuple[tuple[str, Any], ...]] = frozenset()

    @property
    def missing(self) -> bool:
        return self.n == 0 or not math.isfinite(self.mean)

    @property
    def absence(self) -> str:
        """Why a missing estimate has no value: "N failed" or "not run"."""
        return f"{self.failed} failed" if self.failed else "not run"

    def minus(self, other: "Estimate", label: str | None = None) -> "Estimate":
        return Estimate(
            label or f"({self.label}) - ({other.label})",
            self.mean - other.mean,
            math.sqrt(self.se**2 + other.se**2),
            min(self.n, other.n),
            self.failed + other.failed,
            "; ".join(g for g in (self.gap, other.gap) if g),
            welch_df([self.se**2, other.se**2], [self.df, other.df]),
            self.points | other.points,
        )


def welch_df(variances: Sequence[float], dfs: Sequence[float]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of independent variance estimates:
    ``(sum v)^2 / sum(v^2 / df)``; NaN when any part is unknown, and a part with zero variance adds
    nothing (it carries no uncertainty to estimate)."""
    if any(not (math.isfinite(v) and math.isfinite(d)) for v, d in zip(variances, dfs)):
        return math.nan
    total = sum(variances)
    denominator = sum(v * v / d for v, d in zip(variances, dfs) if v > 0)
    return total * total / denominator if denominator > 0 else math.nan


def estimate(label: str, mean: float, std: float, n: int, failed: int = 0) -> Estimate:
    n = int(n) if n == n else 0
    mean = float(mean) if n > 0 else math.nan
    se = float(std) / math.sqrt(n) if n >= 2 and std == std else math.nan
    return Estimate(label, mean, se, n, int(failed), df=float(n - 1) if n >= 2 else math.nan)


def from_row(label: str, row: Any) -> Estimate:
    """An estimate from a row of :func:`reports.trials.aggregate` (mean, std, n, failed)."""
    return estimate(label, row["mean"], row["std"], row["n"], row.get("failed", 0))


def missing(label: str) -> Estimate:
    return Estimate(label, math.nan, math.nan, 0)


def mean_of(label: str, parts: Sequence[Estimate]) -> Estimate:
    """The average of several cells (every cell must have finished trials; ``gap`` names those without)."""
    if not parts or any(p.missing for p in parts):
        gaps = [p for p in parts if p.missing]
        names = ", ".join(f"{p.label} ({p.absence})" for p in gaps)
        gap = f"{len(gaps)} of its {len(parts)} cells without a finished trial: {names}" if parts else ""
        return Estimate(label, math.nan, math.nan, 0, sum(p.failed for p in parts), gap,
                        points=frozenset().union(*(p.points for p in parts)))
    k = len(parts)
    se = math.sqrt(sum(p.se**2 for p in parts)) / k
    return Estimate(label, sum(p.mean for p in parts) / k, se, min(p.n for p in parts), sum(p.failed for p in parts),
                    df=welch_df([p.se**2 / k**2 for p in parts], [p.df for p in parts]),
                    points=frozenset().union(*(p.points for p in parts)))


def best_of(label: str, parts: Sequence[Estimate]) -> Estimate:
    """The cell with the highest mean (its own spread), named in the label; it reads every part's
    points (more seeds may change which is best). The pick is not corrected for being a maximum."""
    every = frozenset().union(*(p.points for p in parts))
    done = [p for p in parts if not p.missing]
    if not done:
        return Estimate(label, math.nan, math.nan, 0, points=every)
    top = max(done, key=lambda p: p.mean)
    return Estimate(f"{label} at {top.label}", top.mean, top.se, top.n, top.failed, df=top.df, points=every)


@dataclass
class Verdict:
    claim: str
    verdict: str
    detail: str
    a: str = ""
    b: str = ""
    difference: float = math.nan
    margin: float = 0.0
    se: float = math.nan
    seeds: int = 0
    mean_a: float = math.nan
    mean_b: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)
    df: float = math.nan
    """Degrees of freedom of ``se`` (Welch-Satterthwaite over both sides)."""
    points: frozenset[tuple[tuple[str, Any], ...]] = frozenset()
    """The study points the claim compares (both sides'): see :class:`Estimate`."""

    def line(self) -> str:
        return f"[{self.verdict}] {self.claim}: {self.detail}"

    def as_dict(self) -> dict[str, Any]:
        """JSON data (summary.json): the points are left out, they are the trials table's rows."""
        data = asdict(self)
        data.pop("points")
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}


MAX_SEEDS = 1000
"""Beyond this many seeds per point a difference is reported as zero within noise."""


def seeds_to_decide(gap: float, se: float, seeds: int, k: float = K_SE) -> int | None:
    """Seeds per point at which a gap of this size (difference - margin) clears ``k`` standard
    errors, the spread staying as measured: se shrinks as 1/sqrt(n), so n > seeds * (k * se / gap)^2.
    None when the spread is unknown (fewer than 2 seeds) or more than ``MAX_SEEDS`` would be needed."""
    if seeds < 2 or not (math.isfinite(se) and math.isfinite(gap)) or gap == 0:
        return None
    n = math.floor(seeds * (k * se / abs(gap)) ** 2) + 1
    return max(n, seeds + 1) if n <= MAX_SEEDS else None


def comparison_text(a: str, mean_a: float, b: str, mean_b: float, margin: float) -> str:
    """'strength 1 37.86 vs strength 0.125 39.71: difference -1.84 points', what a verdict compared."""
    need = f" (claimed margin {margin:g})" if margin else ""
    return f"{a} {mean_a:.2f} vs {b} {mean_b:.2f}: difference {mean_a - mean_b:+.2f} points{need}"


def check_greater(claim: str, a: Estimate, b: Estimate, margin: float = 0.0, k: float = K_SE) -> Verdict:
    """Judge "A beats B by more than ``margin`` points" against the seed spread of both."""
    base = dict(claim=claim, a=a.label, b=b.label, margin=margin, mean_a=a.mean, mean_b=b.mean,
                points=a.points | b.points)
    for side in (a, b):
        if side.missing:
            why = side.gap or side.absence
            return Verdict(verdict=INCONCLUSIVE, detail=f"no result for {side.label} ({why})", **base)
    diff = a.mean - b.mean
    seeds = min(a.n, b.n)
    se = math.sqrt(a.se**2 + b.se**2) if seeds >= 2 else math.nan
    text = comparison_text(a.label, a.mean, b.label, b.mean, margin)
    base.update(difference=diff, seeds=seeds, se=se,
                df=welch_df([a.se**2, b.se**2], [a.df, b.df]) if seeds >= 2 else math.nan)
    if seeds < 2:
        way = "the paper's way" if diff > margin else ("against the paper" if diff < 0 else "below the claimed margin")
        return Verdict(
            verdict=INCONCLUSIVE,
            detail=f"{text}; points {way}, but with {seeds} seed per cell the spread over seeds is unknown "
            "(run the study with repeats >= 2 to decide)",
            **base,
        )
    band = f"{k:g} standard errors = {k * se:.2f}"
    if diff - margin > k * se:
        return Verdict(verdict=REPRODUCED, detail=f"{text}, more than {band} (n={seeds} seeds)", **base)
    if diff - margin < -k * se:
        what = "reversed: " if diff < -k * se else ""
        return Verdict(verdict=NOT_REPRODUCED, detail=f"{what}{text}, beyond {band} (n={seeds} seeds)", **base)
    need_n = seeds_to_decide(diff - margin, se, seeds, k)
    plan = (f"; about {need_n} seeds per point would decide a difference of this size" if need_n is not None
            else f"; zero within noise: even {MAX_SEEDS} seeds per point would not decide it")
    return Verdict(verdict=INCONCLUSIVE, detail=f"{text}, within {band} (n={seeds} seeds){plan}",
                   extra={"seeds_to_decide": need_n}, **base)


def with_paper(ours: list[Verdict], paper: list[Verdict]) -> list[Verdict]:
    """``ours`` with the paper's side of each claim in ``extra["paper"]``: the same comparison
    (same cells, same averaging or best-of) judged on the paper's numbers, so a reader sees what
    the paper measured for exactly what we compared. Claims pair by their text; a claim the paper's
    side did not make, or a side the paper has no number for, gets none."""
    by_claim = {v.claim: v for v in paper}
    for mine in ours:
        theirs = by_claim.get(mine.claim)
        if theirs is not None and (math.isfinite(theirs.mean_a) or math.isfinite(theirs.mean_b)):
            mine.extra["paper"] = {
                "a": theirs.mean_a if math.isfinite(theirs.mean_a) else None,
                "b": theirs.mean_b if math.isfinite(theirs.mean_b) else None,
                "a_label": theirs.a,
                "b_label": theirs.b,
            }
    return ours


def not_checked(claim: str, reason: str) -> Verdict:
    return Verdict(claim=claim, verdict=INCONCLUSIVE, detail=reason)


def spearman(ours: Iterable[float], paper: Iterable[float]) -> float:
    """Rank correlation (average ranks for ties); NaN with fewer than 3 pairs or a constant side."""
    frame = pd.DataFrame({"a": list(ours), "b": list(paper)}).dropna()
    if len(frame) < 3:
        return math.nan
    ra, rb = frame["a"].rank().to_numpy(float), frame["b"].rank().to_numpy(float)
    if np.std(ra) == 0 or np.std(rb) == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])
