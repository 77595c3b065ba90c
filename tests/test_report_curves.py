"""Learning curves: the per-epoch loss and kNN top-1 of every trial, kept in tables/curves.csv and
drawn one line per point (mean over seeds, band over seeds); a folder without curves.csv says so."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from ablations.cli import main
from reports import curves as lc
from reports.render import StudyInfo, rebuild_report, write_report
from reports.trials import aggregate, axis_columns, read_trials_csv
from tests.test_reports import frame

EPOCHS = 6


def curves_of(df: pd.DataFrame, epochs: int = EPOCHS, knn_every: int = 2) -> pd.DataFrame:
    """A per-epoch history for each trial of ``df`` as load_curves returns it
    (axes, point, seed, epoch, metric, value)."""
    axes = axis_columns(df)
    rows = []
    for i, (_, trial) in enumerate(df.iterrows()):
        for epoch in range(1, epochs + 1):
            base = {**{a: trial[a] for a in axes}, "point": trial["point"], "seed": int(trial["seed"]), "epoch": epoch}
            rows.append({**base, "metric": "loss", "value": 6.0 - 0.1 * epoch - 0.01 * i})
            if epoch % knn_every == 0:
                rows.append({**base, "metric": "knn_top1", "value": 20.0 + epoch + 0.25 * i})
    return pd.DataFrame(rows, columns=[*axes, "point", "seed", "epoch", "metric", "value"])


def temperature_trials() -> pd.DataFrame:
    df = frame({"loss.normalize": [True, False], "loss.temperature": [0.1, 0.5]}, lambda p: 50.0)
    return df.assign(point=[f"{i:04d}e{i:05d}" for i in range(len(df))])  # a point key that reads as a float


def test_curves_are_written_drawn_and_redrawn_from_the_folder_alone(tmp_path, monkeypatch):
    df = temperature_trials()
    curves = curves_of(df)
    info = StudyInfo(kind="temperature", report_cfg={"kind": "temperature"},
                     text="name: t\nreport: {kind: temperature}\n", file_name="t.yaml")
    first = write_report(df, "t", info, tmp_path / "src", "cmd", curves=curves)
    assert not first.warnings
    written = read_trials_csv(tmp_path / "src" / "tables" / "curves.csv")
    pd.testing.assert_frame_equal(written, curves)  # types too: the point key stays text
    summary = json.loads((tmp_path / "src" / "summary.json").read_text())
    assert summary["figures"] == ["temperature", "learning_curves"]
    md = (tmp_path / "src" / "report.md").read_text()
    assert "![Learning curves: per-epoch pretraining loss and kNN top-1" in md and lc.NO_HISTORY not in md
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--from", str(tmp_path / "src"), "--out", str(tmp_path / "out")]) == 0
    for name in ("tables/curves.csv", "figures/learning_curves.png", "figures/learning_curves.svg", "report.md"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "src" / name).read_bytes(), name
    assert not (tmp_path / "mlflow.db").exists()


def test_a_folder_written_before_curves_were_kept_says_it_has_no_history(tmp_path):
    df = temperature_trials()
    write_report(df, "t", StudyInfo(kind="temperature", text="name: t\n"), tmp_path, "cmd")  # curves=None
    assert not (tmp_path / "tables" / "curves.csv").exists()
    assert not (tmp_path / "figures" / "learning_curves.png").exists()
    for page in ("report.md", "report.html"):
        assert (tmp_path / page).read_text().count(lc.NO_HISTORY) == 1, page
    again = rebuild_report(tmp_path, tmp_path / "again")
    assert "learning_curves" not in json.loads((tmp_path / "again" / "summary.json").read_text())["figures"]
    assert lc.NO_HISTORY in (tmp_path / "again" / "report.md").read_text() and not again.warnings


def test_one_line_per_point_is_the_mean_over_seeds_with_a_band_over_seeds():
    df = frame({"loss.temperature": [0.1, 0.5]}, lambda p: 50.0, seeds=(0, 1, 2))
    curves = curves_of(df)
    fig = lc.draw_curves(curves, aggregate(df, "linear_top1"), "linear_top1")
    loss_ax, knn_ax = fig.axes[:2]
    assert loss_ax.get_title().startswith("pretraining loss") and knn_ax.get_title().startswith("kNN top-1")
    assert len(loss_ax.lines) == 2 and len(knn_ax.lines) == 2  # one per point, not one per trial
    want = curves[(curves["metric"] == "loss") & (curves["loss.temperature"] == 0.1)].groupby("epoch")["value"]
    np.testing.assert_allclose(loss_ax.lines[0].get_ydata(), want.mean().to_numpy())
    assert list(loss_ax.lines[0].get_xdata()) == list(range(1, EPOCHS + 1))
    assert len(loss_ax.collections) == 2  # a band per point: 3 seeds each
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["0.1", "0.5"] and legend.get_title().get_text() == (
        "loss.temperature")
    plt.close(fig)


def test_many_points_are_coloured_by_the_first_axis_without_a_legend_per_point():
    ops = [f"op{i}+op{j}" for i in range(7) for j in range(7)]
    df = frame({"augment.ops": ops}, lambda p: 30.0 + ops.index(p["augment.ops"]), seeds=(0, 1))
    fig = lc.draw_curves(curves_of(df), aggregate(df, "linear_top1"), "linear_top1")
    assert len(fig.axes[0].lines) == 49
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == ["best (linear_top1): op6+op6"]  # one entry, not 49
    assert fig.legends[0].get_title().get_text() == "49 points, coloured by augment.ops"
    assert len(fig.axes[0].collections) == 1  # only the best point has its band drawn
    plt.close(fig)


def test_many_numeric_points_get_a_colour_bar_on_the_searched_scale():
    temps = list(np.geomspace(0.02, 2.0, 15))
    df = frame({"loss.temperature": temps}, lambda p: 40.0 + p["loss.temperature"], seeds=(0,))
    fig = lc.draw_curves(curves_of(df), aggregate(df, "linear_top1"), "linear_top1",
                         searched={"loss.temperature"}, log_axes={"loss.temperature"})
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "loss.temperature"]
    assert len(bars) == 1 and bars[0].get_yscale() == "log"
    plt.close(fig)


@pytest.mark.parametrize("points", [1, 12])
def test_few_points_each_get_a_legend_entry(points):
    df = frame({"loss.temperature": [0.1 * (i + 1) for i in range(points)]}, lambda p: 40.0, seeds=(0,))
    fig = lc.draw_curves(curves_of(df), aggregate(df, "linear_top1"), "linear_top1")
    assert len(fig.legends[0].get_texts()) == points and len(fig.axes[0].collections) == 0  # one seed: no band
    plt.close(fig)


def test_a_curves_csv_without_its_columns_is_refused_naming_the_file(tmp_path):
    write_report(temperature_trials(), "t", StudyInfo(kind="temperature", text="name: t\n"), tmp_path, "cmd",
                 curves=curves_of(temperature_trials()))
    (tmp_path / "tables" / "curves.csv").write_text("a,b\n1,2\n")
    from reports.render import ReportFolderError

    with pytest.raises(ReportFolderError, match="curves.csv: no column point, seed, epoch, metric, value"):
        rebuild_report(tmp_path)
