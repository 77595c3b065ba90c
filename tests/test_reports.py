"""Reports: the paper's layouts, our numbers beside the paper's, verdicts, figures and report.html.

The slow tests run a real tiny study through the CLI (as tests/test_engine.py does), then check the
report's tables against what MLflow holds and open report.html in headless Chromium.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from ablations.cli import main
from core.numerics import device_name, resolve_numerics
from reports import reference
from reports.curves import CAPTION, CURVES_CSV, NO_HISTORY
from reports.layouts import build
from reports.render import StudyInfo, write_report
from reports.trials import read_trials_csv
from reports.verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    check_greater,
    estimate,
    mean_of,
    spearman,
)
from tests.cli_process import cli

REPO = Path(__file__).resolve().parents[1]
KINDS = ("augment_pairs", "color_strength", "projection_head", "batch_size_epochs", "temperature", "loss_functions")

TINY_TEMPERATURE = """\
name: tinytemp
description: Table 5 in miniature, on synthetic stripes, for tests.
base:
  data: {source: synthetic, synthetic: {num_classes: 4, train_size: 128, test_size: 64, image_size: 16}}
  model: {encoder: resnet_small, width: 4, head_dim: 16}
  optim: {name: adam, lr: 0.001, lr_scaling: none, warmup_epochs: 0}
  train: {epochs: 1, batch_size: 32, progress: false, log_every: 1}
  eval: {knn_k: 10, linear_epochs: 3, linear_batch_size: 32, batch_size: 128}
grid:
  loss.normalize: [true, false]
  loss.temperature: [0.1, 0.5]
