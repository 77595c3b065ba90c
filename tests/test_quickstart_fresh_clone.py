"""The README's first command on a fresh clone: no ../shared beside it, an empty data cache, offline.

It runs shortened (1 epoch, a 5-epoch linear probe; 3 and 10 took 119-143 s on 2 cores, among the
suite's slowest tests):
what it checks is the clone, the shipped data, the offline start and the report, not the epochs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    return [p for p in out.stdout.split("\0") if p]


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("git") is None or not (REPO / ".git").exists(),
    reason="needs the git checkout to copy its tracked files",
)
def test_quickstart_runs_on_a_fresh_clone_without_shared_data(tmp_path):
    clone = tmp_path / "clone"  # tmp_path has no shared/ folder, so ../shared does not exist
    for rel in _tracked_files():
        if (REPO / rel).is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, clone / rel)
    assert not (clone.parent / "shared").exists()
    home = tmp_path / "home"  # an empty ~/.cache: the data is decoded from the shipped subset
    home.mkdir()
    # offline: any HTTP(S) attempt goes to a closed port on loopback and fails
    dead = "http://127.0.0.1:9"
    env = {**os.environ, "HOME": str(home), "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "http_proxy": dead,
           "https_proxy": dead, "NO_PROXY": "", "no_proxy": "", "PYTHONPATH": ""}
    run = subprocess.run([sys.executable, "-m", "ablations", "run", "studies/quickstart.yaml", "--no-progress",
                          "--set", "train.epochs=1", "--set", "eval.linear_epochs=5"],
                         cwd=clone, env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "this run: 4 trials finished, 0 failed" in run.stdout
    table = run.stdout.split("linear_top1 (%), mean over seeds")[1]
    for ops in ("| crop ", "| crop+color"):
        assert ops in table
    assert (clone / "reports_out" / "quickstart" / "report.html").is_file()
    assert (home / ".cache" / "simclr-ablations").is_dir()  # decoded into the fresh cache


FULL_CIFAR = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.mark.skipif(not FULL_CIFAR.is_file(), reason=f"needs the full CIFAR-10 tarball at {FULL_CIFAR}")
def test_the_shipped_subset_is_the_seeded_draw_from_full_cifar10(tmp_path):
    """studies/data/cifar10-quickstart.tar.gz is what its script draws, byte for byte, and holds
    exactly the images data.subset 4000 / test_subset 2000 with seed 0 gave the quickstart before."""
    import importlib.util

    import torch

    from core.config import DataConfig
    from core.data import load_dataset

    spec = importlib.util.spec_from_file_location(
        "make_quickstart_subset", REPO / "studies/data/make_quickstart_subset.py"
    )
    assert spec is not None and spec.loader is not None
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    rebuilt = tmp_path / "rebuilt.tar.gz"
    maker.write_tarball(maker.chosen_members(FULL_CIFAR), rebuilt)
    shipped = REPO / "studies/data/cifar10-quickstart.tar.gz"
    assert rebuilt.read_bytes() == shipped.read_bytes()

    cache = tmp_path / "cache"
    drawn = load_dataset(
        DataConfig(source="tarball", root=FULL_CIFAR, subset=4000, test_subset=2000, cache_dir=cache), seed=0
    )
    whole = load_dataset(DataConfig(source="tarball", root=shipped, cache_dir=cache), seed=0)
    for a, b in ((drawn.pretrain, whole.pretrain), (drawn.train_labels, whole.train_labels),
                 (drawn.test_images, whole.test_images), (drawn.test_labels, whole.test_labels)):
        assert torch.equal(a, b)
    assert torch.bincount(whole.train_labels).tolist() == [400] * 10
    assert torch.bincount(whole.test_labels).tolist() == [200] * 10


def test_the_readme_test_command_is_the_one_ci_runs():
    """The quick start's second line says CI runs exactly it: the pytest call there and in .ci/run agree."""
    readme = (REPO / "README.md").read_text()
    quick = readme.split("```bash", 1)[1].split("```", 1)[0]
    (readme_call,) = [line.split("&&", 1)[1].split("#", 1)[0].strip() for line in quick.splitlines()
                      if "pytest" in line]
    ci_calls = [line.split("#", 1)[0].strip() for line in (REPO / ".ci/run").read_text().splitlines()
                if line.lstrip().startswith("pytest")]
    assert ci_calls == [readme_call]
