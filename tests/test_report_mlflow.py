"""Reports read only the current definition's trials from a real MLflow store, and their learning curves.

Two definitions of one study live in one experiment (a study deleted and run again after its file
changed): only the trials under a study run of the chosen fingerprint are read, and the report is
logged to (and its study file read from) the latest study run of that fingerprint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from reports.render import print_report, render_report
from reports.trials import load_curves, load_trials, study_runs

NAME = "fp-study"
OLD_TEXT = "name: fp-study\ndescription: the old definition\nreport: {kind: generic}\n"
NEW_TEXT = "name: fp-study\ndescription: the new definition\nreport: {kind: generic}\n"


@pytest.fixture
def store(tmp_path) -> dict:
    """old (t=1000): temperatures 0.1, 0.5; new (t=2000, and a first attempt at t=1500): 0.2, 0.7."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment(NAME)
    made: dict = {"uri": uri, "client": client, "children": {}}

    def parent(fingerprint: str, start: int, text: str) -> str:
        run = client.create_run(exp, start_time=start, run_name=NAME,
                                tags={"ablations.role": "study", "fingerprint": fingerprint, "study": NAME})
        client.log_text(run.info.run_id, text, "fp-study.yaml")
        return run.info.run_id

    def child(parent_id: str, trial: int, temperature: float, seed: int, value: float, start: int) -> str:
        run = client.create_run(exp, start_time=start, run_name=f"{trial}", tags={
            "ablations.role": "trial", "mlflow.parentRunId": parent_id, "trial": str(trial),
            "point": f"{parent_id[:6]}-{trial}", "seed": str(seed), "axis.loss.temperature": json.dumps(temperature)})
        rid = run.info.run_id
        for epoch in (1, 2, 3):
            client.log_metric(rid, "loss", 6.0 - epoch / 10 - value / 1000, step=epoch)
            client.log_metric(rid, "knn_top1", value / 2 + epoch, step=epoch)
        client.log_metric(rid, "loss", 6.0 - 0.3 - value / 1000, step=3)  # the final metrics, at the last epoch
        client.log_metric(rid, "linear_top1", value, step=3)
        client.set_terminated(rid, "FINISHED")
        made["children"].setdefault(parent_id, []).append(rid)
        return rid

    made["old"] = parent("old", 1000, OLD_TEXT)
    made["new_first"] = parent("new", 1500, NEW_TEXT)
    made["new"] = parent("new", 2000, NEW_TEXT)
    for i, (temperature, seed) in enumerate([(0.1, 0), (0.1, 1), (0.5, 0), (0.5, 1)]):
        child(made["old"], i, temperature, seed, 10.0 + i, 1100 + i)
    child(made["new_first"], 0, 0.2, 0, 40.0, 1600)
    for i, (temperature, seed) in enumerate([(0.2, 1), (0.7, 0), (0.7, 1)], start=1):
        child(made["new"], i, temperature, seed, 50.0 + i, 2100 + i)
    return made


def test_only_the_chosen_definitions_trials_are_read(store):
    uri, children = store["uri"], store["children"]
    new = load_trials(uri, NAME)  # the latest study run's fingerprint: "new", under both of its study runs
    assert set(new["run_id"]) == set(children[store["new"]]) | set(children[store["new_first"]])
    assert sorted(new["loss.temperature"].unique()) == [0.2, 0.7] and len(new) == 4
    old = load_trials(uri, NAME, fingerprint="old")
    assert set(old["run_id"]) == set(children[store["old"]])
    assert sorted(old["loss.temperature"].unique()) == [0.1, 0.5]
    assert load_trials(uri, NAME, fingerprint="never-run").empty
    exp = store["client"].get_experiment_by_name(NAME).experiment_id
    fingerprint, runs = study_runs(store["client"], exp)
    assert fingerprint == "new" and [r.info.run_id for r in runs] == [store["new"], store["new_first"]]


def test_a_store_without_study_runs_has_every_trial_read(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("bare")
    for i in range(2):
        run = client.create_run(exp, tags={"ablations.role": "trial", "trial": str(i), "point": f"p{i}"})
        client.set_terminated(run.info.run_id, "FINISHED")
    assert len(load_trials(uri, "bare")) == 2


def test_load_curves_reads_each_epoch_once_with_the_final_value_last(store):
    trials = load_trials(store["uri"], NAME, fingerprint="old")
    curves = load_curves(store["uri"], trials)
    assert list(curves.columns) == ["loss.temperature", "point", "seed", "epoch", "metric", "value"]
    assert len(curves) == 4 * 2 * 3  # 4 trials, 2 metrics, 3 epochs: the final re-log of epoch 3 is not a 4th
    first = curves[(curves["point"] == trials["point"].iloc[0]) & (curves["metric"] == "loss")]
    assert first["epoch"].tolist() == [1, 2, 3]


@pytest.mark.parametrize("which", ["old", "new"])
def test_the_report_reads_and_logs_to_the_latest_study_run_of_its_definition(store, tmp_path, which):
    uri, client = store["uri"], store["client"]
    out = render_report(uri, NAME, None, tmp_path / which, "cmd", fingerprint=which if which == "old" else None)
    assert out.logged_to == store[which] and not out.warnings
    summary = json.loads((tmp_path / which / "summary.json").read_text())
    assert summary["description"] == f"the {which} definition"  # the study file of that study run
    trials = (tmp_path / which / "tables" / "trials.csv").read_text()
    wanted = {store["old"]} if which == "old" else {store["new"], store["new_first"]}
    for parent, runs in store["children"].items():
        for rid in runs:
            assert (rid in trials) == (parent in wanted)
    curves = (tmp_path / which / "tables" / "curves.csv").read_text().splitlines()
    assert curves[0] == "loss.temperature,point,seed,epoch,metric,value" and len(curves) == 1 + 4 * 2 * 3
    assert "learning_curves" in summary["figures"]
    logged = {a.path for a in client.list_artifacts(store[which], "report/tables")}
    assert "report/tables/curves.csv" in logged
    for other in {"old", "new", "new_first"} - {which}:
        assert not client.list_artifacts(store[other], "report"), other


def test_print_report_passes_the_fingerprint_through(store, tmp_path, capsys):
    print_report(store["uri"], NAME, None, tmp_path, fingerprint="old")
    out = capsys.readouterr().out
    assert f"report: {(tmp_path / NAME / 'report.html').resolve()}" in out
    assert "Findings: Best of 2 points: loss.temperature=0.5" in out  # the old definition's best
    assert json.loads(Path(tmp_path / NAME / "summary.json").read_text())["description"] == "the old definition"