repeats: 2
report: {kind: temperature}
"""


# ---------------------------------------------------------------------- paper reference
@pytest.mark.parametrize("kind", KINDS)
def test_every_paper_value_has_a_source_and_a_confidence(kind):
    recs = reference.records(kind)
    assert recs, kind
    for rec in recs:
        assert isinstance(rec["value"], float) and 0 <= rec["value"] <= 100
        assert rec["source"] and re.search(r"(Table|Figure|Section) \w", rec["source"]), rec
        assert rec["confidence"] in reference.CONFIDENCES, rec


def test_paper_reference_matches_the_papers_headline_numbers():
    ref = reference.load_reference()
    assert ref["augment_pairs"]["cells"]["crop"]["color"] == 56.3
    assert {c["label"]: c["value"] for c in ref["color_strength"]["cells"]}["1 (+Blur)"] == 64.5
    assert ref["projection_head"]["confidence"] == reference.FROM_FIGURE
    assert ref["batch_size_epochs"]["cells"][4096][100] == 64.6
    assert [c["top1"] for c in ref["temperature"]["cells"]] == [59.7, 64.4, 60.7, 58.0, 57.2, 57.0]
    assert {c["label"]: c["value"] for c in ref["loss_functions"]["cells"]}["NT-Xent"] == 63.9


# ---------------------------------------------------------------------- verdict logic
def test_verdict_clear_reproduction():
    a, b = estimate("A", 70.0, 0.5, 3), estimate("B", 60.0, 0.5, 3)
    v = check_greater("A beats B", a, b)
    assert v.verdict == REPRODUCED and v.difference == pytest.approx(10.0)
    assert v.se == pytest.approx(math.sqrt(2 * (0.5 / math.sqrt(3)) ** 2))


def test_verdict_clear_reversal_is_not_reproduced():
    v = check_greater("A beats B", estimate("A", 55.0, 0.5, 3), estimate("B", 60.0, 0.5, 3))
    assert v.verdict == NOT_REPRODUCED and v.detail.startswith("reversed")


def test_verdict_overlap_is_inconclusive():
    # a 1-point difference with std 2 over 3 seeds: 2 standard errors are 3.3 points
    v = check_greater("A beats B", estimate("A", 61.0, 2.0, 3), estimate("B", 60.0, 2.0, 3))
    assert v.verdict == INCONCLUSIVE and "within" in v.detail


def test_verdict_margin_claims():
    a, b = estimate("nonlinear", 64.0, 0.2, 4), estimate("linear", 62.0, 0.2, 4)
    assert check_greater("by more than 3", a, b, margin=3.0).verdict == NOT_REPRODUCED  # clearly 2, not > 3
    assert check_greater("by more than 1", a, b, margin=1.0).verdict == REPRODUCED
    assert "reversed" not in check_greater("by more than 3", a, b, margin=3.0).detail


def test_verdict_with_one_seed_says_the_spread_is_unknown():
    v = check_greater("A beats B", estimate("A", 70.0, math.nan, 1), estimate("B", 60.0, math.nan, 1))
    assert v.verdict == INCONCLUSIVE and "1 seed" in v.detail and "the paper's way" in v.detail


def test_verdict_with_a_failed_side_is_inconclusive_not_zero():
    v = check_greater("A beats B", estimate("A", 70.0, 0.1, 3), estimate("B", math.nan, math.nan, 0, failed=2))
    assert v.verdict == INCONCLUSIVE and "2 failed" in v.detail


def test_mean_of_propagates_standard_errors():
    m = mean_of("m", [estimate("a", 1.0, 1.0, 4), estimate("b", 3.0, 1.0, 4)])
    assert m.mean == 2.0 and m.se == pytest.approx(math.sqrt(2 * 0.25) / 2) and m.n == 4


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)
    assert math.isnan(spearman([1, 2], [1, 2]))


# ---------------------------------------------------------------------- layouts on constructed trials
def frame(axes: dict, value, seeds=(0, 1, 2), noise=0.2, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for combo in itertools.product(*axes.values()):
        for s in seeds:
            point = dict(zip(axes, combo))
            rows.append({**point, "seed": s, "status": "finished", "failure_reason": "", "trial": len(rows),
                         "point": f"p{len(rows)}", "run_id": f"r{len(rows)}",
                         "linear_top1": value(point) + rng.normal(0, noise)})
    return pd.DataFrame(rows)


def verdicts(kind: str, df: pd.DataFrame) -> dict[str, str]:
    return {v.claim: v.verdict for v in build(kind, df, "linear_top1").verdicts}


STRENGTH = {"augment.color.strength": [0.125, 0.25, 0.5, 1.0]}


def test_color_strength_reproduction_reversal_and_overlap():
    claim = "accuracy increases with color strength"
    up = frame(STRENGTH, lambda p: 50 + 10 * p["augment.color.strength"])
    down = frame(STRENGTH, lambda p: 60 - 10 * p["augment.color.strength"])
    flat = frame(STRENGTH, lambda p: 55.0, noise=3.0)
    assert verdicts("color_strength", up)[claim] == REPRODUCED
    assert verdicts("color_strength", down)[claim] == NOT_REPRODUCED
    assert verdicts("color_strength", flat)[claim] == INCONCLUSIVE
    rep = build("color_strength", up, "linear_top1")
    assert rep.rho == pytest.approx(1.0) and len(rep.matched) == 4
    assert "1 (+Blur)" in rep.paper_only
    assert build("color_strength", down, "linear_top1").rho == pytest.approx(-1.0)


def test_projection_head_claims_and_none_pooled_over_seeds():
    heads = {"model.head": ["none", "linear", "nonlinear"], "model.head_dim": [32, 128, 2048]}
    df = frame(heads, lambda p: {"none": 50, "linear": 60, "nonlinear": 65}[p["model.head"]])
    got = verdicts("projection_head", df)
    assert got["nonlinear head beats linear by more than 3 points"] == REPRODUCED
    assert got["linear head beats no head"] == REPRODUCED
    close = frame(heads, lambda p: {"none": 50, "linear": 60, "nonlinear": 61}[p["model.head"]])
    assert verdicts("projection_head", close)["nonlinear head beats linear by more than 3 points"] == NOT_REPRODUCED
    none = build("projection_head", df, "linear_top1").matched.set_index("cell").loc["none"]
    assert none["n"] == 3 and none["paper"] == 49.7  # 3 seeds, not 9 "repeats"


def test_augment_pairs_best_pair():
    order = ["crop", "cutout", "color"]
    ops = [a if a == b else f"{a}+{b}" for a in order for b in order]
    df = frame({"augment.ops": ops},
               lambda p: 60 if p["augment.ops"] == "crop+color" else 30 + 5 * ("+" in p["augment.ops"]))
    rep = build("augment_pairs", df, "linear_top1", {"order": order})
    got = {v.claim: v.verdict for v in rep.verdicts}
    assert got["crop+color is the best pair"] == REPRODUCED
    assert got["compositions beat single transformations (mean over cells)"] == REPRODUCED
    assert list(rep.main.columns) == [*order, "row mean"] and list(rep.main.index) == [*order, "column mean"]
    assert rep.main.loc["crop", "color"].endswith("(56.3)")
    swapped = frame({"augment.ops": ops}, lambda p: 60 if p["augment.ops"] == "cutout+crop" else 30)
    assert verdicts("augment_pairs", swapped)["crop+color is the best pair"] == NOT_REPRODUCED


def test_a_partly_run_augment_pairs_study_names_its_missing_cells_where_they_belong():
    """As the real cpu run read half-way: one pair failed twice (a killed worker), one not run yet."""
    order = ["crop", "cutout", "color", "sobel", "rotate"]
    ops = ["crop", "crop+cutout", "crop+color", "crop+sobel", "crop+rotate"]
    df = frame({"augment.ops": ops}, lambda p: 40 if p["augment.ops"] == "crop+color" else 36, seeds=(0, 1))
    df.loc[df["augment.ops"] == "crop+sobel", ["status", "linear_top1"]] = ["failed", np.nan]
    df = df[df["augment.ops"] != "crop+rotate"]
    rep = build("augment_pairs", df, "linear_top1", {"order": order})
    assert "(crop, sobel) (2 failed)" in rep.paper_only  # the paper has the cell: ours has no result
    assert not any("sobel" in c for c in rep.ours_only)
    got = {v.claim: v for v in rep.verdicts}
    assert got["crop+color is the best pair"].verdict == REPRODUCED  # judged on the pairs that finished
    composed = got["compositions beat single transformations (mean over cells)"]
    assert composed.verdict == INCONCLUSIVE
    assert "1 of its 3 cells without a finished trial: (crop, sobel) (2 failed)" in composed.detail
    fig = rep.figures[0].draw()
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("failed") == 1 and "40.0" in texts  # the failed cell says so; a cell never run stays blank


def test_temperature_matches_cells_by_value_and_says_what_has_no_counterpart():
    df = frame({"loss.normalize": [True, False], "loss.temperature": [0.05, 0.1, 0.5, 1.0]},
               lambda p: 70 - 10 * (not p["loss.normalize"]) - abs(p["loss.temperature"] - 0.3) * 5)
    rep = build("temperature", df, "linear_top1")
    assert set(rep.matched["cell"]) == {"(yes, 0.05)", "(yes, 0.1)", "(yes, 0.5)", "(yes, 1)"}
    assert set(rep.paper_only) == {"(no, 10)", "(no, 100)"}
    assert "(no, 0.05)" in rep.ours_only
    assert set(rep.main["contrastive acc. (ours)"]) == {"not measured", "not run"}
    got = {v.claim: v for v in rep.verdicts}
    assert got["l2 normalization beats none (each at its best temperature)"].verdict == REPRODUCED
    assert "not measured" in got["without l2 norm the contrastive accuracy is higher"].detail


def test_failed_cells_show_as_failed_never_zero(tmp_path):
    df = frame({"loss.name": ["margin_triplet", "nt_logistic", "nt_xent"]}, lambda p: 55.0)
    df.loc[df["loss.name"] == "nt_logistic", ["status", "linear_top1"]] = ["failed", np.nan]
    df.loc[df["loss.name"] == "nt_logistic", "failure_reason"] = "diverged: loss is nan"
    out = write_report(df, "losses", StudyInfo(kind="loss_functions"), tmp_path, "python -m ablations report losses")
    assert out.report.main.loc["ours (linear_top1)", "NT-Logi."] == "failed (3)"
    assert "0.00" not in out.terminal_text
    assert "diverged: loss is nan" in out.html.read_text()


@pytest.mark.parametrize("kind", [*KINDS, "search", "generic"])
def test_every_kind_writes_tables_figures_and_html(tmp_path, kind):
    axes = {
        "augment_pairs": {"augment.ops": ["crop", "crop+color", "color+crop", "color"]},
        "color_strength": STRENGTH,
        "projection_head": {"model.head": ["none", "linear", "nonlinear"], "model.head_dim": [64, 128]},
        "batch_size_epochs": {"train.batch_size": [64, 128], "train.epochs": [1, 2]},
        "temperature": {"loss.normalize": [True, False], "loss.temperature": [0.1, 0.5]},
        "loss_functions": {"loss.name": ["nt_xent", "nt_logistic"], "loss.semi_hard": [False, True]},
        "search": {"loss.temperature": [0.03, 0.1, 0.4, 1.5]},
        "generic": {"loss.temperature": [0.2, 0.5], "augment.ops": ["crop", "crop+color"]},
    }[kind]
    df = frame(axes, lambda p: 50.0 + len(str(p)) % 7, seeds=(0,) if kind == "search" else (0, 1))
    out = write_report(df, kind, StudyInfo(kind=kind, text="name: x\n"), tmp_path, "python -m ablations report x")
    assert out.kind == kind and not out.warnings
    for name in ("report.html", "report.md", "summary.json", "tables/main.md", "tables/main.html", "tables/main.tex",
                 "tables/trials.csv", "tables/summary.csv"):
        assert (tmp_path / name).stat().st_size > 0, name
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["figures"]
    for fig in summary["figures"]:
        assert (tmp_path / "figures" / f"{fig}.png").read_bytes()[:4] == b"\x89PNG"
        assert b"<svg" in (tmp_path / "figures" / f"{fig}.svg").read_bytes()[:2000]
    page = out.html.read_text()
    assert page.count("<img src='data:image/png;base64,") == len(summary["figures"])  # inlined, not linked
    assert "src='figures/" not in page and "## Per point" not in (tmp_path / "report.md").read_text()


def test_a_study_whose_axes_do_not_fit_its_kind_falls_back_to_generic():
    df = frame({"loss.temperature": [0.1, 0.5]}, lambda p: 50.0)
    rep = build("augment_pairs", df, "linear_top1")
    assert rep.kind == "generic" and "not applicable" in rep.notes[-1]


# ---------------------------------------------------------------------- report --from a folder, no MLflow
def as_loaded(df: pd.DataFrame, metric_nan_status: str = "failed") -> pd.DataFrame:
    """``df`` with what load_trials adds, including text that looks like numbers and a trial without a value."""
    n = len(df)
    df = df.assign(point=[f"{i:04d}e{i:05d}" for i in range(n)],  # a sha256 prefix can read as a float
                   run_id=[f"{i:032d}" for i in range(n)], start_time=[1_764_000_000_000 + i for i in range(n)],
                   device="cpu (AMD EPYC 9B14)", numerics="bf16 autocast, channels_last", git_commit="0123456")
    df.loc[1, ["status", "linear_top1", "failure_reason"]] = [
        metric_nan_status, np.nan, 'diverged: loss is nan, "step 3"'
    ]
    return df


def loaded_frame(kind: str) -> pd.DataFrame:
    """A color_strength or temperature study's trials as load_trials gives them (ops as text, bools, floats)."""
    if kind == "color_strength":
        plain = frame({**STRENGTH, "augment.ops": ["crop+color"]}, lambda p: 50 + 10 * p["augment.color.strength"])
        blur = frame({"augment.color.strength": [1.0], "augment.ops": ["crop+color+blur"]}, lambda p: 62.0, seed=1)
        return as_loaded(pd.concat([plain, blur], ignore_index=True).assign(trial=lambda d: range(len(d))))
    df = frame({"loss.normalize": [True, False], "loss.temperature": [0.05, 0.1, 0.5, 1.0]},
               lambda p: 70 - 10 * (not p["loss.normalize"]) - abs(p["loss.temperature"] - 0.3) * 5)
    df["contrastive_acc"] = 80.0 + 5 * (~df["loss.normalize"]) + np.arange(len(df)) / 7
    return as_loaded(df, "pruned (epoch 3)")


