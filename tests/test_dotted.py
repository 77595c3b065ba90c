"""core.dotted: the one home of dotted paths into nested config mappings."""

from __future__ import annotations

import pytest

from core.dotted import deep_copy, deep_merge, get_path, set_existing, set_path, with_paths


def test_set_path_creates_sections_merges_mappings_and_copies():
    data = {"augment": {"crop": {"scale": [0.08, 1.0], "flip": True}}}
    ops = ["crop", "color"]
    set_path(data, "augment.ops", ops)
    set_path(data, "augment.crop", {"flip": False})  # merged into the section, not replacing it
    set_path(data, "loss.temperature", 0.1)          # a new section
    ops.append("blur")
    assert data == {"augment": {"crop": {"scale": [0.08, 1.0], "flip": False}, "ops": ["crop", "color"]},
                    "loss": {"temperature": 0.1}}
    set_path(data, "augment.crop", 5)  # a scalar replaces
    assert data["augment"]["crop"] == 5


def test_set_existing_and_get_path_name_the_missing_part():
    data = {"loss": {"temperature": 0.5}}
    set_existing(data, "loss.temperature", 0.1)
    assert get_path(data, "loss.temperature") == 0.1
    with pytest.raises(KeyError, match="loss.temp"):
        set_existing(data, "loss.temp", 1)
    with pytest.raises(KeyError, match="optim"):
        get_path(data, "optim.lr")


def test_deep_merge_and_with_paths_leave_their_inputs_alone():
    parent = {"a": {"b": [1, 2], "c": 1}}
    merged = deep_merge(parent, {"a": {"c": 2, "d": {"e": 3}}})
    assert merged == {"a": {"b": [1, 2], "c": 2, "d": {"e": 3}}}
    merged["a"]["b"].append(9)
    assert parent == {"a": {"b": [1, 2], "c": 1}}
    assert with_paths(parent, {"a.c": 5, "x.y": 1}) == {"a": {"b": [1, 2], "c": 5}, "x": {"y": 1}}
    assert parent["a"]["c"] == 1
    copy = deep_copy(parent)
    assert copy == parent and copy["a"]["b"] is not parent["a"]["b"]
