"""Named recipes: every value a recipe sets equals what its cited source states, and a recipe
behaves as shorthand for its fields wherever it is named (a run config file, --recipe, a study's
base, a study axis) without changing any existing identity.

The expected values below were written down from reading the sources themselves (the commits
named in each recipe's ``source``), not read back from the recipe files.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from ablations.plan import fingerprint
from ablations.runconfig_file import load_run_config
from ablations.study import load_study, points, trial_config
from ablations.yamlfile import ConfigFileError
from core.config import RunConfig
from core.recipes import RecipeError, load_recipe, nested_fields, recipe_names
from tests.cli_process import cli

ROOT = Path(__file__).resolve().parents[1]

V1 = {  # google-research/simclr@be133b3 README.md:31-36 and run.py / model_util.py / lars_optimizer.py defaults
    "model.encoder": "resnet18",        # --resnet_depth=18
    "model.cifar_stem": True,           # cifar_stem=FLAGS.image_size <= 32 with --image_size=32
    "model.head": "nonlinear",          # head_proj_mode default
    "model.head_dim": 128,              # head_proj_dim default
    "augment.ops": ["crop", "color"],   # --use_blur=False; the crop is always applied
    "augment.color.strength": 0.5,      # --color_jitter_strength=0.5
    "loss.name": "nt_xent",
    "loss.temperature": 0.5,            # --temperature=0.5
    "loss.normalize": True,             # hidden_norm default True
    "optim.name": "lars",               # optimizer default
    "optim.lr": 1.0,                    # --learning_rate=1.0
    "optim.lr_scaling": "linear",       # lr * train_batch_size / 256
    "optim.weight_decay": 1e-6,         # --weight_decay=1e-6
    "optim.momentum": 0.9,
    "optim.lars_eta": 0.001,            # EETA_DEFAULT
    "optim.warmup_epochs": 10,
    "train.batch_size": 512,            # --train_batch_size=512
    "train.epochs": 1000,               # --train_epochs=1000
}
V2 = {**V1, "optim.weight_decay": 1e-4}  # google-research/simclr@383d414 README.md:81 --weight_decay=1e-4
CODE = {  # what both official codes do beyond the command's flags
    "model.head_bn_out": "scale",            # last head layer: BN with center=False (no shift), scale on
    "model.zero_init_residual": True,        # init_zero=True on every block's last BN
    # distorted_bounding_box_crop(min_object_covered=0.1, ..., max_attempts=100)
    "augment.crop.sampler": "tf",
    "augment.crop.interpolation": "bicubic",  # tf.image.resize_bicubic
    "loss.reduction": "sum_directions",      # loss = loss_a + loss_b
    "eval.linear_protocol": "official",      # finetune mode: crop + flip, frozen BN, no standardisation
}
EXPECTED = {
    "official_v1_cifar10": V1,
    "official_v2_cifar10": V2,
    "official_v1_code_cifar10": {**V1, **CODE, "augment.color.brightness": "additive"},  # tf.image.random_brightness
    "official_v2_code_cifar10": {**V2, **CODE, "augment.color.brightness": "multiplicative",  # impl='simclrv2'
                                 "model.head_layers": 3},  # num_proj_layers=3
    "lightly_cifar10": {  # lightly-ai/lightly@e8d317f cifar10_benchmark.py, benchmarks.rst:179, heads.py
        "model.encoder": "resnet18", "model.cifar_stem": True, "model.head": "nonlinear", "model.head_dim": 128,
        "model.head_bn_out": "affine",        # nn.BatchNorm1d(output_dim): affine by default
        "augment.ops": ["crop", "color"],      # gaussian_blur=0.0
        "augment.color.strength": 0.5,         # cj_strength=0.5
        "loss.name": "nt_xent", "loss.temperature": 0.5,  # NTXentLoss() default temperature 0.5
        "optim.name": "sgd", "optim.lr": 0.12, "optim.lr_scaling": "linear",  # 0.06 x B/128
        "optim.momentum": 0.9, "optim.weight_decay": 5e-4,
        "optim.exclude_bias_bn": False,        # SGD(self.parameters(), ...)
        "optim.warmup_epochs": 0,              # CosineAnnealingLR, no warmup
        "train.batch_size": 512, "train.epochs": 200,  # the 84.8% row
        "eval.knn_k": 200, "eval.knn_temperature": 0.1,
    },
    "solo_cifar10": {  # vturrisi/solo-learn@9187ea3 scripts/pretrain/cifar/simclr.yaml, symmetric.yaml, solo/
        "model.encoder": "resnet18", "model.cifar_stem": True, "model.head": "nonlinear",
        "model.head_hidden_bn": False,         # Linear-ReLU-Linear, no BN
        "model.head_hidden_dim": 2048, "model.head_dim": 256,
        "augment.ops": ["crop", "color", "blur"], "augment.crop.interpolation": "bicubic",
        "augment.crop.scale": [0.08, 1.0],
        "augment.color.strength": 1.0,         # jitter 0.8, 0.8, 0.8, 0.2
        "augment.color.jitter_p": 0.8, "augment.color.grayscale_p": 0.2,
        "augment.blur.p": 0.5, "augment.blur.sigma": [0.1, 2.0],
        "augment.blur.kernel_fraction": 0.4,   # derived: PIL's GaussianBlur has no 10%-of-side cut
        "loss.name": "nt_xent", "loss.temperature": 0.2,
        "optim.name": "lars", "optim.lr": 0.4, "optim.lr_scaling": "linear",  # lr * batch * devices / 256
        "optim.weight_decay": 1e-4, "optim.momentum": 0.9, "optim.lars_eta": 0.02,
        "optim.lars_clip_lr": True, "optim.exclude_bias_bn": True,  # exclude_bias_n_norm: True
        "optim.warmup_epochs": 10,             # warmup_cosine, base.py default warmup_epochs 10
        "train.batch_size": 256, "train.epochs": 1000,
    },
    "paper_imagenet": {  # arXiv:2002.05709v3 sec 2.3, Appendix A and B.6
        "model.encoder": "resnet50", "model.cifar_stem": False, "model.head": "nonlinear", "model.head_dim": 128,
        "augment.ops": ["crop", "color", "blur"], "augment.crop.size": 224, "augment.color.strength": 1.0,
        "augment.blur.p": 0.5,
        "loss.name": "nt_xent", "loss.temperature": 0.1,
        "optim.name": "lars", "optim.lr": 0.3, "optim.lr_scaling": "linear", "optim.weight_decay": 1e-6,
        "optim.warmup_epochs": 10,
        "train.batch_size": 4096, "train.epochs": 100,
        "eval.linear_epochs": 90, "eval.linear_batch_size": 4096, "eval.linear_lr": 0.1,
    },
}
SOURCE_OF = {"official": "google-research/simclr@", "lightly": "lightly-ai/lightly@", "solo": "vturrisi/solo-learn@",
             "paper": "arXiv:2002.05709v3"}


def test_every_shipped_recipe_is_checked_here():
    assert set(recipe_names()) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_value_equals_what_the_cited_source_states(name):
    recipe = load_recipe(name)
    assert recipe.values == EXPECTED[name]
    assert set(recipe.citations) == set(recipe.values)
    prefix = SOURCE_OF[name.split("_")[0]]
    for dotted, citation in recipe.citations.items():
        assert citation.startswith((prefix, "derived:")), (dotted, citation)  # the source is named on every line


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_recipe_resolves_to_a_valid_run_config(name):
    config = RunConfig.model_validate(nested_fields(name))
    dumped = config.model_dump(mode="json")
    for dotted, value in EXPECTED[name].items():
        node = dumped
        for part in dotted.split("."):
            node = node[part]
        assert node == value, dotted


def test_official_v1_is_todays_defaults():
    """The first README command sets exactly what the run config's defaults already are."""
    assert RunConfig.model_validate(nested_fields("official_v1_cifar10")) == RunConfig()