@pytest.mark.parametrize("kind", ["color_strength", "temperature"])
def test_trials_csv_reads_back_as_the_frame_it_was_written_from(tmp_path, kind):
    df = loaded_frame(kind)
    df.to_csv(tmp_path / "trials.csv", index=False)
    pd.testing.assert_frame_equal(read_trials_csv(tmp_path / "trials.csv"), df)  # values, dtypes, NaN, "" alike


def test_trials_csv_restores_partly_empty_and_mixed_columns(tmp_path):
    df = pd.DataFrame({"loss.normalize": [True, None, False], "model.head_dim": [32, None, 128],
                       "loss.margin": [0.4, "auto", 1], "augment.ops": ["(none)", "crop", "crop+color"],
                       "model.head": ["none", "None", "linear"], "seed": [0, 1, 2], "status": ["finished", "1e3", ""],
                       "knn_top1": [float("inf"), np.nan, 1 / 3]})
    df.to_csv(tmp_path / "trials.csv", index=False)
    back = read_trials_csv(tmp_path / "trials.csv")
    assert (back["loss.normalize"].tolist()[::2] == [True, False]
            and back["loss.normalize"].isna().tolist() == [False, True, False])
    assert back["model.head_dim"].dtype == float and back["loss.margin"].tolist() == [0.4, "auto", 1]
    assert (back["model.head"].tolist() == ["none", "None", "linear"]
            and back["status"].tolist() == ["finished", "1e3", ""])
    assert back["augment.ops"].tolist() == df["augment.ops"].tolist() and back["knn_top1"].iloc[2] == 1 / 3


