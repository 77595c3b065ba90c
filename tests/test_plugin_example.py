"""The example plugin package (examples/plugin): its science against independent formulas, its
contracts, and the package installed with pip running its study at --scale quick."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from tests.test_engine import REPO

EXAMPLE = REPO / "examples" / "plugin"
SHARED_TARBALL = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture
def example(monkeypatch):
    """The example's modules, imported from its folder (CI installs only the project)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from simclr_plugin_example import dcl, solarize, vit

    return dcl, solarize, vit


def test_dcl_matches_a_per_anchor_loop_of_its_definition(example):
    dcl, _, _ = example
    torch.manual_seed(0)
    z1, z2 = torch.randn(5, 7), torch.randn(5, 7)
    t = 0.3
    z = torch.cat([z1, z2])
    z = z / z.norm(dim=1, keepdim=True)
    n, total = 5, 0.0
    for i in range(2 * n):
        p = (i + n) % (2 * n)
        negatives = [k for k in range(2 * n) if k not in (i, p)]
        total += -float(z[i] @ z[p]) / t + math.log(sum(math.exp(float(z[i] @ z[k]) / t) for k in negatives))
    assert float(dcl.dcl({"temperature": t})(z1, z2)) == pytest.approx(total / (2 * n), rel=1e-5)


def test_dcl_differs_from_nt_xent_only_by_the_positive_in_the_denominator(example):
    from core.losses import nt_xent

    dcl, _, _ = example
    torch.manual_seed(1)
    z1, z2 = torch.randn(6, 4), torch.randn(6, 4)
    # NT-Xent = -s_p/t + log(e^{s_p/t} + sum_neg) >= DCL = -s_p/t + log(sum_neg): never below
    assert float(nt_xent(z1, z2, temperature=0.5)) > float(dcl.dcl({})(z1, z2))
    with pytest.raises(ValueError, match="unknown parameter"):
        dcl.dcl({"tau": 0.1})


def test_solarize_inverts_pixels_at_or_above_the_threshold_of_chosen_images(example):
    _, solarize, _ = example
    t = solarize.solarize({"p": 1.0, "threshold": 0.5})
    x = torch.tensor([0.1, 0.5, 0.9]).view(1, 1, 1, 3).repeat(2, 1, 1, 1)
    params = {"apply": torch.tensor([True, False])}
    y = t.apply(x, params)
    assert y[0].flatten().tolist() == pytest.approx([0.1, 0.5, 0.1]) and torch.equal(y[1], x[1])
    assert torch.equal(t.per_image(x[0]), y[0])  # p = 1: the per-image form always applies
    assert torch.equal(solarize.solarize({"p": 0.0}).per_image(x[0]), x[0])
    drawn = t.sample(torch.zeros(1000, 3, 2, 2), torch.Generator().manual_seed(0))["apply"]
    assert drawn.all()
    rate = solarize.solarize({"p": 0.2}).sample(torch.zeros(20000, 1, 1, 1), torch.Generator().manual_seed(0))
    assert float(rate["apply"].float().mean()) == pytest.approx(0.2, abs=0.01)
    with pytest.raises(ValueError, match="p must be in"):
        solarize.solarize({"p": 2})


def test_the_vit_encoder_pools_to_its_hidden_dim_for_any_channels(example):
    _, _, vit = example
    for channels in (1, 3):
        net, dim = vit.vit({"image_size": 16, "patch_size": 4}, channels)
        assert dim == 64 and net(torch.rand(2, channels, 16, 16)).shape == (2, 64)
    with pytest.raises(ValueError, match="unknown parameter"):
        vit.vit({"depth": 3}, 3)


@pytest.mark.slow
def test_the_example_installs_and_its_study_runs_at_the_quick_scale(tmp_path):
    if not SHARED_TARBALL.exists():
        pytest.skip(f"real data not found: {SHARED_TARBALL}")
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(EXAMPLE)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    assert list(site.glob("simclr_plugin_example-0.1.0.dist-info/entry_points.txt"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(site)]), "OMP_NUM_THREADS": "2"}
    study = EXAMPLE / "studies" / "solarize_vs_color.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "ablations", "run", str(study), "--scale", "quick", "--data", str(SHARED_TARBALL),
         "--no-progress"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "5 trials finished, 0 failed" in done.stdout
    report = (tmp_path / "reports_out" / "plugin_example-quick" / "report.md").read_text()
    for name in ("encoder vit", "loss dcl", "transformation solarize"):
        assert f"{name}: simclr-plugin-example 0.1.0 (entry point" in report


def test_the_per_image_loader_runs_a_plugin_through_its_per_image_form(example):
    from core.config import AugmentConfig
    from core.loaders import TorchvisionViews

    target = "simclr_plugin_example.solarize:solarize"
    cfg = AugmentConfig(ops=["crop", target], params={target: {"p": 1.0, "threshold": 0.0}})
    image = torch.full((3, 16, 16), 0.25)
    v1, v2 = TorchvisionViews(cfg, 16)(image)
    # p = 1 and threshold 0: every pixel is inverted after the crop (of a constant image: still 0.25)
    assert v1.shape == v2.shape == (3, 16, 16)
    assert torch.allclose(v1, torch.full_like(v1, 0.75)) and torch.allclose(v2, torch.full_like(v2, 0.75))
