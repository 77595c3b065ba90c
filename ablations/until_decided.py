"""``run --until-decided``: run the study, then add seeds, one round at a time, to the points that its
undecided claims compare, until every claim is decided by the sequential rule or the budget is spent.

A round: judge every claim at its latest look (``reports.looks``); each claim not yet decided and
with looks left asks for one more seed at every point it compares; those seeds are enqueued
(``ablations.added_seeds``) and run like any trial. The loop ends when no claim asks for more, the
rule's last look is reached, a trial of the round did not finish (failed or interrupted: the next
``run`` retries it), or ``--max-trials`` is spent: with ``--until-decided`` it counts the study's
trials in all (every attempt, its own and added, across invocations), so a stated budget holds
however often the command is resumed. Rerunning the same command resumes: the rule, the seeds
already added and the trials already run are all in the storage. Workers sharing the storage share
the rounds: the first to judge adds one, and the others, finding it added, run it with it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

import optuna

from ablations import added_seeds
from ablations.plan import Plan
from ablations.study import point_id
from reports.looks import matching_points, study_verdicts
from reports.sequential import SequentialRule
from reports.trials import load_trials
from reports.verdicts import Verdict

log = logging.getLogger(__name__)

RunOnce = Callable[[int | None], list[Any]]
"""Run every waiting trial with at most this many trials (None: no limit); the workers' reports."""


@dataclass
class Outcome:
    """What the rounds did: every worker report, the rounds run (added here or by another worker), and why
    they stopped."""

    reports: list[Any] = field(default_factory=list)
    rounds: int = 0
    stopped: str = ""


def undecided_targets(verdicts: list[Verdict], rule: SequentialRule, plan: Plan) -> tuple[dict[str, int], list[str]]:
    """(point_id -> seeds wanted, the claims asking): one more seed than each undecided claim's
    latest look, at every point it compares; a claim at the rule's last look asks for nothing."""
    params = [t.point.params for t in plan.trials if t.point.repeat == 0]
    targets: dict[str, int] = {}
    asking: list[str] = []
    for v in verdicts:
        seq = v.extra.get("sequential", {})
        look = int(seq.get("look", 0))
        if seq.get("decided") or look >= rule.looks or not v.points:
            continue
        want = rule.seeds_at(look + 1) if look else rule.first_seeds
        for i in matching_points(v.points, params):
            pid = point_id(params[i])
            targets[pid] = max(targets.get(pid, 0), want)
        asking.append(v.claim)
    return targets, asking


def run_until_decided(opt: optuna.Study, plan: Plan, name: str, tracking_uri: str, client: Any, parent: str,
                      rule: SequentialRule, run_once: RunOnce, max_trials: int | None) -> Outcome:
    """The study's own trials, then rounds of added seeds (see the module docstring)."""
    study = plan.study
    kind = study.report.get("kind", "generic")
    out = Outcome()
    rule = added_seeds.fix_rule(opt, rule, client, parent)

    def budget() -> int | None:  # the study's trials in all, so a resumed command keeps the same budget
        return None if max_trials is None else max_trials - added_seeds.attempts(opt)

    round_number = added_seeds.rounds_added(opt)

    def joined() -> bool:
        """Whether another worker has added a round this one has not seen: it judged the same
        trials a moment earlier (two workers end a round together), so this one runs it with it
        instead of stopping (seen on results/cpu: the second worker left a 49-trial round to one)."""
        nonlocal round_number
        newest = added_seeds.rounds_added(opt)
        if newest <= round_number:
            return False
        log.info("round %d was added by another worker: running it too", newest)
        out.rounds += newest - round_number
        round_number = newest
        return True

    while True:
        out.reports += run_once(budget())
        if joined():
            continue
        if added_seeds.waiting(opt):
            out.stopped = (f"--max-trials {max_trials} spent" if budget() is not None and budget() <= 0
                           else "trials are left to run (a trial failed or was stopped: run the same command again)")
            return out
        if budget() is not None and budget() <= 0:
            out.stopped = f"--max-trials {max_trials} spent"
            return out
        df = load_trials(tracking_uri, name, plan.fingerprint)
        verdicts = study_verdicts(df, kind, study.metric, dict(study.report), study.direction, rule)
        if not verdicts:
            out.stopped = "the study's report makes no claims: nothing to decide"
            return out
        targets, asking = undecided_targets(verdicts, rule, plan)
        if not targets:
            left = [v.claim for v in verdicts if not v.extra.get("sequential", {}).get("decided")]
            out.stopped = ("every claim decided" if not left else
                           f"{len(left)} of {len(verdicts)} claims undecided at the rule's last look "
                           f"({rule.max_seeds} seeds per point)")
            return out
        added = added_seeds.add_seeds(opt, plan, targets, round_number + 1)
        if added.trials == 0 and joined():
            continue
        if added.trials == 0:
            out.stopped = "no seed could be added (the points asked for already have them; a trial may have failed)"
            return out
        round_number += 1
        out.rounds += 1
        log.info("round %d: %d trials added at %d points for %d undecided %s: %s", round_number, added.trials,
                 added.points, len(asking), "claim" if len(asking) == 1 else "claims", "; ".join(asking))