@pytest.mark.parametrize("kind", ["color_strength", "temperature"])
def test_report_from_a_folder_rebuilds_the_same_report_without_mlflow(tmp_path, monkeypatch, capsys, kind):
    src, out, cwd = tmp_path / "src", tmp_path / "out", tmp_path / "cwd"
    cwd.mkdir()
    info = StudyInfo(kind=kind, report_cfg={"kind": kind}, text=f"name: {kind}\nreport: {{kind: {kind}}}\n",
                     file_name=f"{kind}.yaml")
    first = write_report(loaded_frame(kind), kind, info, src, f"python -m ablations run studies/{kind}.yaml")
    assert REPRODUCED in {v.verdict for v in first.report.verdicts} and len(first.report.matched) >= 3
    monkeypatch.chdir(cwd)
    assert main(["report", "--from", str(src), "--out", str(out)]) == 0
    assert f"report: {(out / 'report.html').resolve()}" in capsys.readouterr().out
    before = json.loads((src / "summary.json").read_text())
    after = json.loads((out / "summary.json").read_text())
    assert after == before  # verdicts, matched cells, spearman; command and environment as recorded
    assert after["kind"] == kind and after["spearman"] is not None and after["verdicts"] and after["matched"]
    for name in ("tables/trials.csv", "tables/summary.csv", "tables/main.md", "tables/matched.csv", f"{kind}.yaml"):
        assert (out / name).read_text() == (src / name).read_text(), name
    figures = sorted(p.relative_to(src) for p in (src / "figures").iterdir())
    assert figures and all((out / f).read_bytes() == (src / f).read_bytes() for f in figures)  # SVG: no date, fixed ids
    assert main(["report", "--from", str(out)]) == 0  # in place, the default
    assert json.loads((out / "summary.json").read_text()) == before
    assert list(cwd.iterdir()) == []  # no mlflow.db, mlruns/ or reports_out/