def test_unknown_recipe_names_the_shipped_ones():
    with pytest.raises(RecipeError, match="official_v1_cifar10"):
        load_recipe("official_v3")


# ------------------------------------------------------------------- where a recipe can be named
def test_run_config_file_recipe_then_file_fields_then_set(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("recipe: lightly_cifar10\noptim: {weight_decay: 1.0e-3}\n")
    config = load_run_config(path, {"train.epochs": 3})
    assert (config.optim.name, config.optim.weight_decay, config.train.epochs) == ("sgd", 1e-3, 3)
    assert config.model.head_bn_out == "affine"
    option = load_run_config(path, {"recipe": "solo_cifar10"})  # --recipe wins over the file's
    assert (option.optim.name, option.loss.temperature, option.optim.weight_decay) == ("lars", 0.2, 1e-3)


def test_unknown_recipe_in_a_file_names_file_and_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train: {epochs: 2}\nrecipe: nope\n")
    with pytest.raises(ConfigFileError, match=r"run.yaml:2: recipe: unknown recipe 'nope' \(recipes: lightly_cifar10"):
        load_run_config(path)


STUDY = textwrap.dedent("""
    name: recipe_axis
    base:
      recipe: official_v1_cifar10
      data: {source: synthetic}
      model: {encoder: resnet_small, width: 4}
      train: {epochs: 1, batch_size: 8}
      optim: {weight_decay: 3.0e-3}
    grid:
      recipe: [official_v2_cifar10, lightly_cifar10]
""")


def test_a_study_varies_the_recipe_under_its_own_fields(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(STUDY)
    study = load_study(path)
    configs = {p.params["recipe"]: trial_config(study, p.params, p.seed) for p in points(study)}
    assert configs["lightly_cifar10"].optim.name == "sgd" and configs["official_v2_cifar10"].optim.name == "lars"
    assert all(c.optim.weight_decay == 3e-3 for c in configs.values())  # the study's own field wins
    assert all(c.model.encoder == "resnet_small" for c in configs.values())
    assert study.recipe == "official_v1_cifar10" and study.base.optim.weight_decay == 3e-3


def test_a_varied_recipe_is_part_of_the_fingerprint_and_a_base_recipe_is_its_fields(tmp_path, monkeypatch):
    import core.recipes as recipes

    path = tmp_path / "s.yaml"
    path.write_text(STUDY)
    before = fingerprint(load_study(path))
    original = recipes.load_recipe.__wrapped__

    def edited(name: str):  # lightly's recipe file changed: another study
        r = original(name)
        return r if name != "lightly_cifar10" else recipes.Recipe(r.name, r.summary, r.source,
                                                                    {**r.values, "loss.temperature": 0.3}, r.citations)

    monkeypatch.setattr("ablations.plan.load_recipe", edited)
    assert fingerprint(load_study(path)) != before
    spelled = tmp_path / "t.yaml"  # a base recipe is its fields: spelled out, the same study
    fields = yaml.safe_load(STUDY)
    fields["base"].pop("recipe")
    for dotted, value in load_recipe("official_v1_cifar10").values.items():
        node = fields["base"]
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node.setdefault(last, value)
    spelled.write_text(yaml.safe_dump(fields))
    monkeypatch.undo()
    assert fingerprint(load_study(spelled)) == before


def test_a_bad_recipe_axis_is_refused_at_its_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(STUDY.replace("lightly_cifar10]", "lightly]"))
    with pytest.raises(ConfigFileError, match=r"s.yaml:10: grid.recipe: unknown recipe 'lightly'"):
        load_study(path)


# ------------------------------------------------------------------- the commands, as a user runs them
def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return cli(cwd, *args, timeout=120)


def test_recipes_lists_each_with_its_source_and_shows_one():
    out = _cli("recipes")
    assert out.returncode == 0
    lines = out.stdout.strip().splitlines()
    assert len(lines) == len(EXPECTED)
    for name, line in zip(sorted(EXPECTED), lines):
        assert line.startswith(name) and SOURCE_OF[name.split("_")[0]].rstrip("@") in line
    one = _cli("recipes", "solo_cifar10")
    assert one.returncode == 0 and "optim.lars_clip_lr" in one.stdout and "solo/utils/lars.py:146-147" in one.stdout
    assert _cli("recipes", "nope").returncode == 2


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_prints_the_resolved_config_of_each_recipe(name, capsys):
    from ablations.cli import main  # in this process: the same command, without starting Python seven times

    assert main(["config", "--recipe", name]) == 0
    printed = RunConfig.model_validate(yaml.safe_load(capsys.readouterr().out))
    assert printed == RunConfig.model_validate(nested_fields(name))


def test_config_applies_file_recipe_set_and_refuses_two_recipes(tmp_path):
    out = _cli("config", "configs/cifar10_cpu_small.yaml", "--recipe", "lightly_cifar10", "--set", "train.epochs=7")
    printed = yaml.safe_load(out.stdout)
    assert printed["optim"]["name"] == "sgd" and printed["train"]["epochs"] == 7 and printed["model"]["width"] == 16
    both = _cli("config", "--recipe", "solo_cifar10", "--set", "recipe=lightly_cifar10")
    assert both.returncode == 2 and "both name a recipe" in both.stderr


@pytest.mark.slow
def test_train_with_a_recipe_records_it(tmp_path):
    out = _cli("train", "--recipe", "official_v2_code_cifar10", "--set", "data.source=synthetic",
               "--set", "model.encoder=resnet_small", "--set", "model.width=4", "--set", "train.epochs=1",
               "--set", "train.batch_size=32", "--set", "eval.linear_epochs=2", "--set", "eval.knn_k=[20, 5]",
               "--set", "train.progress=false", "--json", str(tmp_path / "r.json"), "--run-dir", str(tmp_path / "run"),
               cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["recipe"] == "official_v2_code_cifar10"
    assert result["config"]["model"]["head_layers"] == 3 and result["config"]["loss"]["reduction"] == "sum_directions"
    assert {"knn_top1", "knn_top1_k5", "linear_top1"} <= set(result["metrics"])
    assert "augmented training images" in result["protocols"]["linear_top1"]
