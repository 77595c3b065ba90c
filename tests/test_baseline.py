"""The floor: an untrained encoder's evaluation, with BatchNorm statistics of the training images."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from core.baseline import set_batchnorm_statistics, untrained_accuracies
from core.trainer import Trainer
from tests.test_trainer import tiny_config


def test_batchnorm_statistics_are_the_mean_and_variance_over_all_images():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.BatchNorm2d(4))
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    assert set_batchnorm_statistics(net, images, batch_size=4, device=torch.device("cpu")) == 2
    conv_out = net[0](images.float() / 255)
    bn = net[1]
    # the cumulative average of per-batch statistics over batches of 4, 4, 2 (each batch's variance unbiased)
    batches = [conv_out[0:4], conv_out[4:8], conv_out[8:10]]
    means = torch.stack([b.mean(dim=(0, 2, 3)) for b in batches])
    variances = torch.stack([b.var(dim=(0, 2, 3), unbiased=True) for b in batches])
    assert torch.allclose(bn.running_mean, means.mean(0), atol=1e-6)
    assert torch.allclose(bn.running_var, variances.mean(0), atol=1e-6)
    assert bn.momentum == 0.1 and bn.training  # restored
    assert int(bn.num_batches_tracked) == 3


def test_the_floor_learns_nothing_and_is_evaluated_like_the_run(monkeypatch):
    def no_learning(*args, **kwargs):
        raise AssertionError("the floor took an optimisation step")

    monkeypatch.setattr(Trainer, "step", no_learning)
    monkeypatch.setattr(Trainer, "fit", no_learning)
    config = tiny_config(**{"eval.linear_epochs": 5})
    found = {a.name: a for a in untrained_accuracies(config)}
    assert {"knn_top1", "linear_top1"} <= set(found)
    assert all(0 <= a.value <= 100 for a in found.values())
    again = {a.name: a.value for a in untrained_accuracies(config)}
    assert again == {a.name: a.value for a in found.values()}  # seeded: the same floor twice
    other_seed = {a.name: a.value for a in untrained_accuracies(tiny_config(**{"train.seed": 7}))}
    assert other_seed != again


# ------------------------------------------------------------------ through the CLI: run, plan, report, floor --into
STUDY = """\
zip:
  augment.color.strength: [0.125, 1.0, 1.0]
  augment.ops: [[crop, color], [crop, color], [crop, color, blur]]
repeats: 2
report: {kind: color_strength}
"""


@pytest.mark.slow
def test_a_study_s_floor_claims_and_seed_counts_through_run_plan_report_and_floor(tmp_path):
    """One tiny colour-strength study (3 points x 2 seeds) serves the floor's and the seed counts' checks."""
    import shutil

    from mlflow import MlflowClient

    from reports.verdicts import INCONCLUSIVE
    from tests.test_engine import TINY, cli

    study = tmp_path / "tiny.yaml"
    study.write_text(TINY.format(epochs=1).split("grid:")[0] + STUDY)
    before = cli(tmp_path, "plan", str(study))
    assert before.returncode == 0 and "claim:" not in before.stdout and not (tmp_path / "mlflow.db").exists()
    done = cli(tmp_path, "run", str(study), "--no-progress")
    assert done.returncode == 0, done.stderr
    # the floor: one finished baseline run per seed, in the report's summary, Findings and notes
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    floors = client.search_runs([exp.experiment_id], "tags.`ablations.role` = 'baseline'")
    assert sorted(r.data.tags["seed"] for r in floors) == ["0", "1"]
    assert all(r.info.status == "FINISHED" and "linear_top1" in r.data.metrics for r in floors)
    values = [r.data.metrics["linear_top1"] for r in floors]
    folder = tmp_path / "reports_out" / "tiny"
    summary = json.loads((folder / "summary.json").read_text())
    assert sorted(m["linear_top1"] for m in summary["floor"]["by_seed"].values()) == sorted(values)
    mean = sum(values) / 2
    assert f"An untrained encoder (the floor) reaches {mean:.2f} ±" in summary["findings"]
    assert any(n.startswith(f"Floor: an untrained encoder reaches linear_top1 {mean:.2f}") for n in summary["notes"])
    # plan: each claim's verdict so far, and the seeds per point that would decide an undecided one
    lines = [line for line in cli(tmp_path, "plan", str(study)).stdout.splitlines() if line.startswith("claim: ")]
    assert len(lines) == len(summary["verdicts"]) == 2
    for line, v in zip(lines, summary["verdicts"]):
        assert line.startswith(f"claim: {v['claim']}: {v['verdict']} (n=2)")
        need = v["extra"].get("seeds_to_decide")
        if v["verdict"] == INCONCLUSIVE:
            assert line.endswith(f"about {need} seeds per point would decide it" if need else "zero within noise")
    # a second run reuses the floor; a rebuild from the folder keeps it
    again = cli(tmp_path, "run", str(study), "--no-progress")
    assert again.returncode == 0 and "floor (untrained encoder)" not in again.stderr
    assert len(client.search_runs([exp.experiment_id], "tags.`ablations.role` = 'baseline'")) == 2
    report = (folder / "report.md").read_text()
    assert cli(tmp_path, "report", "--from", str(folder), "--out", str(tmp_path / "re")).returncode == 0
    assert (tmp_path / "re" / "report.md").read_text() == report
    # a report made without a floor gets it from `floor --into` (found in MLflow, not computed again)
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    stripped = json.loads((old / "summary.json").read_text())
    del stripped["floor"]
    (old / "summary.json").write_text(json.dumps(stripped))
    assert cli(tmp_path, "report", "--from", str(old)).returncode == 0
    assert "untrained" not in (old / "report.md").read_text()
    out = cli(tmp_path, "floor", str(study), "--into", str(old))
    assert out.returncode == 0, out.stderr
    assert "floor of tiny, seed 0: " in out.stdout and "floor (untrained encoder)" not in out.stderr
    assert (old / "report.md").read_text() == report
    bad = cli(tmp_path, "floor", str(study), "--into", str(tmp_path / "nowhere"))
    assert bad.returncode == 2 and "not a report folder" in bad.stderr


def test_the_floor_is_drawn_on_our_metric_axes_only_and_always_in_view():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reports.floor import draw_floor, mark

    floor = {"by_seed": {"0": {"linear_top1": 26.0, "knn_top1": 24.0}, "1": {"linear_top1": 28.0}}}
    fig, (ours, paper, curve) = plt.subplots(1, 3)
    ours.plot([0, 1], [40, 41])
    ours.set_ylim(39, 42)
    mark(ours, "linear_top1")
    paper.plot([0, 1], [60, 64])  # the paper's numbers: no floor of ours belongs there
    curve.set_ylabel("knn_top1")
    assert draw_floor(fig, floor) == 2
    (line,) = [ln for ln in ours.lines if ln.get_label() == "untrained encoder (floor)"]
    assert line.get_ydata()[0] == 27.0 and ours.get_ylim()[0] < 27.0 < ours.get_ylim()[1]
    assert [ln.get_ydata()[0] for ln in curve.lines] == [24.0]
    assert not [ln for ln in paper.lines if ln.get_label() == "untrained encoder (floor)"]
    plt.close(fig)