def committed_report_folders() -> list[Path]:
    """Report folders committed under results/SCALE/ (any folder holding summary.json or tables/trials.csv)."""
    return sorted(d for d in (REPO / "results").glob("*/*/")
                  if (d / "summary.json").exists() or (d / "tables" / "trials.csv").exists())


# each test of the committed reports runs once per folder (one "none" case, skipped, before any exists)
over_committed_reports = pytest.mark.parametrize(
    "folder", committed_report_folders() or [None], ids=lambda d: f"{d.parent.name}/{d.name}" if d else "none")


@over_committed_reports
def test_every_committed_report_folder_rebuilds_to_its_own_summary(tmp_path, monkeypatch, folder):
    if folder is None:
        pytest.skip("no report folder committed under results/cpu/*/ yet: each one found there is rebuilt "
                    "with `report --from` and compared with its summary.json")
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--from", str(folder), "--out", str(tmp_path / "out")]) == 0
    want = json.loads((folder / "summary.json").read_text())
    got = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {k: got.get(k) for k in want} == want  # fields a newer report adds are not in an older summary
    assert (tmp_path / "out" / "tables" / "trials.csv").read_text() == (folder / "tables" / "trials.csv").read_text()
    # the committed text is what today's code writes (rebuild with `report --from FOLDER` after a change)
    assert (tmp_path / "out" / "report.md").read_text() == (folder / "report.md").read_text()
    assert not (tmp_path / "mlflow.db").exists()


