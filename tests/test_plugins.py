"""Plugins through the real CLI: a throwaway package found by its entry point, run, tracked,
reported and fingerprinted; every refusal (unknown name, import error, broken contract) with exit 2
and nothing written; and the built-ins behind the same registry."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from core import registry
from core.components import ComponentError, build_loss, build_transform, check_components
from core.config import RunConfig, apply_overrides
from tests.cli_process import cli
from tests.test_engine import REPO, TINY

SOLARIZE = '''
import torch


class Solarize:
    name = "solarize"

    def __init__(self, threshold):
        self.threshold = threshold

    def sample(self, x, generator):
        return {"apply": torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5}

    def apply(self, x, params):
        return torch.where(params["apply"].view(-1, 1, 1, 1) & (x >= self.threshold), 1.0 - x, x)


def factory(params):
    if set(params) - {"threshold"}:
        raise ValueError(f"solarize takes only threshold, got {sorted(params)}")
    return Solarize(float(params.get("threshold", 0.5)))
'''


def make_package(root: Path, version: str = "1.0", code: str = SOLARIZE) -> Path:
    """A package ``mysolar`` with one transformation entry point, importable from ``root`` with its
    distribution metadata beside it (what ``pip install`` leaves in site-packages)."""
    (root / "mysolar").mkdir(parents=True, exist_ok=True)
    (root / "mysolar" / "__init__.py").write_text(code)
    for old in root.glob("mysolar-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    info = root / f"mysolar-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: mysolar\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[simclr_ablations.transforms]\nsolarize = mysolar:factory\n")
    return root


def run_cli(
    folder: Path, *args: str, paths: tuple[Path, ...] = (), timeout: float = 300
) -> subprocess.CompletedProcess:
    """The CLI in ``folder``; with ``paths`` (a plugin's site folders) in a fresh interpreter that can see them."""
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), *map(str, paths)])} if paths else None
    return cli(folder, *args, timeout=timeout, env=env)


def study_with(folder: Path, ops: str, extra_base: str = "", grid: str = "  loss.temperature: [0.5]\n") -> Path:
    """The tests' tiny synthetic study (1 epoch) with ``ops`` and more base fields."""
    text = TINY.format(epochs=1).split("grid:")[0]
    text = text.replace("base:\n", f"base:\n  augment: {{ops: {ops}}}\n{extra_base}", 1)
    path = folder / "tiny.yaml"
    path.write_text(text + "grid:\n" + grid)
    return path


def nothing_written(folder: Path) -> bool:
    return not any((folder / name).exists() for name in ("mlflow.db", "optuna.db", "mlruns", "runs", "reports_out"))


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


# ------------------------------------------------------------------ the whole path, through the CLI
@pytest.mark.slow
def test_an_installed_plugin_runs_is_tracked_reported_and_its_version_is_identity(tmp_path):
    pkg = make_package(tmp_path / "site")
    work = tmp_path / "work"
    work.mkdir()
    study = study_with(work, "[crop, solarize]", grid="  augment.params.solarize.threshold: [0.3, 0.7]\n")
    done = run_cli(work, "run", str(study), "--no-progress", paths=(pkg,))
    assert done.returncode == 0, done.stderr
    assert "2 trials finished, 0 failed" in done.stdout
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    trials = client.search_runs([exp.experiment_id], "tags.`ablations.role` = 'trial'")
    assert len(trials) == 2
    for run in trials:
        assert run.data.params["plugin.transform.solarize"] == "mysolar 1.0 (entry point mysolar:factory)"
        assert run.data.tags["plugins"] == "transformation solarize: mysolar 1.0 (entry point mysolar:factory)"
    assert sorted(r.data.params["augment.params.solarize.threshold"] for r in trials) == ["0.3", "0.7"]
    plan = run_cli(work, "plan", str(study), paths=(pkg,))
    assert "plugins: transform solarize: mysolar 1.0 (entry point mysolar:factory)" in plan.stdout
    report = (work / "reports_out" / "tiny" / "report.md").read_text()
    assert "| plugins | transformation solarize: mysolar 1.0 (entry point mysolar:factory) |" in report
    assert "augment.params.solarize.threshold" in report

    make_package(pkg, version="1.1")  # the same code under a new version: another study
    refused = run_cli(work, "run", str(study), "--no-progress", paths=(pkg,))
    assert refused.returncode == 2
    assert ("plugins.transform.solarize: mysolar 1.0 (entry point mysolar:factory) -> "
            "mysolar 1.1 (entry point mysolar:factory)") in refused.stderr, refused.stderr


# ------------------------------------------------------------------ refusals: exit 2, nothing written
def test_an_unknown_name_lists_the_builtins_and_the_installed_plugins(tmp_path):
    pkg = make_package(tmp_path / "site")
    study = study_with(tmp_path, "[crop, solarise]")
    out = run_cli(tmp_path, "run", str(study), paths=(pkg,))
    assert out.returncode == 2 and nothing_written(tmp_path)
    assert f"tiny.yaml:{line_of(study, 'solarise')}" in out.stderr
    assert "unknown transformation 'solarise'" in out.stderr
    assert "built-in: crop, cutout, color, sobel, noise, blur, rotate" in out.stderr
    assert "installed plugins: solarize (mysolar 1.0)" in out.stderr


