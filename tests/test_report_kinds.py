"""The report kinds a study file may name are the kinds reports.layouts can build.

``ablations.study.REPORT_KINDS`` is a list of its own, not read from ``reports.layouts.BUILDERS``:
importing the layouts pulls in matplotlib and seaborn, and loading a study (rejecting a bad one
above all) must stay fast. These tests keep the two lists from drifting apart instead.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ablations.study import REPORT_KINDS
from reports.layouts import BUILDERS

REPO = Path(__file__).resolve().parents[1]


def test_a_study_may_name_exactly_the_kinds_the_reports_build():
    assert len(set(REPORT_KINDS)) == len(REPORT_KINDS)
    assert set(REPORT_KINDS) == set(BUILDERS)


def test_each_builder_is_in_the_module_named_after_its_kind():
    for kind, builder in BUILDERS.items():
        assert builder.__module__ == f"reports.layouts.{kind}", kind


def test_loading_a_study_does_not_import_the_plotting_libraries():
    code = "import sys, ablations.study; print(sorted({'matplotlib', 'seaborn'} & set(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_the_generic_figure_goes_per_point_only_when_its_two_axes_do_not_tell_the_points_apart():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from reports.layouts import build

    def frame(rows):
        return pd.DataFrame([{**r, "seed": s, "status": "finished", "trial": i * 2 + s, "point": f"p{i}-{s}",
                              "linear_top1": 40.0 + i + s} for i, r in enumerate(rows) for s in (0, 1)])

    one_axis = frame([{"recipe": "a"}, {"recipe": "b"}])
    fig = build("generic", one_axis, "linear_top1").figures[0].draw()
    assert fig.axes[0].get_title() == "linear_top1 against recipe"  # seeds are not points
    plt.close(fig)
    three = frame([{"augment.ops": "c", "loss.name": "x", "model.encoder": "r"},
                   {"augment.ops": "c", "loss.name": "x", "model.encoder": "v"},
                   {"augment.ops": "s", "loss.name": "x", "model.encoder": "r"}])
    fig = build("generic", three, "linear_top1").figures[0].draw()
    assert fig.axes[0].get_title() == "linear_top1 per point"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["c, x, r", "c, x, v", "s, x, r"]
    plt.close(fig)