def test_report_from_a_folder_that_is_not_a_report_exits_2_naming_what_is_missing(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "not-a-report"
    folder.mkdir()
    (folder / "summary.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--from", str(folder)]) == 2
    err = capsys.readouterr().err
    assert (err.count("\n") == 1 and err.startswith(f"error: {folder / 'tables' / 'trials.csv'}: not found")
            and "expected" in err)
    assert ([p.name for p in tmp_path.iterdir()] == ["not-a-report"]
            and [p.name for p in folder.iterdir()] == ["summary.json"])
    for argv in (["report"], ["report", "quickstart", "--from", str(folder)], ["report", "quickstart", "--out", "x"],
                 ["report", "--from", str(folder), "--tracking-uri", "sqlite:///x.db"]):
        with pytest.raises(SystemExit) as exc:  # argparse's usage error
            main(argv)
        assert exc.value.code == 2, argv
    assert "--from FOLDER" in capsys.readouterr().err


# ---------------------------------------------------------------------- a real study through the CLI
def md_rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


def chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.fixture(scope="module")
def real_study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tinytemp")
    (folder / "tinytemp.yaml").write_text(TINY_TEMPERATURE)
    out = cli(folder, "run", "tinytemp.yaml", "--no-progress")
    assert out.returncode == 0, out.stderr
    return folder, out


@pytest.mark.slow
def test_run_prints_the_paper_table_and_verdicts_and_writes_the_report(real_study):
    folder, out = real_study
    assert "this run: 8 trials finished, 0 failed" in out.stdout
    assert "Table 5: l2 normalisation and temperature" in out.stdout
    assert "trend vs paper: Spearman rho" in out.stdout
    assert "l2 normalization beats none (each at its best temperature)" in out.stdout
    assert re.search(r"\[(reproduced|not reproduced|inconclusive)\] ", out.stdout)
    report_dir = folder / "reports_out" / "tinytemp"
    assert f"report: {(report_dir / 'report.html').resolve()}" in out.stdout
    summary = json.loads((report_dir / "summary.json").read_text())
    assert summary["kind"] == "temperature" and summary["metric"] == "linear_top1"
    assert {m["cell"] for m in summary["matched"]} == {"(yes, 0.1)", "(yes, 0.5)"}
    assert set(summary["paper_only"]) >= {"(no, 10)", "(no, 100)", "(yes, 0.05)", "(yes, 1)"}


