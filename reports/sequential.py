"""The rule ``run --until-decided`` stops by: a Welch t test at each look, its level split over the looks.

Adding seeds until a difference clears a threshold, and stopping there, decides far more often than
the threshold's nominal rate when there is nothing to find: with 2-3 seeds per point the spread is
itself a guess (one look at 2 standard errors is wrong 10-20% of the time under no difference), and
every look after is another chance. So the rule is fixed before the first added round and stated:
at most ``looks`` looks (the study's own seeds, then one added seed per point and look), each a
two-sided t test at level ``alpha / looks`` (Bonferroni), so the chance of any false decision over
all the looks is at most ``alpha`` however the looks are correlated. The degrees of freedom are the
seeds' (Welch-Satterthwaite through averaged and subtracted cells: ``Estimate.df``).

Rejected: Pocock or O'Brien-Fleming boundaries. They spend ``alpha`` less wastefully, but their
constants assume a known variance and equal steps of information, neither true with 2-3 seeds; the
split level needs neither and is easy to check. ``tests/test_sequential.py`` measures the rule's
false-decision rate on simulated null data at the spread the ``cpu`` studies measured.

Everything here is pure: the t distribution is computed here (no SciPy among the dependencies).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Callable

from reports.verdicts import INCONCLUSIVE, MAX_SEEDS, NOT_REPRODUCED, REPRODUCED, Verdict, comparison_text

RULE_TAG = "ablations.sequential"
"""The study run's MLflow tag holding the rule its claims are judged by (``SequentialRule.as_dict``, JSON)."""


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz), converging for x < (a+1)/(a+b+2)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def beta_inc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` (> 0, need not be whole) degrees of freedom."""
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * beta_inc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (0 < p < 1), by bisection on :func:`t_sf`."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile {p}: expected 0 < p < 1")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_sf(hi, df) > 1.0 - p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_sf(mid, df) > 1.0 - p else (lo, mid)
        if hi - lo < 1e-10 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class SequentialRule:
    """At most ``looks`` looks, the first with ``first_seeds`` seeds per point, one seed more per look;
    each look a two-sided t test at ``alpha / looks``: at most ``alpha`` false decisions in all."""

    alpha: float = 0.05
    looks: int = 1
    first_seeds: int = 2

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha {self.alpha}: expected 0 < alpha < 1")
        if self.looks < 1 or self.first_seeds < 1:
            raise ValueError(f"looks {self.looks}, first seeds {self.first_seeds}: expected at least 1 each")

    @classmethod
    def up_to(cls, first_seeds: int, max_seeds: int, alpha: float = 0.05) -> "SequentialRule":
        """The rule of a study with ``first_seeds`` seeds per point, extended to ``max_seeds``."""
        if max_seeds < first_seeds:
            raise ValueError(f"at most {max_seeds} seeds per point: fewer than the study's own {first_seeds}")
        return cls(alpha, max_seeds - first_seeds + 1, first_seeds)

    @property
    def max_seeds(self) -> int:
        return self.first_seeds + self.looks - 1

    @property
    def level(self) -> float:
        """The two-sided level of each look."""
        return self.alpha / self.looks

    def seeds_at(self, look: int) -> int:
        return self.first_seeds + look - 1

    def threshold(self, df: float) -> float:
        """How many standard errors a gap must clear at ``df`` degrees of freedom."""
        return t_quantile(1.0 - self.level / 2.0, df)

    def decides(self, gap: float, se: float, df: float) -> bool:
        """Whether a gap (difference - margin) of standard error ``se`` is decided at one look."""
        if not (math.isfinite(gap) and math.isfinite(se) and math.isfinite(df)) or se <= 0 or df <= 0:
            return False
        return 2.0 * t_sf(abs(gap) / se, df) < self.level

    def describe(self) -> str:
        return (f"Welch t test at level {self.alpha:g}/{self.looks} = {self.level:.4g} per look, "
                f"at most {self.looks} looks ({self.first_seeds} to {self.max_seeds} seeds per point): "
                f"at most {self.alpha:g} false decisions in all")

    def as_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "looks": self.looks, "first_seeds": self.first_seeds}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SequentialRule":
        return cls(float(data["alpha"]), int(data["looks"]), int(data["first_seeds"]))


def rule_from_tags(tags: Mapping[str, str]) -> SequentialRule | None:
    """The rule ``--until-decided`` fixed for a study, from its study run's tags; None when it ran without one.
    The one reader of ``RULE_TAG`` (``plan`` prints it, reports judge by it)."""
    text = tags.get(RULE_TAG)
    return SequentialRule.from_dict(json.loads(text)) if text else None


def seeds_to_decide(rule: SequentialRule, gap: float, se: float, df: float, seeds: int) -> int | None:
    """Seeds per point at which a gap of this size would pass one look of ``rule``, the spread staying
    as measured (se shrinks as 1/sqrt(n), the degrees of freedom grow with the seeds); None when
    the spread is unknown or more than ``MAX_SEEDS`` would be needed."""
    if seeds < 2 or not all(math.isfinite(v) for v in (gap, se, df)) or gap == 0 or se <= 0:
        return None
    per_seed_df = df / (seeds - 1)

    def enough(n: int) -> bool:  # more seeds only help: smaller se, more degrees of freedom
        return rule.decides(gap, se * math.sqrt(seeds / n), per_seed_df * (n - 1))

    if not enough(MAX_SEEDS):
        return None
    lo, hi = seeds, MAX_SEEDS  # enough(hi); lo is not tested to be enough and need not be
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi


def _text(v: Verdict) -> str:
    return comparison_text(v.a, v.mean_a, v.b, v.mean_b, v.margin)


def judge_by_looks(rule: SequentialRule, verdicts_with: Callable[[int], list[Verdict]]) -> list[Verdict]:
    """Each claim judged by ``rule`` at the first look that decides it, else inconclusive at its last.

    ``verdicts_with(n)``: the verdicts computed from each point's first ``n`` seeds (what the study
    held at that look, since seeds are added in order). A claim's look ``j`` happened when every
    point it compares had ``rule.seeds_at(j)`` seeds; the looks after its decision are ignored
    (seeds added for other claims sharing its points do not reopen it). The claims, their order
    and ``extra`` are those of the last look that has data.
    """
    decided: dict[str, Verdict] = {}
    last: dict[str, Verdict] = {}
    order: list[Verdict] = []
    for look in range(1, rule.looks + 1):
        n = rule.seeds_at(look)
        current = verdicts_with(n)
        if look == 1 or any(v.seeds >= n for v in current):
            order = current
        for v in current:
            if v.claim in decided or v.seeds < n:
                continue  # decided earlier, or this look did not happen for it
            last[v.claim] = _judged(rule, v, look)
            if rule.decides(v.difference - v.margin, v.se, v.df):
                decided[v.claim] = last[v.claim]
    out = []
    for v in order:
        final = decided.get(v.claim) or last.get(v.claim)
        if final is None:  # never had the first look's seeds: say so under the rule
            final = replace(v, extra={**v.extra, "sequential": {"look": 0, "looks": rule.looks, "decided": False}})
        final.extra.update({k: val for k, val in v.extra.items() if k == "paper"})
        out.append(final)
    return out


def _judged(rule: SequentialRule, v: Verdict, look: int) -> Verdict:
    """``v`` (computed from ``rule.seeds_at(look)`` seeds per point) judged by the rule at that look."""
    gap = v.difference - v.margin
    ok = math.isfinite(v.se) and math.isfinite(v.df) and v.se > 0
    t = gap / v.se if ok else math.nan
    threshold = rule.threshold(v.df) if ok and v.df > 0 else math.nan
    info = {"look": look, "looks": rule.looks, "seeds": v.seeds, "t": t, "threshold": threshold,
            "df": v.df, "decided": False}
    extra = {k: val for k, val in v.extra.items() if k != "seeds_to_decide"}
    where = f"look {look} of {rule.looks} (n={v.seeds} seeds)"
    if not ok:
        return replace(v, verdict=INCONCLUSIVE, extra={**extra, "sequential": info},
                       detail=f"{v.detail} [at {where}: no spread to test]")
    if rule.decides(gap, v.se, v.df):
        info["decided"] = True
        verdict = REPRODUCED if gap > 0 else NOT_REPRODUCED
        what = "reversed: " if verdict == NOT_REPRODUCED and v.difference < 0 else ""
        return replace(v, verdict=verdict, extra={**extra, "sequential": info},
                       detail=f"{what}{_text(v)}; t = {t:+.2f} beyond ±{threshold:.2f} "
                              f"(df {v.df:.1f}), decided at {where}")
    need = seeds_to_decide(rule, gap, v.se, v.df, v.seeds)
    plan = (f"; about {need} seeds per point would decide a difference of this size" if need is not None
            else f"; zero within noise: even {MAX_SEEDS} seeds per point would not decide it")
    return replace(v, verdict=INCONCLUSIVE, extra={**extra, "sequential": info, "seeds_to_decide": need},
                   detail=f"{_text(v)}; t = {t:+.2f} within ±{threshold:.2f} (df {v.df:.1f}) at {where}{plan}")
