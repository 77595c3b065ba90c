"""A config's identity (a study's fingerprint, a train run's directory) survives new fields.

The pinned values were computed at commit 142c224, before data.classes, data.in_memory,
data.memory_budget_gb and augment.crop.size existed. A study recorded then must still be the same
study: a field added to the run config without an entry in core.config.ADDED_LATER (or
PLACEMENT_ONLY) changes them, and this test says so before a user's rerun is refused.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from ablations.plan import fingerprint
from ablations.runconfig_file import config_digest
from ablations.study import load_study

PINNED = textwrap.dedent("""
    name: pinned
    base:
      data: {source: synthetic}
      model: {encoder: resnet_small, width: 4}
      train: {epochs: 1, batch_size: 8}
    grid:
      loss.temperature: [0.1, 0.5]
""")


def _study(tmp_path: Path, overrides: dict | None = None):
    path = tmp_path / "pinned.yaml"
    path.write_text(PINNED)
    return load_study(path, overrides)


def test_a_study_recorded_before_the_new_fields_keeps_its_identity(tmp_path):
    study = _study(tmp_path)
    assert fingerprint(study) == "afbe275914faa4a1"
    assert config_digest(study.base) == "e2ee359ae9"


def test_where_the_images_are_held_is_not_identity_but_which_images_and_crop_are(tmp_path):
    same = _study(tmp_path, {"data.in_memory": False, "data.memory_budget_gb": 2.0})
    assert fingerprint(same) == "afbe275914faa4a1" and config_digest(same.base) == "e2ee359ae9"
    for changed in ({"augment.crop.size": 24}, {"data.classes": ["a", "b"]}):
        study = _study(tmp_path, changed)
        assert fingerprint(study) != "afbe275914faa4a1", changed
        assert config_digest(study.base) != "e2ee359ae9", changed


def test_a_checkpoint_written_before_the_new_fields_resumes_and_a_changed_field_still_refuses(tmp_path):
    import json

    import pytest

    from core.checkpoint import CheckpointError
    from core.trainer import Trainer
    from tests.test_trainer import tiny_config

    config = tiny_config(**{"train.epochs": 1, "eval.linear": False, "eval.knn_every": 0})
    trainer = Trainer(config, tmp_path)
    saved = json.loads(config.model_dump_json())
    del saved["augment"]["crop"]["size"]  # nested: the whole augment.crop section used to differ
    for key in ("classes", "in_memory", "memory_budget_gb"):
        del saved["data"][key]
    trainer._check_same_config(saved, tmp_path / "checkpoint.pt")
    saved["augment"]["crop"]["scale"] = [0.2, 1.0]
    with pytest.raises(CheckpointError, match="augment.crop"):
        trainer._check_same_config(saved, tmp_path / "checkpoint.pt")
