"""What a reader sees: bars from zero with error bars, numbers in their shortest exact form, a search
on the scale it searched, whole trial numbers, one table per thing and plurals that agree."""

from __future__ import annotations

import json
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.container import BarContainer

from reports.layouts import build
from reports.layouts.common import label_of, value_text
from reports.render import StudyInfo, info_from_text, plural, terminal_text, verdict_lines, write_report
from tests.test_reports import REPO, STRENGTH, frame


@pytest.mark.parametrize("value,digits,text", [
    (0.125, None, "0.125"), (0.25, None, "0.25"), (1.0, None, "1"), (0.05, None, "0.05"), (100.0, None, "100"),
    (0.1 + 0.2, None, "0.30000000000000004"), (0.250413, 3, "0.25"), (0.0312345, 3, "0.0312"), (1.5, 3, "1.5"),
    (np.float64(0.125), None, "0.125"), (True, None, "yes"), (np.int64(7), None, "7"),
    ("crop+color", None, "crop+color"),
])
def test_values_print_in_their_shortest_exact_form_searched_ones_to_3_digits(value, digits, text):
    assert value_text(value, digits) == text


def test_colour_strength_one_eighth_never_reads_0_12(tmp_path):
    df = frame(STRENGTH, lambda p: 60 - 10 * p["augment.color.strength"], noise=0.0)
    out = write_report(df, "cs", StudyInfo(kind="color_strength", text="name: x\n"), tmp_path, "cmd")
    assert label_of((0.125, False)) == "(0.125, no)"
    for page in ("report.md", "report.html"):
        text = (tmp_path / page).read_text()
        assert not re.search(r"(?<![\d.])0\.12(?![\d])", text), page
        assert "strength 0.125" in text and "augment.color.strength=0.125" in text
    assert "strength 0.125" in out.terminal_text


def test_no_per_point_table_repeats_the_main_table(tmp_path):
    df = frame({"recipe": ["a", "b"]}, lambda p: 40.0)
    write_report(df, "g", StudyInfo(text="name: x\n"), tmp_path, "cmd")
    md = (tmp_path / "report.md").read_text()
    assert "Per point" not in md and md.count("| a ") == 1  # one table row for the point
    assert "[tables/summary.csv](tables/summary.csv)" in md  # the per-point numbers stay one link away
    assert "Per point" not in (tmp_path / "report.html").read_text()


def _bar_axes(fig):
    return [ax for ax in fig.axes if any(isinstance(c, BarContainer) for c in ax.containers)]


@pytest.mark.parametrize("kind,axes", [
    ("color_strength", STRENGTH),
    ("temperature", {"loss.normalize": [True, False], "loss.temperature": [0.1, 0.5]}),
    ("batch_size_epochs", {"train.batch_size": [64, 128], "train.epochs": [1, 2]}),
    ("loss_functions", {"loss.name": ["nt_xent", "nt_logistic"]}),
])
def test_bars_start_at_zero_and_carry_error_bars_with_two_seeds(kind, axes):
    df = frame(axes, lambda p: 60.0 + 0.05 * (len(str(p)) % 2))  # a 0.05-point gap must not look like a cliff
    fig = build(kind, df, "linear_top1").figures[0].draw()
    panels = _bar_axes(fig)
    assert len(panels) == 2
    for ax in panels:
        lo, hi = ax.get_ylim()
        assert lo == 0.0 and hi > 60.0
    ours = panels[0]
    assert all(c.errorbar is not None for c in ours.containers if isinstance(c, BarContainer))
    plt.close(fig)
    one = build(kind, frame(axes, lambda p: 60.0, seeds=(0,)), "linear_top1").figures[0].draw()
    assert all(c.errorbar is None for c in _bar_axes(one)[0].containers if isinstance(c, BarContainer))
    plt.close(one)


def test_point_plots_do_not_stretch_a_tiny_gap_over_the_whole_axis():
    df = frame({"loss.temperature": [0.1, 0.5]}, lambda p: 40.0 + 0.05 * (p["loss.temperature"] > 0.2), noise=0.0)
    fig = build("generic", df, "linear_top1").figures[0].draw()
    lo, hi = fig.axes[0].get_ylim()
    assert hi - lo >= 2.0
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0.1", "0.5"]
    plt.close(fig)


SEARCH = {"loss.temperature": [0.03, 0.05, 0.06, 0.08]}  # a factor below 10: no log scale guessed


def _search_figures(log_axes):
    df = frame(SEARCH, lambda p: 50 + 10 * p["loss.temperature"], seeds=(0,))
    df["loss.temperature"] = df["loss.temperature"] + 0.000413  # as a sampler draws them
    rep = build("search", df, "linear_top1", {}, "maximize", log_axes)
    return rep, {f.name: f.draw() for f in rep.figures}


def test_a_search_is_drawn_on_the_scale_it_searched_with_whole_trial_numbers():
    rep, figs = _search_figures(["loss.temperature"])
    params = figs["search_params"].axes[0]
    assert params.get_xscale() == "log" and "log scale" in params.get_xlabel()
    history = figs["search_history"].axes[0]
    ticks = [t for t in history.get_xticks() if history.get_xlim()[0] <= t <= history.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    colour_bar = figs["search_params"].axes[1]
    assert all(float(t).is_integer() for t in colour_bar.get_yticks())
    assert set(rep.main["loss.temperature"]) == {"0.0304", "0.0504", "0.0604", "0.0804"}  # 3 significant digits
    assert rep.notes[0].startswith("best trial: #3, loss.temperature=0.0804, linear_top1 = ")
    _, linear = _search_figures([])
    assert linear["search_params"].axes[0].get_xscale() == "linear"
    for fig in [*figs.values(), *linear.values()]:
        plt.close(fig)


def test_the_study_file_says_which_searched_axes_are_logarithmic():
    info = info_from_text((REPO / "studies" / "temperature_search.yaml").read_text(), "temperature_search.yaml")
    assert info.searched == ["loss.temperature"] and info.log_axes == ["loss.temperature"]
    assert info_from_text("name: g\ngrid: {loss.temperature: [0.1]}\n", "g.yaml").log_axes == []


def test_a_search_report_from_its_folder_keeps_the_log_scale(tmp_path):
    text = "name: s\nsearch:\n  params:\n    loss.temperature: {type: float, low: 0.02, high: 2.0, log: true}\n"
    info = info_from_text(text, "s.yaml")
    df = frame(SEARCH, lambda p: 50 + 10 * p["loss.temperature"], seeds=(0,))
    write_report(df, "s", info, tmp_path, "cmd")
    assert json.loads((tmp_path / "summary.json").read_text())["kind"] == "search"
    svg = (tmp_path / "figures" / "search_params.svg").read_text()
    assert "loss.temperature (log scale, as searched)" in svg  # matplotlib keeps each text as a comment


def test_plurals_agree_with_their_counts():
    assert [plural(n, "trial") for n in (0, 1, 2)] == ["0 trials", "1 trial", "2 trials"]
    df = frame({"loss.temperature": [0.02 + 0.01 * i for i in range(16)]}, lambda p: 50.0, seeds=(0,))
    rep = build("search", df, "linear_top1")
    assert "... 1 more trial in the report" in terminal_text(rep, "linear_top1", "s")
    one = frame({"augment.color.strength": [0.5]}, lambda p: 50.0)
    assert "over 1 cell matched by value" in verdict_lines(build("color_strength", one, "linear_top1"))[0]
