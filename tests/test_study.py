"""Study files: the shipped studies load with the right trial counts; expansion and validation errors."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from ablations.study import Point, Study, StudyFileError, load_study, points, trial_config
from ablations.yamlfile import ConfigFileError
from core.config import TRANSFORMS, RunConfig

STUDIES = Path(__file__).resolve().parent.parent / "studies"

EXPECTED = {
    "augment_pairs.yaml": 49,
    "color_strength.yaml": 5,
    "projection_head.yaml": 15,  # none once, linear and nonlinear at 7 dims
    "batch_size_epochs.yaml": 20,
    "temperature.yaml": 6,  # the paper's six rows of Table 5
    "loss_functions.yaml": 5,
    "quickstart.yaml": 4,
    "temperature_search.yaml": 0,
    "cpu_calibration.yaml": 3,
    "recipes.yaml": 6,  # the six CIFAR-10 recipes of core/recipes/
}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(ConfigFileError) as info:
        load_study(path, **kwargs)
    return str(info.value)


# ------------------------------------------------------------------------------ shipped studies


def test_study_file_error_is_config_file_error():
    assert StudyFileError is ConfigFileError


def test_every_shipped_study_is_listed():
    shipped = {p.name for p in STUDIES.glob("*.yaml") if not p.name.startswith("_")}
    assert shipped == set(EXPECTED)


@pytest.mark.parametrize("name, count", sorted(EXPECTED.items()))
def test_shipped_study_counts(name, count):
    study = load_study(STUDIES / name)
    assert isinstance(study, Study)
    assert study.name == Path(name).stem
    assert study.source == STUDIES / name
    assert study.text == (STUDIES / name).read_text()
    assert study.text.startswith("#")  # header comment
    assert "python -m ablations run studies/" + name in study.text
    pts = points(study)
    assert len(pts) == count
    assert [p.index for p in pts] == list(range(count))
    assert len({p.key() for p in pts}) == count  # every point distinct
    assert study.report["kind"]
    if name == "quickstart.yaml":  # ships its own data (studies/data), so a fresh clone runs it
        assert study.base.data.source == "tarball"
        assert str(study.base.data.root) == "studies/data/cifar10-quickstart.tar.gz"
    else:  # CIFAR-10 through torchvision wherever --data / $SIMCLR_DATA says, fetched when missing
        assert study.base.data.source == "cifar10" and study.base.data.download
        assert "root" not in study.base.data.model_fields_set
    for p in pts:
        cfg = trial_config(study, p.params, p.seed)
        assert isinstance(cfg, RunConfig)
        assert cfg.train.seed == p.seed


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n != "quickstart.yaml"))
def test_shipped_studies_have_quick_scale(name):
    full = load_study(STUDIES / name)
    quick = load_study(STUDIES / name, scale="quick")
    assert quick.scale == "quick"
    b = quick.base
    assert (b.data.subset, b.data.test_subset) == (2000, 1000)
    assert (b.model.encoder, b.model.width) == ("resnet_small", 8)
    assert b.train.epochs <= 3 and b.train.batch_size == 128
    assert b.eval.linear_epochs == 10 and b.eval.knn_every == 1
    assert full.base.model.encoder == "resnet18" and full.base.train.batch_size == 512
    assert full.base.model.cifar_stem
    if name == "batch_size_epochs.yaml":
        assert len(points(quick)) == 12
        assert max(quick.grid["train.batch_size"]) <= 2000
    elif name == "temperature_search.yaml":
        assert quick.search.n_trials == 6
    else:
        assert len(points(quick)) == EXPECTED[name]


def test_quickstart_needs_no_scale():
    study = load_study(STUDIES / "quickstart.yaml")
    assert study.scales == {}
    b = study.base
    assert (b.data.subset, b.data.test_subset, b.model.encoder, b.model.width) == (None, None, "resnet_small", 8)
    assert (STUDIES.parent / b.data.root).is_file()  # the shipped 4,000 + 2,000 images, taken whole
    assert (b.train.epochs, b.train.batch_size) == (10, 256)
    assert study.report["kind"] == "generic"


def test_augment_pairs_grid_is_figure5():
    study = load_study(STUDIES / "augment_pairs.yaml")
    assert study.base.augment.mode == "asymmetric"
    ops = [p.params["augment.ops"] for p in points(study)]
    expected = [[a] if a == b else [a, b] for a in TRANSFORMS for b in TRANSFORMS]
    assert ops == expected
    assert "augment.mode=symmetric" in study.description
    sym = load_study(STUDIES / "augment_pairs.yaml", overrides={"augment.mode": "symmetric"})
    assert sym.base.augment.mode == "symmetric" and len(points(sym)) == 49


def test_color_strength_and_loss_functions_rows():
    cs = points(load_study(STUDIES / "color_strength.yaml"))
    assert [p.params["augment.color.strength"] for p in cs] == [0.125, 0.25, 0.5, 1.0, 1.0]
    assert cs[-1].params["augment.ops"] == ["crop", "color", "blur"]
    lf = load_study(STUDIES / "loss_functions.yaml")
    assert lf.base.loss.negatives == "one_view"
    rows = {(p.params["loss.name"], p.params["loss.semi_hard"]) for p in points(lf)}
    assert rows == {
        ("nt_xent", False),
        ("nt_logistic", False),
        ("nt_logistic", True),
        ("margin_triplet", False),
        ("margin_triplet", True),
    }


def test_temperature_search_spec():
    study = load_study(STUDIES / "temperature_search.yaml")
    assert points(study) == []
    s = study.search
    assert s.n_trials == 20 and s.sampler == "tpe" and s.pruner == "median"
    t = s.params["loss.temperature"]
    assert (t.type, t.low, t.high, t.log) == ("float", 0.02, 2.0, True)
    cfg = trial_config(study, {"loss.temperature": 0.3}, 7)
    assert cfg.loss.temperature == 0.3 and cfg.train.seed == 7


# ------------------------------------------------------------------------------ expansion


def test_grid_product_order_zip_rows_and_repeats(tmp_path):
    path = write(
        tmp_path,
        "s.yaml",
        """
        name: tiny
        base: {train: {seed: 10}}
        grid:
          loss.temperature: [0.1, 0.5]
          loss.normalize: [true, false]
        zip:
          model.head: [linear, nonlinear]
          model.head_dim: [32, 64]
        repeats: 2
        """,
    )
    study = load_study(path)
    pts = points(study)
    assert len(pts) == 2 * 2 * 2 * 2
    combos = [
        (
            p.params["loss.temperature"],
            p.params["loss.normalize"],
            p.params["model.head"],
            p.params["model.head_dim"],
            p.repeat,
        )
        for p in pts
    ]
    assert combos[:5] == [
        (0.1, True, "linear", 32, 0),
        (0.1, True, "linear", 32, 1),
        (0.1, True, "nonlinear", 64, 0),
        (0.1, True, "nonlinear", 64, 1),
        (0.1, False, "linear", 32, 0),
    ]
    assert combos[-1] == (0.5, False, "nonlinear", 64, 1)
    assert [p.seed for p in pts[:2]] == [10, 11]
    assert list(pts[0].params) == ["loss.temperature", "loss.normalize", "model.head", "model.head_dim"]
    assert pts[0].label() == "loss.temperature=0.1, loss.normalize=true, model.head=linear, model.head_dim=32, seed=10"
    assert pts[0].key() != pts[1].key()
    assert Point(0, dict(pts[0].params), 0, 10).key() == pts[0].key()  # stable
    assert re.fullmatch(r"[0-9a-f]{10}", pts[0].key())
    cfg = trial_config(study, pts[3].params, pts[3].seed)
    assert (cfg.loss.temperature, cfg.model.head, cfg.model.head_dim, cfg.train.seed) == (0.1, "nonlinear", 64, 11)


def test_no_axes_is_one_point(tmp_path):
    study = load_study(write(tmp_path, "s.yaml", "name: one\nrepeats: 3\n"))
    assert [(p.params, p.seed) for p in points(study)] == [({}, 0), ({}, 1), ({}, 2)]


def test_extends_chain_and_precedence(tmp_path):
    write(
        tmp_path,
        "grand.yaml",
        """
        name: grand
        description: grand
        base:
          loss: {temperature: 0.2, normalize: false}
          train: {epochs: 7, batch_size: 64}
        grid: {loss.temperature: [0.1, 0.3]}
        scales:
          quick: {train.epochs: 1}
        report: {kind: temperature, note: keep}
        """,
    )
    (tmp_path / "sub").mkdir()
    write(
        tmp_path / "sub",
        "parent.yaml",
        """
        extends: ../grand.yaml
        name: parent
        base:
          train: {epochs: 5}
        repeats: 2
        """,
    )
    child = write(
        tmp_path / "sub",
        "child.yaml",
        """
        extends: parent.yaml
        name: child
        base:
          loss: {temperature: 0.7}
        grid: {model.head_dim: [16, 32, 64]}
        scales:
          quick: {train.batch_size: 32}
        report: {kind: generic}
        """,
    )
    study = load_study(child)
    assert study.name == "child" and study.description == "grand"
    assert study.base.loss.temperature == 0.7  # child over grandparent
    assert study.base.loss.normalize is False  # deep merge keeps the grandparent's sibling key
    assert study.base.train.epochs == 5 and study.base.train.batch_size == 64
    assert study.grid == {"model.head_dim": [16, 32, 64]}  # the child's grid replaces the parent's
    assert study.repeats == 2
    assert study.report == {"kind": "generic", "note": "keep"}
    assert study.text == child.read_text()
    quick = load_study(child, scale="quick")
    assert (quick.base.train.epochs, quick.base.train.batch_size) == (1, 32)  # scales merged by name
    over = load_study(child, overrides={"train.epochs": 9}, scale="quick")
    assert over.base.train.epochs == 9  # --set beats the scale
    assert over.overrides == {"train.epochs": 9}


def test_name_is_not_inherited(tmp_path):
    write(tmp_path, "p.yaml", "name: parent\n")
    child = write(tmp_path, "c.yaml", "extends: p.yaml\ndescription: x\n")
    assert error_of(child).startswith(f"{child}:1: name: missing")


def test_scale_replaces_axes_and_search(tmp_path):
    path = write(
        tmp_path,
        "s.yaml",
        """
        name: scaled
        base: {data: {subset: 100}}
        grid:
          train.batch_size: [8, 16]
          train.epochs: [1, 2, 3]
        zip:
          loss.temperature: [0.1, 0.2]
          loss.margin: [0.0, 0.1]
        scales:
          small:
            model.width: 4
            grid: {train.batch_size: [4]}
            zip: {loss.temperature: [0.3, 0.4]}
            repeats: 2
        """,
    )
    full = load_study(path)
    assert len(points(full)) == 2 * 3 * 2
    small = load_study(path, scale="small")
    assert small.base.model.width == 4
    assert list(small.grid) == ["train.batch_size", "train.epochs"]  # key order kept
    assert small.grid == {"train.batch_size": [4], "train.epochs": [1, 2, 3]}
    assert small.zip["loss.temperature"] == [0.3, 0.4]
    assert len(points(small)) == 1 * 3 * 2 * 2

    search = write(
        tmp_path,
        "search.yaml",
        """
        name: srch
        search:
          params:
            loss.temperature: {type: float, low: 0.05, high: 1.0, log: true}
            model.head: {type: categorical, choices: [linear, nonlinear]}
          n_trials: 30
        scales:
          quick: {search: {n_trials: 3, sampler: random}}
        """,
    )
    q = load_study(search, scale="quick")
    assert (q.search.n_trials, q.search.sampler, q.search.pruner) == (3, "random", "median")
    assert set(q.search.params) == {"loss.temperature", "model.head"}
    assert load_study(search).search.n_trials == 30


def test_scale_cannot_add_an_axis(tmp_path):
    path = write(
        tmp_path,
        "s.yaml",
        """
        name: s
        grid: {loss.temperature: [0.1]}
        scales:
          quick:
            grid:
              loss.margin: [0.1]
        """,
    )
    msg = error_of(path, scale="quick")
    assert msg.startswith(f"{path}:6: scales.quick.grid.loss.margin:")
    assert "axes: loss.temperature" in msg


def test_set_overrides(tmp_path):
    path = write(tmp_path, "s.yaml", "name: s\ngrid: {loss.temperature: [0.1, 0.2]}\n")
    study = load_study(path, overrides={"augment.mode": "asymmetric", "augment.color": {"strength": 1.0}})
    assert study.base.augment.mode == "asymmetric"
    assert study.base.augment.color.strength == 1.0 and study.base.augment.color.jitter_p == 0.8  # merged
    with pytest.raises(ConfigFileError,
                       match=r"--set loss\.temprature: no field 'temprature' in loss \(allowed: .*temperature"):
        load_study(path, overrides={"loss.temprature": 0.1})
    with pytest.raises(ConfigFileError, match=r"--set loss\.temperature: .*axis"):
        load_study(path, overrides={"loss.temperature": 0.3})
    with pytest.raises(ConfigFileError, match=r"^--set train\.batch_size=1: base\.train\.batch_size: "):
        load_study(path, overrides={"train.batch_size": 1})


# ------------------------------------------------------------------------------ bad input


def test_unknown_top_level_key(tmp_path):
    path = write(tmp_path, "s.yaml", "name: s\n\ngirds:\n  loss.temperature: [0.1]\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}:3: unknown key 'girds' (allowed: ")
    assert "grid" in msg and "zip" in msg and "search" in msg and "extends" in msg
    assert "source" not in msg and "text" not in msg


def test_loader_fields_are_not_settable(tmp_path):
    path = write(tmp_path, "s.yaml", "name: s\nsource: other.yaml\n")
    assert error_of(path).startswith(f"{path}:2: unknown key 'source'")


def test_unknown_key_in_base(tmp_path):
    path = write(
        tmp_path,
        "s.yaml",
        """
        name: s
        base:
          loss:
            temprature: 0.1
        """,
    )
    msg = error_of(path)
    assert msg.startswith(f"{path}:4: base.loss.temprature: unknown key 'temprature' (allowed: ")
    assert "temperature" in msg and "semi_hard" in msg


def test_unknown_key_in_search(tmp_path):
    path = write(
        tmp_path,
        "s.yaml",
        """
        name: s
        search:
          params:
            loss.temperature: {type: float, low: 0.1, high: 1.0, logg: true}
          n_trials: 4
          samplr: tpe
        """,
    )
    msg = error_of(path)
    assert f"{path}:4: search.params.loss.temperature.logg: unknown key 'logg' (allowed: " in msg
    assert f"{path}:6: search.samplr: unknown key 'samplr' (allowed: " in msg
    assert msg.startswith(f"{path}:")


def test_wrong_type(tmp_path):
    path = write(tmp_path, "s.yaml", "name: s\nrepeats: many\n")
    assert re.match(rf"{re.escape(str(path))}:2: repeats: .*integer", error_of(path))
    path = write(tmp_path, "t.yaml", "name: s\ngrid:\n  loss.temperature: 0.1\n")
    assert re.match(rf"{re.escape(str(path))}:3: grid\.loss\.temperature: .*list", error_of(path))
    path = write(tmp_path, "u.yaml", "name: s\nmetric: accuracy\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}:2: metric: ") and "linear_top1" in msg and "knn_top5" in msg


def test_bad_name(tmp_path):
    path = write(tmp_path, "s.yaml", "name: 'my study!'\n")
    assert error_of(path).startswith(f"{path}:1: name: ")


def test_grid_key_naming_no_field(tmp_path):
    path = write(
        tmp_path,
        "s.yaml",
        """
        name: s
        grid:
          loss.temperature: [0.1]
          loss.temprature: [0.2]
        """,
    )
    msg = error_of(path)
    assert msg.startswith(f"{path}:4: grid.loss.temprature: no field 'temprature' in loss (allowed: ")
    assert "temperature" in msg
    path = write(tmp_path, "t.yaml", "name: s\nzip:\n  lose.temperature: [0.1]\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}:3: zip.lose.temperature: no field 'lose' in the run config (allowed: ")
    assert "loss" in msg
    path = write(tmp_path, "u.yaml", "name: s\ngrid:\n  train.epochs.x: [1]\n")
    assert error_of(path).startswith(f"{path}:3: grid.train.epochs.x: ")


def test_negative_temperature_in_grid(tmp_path):
    path = write(
        tmp_path,
        "s.yaml",
        """
        name: s
        grid:
          loss.normalize: [true, false]
          loss.temperature: [0.1, -0.5]
        """,
    )
    msg = error_of(path)
    assert msg.startswith(f"{path}:4: grid.loss.temperature: ")
    assert "greater than 0" in msg and "-0.5" in msg


def test_batch_size_one(tmp_path):
    path = write(tmp_path, "s.yaml", "name: s\ngrid:\n  model.head: [linear]\n  train.batch_size: [64, 1]\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}:4: grid.train.batch_size: ") and "greater than or equal to 2" in msg
    # larger than the training subset: impossible, caught without reading data
    path = write(tmp_path, "t.yaml", "name: s\nbase: {data: {subset: 100}}\ngrid:\n  train.batch_size: [64, 512]\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}:4: grid.train.batch_size: ") and "data.subset = 100" in msg


def test_bad_value_from_parent_points_at_parent(tmp_path):
    parent = write(tmp_path, "p.yaml", "name: p\nbase:\n  loss:\n    temperature: -1\n")
    child = write(tmp_path, "c.yaml", "extends: p.yaml\nname: c\n")
    assert error_of(child).startswith(f"{parent}:4: base.loss.temperature: ")


def test_bad_value_from_scale_points_at_scale(tmp_path):
    path = write(
        tmp_path,
        "s.yaml",
        """
        name: s
        grid: {train.batch_size: [64]}
        scales:
          quick:
            grid:
              train.batch_size: [1]
            model.width: 2
        """,
    )
    msg = error_of(path, scale="quick")
    assert msg.startswith(f"{path}:7: base.model.width: ")
    path = write(tmp_path, "t.yaml",
                 "name: s\ngrid: {train.batch_size: [64]}\nscales:\n  quick:\n    grid: {train.batch_size: [1]}\n")
    assert error_of(path, scale="quick").startswith(f"{path}:5: grid.train.batch_size: ")


def test_zip_length_mismatch(tmp_path):
    path = write(
        tmp_path,
        "s.yaml",
        """
        name: s
        zip:
          loss.temperature: [0.1, 0.2, 0.5]
          loss.normalize: [true, false]
        """,
    )
    msg = error_of(path)
    assert msg.startswith(f"{path}:4: zip.loss.normalize: zip lists must all have the same length")
    assert "loss.temperature: 3" in msg and "loss.normalize: 2" in msg


def test_empty_axis(tmp_path):
    path = write(tmp_path, "s.yaml", "name: s\ngrid:\n  loss.temperature: []\n")
    assert error_of(path).startswith(f"{path}:3: grid.loss.temperature: ")


def test_search_with_grid(tmp_path):
    path = write(
        tmp_path,
        "s.yaml",
        """
        name: s
        grid: {loss.normalize: [true, false]}
        search:
          params:
            loss.temperature: {type: float, low: 0.1, high: 1.0}
          n_trials: 5
        """,
    )
    msg = error_of(path)
    assert msg.startswith(f"{path}:3: search: ") and "not both" in msg


def test_search_param_checks(tmp_path):
    path = write(
        tmp_path,
        "s.yaml",
        """
        name: s
        search:
          params:
            loss.temperature: {type: float, low: 1.0, high: 0.1}
          n_trials: 5
        """,
    )
    msg = error_of(path)
    assert msg.startswith(f"{path}:4: search.params.loss.temperature: ") and "low < high" in msg
    path = write(
        tmp_path,
        "t.yaml",
        """
        name: s
        search:
          params:
            loss.temperature: {type: float, low: -1.0, high: 1.0}
          n_trials: 5
        """,
    )
    msg = error_of(path)
    assert msg.startswith(f"{path}:4: search.params.loss.temperature: value -1.0 gives an invalid run config")
    path = write(
        tmp_path,
        "u.yaml",
        """
        name: s
        search:
          params:
            model.head: {type: categorical, choices: [linear, mlp]}
          n_trials: 0
        """,
    )
    msg = error_of(path)
    assert f"{path}:5: search.n_trials: " in msg
    path = write(tmp_path, "v.yaml",
                 "name: s\nsearch:\n  params:\n    model.hed: {type: categorical, choices: [linear]}\n  n_trials: 2\n")
    assert error_of(path).startswith(f"{path}:4: search.params.model.hed: no field 'hed' in model (allowed: ")
    path = write(tmp_path, "w.yaml",
                 "name: s\nsearch:\n  params:\n    model.head: {type: categorical, choices: [linear, mlp]}\n"
                 "  n_trials: 2\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}:4: search.params.model.head: value mlp gives an invalid run config")


def test_unknown_scale(tmp_path):
    path = write(tmp_path, "s.yaml", "name: s\nscales:\n  quick: {train.epochs: 1}\n  tiny: {train.epochs: 2}\n")
    msg = error_of(path, scale="huge")
    assert msg.startswith(f"{path}:2: --scale huge: no such scale") and "available: quick, tiny" in msg
    path = write(tmp_path, "t.yaml", "name: s\nscales:\n  quick: {train.epoch: 1}\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}:3: scales.quick.train.epoch: no field 'epoch' in train (allowed: ")


def test_malformed_yaml(tmp_path):
    path = write(tmp_path, "s.yaml", "name: s\ngrid:\n  loss.temperature: [0.1, 0.2\nrepeats: 2\n")
    msg = error_of(path)
    assert re.match(rf"{re.escape(str(path))}:\d+: malformed YAML", msg)
    path = write(tmp_path, "t.yaml", "- just\n- a list\n")
    assert error_of(path).startswith(f"{path}:1: expected a mapping")


def test_python_tags_are_rejected(tmp_path):
    path = write(tmp_path, "s.yaml", "name: s\nbase: !!python/object/apply:os.system ['echo pwned']\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}:2: malformed YAML")
    path = write(tmp_path, "t.yaml", "name: !!python/object:core.config.RunConfig {}\n")
    assert error_of(path).startswith(f"{path}:1: malformed YAML")


def test_extends_cycle(tmp_path):
    a = write(tmp_path, "a.yaml", "extends: b.yaml\nname: a\n")
    b = write(tmp_path, "b.yaml", "name: b\n\nextends: a.yaml\n")
    msg = error_of(a)
    assert msg.startswith(f"{b}:3: extends: cycle: ")
    assert "a.yaml -> " in msg and "b.yaml -> " in msg
    self_ref = write(tmp_path, "c.yaml", "extends: c.yaml\nname: c\n")
    assert error_of(self_ref).startswith(f"{self_ref}:1: extends: cycle")
    missing = write(tmp_path, "d.yaml", "name: d\nextends: nowhere.yaml\n")
    assert error_of(missing).startswith(f"{missing}:2: extends: no such file")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigFileError, match="cannot read"):
        load_study(tmp_path / "nope.yaml")


def test_trial_config_rejects_bad_params(tmp_path):
    study = load_study(write(tmp_path, "s.yaml", "name: s\n"))
    with pytest.raises(ConfigFileError, match=r"no field 'temprature'"):
        trial_config(study, {"loss.temprature": 0.1}, 0)
    with pytest.raises(ConfigFileError, match=r"^.*s\.yaml: invalid trial .*loss\.temperature"):
        trial_config(study, {"loss.temperature": -1.0}, 0)
