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
