"""Where the data is (--data, $SIMCLR_DATA) and bad input found before a study's stores exist."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from ablations.commands.study import _load
from ablations.data_option import DATA_ENV, data_overrides, source_for
from ablations.yamlfile import ConfigFileError
from tests.test_engine import REPO, TINY, cli, trial_runs, write_study

SHARED_TARBALL = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
STUDIES = REPO / "studies"


def nothing_written(folder: Path, allowed: set[str] = frozenset()) -> bool:
    return {p.name for p in folder.iterdir()} - {"tiny.yaml", "s.yaml", *allowed} == set()


# ------------------------------------------------------------------------------ the option itself


def test_the_path_says_which_source(tmp_path):
    tree = tmp_path / "tree"
    (tree / "train" / "cat").mkdir(parents=True)
    (tmp_path / "plain").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    assert source_for(tmp_path / "cifar10-jpeg.tar.gz", "cifar10") == "tarball"  # by name, even before it exists
    assert source_for(tmp_path / "x.tgz", "imagefolder") == "tarball"
    assert source_for(tree, "cifar10") == "imagefolder"
    assert source_for(tmp_path / "plain", "cifar100") == "cifar100"  # a torchvision root of the file's dataset
    assert source_for(tmp_path / "not-yet", "cifar10") == "cifar10"  # downloaded there when the file allows
    with pytest.raises(ConfigFileError, match="not a .tar.gz"):
        source_for(tmp_path / "notes.txt", "cifar10")
    with pytest.raises(ConfigFileError, match="without train/"):
        source_for(tmp_path / "plain", "imagefolder")


def test_data_and_a_set_of_the_root_clash(tmp_path):
    with pytest.raises(ConfigFileError, match="--data and --set data.root"):
        data_overrides(tmp_path / "a.tar.gz", {"data.root": "b"}, "cifar10", True)


def _args(study: Path, data: Path | None = None, *sets: str) -> argparse.Namespace:
    return argparse.Namespace(study=study, overrides=list(sets),
                              scale="quick" if "quickstart" not in study.name else None, data=data)


def test_the_environment_variable_serves_every_study_that_names_no_data(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "cifar10-jpeg.tar.gz"))
    for name in ("color_strength.yaml", "temperature.yaml", "augment_pairs.yaml"):
        data = _load(_args(STUDIES / name)).base.data
        assert (data.source, data.root) == ("tarball", tmp_path / "cifar10-jpeg.tar.gz")
    # the quickstart names its shipped subset and keeps it; --data still wins over any file
    quick = _load(_args(STUDIES / "quickstart.yaml")).base.data
    assert str(quick.root) == "studies/data/cifar10-quickstart.tar.gz"
    tree = tmp_path / "mine"
    (tree / "train").mkdir(parents=True)
    mine = _load(_args(STUDIES / "quickstart.yaml", tree)).base.data
    assert (mine.source, mine.root) == ("imagefolder", tree)
    # and a --set of the root is the file saying where its data is
    kept = _load(_args(STUDIES / "temperature.yaml", None, "data.root=elsewhere")).base.data
    assert (kept.source, str(kept.root)) == ("cifar10", "elsewhere")


def test_moving_the_data_keeps_the_study(tmp_path):
    from ablations.plan import fingerprint

    a = _load(_args(STUDIES / "temperature.yaml", tmp_path / "a" / "cifar10-jpeg.tar.gz"))
    b = _load(_args(STUDIES / "temperature.yaml", tmp_path / "b" / "cifar10-jpeg.tar.gz"))
    c = _load(_args(STUDIES / "temperature.yaml", tmp_path / "torchvision-root"))
    assert fingerprint(a) == fingerprint(b)  # same data elsewhere: the study resumes
    assert fingerprint(a) != fingerprint(c)  # JPEG tarball vs torchvision's arrays: other pixels, another study


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_TARBALL.is_file(), reason=f"needs the CIFAR-10 JPEG tarball at {SHARED_TARBALL}")
def test_a_paper_study_runs_on_the_shared_tarball_through_the_one_option(tmp_path):
    out = cli(tmp_path, "run", str(STUDIES / "color_strength.yaml"), "--scale", "quick",
              "--data", str(SHARED_TARBALL), "--max-trials", "1", "--no-progress", timeout=600)
    assert out.returncode == 0, out.stderr
    (run,) = [r for r in trial_runs(tmp_path, "color_strength-quick") if r.info.status == "FINISHED"]
    assert run.data.params["data.source"] == "tarball"
    assert run.data.params["data.root"] == str(SHARED_TARBALL)


# ------------------------------------------------------------------------------ refused up front


def test_offline_without_data_exits_2_in_one_line_and_writes_nothing(tmp_path):
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    dead = "http://127.0.0.1:9"  # nothing listens: every download fails at once, as offline
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", DATA_ENV.lower())}
    env.update(HOME=str(home), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1",
               http_proxy=dead, https_proxy=dead, HTTP_PROXY=dead, HTTPS_PROXY=dead)
    out = subprocess.run([sys.executable, "-m", "ablations", "run", str(STUDIES / "temperature.yaml"),
                          "--scale", "quick"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    line = out.stderr.strip()
    assert "\n" not in line, line
    assert "CIFAR-10" in line and "--data" in line and "data" in line
    assert list(work.iterdir()) == []  # no mlflow.db, optuna.db, mlruns/, nor the half-made download folder


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_device_the_machine_lacks_exits_2_and_writes_nothing(tmp_path):
    study = write_study(tmp_path)
    out = cli(tmp_path, "run", str(study), "--devices", "cuda:0")
    assert out.returncode == 2 and "--devices cuda:0" in out.stderr and "no CUDA device" in out.stderr
    assert nothing_written(tmp_path)
    (tmp_path / "s.yaml").write_text(TINY.format(epochs=1).replace("progress: false", "progress: false, device: cuda"))
    out = cli(tmp_path, "run", str(tmp_path / "s.yaml"))
    assert out.returncode == 2 and "train.device cuda" in out.stderr, out.stderr
    assert nothing_written(tmp_path)


def test_a_data_folder_without_images_exits_2_and_writes_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "s.yaml").write_text(
        TINY.format(epochs=1).replace("source: synthetic,", "source: imagefolder, root: empty,")
    )
    out = cli(tmp_path, "run", str(tmp_path / "s.yaml"))
    assert out.returncode == 2 and "empty" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert nothing_written(tmp_path, {"empty"})


def test_report_of_a_study_that_does_not_exist_exits_2_and_writes_nothing(tmp_path):
    out = cli(tmp_path, "report", "no-such-study")
    assert out.returncode == 2 and "no-such-study" in out.stderr
    assert nothing_written(tmp_path)
    study = write_study(tmp_path, epochs=1)
    assert cli(tmp_path, "run", str(study), "--max-trials", "1", "--no-progress").returncode == 0
    out = cli(tmp_path, "report", "tny")
    assert out.returncode == 2 and "'tny'" in out.stderr and "tiny" in out.stderr  # names what is there
    assert [e.name for e in MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()].count("tny") == 0
