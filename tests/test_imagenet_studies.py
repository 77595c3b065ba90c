"""studies/imagenet: the paper's ImageNet setting, every study loading at every scale, one run end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ablations.study import load_study, points

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "studies" / "imagenet"
STUDIES = sorted(p for p in FOLDER.glob("*.yaml") if not p.name.startswith("_"))
SCALES = (None, "one_gpu", "imagenet100", "quick")
EXPECTED = {"augment_pairs": 49, "batch_size_epochs": 24, "color_strength": 5, "loss_functions": 5,
            "projection_head": 15, "temperature": 6}


def test_the_six_paper_studies_are_there():
    assert {p.stem for p in STUDIES} == set(EXPECTED)


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
@pytest.mark.parametrize("scale", SCALES)
def test_every_study_loads_at_every_scale_with_the_papers_setting(path, scale):
    study = load_study(path, scale=scale)
    base = study.base
    if scale != "quick":
        assert len(points(study)) == EXPECTED[path.stem]
        assert base.model.encoder == "resnet50" and not base.model.cifar_stem
        assert base.data.image_size == 256 and base.augment.crop.size == 224
        assert base.optim.name == "lars" and base.optim.weight_decay == 1e-6 and base.train.epochs == 100
        assert base.effective_lr() == pytest.approx(0.3 * base.train.batch_size / 256)
        assert base.train.batch_size == (4096 if scale is None else 512)
        assert base.data.classes == ("imagenet100" if scale == "imagenet100" else None)
    if path.stem != "color_strength":  # it varies colour and blur itself
        assert base.augment.color.strength == 1.0 and "blur" in base.augment.ops


def _tree(root: Path, classes: int = 4, train: int = 60, val: int = 25) -> None:
    """A small ImageNet-layout tree of JPEGs of ImageNet-like aspect ratios (class = dominant colour)."""
    rng = np.random.default_rng(0)
    for split, per_class in (("train", train), ("val", val)):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                h, w = int(rng.integers(70, 90)), int(rng.integers(90, 120))
                pixels = rng.integers(0, 90, (h, w, 3)) + np.eye(3, dtype=int)[c % 3] * 150
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"img{i:03d}.JPEG", quality=90)


@pytest.mark.slow
def test_an_imagenet_study_runs_at_the_quick_scale_on_a_tree(tmp_path):
    tree = tmp_path / "imagenet"
    _tree(tree)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HOME": str(tmp_path / "home")}  # a fresh data cache
    run = subprocess.run([sys.executable, "-m", "ablations", "run", str(FOLDER / "color_strength.yaml"),
                          "--scale", "quick", "--data", str(tree), "--max-trials", "2", "--no-progress"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "this run: 2 trials finished, 0 failed" in run.stdout
    assert list((tmp_path / "home" / ".cache" / "simclr-ablations").glob("imagefolder-labelled-*/meta.json"))
