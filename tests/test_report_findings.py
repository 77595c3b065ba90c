"""Every report opens with a "Findings" paragraph made from its numbers: the best point, the paper's
claims by verdict, and the seed noise in numbers (or, with one seed per point, that none was measured)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from reports.render import StudyInfo, write_report
from reports.trials import aggregate
from tests.test_reports import STRENGTH, frame

ONE_SEED = ("One seed per point: no seed spread measured; differences of a point or two may be noise at this "
            "scale.")


def written(tmp_path, df: pd.DataFrame, kind: str, **info) -> tuple[str, dict]:
    out = write_report(df, kind, StudyInfo(kind=kind, text="name: x\n", **info), tmp_path, "cmd")
    return out.terminal_text, json.loads((tmp_path / "summary.json").read_text())


def test_findings_name_the_best_point_the_claims_and_the_pooled_seed_noise(tmp_path):
    df = frame(STRENGTH, lambda p: 60 - 10 * p["augment.color.strength"], seeds=(0, 1, 2), noise=0.5)
    text, summary = written(tmp_path, df, "color_strength")
    found = summary["findings"]
    stats = aggregate(df, "linear_top1")
    best = stats.loc[stats["mean"].idxmax()]
    assert best["augment.color.strength"] == 0.125
    assert found.startswith(f"Best of 4 points: augment.color.strength=0.125, linear_top1 {best['mean']:.2f} ± "
                            f"{best['std']:.2f} (n=3).")
    assert ("The paper's 1 claim: 0 reproduced; 1 not reproduced (\"accuracy increases with color strength\"); "
            "0 inconclusive.") in found
    assert "Trend vs paper: Spearman rho -1.00." in found
    pooled = math.sqrt((stats["std"] ** 2).mean())  # equal n: the mean of the variances
    band = 2 * pooled * math.sqrt(2 / 3)
    assert found.endswith(f"Seed std {pooled:.2f} points, pooled over 4 points (typically n=3): differences under "
                          f"about 2 SE = {band:.2f} points are within noise.")
    # the same paragraph opens every form of the report, right after its title
    md = (tmp_path / "report.md").read_text().splitlines()
    assert md[0].startswith("# Study") and md[1] == "" and md[2] == f"**Findings.** {found}"
    page = (tmp_path / "report.html").read_text()
    h1 = page.index("<h1>")
    assert page.index("<p class='findings'><b>Findings.</b> ", h1) < page.index("<p>", h1)
    assert " ".join(text.split("\n\n")[0].split()) == f"Findings: {found}"


def test_with_one_seed_per_point_the_noise_is_said_unmeasured_never_invented(tmp_path):
    df = frame({"loss.temperature": [0.1, 0.25, 0.5]}, lambda p: 40 + 10 * p["loss.temperature"], seeds=(0,))
    _, summary = written(tmp_path, df, "generic")
    found = summary["findings"]
    assert found.startswith("Best of 3 points: loss.temperature=0.5, linear_top1 ") and "(n=1)." in found
    assert found.endswith(ONE_SEED) and "Seed std" not in found and "±" not in found
    assert "claim" not in found  # the generic kind has no paper to compare with


def test_pooled_std_weights_points_by_their_degrees_of_freedom_and_skips_single_seeds(tmp_path):
    df = frame({"loss.temperature": [0.1, 0.5, 1.0]}, lambda p: 50.0, seeds=(0, 1, 2, 3), noise=1.0)
    df = df[~((df["loss.temperature"] == 1.0) & (df["seed"] > 0))]  # one seed: not part of the pool
    df = df[~((df["loss.temperature"] == 0.5) & (df["seed"] == 3))]  # three seeds
    stats = aggregate(df, "linear_top1").set_index("loss.temperature")
    pooled = math.sqrt((3 * stats.loc[0.1, "std"] ** 2 + 2 * stats.loc[0.5, "std"] ** 2) / 5)
    _, summary = written(tmp_path, df, "generic")
    n = int(np.median([4, 3]))
    assert (f"Seed std {pooled:.2f} points, pooled over 2 points (typically n={n}): differences under about "
            f"2 SE = {2 * pooled * math.sqrt(2 / n):.2f} points") in summary["findings"]


def test_findings_count_each_verdict_and_name_failed_trials(tmp_path):
    heads = {"model.head": ["none", "linear", "nonlinear"], "model.head_dim": [32, 128]}
    df = frame(heads, lambda p: {"none": 50, "linear": 60, "nonlinear": 61}[p["model.head"]])
    df.loc[0, ["status", "linear_top1", "failure_reason"]] = ["failed", np.nan, "diverged"]
    _, summary = written(tmp_path, df, "projection_head")
    found = summary["findings"]
    got = {v["claim"]: v["verdict"] for v in summary["verdicts"]}
    for word in ("reproduced", "not reproduced", "inconclusive"):
        count = sum(v == word for v in got.values())
        assert re.search(rf"(^|; |: ){count} {word}\b", found), (word, found)
    assert '1 not reproduced ("nonlinear head beats linear by more than 3 points")' in found
    assert "1 trial of 18 failed" in found


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_a_search_reports_its_best_trial_the_way_the_study_optimises(tmp_path, direction):
    df = frame({"loss.temperature": [0.0312345, 0.1, 0.4, 1.5]}, lambda p: 50 + 5 * p["loss.temperature"],
               seeds=(0,), noise=0.0)
    _, summary = written(tmp_path, df, "search", direction=direction, searched=["loss.temperature"])
    found = summary["findings"]
    if direction == "maximize":
        assert found.startswith("Best of 4 trials: loss.temperature=1.5, linear_top1 57.50 (n=1).")
    else:  # 3 significant digits for a searched value
        assert found.startswith("Best of 4 trials (lowest): loss.temperature=0.0312, linear_top1 50.16 (n=1).")
    assert found.endswith("One seed per trial: no seed spread measured; differences of a point or two may be noise "
                          "at this scale.")


def test_a_report_without_finished_trials_says_so(tmp_path):
    df = frame({"loss.temperature": [0.1, 0.5]}, lambda p: 50.0, seeds=(0,))
    df["status"], df["linear_top1"] = "failed", np.nan
    _, summary = written(tmp_path, df, "generic")
    assert summary["findings"] == ("No point has a finished trial yet: there is no linear_top1 to report. "
                                   "2 trials of 2 failed (listed below; a failed point is never 0%).")
