"""reports.reproduce: the README's "Does it reproduce?" table is generated from committed reports
and matches them; each verdict carries the paper's side of the same comparison."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reports import reference
from reports.render import StudyInfo, write_report
from reports.reproduce import BEGIN, END, replace_section, section
from reports.verdicts import NOT_REPRODUCED, REPRODUCED
from tests.test_reports import STRENGTH, frame

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_section_is_what_the_committed_reports_say():
    readme = (ROOT / "README.md").read_text()
    body = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")
    assert body == section(ROOT / "results" / "cpu", ROOT), (
        "README's reproduce table is stale: run python -m reports.reproduce results/cpu --write README.md"
    )


def test_the_readme_longer_training_table_is_what_the_committed_reports_say():
    from reports.reproduce import LONGER_BEGIN, LONGER_END, longer_section

    readme = (ROOT / "README.md").read_text()
    body = readme.split(LONGER_BEGIN, 1)[1].split(LONGER_END, 1)[0].strip("\n")
    assert body == longer_section(ROOT / "results" / "cpu", ROOT / "results" / "cpu_long", ROOT), (
        "README's 20-vs-100-epoch table is stale: run python -m reports.reproduce results/cpu "
        "--longer results/cpu_long --write README.md"
    )


def _paper_value(strength: float) -> float:
    cells = reference.section("color_strength")["cells"]
    return next(float(c["value"]) for c in cells if float(c["strength"]) == strength and not c["blur"])


def test_a_verdict_carries_the_paper_numbers_of_the_same_cells(tmp_path):
    df = frame(STRENGTH, lambda p: 40 - 4 * p["augment.color.strength"])  # strength hurts here
    out = write_report(df, "color_strength", StudyInfo(kind="color_strength", text="name: x\n"), tmp_path / "cs", "cmd")
    claim = next(v for v in out.report.verdicts if v.claim == "accuracy increases with color strength")
    assert claim.verdict == NOT_REPRODUCED
    assert claim.extra["paper"]["a"] == _paper_value(1.0) and claim.extra["paper"]["b"] == _paper_value(0.125)
    assert claim.mean_a == pytest.approx(df[df["augment.color.strength"] == 1.0]["linear_top1"].mean())


def test_rows_counts_links_and_pending_studies(tmp_path):
    up = frame(STRENGTH, lambda p: 40 + 4 * p["augment.color.strength"])
    write_report(up, "color_strength", StudyInfo(kind="color_strength", text="name: x\n"),
                 tmp_path / "results" / "cs", "cmd")
    text = section(tmp_path / "results", tmp_path)
    summary = json.loads((tmp_path / "results" / "cs" / "summary.json").read_text())
    decided = sum(v["verdict"] in (REPRODUCED, NOT_REPRODUCED) for v in summary["verdicts"])
    assert text.startswith(f"{decided} of {len(summary['verdicts'])} verdicts decided")
    row = next(line for line in text.splitlines() if "accuracy increases with color strength" in line)
    assert "[Table 1: colour strength](results/cs/report.md)" in row
    assert f"strength 1 {_paper_value(1.0):.1f} vs strength 0.125 {_paper_value(0.125):.1f}" in row
    assert "**reproduced**" in row and "(n=3)" in row
    assert "Not run yet at this scale: Figure 5" in text and "Table 1" not in text.split("Not run yet")[1]


def test_write_replaces_only_between_the_markers_and_refuses_a_file_without_them(tmp_path):
    assert replace_section(f"a\n{BEGIN}\nold\n{END}\nb\n", "new") == f"a\n{BEGIN}\nnew\n{END}\nb\n"
    with pytest.raises(ValueError):
        replace_section("no markers here", "new")
    readme = tmp_path / "README.md"
    readme.write_text("nothing to replace\n")
    run = subprocess.run([sys.executable, "-m", "reports.reproduce", str(ROOT / "results" / "cpu"),
                          "--write", str(readme)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "markers" in run.stderr and readme.read_text() == "nothing to replace\n"


def test_a_study_judged_by_the_sequential_rule_says_at_which_look_and_by_which_rule(tmp_path):
    up = frame(STRENGTH, lambda p: 40 + 4 * p["augment.color.strength"])
    rule = {"alpha": 0.05, "looks": 4, "first_seeds": 3}
    info = StudyInfo(kind="color_strength", text="name: x\n", sequential=rule)
    write_report(up, "color_strength", info, tmp_path / "results" / "cs", "cmd")
    summary = json.loads((tmp_path / "results" / "cs" / "summary.json").read_text())
    assert summary["sequential"] == rule
    text = section(tmp_path / "results", tmp_path)
    row = next(line for line in text.splitlines() if "accuracy increases with color strength" in line)
    claim = next(v for v in summary["verdicts"] if v["claim"] == "accuracy increases with color strength")
    look = claim["extra"]["sequential"]["look"]
    assert look >= 1 and f"(look {look} of 4)" in row and claim["verdict"] in row
    assert "sequential t test, α 0.05 over 4 looks (3-6 seeds)" in text


def test_the_longer_training_table_compares_both_scales_claim_by_claim(tmp_path):
    """Strength hurts at 20 epochs and helps at 100 (the paper's way): the row says so, with both
    verdicts, the paper's side and each scale's floor; a study run at one scale only is listed as such."""
    from reports.reproduce import LONGER_BEGIN, LONGER_END, longer_section

    floor = {"of": "x", "protocol": "y", "by_seed": {"0": {"linear_top1": 26.0}, "1": {"linear_top1": 27.0}}}
    for scale, slope in (("cpu", -4), ("cpu_long", 4)):
        df = frame(STRENGTH, lambda p, k=slope: 40 + k * p["augment.color.strength"])
        write_report(df, "color_strength", StudyInfo(kind="color_strength", text="name: x\n", floor=floor),
                     tmp_path / scale / "color_strength", "cmd")
    text = longer_section(tmp_path / "cpu", tmp_path / "cpu_long", tmp_path)
    row = next(line for line in text.splitlines() if "accuracy increases with color strength" in line)
    assert "[Table 1: colour strength](cpu_long/color_strength/report.md)" in row
    assert "**not reproduced**" in row and "**reproduced**" in row and "**toward the paper** (+" in row
    assert f"strength 1 {_paper_value(1.0):.1f} vs strength 0.125" in row
    assert "floor (untrained encoder, linear_top1) 26.50 ± 0.71 at 20 epochs, 26.50 ± 0.71 at 100" in text
    assert "not run yet at both scales: Figure 8: projection head" in text
    readme = f"a\n{LONGER_BEGIN}\nold\n{LONGER_END}\nb\n"
    assert replace_section(readme, text, LONGER_BEGIN, LONGER_END) == f"a\n{LONGER_BEGIN}\n{text}\n{LONGER_END}\nb\n"
