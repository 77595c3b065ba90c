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


# ------------------------------------------------------------------ through the CLI: run, report, floor --into
def _repeated_study(folder):
    from tests.test_engine import TINY

    text = TINY.format(epochs=1).split("grid:")[0] + "grid:\n  loss.temperature: [0.5]\nrepeats: 2\n"
    path = folder / "tiny.yaml"
    path.write_text(text)
    return path


@pytest.mark.slow
def test_run_logs_the_floor_once_and_every_report_states_it(tmp_path):
    from mlflow import MlflowClient

    from tests.test_engine import cli

    study = _repeated_study(tmp_path)
    done = cli(tmp_path, "run", str(study), "--no-progress")
    assert done.returncode == 0, done.stderr
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    floors = client.search_runs([exp.experiment_id], "tags.`ablations.role` = 'baseline'")
    assert sorted(r.data.tags["seed"] for r in floors) == ["0", "1"]
    assert all(r.info.status == "FINISHED" and "linear_top1" in r.data.metrics for r in floors)
    values = [r.data.metrics["linear_top1"] for r in floors]
    mean = sum(values) / 2
    summary = json.loads((tmp_path / "reports_out" / "tiny" / "summary.json").read_text())
    assert sorted(m["linear_top1"] for m in summary["floor"]["by_seed"].values()) == sorted(values)
    assert f"An untrained encoder (the floor) reaches {mean:.2f} ±" in summary["findings"]
    assert any(n.startswith(f"Floor: an untrained encoder reaches linear_top1 {mean:.2f}") for n in summary["notes"])
    # a second run reuses it (nothing new), and a rebuild from the folder keeps it
    again = cli(tmp_path, "run", str(study), "--no-progress")
    assert again.returncode == 0 and "floor (untrained encoder)" not in again.stderr
    assert len(client.search_runs([exp.experiment_id], "tags.`ablations.role` = 'baseline'")) == 2
    before = (tmp_path / "reports_out" / "tiny" / "report.md").read_text()
    rebuilt = cli(tmp_path, "report", "--from", str(tmp_path / "reports_out" / "tiny"), "--out", str(tmp_path / "re"))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (tmp_path / "re" / "report.md").read_text() == before


@pytest.mark.slow
def test_floor_into_adds_it_to_a_report_made_without_one(tmp_path):
    from tests.test_engine import cli

    study = _repeated_study(tmp_path)
    assert cli(tmp_path, "run", str(study), "--no-progress", "--no-floor").returncode == 0
    folder = tmp_path / "reports_out" / "tiny"
    assert "floor" not in json.loads((folder / "summary.json").read_text())
    assert "untrained" not in (folder / "report.md").read_text()
    out = cli(tmp_path, "floor", str(study), "--into", str(folder))
    assert out.returncode == 0, out.stderr
    assert "floor of tiny, seed 0: " in out.stdout and "floor of tiny, seed 1: " in out.stdout
    assert "Floor: an untrained encoder reaches linear_top1" in (folder / "report.md").read_text()
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