def test_a_plugin_that_fails_to_import_is_refused_with_its_own_error(tmp_path):
    (tmp_path / "broken_plugin.py").write_text("import numpy_that_is_not_there\n")
    study = study_with(tmp_path, "[crop, 'broken_plugin:factory']")
    out = run_cli(tmp_path, "run", str(study))
    assert out.returncode == 2 and nothing_written(tmp_path)
    assert f"tiny.yaml:{line_of(study, 'broken_plugin')}" in out.stderr
    assert "failed to import: ModuleNotFoundError: No module named 'numpy_that_is_not_there'" in out.stderr


BROKEN = '''
import torch
from torch import nn


class Shrinks:
    name = "shrinks"

    def sample(self, x, generator):
        return {}

    def apply(self, x, params):
        return x[:, :, :-1, :-1]


def shrinks(params):
    return Shrinks()


def vector_loss(params):
    return lambda z1, z2: (z1 - z2).pow(2).sum(dim=1)


def flat_encoder(params, in_channels):
    return nn.Flatten(), 16


def picky(params):
    raise ValueError(f"picky takes no parameters, got {sorted(params)}")
'''


@pytest.mark.parametrize(
    ("fields", "blamed", "message"),
    [
        ("  augment: {ops: [crop, 'broken:shrinks']}\n", "broken:shrinks",
         "apply() returned shape (4, 3, 15, 15) for an input of (4, 3, 16, 16)"),
        ("  loss: {name: 'broken:vector_loss'}\n", "broken:vector_loss",
         "must return a scalar tensor (ndim 0), got shape (8,)"),
        ("  model: {encoder: 'broken:flat_encoder', width: 4, head_dim: 16}\n", "broken:flat_encoder",
         "returned (2, 768) for 2 images; expected (2, 16), pooled features"),
        ("  augment: {ops: [crop, 'broken:picky'], params: {'broken:picky': {level: 3}}}\n", "broken:picky",
         "its factory raised ValueError: picky takes no parameters, got ['level']"),
    ],
    ids=["transform-shape", "loss-not-scalar", "encoder-shape", "params-rejected"],
)
def test_a_plugin_that_breaks_its_contract_is_refused_before_any_store(tmp_path, fields, blamed, message):
    (tmp_path / "broken.py").write_text(BROKEN)
    text = TINY.format(epochs=1).split("grid:")[0]
    lines = [line for line in text.splitlines() if not (line.startswith("  model:") and "encoder" in fields)]
    path = tmp_path / "tiny.yaml"
    path.write_text("\n".join(lines).replace("base:", "base:\n" + fields.rstrip("\n"), 1)
                    + "\ngrid:\n  loss.temperature: [0.5]\n")
    out = run_cli(tmp_path, "run", str(path))
    assert out.returncode == 2, out.stderr
    assert nothing_written(tmp_path)
    assert message in out.stderr, out.stderr
    assert f"tiny.yaml:{line_of(path, blamed)}" in out.stderr, out.stderr


def test_the_torchvision_loader_refuses_a_plugin_without_a_per_image_form(tmp_path):
    pkg = make_package(tmp_path / "site")
    study = study_with(tmp_path, "[crop, solarize]")
    out = run_cli(tmp_path, "plan", str(study), "--set", "train.loader=torchvision", paths=(pkg,))
    assert out.returncode == 2, out.stderr
    assert "has no per-image form, which train.loader: torchvision needs" in out.stderr


# ------------------------------------------------------------------ the registry and the built-ins
def test_builtins_resolve_through_the_same_lookup_and_are_not_plugins():
    config = RunConfig()
    assert [c.name for c in registry.plugins_of(config)] == []
    assert not registry.uses_plugins(config)
    for kind, names in (("transform", registry.BUILTIN_TRANSFORMS), ("loss", registry.BUILTIN_LOSSES),
                        ("encoder", registry.BUILTIN_ENCODERS)):
        for name in names:
            component = registry.resolve(kind, name)
            assert component.builtin and component.origin() == "built-in" and callable(component.factory)


def test_a_module_attribute_plugin_is_identified_by_its_source_file(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "local_solar.py").write_text(SOLARIZE)
    config = apply_overrides(RunConfig(), {"augment.ops": ["crop", "local_solar:factory"],
                                           "data.source": "synthetic"})
    (key, origin), = registry.provenance(config).items()
    assert key == "transform.local_solar:factory" and origin.startswith("local_solar:factory (sha256:")
    (tmp_path / "local_solar.py").write_text(SOLARIZE + "\n# edited\n")
    assert registry.provenance(config)[key] != origin  # an edited file is other code
    check_components(config)  # it keeps the protocol
    t = build_transform("local_solar:factory", config.augment)
    x = torch.tensor([0.2, 0.6]).view(1, 1, 1, 2).expand(2, 1, 1, 2).clone()
    y = t.apply(x, {"apply": torch.tensor([True, False])})
    assert y[0].flatten().tolist() == pytest.approx([0.2, 0.4]) and y[1].flatten().tolist() == pytest.approx([0.2, 0.6])


def test_a_plugin_loss_gets_its_params_and_the_reduction(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "scaled_loss.py").write_text(
        "def factory(params):\n    return lambda z1, z2: (z1 * z2).sum() * params['scale']\n")
    cfg = RunConfig().loss.model_copy(update={"name": "scaled_loss:factory", "params": {"scale": 3.0}})
    z = torch.ones(2, 2)
    assert float(build_loss(cfg)(z, z)) == pytest.approx(4 * 3.0)
    summed = cfg.model_copy(update={"reduction": "sum_directions"})
    assert float(build_loss(summed)(z, z)) == pytest.approx(2 * 4 * 3.0)


def test_a_component_error_blames_the_field():
    error = ComponentError(("loss", "name"), "broken")
    assert error.loc == ("loss", "name") and str(error) == "broken"
