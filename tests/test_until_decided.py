"""``run --until-decided`` through the CLI on synthetic data: rounds of added seeds under a budget,
a SIGKILL in the middle of an added round and the resume, the rule kept with the study, the report."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import optuna
import pytest

from tests.test_engine import TINY, cli, popen

STUDY = """\
zip:
  augment.color.strength: [0.125, 1.0]
  augment.ops: [[crop, color], [crop, color]]
repeats: 2
report: {kind: color_strength}
"""
# alpha 1e-9 decides nothing on 64 test images: the rounds go on to the last look, deterministically
UNTIL = ("--until-decided", "--alpha", "1e-9", "--max-seeds-per-point", "4", "--no-floor", "--no-progress",
         "--grace-period", "2")


def study_file(folder: Path, epochs: int = 6, body: str = STUDY) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(TINY.format(epochs=epochs).split("grid:")[0] + body)
    return path


def trials(folder: Path) -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{folder / 'optuna.db'}"
    return optuna.load_study(study_name="tiny", storage=storage).get_trials(deepcopy=False)


def running_added_trial(folder: Path, proc, timeout: float = 300) -> None:
    """Wait until an added trial runs (the process still alive), else fail saying what was seen."""
    deadline, seen = time.monotonic() + timeout, "nothing"
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            states = [(t.state.name, "added_round" in t.user_attrs) for t in trials(folder)]
            if ("RUNNING", True) in states:
                return
            seen = f"trial states {states}"
        except Exception as exc:  # the storage is being written
            seen = f"{type(exc).__name__}: {exc}"
        time.sleep(0.05)
    raise AssertionError(f"no added trial seen running (process exit {proc.poll()}; last seen: {seen})")


@pytest.mark.slow
def test_rounds_under_a_budget_survive_a_kill_in_an_added_round_and_keep_their_rule(tmp_path):
    from mlflow import MlflowClient

    study = study_file(tmp_path)
    first = cli(tmp_path, "run", str(study), *UNTIL, "--max-trials", "5")
    assert first.returncode == 0, first.stderr
    assert "stopped: --max-trials 5 spent" in first.stdout
    assert "round 1: 2 trials added at 2 points for 1 undecided claim" in first.stderr
    assert sum(t.state.name == "COMPLETE" for t in trials(tmp_path)) == 5
    # the budget counts the study's trials in all: the same command resumed runs nothing more
    spent = cli(tmp_path, "run", str(study), *UNTIL, "--max-trials", "5")
    assert spent.returncode == 0 and "stopped: --max-trials 5 spent" in spent.stdout
    assert sum(t.state.name == "COMPLETE" for t in trials(tmp_path)) == 5
    # the rest, killed (SIGKILL: no clean-up) while an added trial runs, then resumed
    proc = popen(tmp_path, "run", str(study), *UNTIL, log=tmp_path / "killed.log")
    try:
        running_added_trial(tmp_path, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    time.sleep(3)  # the dead trial's heartbeat goes stale (--grace-period 2)
    resumed = cli(tmp_path, "run", str(study), *UNTIL)
    assert resumed.returncode == 0, resumed.stderr
    assert "every claim decided" not in resumed.stdout
    assert "undecided at the rule's last look (4 seeds per point)" in resumed.stdout
    # exactly once: every point has seeds 0-3, one finished MLflow run each
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], "tags.`ablations.role` = 'trial'")
    done = sorted((json.loads(r.data.tags["axis.augment.color.strength"]), int(r.data.tags["seed"]))
                  for r in runs if r.info.status == "FINISHED")
    assert done == [(s, seed) for s in (0.125, 1.0) for seed in range(4)]
    killed = [t for t in trials(tmp_path) if t.state.name == "FAIL" and "added_round" in t.user_attrs]
    assert len(killed) == 1  # the killed attempt, failed when its heartbeat went stale, and retried
    assert all(r.info.status != "RUNNING" for r in runs)
    # the rule stays with the study: in the report, in `plan`, and a different one is refused
    folder = tmp_path / "reports_out" / "tiny"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["sequential"] == {"alpha": 1e-9, "looks": 3, "first_seeds": 2}
    (verdict,) = summary["verdicts"]
    assert verdict["verdict"] == "inconclusive" and verdict["seeds"] == 4
    assert verdict["extra"]["sequential"]["look"] == 3 and "at look 3 of 3 (n=4 seeds)" in verdict["detail"]
    assert "judged by the sequential rule of --until-decided" in summary["findings"]
    plan = cli(tmp_path, "plan", str(study))
    assert "claims judged by the study's sequential rule" in plan.stdout
    assert "8 trials (4 of the study, 4 added by --until-decided), 8 done, 0 to run" in plan.stdout
    assert re.search(r"strength=1.0, augment.ops=\[crop, color\], seed=3 \(added\) +complete", plan.stdout)
    other = cli(tmp_path, "run", str(study), *UNTIL[:-2], "--max-seeds-per-point", "6")
    assert other.returncode == 2 and "--max-seeds-per-point 4 --alpha 1e-09" in other.stderr
    again = cli(tmp_path, "run", str(study), *UNTIL)
    assert again.returncode == 0 and "0 rounds of added seeds" in again.stdout
    assert "all 8 trials already finished" in again.stdout
    # a rebuild from the folder judges by the same rule
    report = (folder / "report.md").read_text()
    assert cli(tmp_path, "report", "--from", str(folder), "--out", str(tmp_path / "re")).returncode == 0
    assert (tmp_path / "re" / "report.md").read_text() == report


@pytest.mark.slow
def test_a_worker_that_finds_the_next_round_added_by_another_runs_it_too(tmp_path, monkeypatch):
    """Two workers end a round together and both judge it; the one that finds the next round added
    by the other runs the round with it instead of stopping: here round 1 lands as its own trials
    end, round 2 between its reading the trials and adding its seeds. Seen on results/cpu's
    augment_pairs (2026-12-03): the second worker stopped with "no seed could be added" and left a
    49-trial round to the first."""
    from dataclasses import replace

    from mlflow import MlflowClient

    from ablations import until_decided
    from ablations.added_seeds import add_seeds, rounds_added, stored_rule
    from ablations.engine import PARENT_RUN, EngineOptions, work
    from ablations.plan import make_plan
    from ablations.study import load_study
    from reports.looks import study_verdicts
    from reports.trials import load_trials

    path = study_file(tmp_path, epochs=1)
    own = cli(tmp_path, "run", str(path), *UNTIL, "--max-trials", "4")  # the study's own trials, rule fixed
    assert own.returncode == 0 and "stopped: --max-trials 4 spent" in own.stdout, own.stdout + own.stderr
    storage, tracking = f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    plan = make_plan(load_study(path))
    opt = optuna.load_study(study_name="tiny", storage=storage)
    rule = stored_rule(opt)
    assert rule is not None

    def the_other_worker_adds_a_round() -> None:  # what the other worker does, having judged the same trials
        verdicts = study_verdicts(load_trials(tracking, "tiny", plan.fingerprint), "color_strength",
                                  plan.study.metric, dict(plan.study.report), plan.study.direction, rule)
        targets, _ = until_decided.undecided_targets(verdicts, rule, plan)
        assert add_seeds(opt, plan, targets, rounds_added(opt) + 1).trials == 2

    options = EngineOptions(storage=storage, tracking_uri=tracking, runs_dir=tmp_path / "runs", progress=False,
                            heartbeat_interval=1, grace_period=2)
    started, calls, reads = time.time(), [], []

    def run_once(budget: int | None) -> list:
        calls.append(budget)
        if len(calls) == 1:  # this worker's own trials end, and the other worker adds round 1
            the_other_worker_adds_a_round()
            return []
        return [work(plan, "tiny", replace(options, max_trials=budget), started)]

    def read_then_the_other_adds(*args):
        df = load_trials(*args)
        reads.append(len(df))
        if len(reads) == 1:  # after round 1, the other worker adds round 2 while this one judges
            the_other_worker_adds_a_round()
        return df

    monkeypatch.setattr(until_decided, "load_trials", read_then_the_other_adds)
    outcome = until_decided.run_until_decided(opt, plan, "tiny", tracking, MlflowClient(tracking_uri=tracking),
                                              opt.user_attrs[PARENT_RUN], rule, run_once, None)
    assert outcome.stopped == "1 of 1 claims undecided at the rule's last look (4 seeds per point)"
    assert outcome.rounds == 2 and reads == [6, 8]  # judged after each round, both rounds run here
    done = sorted((json.loads(t.user_attrs["axes"])["augment.color.strength"], t.user_attrs["seed"])
                  for t in trials(tmp_path) if t.state.name == "COMPLETE")
    assert done == [(s, seed) for s in (0.125, 1.0) for seed in range(4)]  # each seed once


@pytest.mark.parametrize("body,extra,expected", [
    (STUDY.replace("repeats: 2", "repeats: 1"), (), "needs repeats >= 2"),
    (STUDY.replace("kind: color_strength", "kind: generic"), (), "makes none"),
    ("search:\n  n_trials: 2\n  params:\n    loss.temperature: {type: float, low: 0.1, high: 1.0}\n", (), "a search"),
    (STUDY, ("--max-seeds-per-point", "1"), "fewer than the study's own 2 seeds per point"),
    (STUDY, ("--alpha", "0"), "--alpha 0.0: expected a number between 0 and 1"),
])
def test_until_decided_refuses_what_it_cannot_decide_before_writing_anything(tmp_path, body, extra, expected):
    out = cli(tmp_path, "run", str(study_file(tmp_path, body=body)), "--until-decided", *extra)
    assert out.returncode == 2 and expected in out.stderr
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlflow.db").exists()
