"""Seeds added to a grid study's points after its own: the rounds of ``run --until-decided``.

An added seed is an ordinary trial of the same study: a point's axis values at the next seed (the
point's first seed + k, continuing its repeats), enqueued WAITING like the study's own trials and
claimed, resumed and retried by the same engine. The study's definition (fingerprint, ``repeats``)
does not change, so its reports read the added trials beside the first ones. Seeds are enqueued
under the claim lock, after reading what is there; should two processes on PostgreSQL add the same
seed at once, the later trial is dropped when claimed (``engine._drop_if_duplicate``).

The sequential rule is fixed when the first round is about to be added and stored with the study
(Optuna user attribute, MLflow tag on the study run), so a resumed or repeated ``--until-decided``
keeps the looks it started with, and every report of the study judges its claims by it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from ablations.engine import ADDED_SEED, DUPLICATE_OF, _claim_lock, _point_attrs
from ablations.optuna_access import storage_of, trials_of
from ablations.plan import Plan
from ablations.study import Point, point_id
from reports.sequential import RULE_TAG, SequentialRule

RULE = "sequential_rule"
"""Study user attribute: the rule (``SequentialRule.as_dict``) fixed at the first added round; the
study run's MLflow tag ``RULE_TAG`` holds the same, for reports."""


class RuleMismatch(ValueError):
    """``--until-decided`` asked for another rule than the one the study's added seeds were judged by."""


def stored_rule(opt: optuna.Study) -> SequentialRule | None:
    data = opt.user_attrs.get(RULE)
    return SequentialRule.from_dict(data) if data else None


def fix_rule(opt: optuna.Study, rule: SequentialRule, client: Any, parent_run: str) -> SequentialRule:
    """Store ``rule`` with the study (first time), or check it is the stored one: changing the looks
    after seeing data would void the error rate the rule states."""
    stored = stored_rule(opt)
    if stored is None:
        opt.set_user_attr(RULE, rule.as_dict())
    elif stored != rule:
        raise RuleMismatch(
            f"study '{opt.study_name}' adds seeds under the rule it was first run with ({stored.describe()}); "
            f"this command asks for {rule.max_seeds} seeds per point at alpha {rule.alpha:g}. Rerun with "
            f"--max-seeds-per-point {stored.max_seeds} --alpha {stored.alpha:g}, or run the study under "
            "another --name")
    client.set_tag(parent_run, RULE_TAG, json.dumps(rule.as_dict(), sort_keys=True))
    return rule


def seeds_by_point(opt: optuna.Study) -> dict[str, set[int]]:
    """The seeds each point has as trials (any state but a dropped duplicate): what not to add again."""
    out: dict[str, set[int]] = {}
    for t in trials_of(opt):
        if DUPLICATE_OF in t.user_attrs or "axes" not in t.user_attrs:
            continue
        out.setdefault(point_id(json.loads(t.user_attrs["axes"])), set()).add(int(t.user_attrs["seed"]))
    return out


@dataclass(frozen=True)
class Added:
    """What one round enqueued: its trials and the points they went to."""

    trials: int
    points: int


def add_seeds(opt: optuna.Study, plan: Plan, targets: dict[str, int], round_number: int) -> Added:
    """Enqueue trials so that each point in ``targets`` (``point_id`` -> seeds) has that many seeds,
    continuing its own (first seed + repeat); seeds already there are not added again."""
    first = {point_id(t.point.params): t.point for t in plan.trials if t.point.repeat == 0}
    unknown = sorted(set(targets) - set(first))
    if unknown:
        raise KeyError(f"not points of the study: {', '.join(unknown)}")
    enqueued, points = 0, 0
    with _claim_lock(storage_of(opt)):
        have = seeds_by_point(opt)
        for pid, n in sorted(targets.items()):
            base = first[pid]
            new = [r for r in range(n) if base.seed + r not in have.get(pid, set())]
            for r in new:
                pt = Point(base.index, base.params, r, base.seed + r)
                opt.enqueue_trial({"point": base.index}, user_attrs={**_point_attrs(pt), ADDED_SEED: round_number})
            enqueued += len(new)
            points += bool(new)
    return Added(enqueued, points)


def rounds_added(opt: optuna.Study) -> int:
    """How many rounds have added seeds to the study so far."""
    return max((int(t.user_attrs[ADDED_SEED]) for t in trials_of(opt) if ADDED_SEED in t.user_attrs), default=0)


def attempts(opt: optuna.Study) -> int:
    """Trials of the study that ran or run now (finished, pruned, failed, running; not a dropped duplicate)."""
    ran = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
    return sum(1 for t in trials_of(opt, states=ran) if DUPLICATE_OF not in t.user_attrs)


def waiting(opt: optuna.Study) -> int:
    return len(trials_of(opt, states=(TrialState.WAITING,)))
