"""Property test: any study document either validates or raises the project's own error, nothing else."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ablations.study import load_study
from ablations.yamlfile import ConfigFileError

KEYS = ["name", "description", "base", "grid", "zip", "search", "repeats", "metric", "direction", "scales",
        "report", "extends", "bogus"]
PATHS = ["loss.temperature", "train.batch_size", "augment.ops", "model.head", "optim.lr", "no.such", "loss", "x"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5000), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.sampled_from(["crop", "color", "nonlinear", "tpe", "maximize", "quick"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(PATHS + KEYS), inner, max_size=4)), max_leaves=12)
axes = st.dictionaries(st.sampled_from(PATHS), st.one_of(st.lists(values, max_size=4), values), max_size=3)
base = st.dictionaries(st.sampled_from(["data", "loss", "train", "model", "eval", "bogus"]),
                       st.one_of(values,
                                 st.dictionaries(
                                     st.sampled_from(["temperature", "batch_size", "source", "epochs", "head"]),
                                     values, max_size=3)),
                       max_size=3)
documents = st.one_of(
    values,
    st.fixed_dictionaries({"name": st.one_of(st.just("fuzz"), scalars)}, optional={
        "base": base, "grid": axes, "zip": axes, "repeats": values, "metric": values, "search": values,
        "scales": st.dictionaries(st.sampled_from(["quick", "full"]), axes, max_size=2), "report": values,
        "extends": st.sampled_from(["missing.yaml", "fuzz.yaml"]), "bogus": values}),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_validator_accepts_or_raises_its_own_error(document):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.yaml"
        path.write_text(yaml.safe_dump(document, allow_unicode=True))
        try:
            load_study(path)
        except ConfigFileError as exc:
            assert str(exc).startswith(str(path)) or "fuzz.yaml" in str(exc) or "missing.yaml" in str(exc)