@pytest.mark.slow
def test_report_tables_hold_what_mlflow_holds(real_study):
    folder, _ = real_study
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tinytemp")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`ablations.role` = 'trial'")
    assert len(runs) == 8
    expected: dict[tuple[str, float], list[float]] = {}
    contrastive: dict[tuple[str, float], list[float]] = {}
    for run in runs:
        key = ("yes" if json.loads(run.data.params["loss.normalize"]) else "no",
               float(run.data.params["loss.temperature"]))
        expected.setdefault(key, []).append(run.data.metrics["linear_top1"])
        contrastive.setdefault(key, []).append(run.data.metrics["contrastive_acc"])
    main = (folder / "reports_out" / "tinytemp" / "tables" / "main.md").read_text()
    rows = {(r[0], float(r[1])): r for r in md_rows(main)}
    for key, values in expected.items():
        assert len(values) == 2
        mean, std = np.mean(values), np.std(values, ddof=1)
        assert rows[key][3] == f"{mean:.2f} ± {std:.2f} (n=2)", key
        c_mean, c_std = np.mean(contrastive[key]), np.std(contrastive[key], ddof=1)
        assert rows[key][2] == f"{c_mean:.2f} ± {c_std:.2f} (n=2)", key  # Table 5's contrastive acc., ours
    assert rows[("yes", 0.1)][5] == "64.4" and rows[("no", 10.0)][3] == "not run"
    verdicts = json.loads((folder / "reports_out" / "tinytemp" / "summary.json").read_text())["verdicts"]
    norm = next(v for v in verdicts if v["claim"].startswith("l2 normalization"))
    best = {k: np.mean(v) for k, v in expected.items()}
    want = max(v for k, v in best.items() if k[0] == "yes") - max(v for k, v in best.items() if k[0] == "no")
    assert norm["difference"] == pytest.approx(want) and norm["seeds"] == 2
    # the same folder is in MLflow, under the study's parent run
    parent = client.search_runs([exp.experiment_id], filter_string="tags.`ablations.role` = 'study'")[0]
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.html", "report/summary.json", "report/tables", "report/figures"} <= logged
    figures = {a.path for a in client.list_artifacts(parent.info.run_id, "report/figures")}
    assert {"report/figures/temperature.png", "report/figures/temperature.svg",
            "report/figures/learning_curves.png"} <= figures
    # the learning curves are each trial's per-epoch history as MLflow holds it
    curves = pd.read_csv(folder / "reports_out" / "tinytemp" / "tables" / "curves.csv", dtype={"point": str})
    by_run = {r.info.run_id: r for r in runs}
    trials = pd.read_csv(folder / "reports_out" / "tinytemp" / "tables" / "trials.csv", dtype={"point": str})
    for _, trial in trials.iterrows():
        logged = {m.step: m.value for m in client.get_metric_history(by_run[trial["run_id"]].info.run_id, "loss")}
        mine = curves[(curves["point"] == trial["point"]) & (curves["metric"] == "loss")]
        assert dict(zip(mine["epoch"], mine["value"])) == pytest.approx(logged)


@pytest.mark.slow
def test_report_by_name_rebuilds_the_same_report_from_mlflow(real_study):
    folder, run_out = real_study
    again = cli(folder, "report", "tinytemp")
    assert again.returncode == 0, again.stderr
    # kind (temperature) comes from the study file logged in the parent run
    assert "Table 5: l2 normalisation and temperature" in again.stdout

    def tail(text: str) -> str:
        return text.split("linear_top1 (%), mean over seeds")[1].split("\nreport: ")[0]

    assert tail(again.stdout) == tail(run_out.stdout)
    html = (folder / "reports_out" / "tinytemp" / "report.html").read_text()
    assert "python -m ablations report tinytemp" in html and "name: tinytemp" in html
    assert "git commit" in html and "torch" in html
    # how it was made: the device and numerics the trials resolved, not the config's "auto"
    auto = resolve_numerics("auto", None, torch.device("cpu"))
    assert f"<th>device (trials)</th><td>cpu ({device_name(torch.device('cpu'))})</td>" in html
    assert f"<th>numerics (trials)</th><td>{auto.describe()}</td>" in html


@pytest.mark.slow
def test_report_html_renders_with_its_figures_in_headless_chromium(real_study, tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip("no chromium binary (install Debian's `chromium` package to run this check)")
    folder, _ = real_study
    page = (folder / "reports_out" / "tinytemp" / "report.html").resolve()
    common = [browser, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={tmp_path / 'profile'}",
              "--virtual-time-budget=5000"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'data-images="(\d+)/(\d+)"', dom.stdout)
    assert found, "the page's load script did not run"
    loaded, total = map(int, found.groups())
    assert total >= 1 and loaded == total, f"{loaded} of {total} images loaded"
    assert "Did the paper's findings reproduce?" in dom.stdout
    shot = tmp_path / "report.png"
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri()],
                   capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000


def test_a_pruned_trial_reads_pruned_not_killed(tmp_path):
    """The median pruner's stop ends the MLflow run KILLED (MLflow has no pruned state); tables and
    reports must say "pruned (epoch k)", not "killed", which reads as a crash."""
    from ablations import tracking
    from reports.trials import load_trials

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("search")
    parent = tracking.create_parent_run(client, exp, "search", {})
    for number, how in enumerate(("pruned", "killed", "finished")):
        run = tracking.create_trial_run(client, exp, parent, f"{number}",
                                        {"trial": str(number), "point": f"p{number}",
                                         "axis.loss.temperature": str(0.1 * (number + 1))})
        if how == "pruned":
            tracking.finish_run(client, run, "KILLED", "pruned: pruned at epoch 3 (kNN top-1 20.00)", pruned_epoch=3)
        elif how == "killed":
            tracking.finish_run(client, run, "KILLED", "interrupted")
        else:
            client.log_metric(run, "linear_top1", 50.0)
            tracking.finish_run(client, run, "FINISHED")
    df = load_trials(uri, "search")
    assert df.set_index("trial")["status"].to_dict() == {0: "pruned (epoch 3)", 1: "killed", 2: "finished"}
    assert "pruned_epoch" not in df.columns


@over_committed_reports
def test_every_committed_report_has_a_learning_curve_figure_of_all_its_points(folder):
    if folder is None:
        pytest.skip("no report folder committed under results/SCALE/ yet")
    curves = pd.read_csv(folder / "tables" / CURVES_CSV)
    trials = pd.read_csv(folder / "tables" / "trials.csv")
    finished = trials[trials["status"] == "finished"]
    # every finished trial's (point, seed) has its per-epoch history
    assert set(zip(curves["point"], curves["seed"])) >= set(zip(finished["point"], finished["seed"]))
    loss_epochs = curves[curves["metric"] == "loss"].groupby(["point", "seed"])["epoch"].nunique()
    assert loss_epochs.min() > 1  # a curve, not a point, for every run
    assert {"loss", "knn_top1"} <= set(curves["metric"])
    for ext in ("png", "svg"):
        assert (folder / "figures" / f"learning_curves.{ext}").stat().st_size > 10_000
    report = (folder / "report.md").read_text()
    assert "](figures/learning_curves.png)" in report and CAPTION in report and NO_HISTORY not in report
