"""Fuzz the config loader: whatever the document, the outcome is a RunConfig or one ConfigError line."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from particle_nas.config import SECTIONS, ConfigError, RunConfig, load_config, parse_config

VALID = {
    "name": "fuzz",
    "seed": 1,
    "search": {"trials": 3, "sampler": "random", "objectives": ["accuracy", "flops"]},
    "space": {"factorization": ["full", "r2plus1d"], "wiring": ["residual"], "temporal_kernel": [3, 5], "prune_ratio": {"low": 0.0, "high": 0.5, "step": 0.25}},
    "network": {"widths": [8, 16], "depths": [1, 1], "temporal_strides": [1, 1], "spatial_strides": [1, 2]},
    "data": {"clip": [4, 16, 16], "train_size": 48, "val_size": 24},
    "train": {"epochs": 1},
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
KEYS = {section: sorted(VALID[section]) if isinstance(VALID.get(section), dict) else [] for section in SECTIONS}


def _check(doc, source="fuzz.yaml"):
    try:
        config = parse_config(doc, source=source)
    except ConfigError as err:
        message = str(err)
        assert message.startswith(f"{source}: ") and "\n" not in message and len(message) < 2000
        return None
    assert isinstance(config, RunConfig)
    return config


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(values, st.dictionaries(st.sampled_from(list(SECTIONS) + ["extra"]), values, max_size=5)))
def test_random_documents(doc):
    _check(doc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_one_field_mutated(data):
    """A valid config with one field replaced, dropped or added: valid, or one clear line."""
    doc = {k: (dict(v) if isinstance(v, dict) else v) for k, v in VALID.items()}
    section = data.draw(st.sampled_from(sorted(doc)))
    action = data.draw(st.sampled_from(["replace", "drop", "add"]))
    if isinstance(doc[section], dict) and doc[section]:
        key = data.draw(st.sampled_from(sorted(doc[section])))
        if action == "replace":
            doc[section][key] = data.draw(values)
        elif action == "drop":
            del doc[section][key]
        else:
            doc[section][data.draw(st.text(min_size=1, max_size=8))] = data.draw(values)
    elif action == "drop":
        del doc[section]
    else:
        doc[section] = data.draw(values)
    _check(doc)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_text_files(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as err:
        assert str(err).startswith(str(path)) and "\n" not in str(err)


def test_unsafe_yaml_tags_are_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    try:
        load_config(path)
    except ConfigError as err:
        assert "invalid YAML" in str(err)
    else:  # pragma: no cover - a safe loader never gets here
        raise AssertionError("an unsafe tag was accepted")


def test_the_valid_base_is_valid():
    assert _check(yaml.safe_load(yaml.safe_dump(VALID))) is not None


HUGE = 2**70


@pytest.mark.parametrize(
    ("section", "key"),
    [("data", "train_size"), ("data", "val_size"), ("train", "epochs"), ("train", "batch_size"), ("train", "eval_batch_size"),
     ("train", "threads"), ("train", "finetune_epochs"), ("search", "trials"), ("search", "population"), ("seed", None)],
)
def test_huge_numbers_are_refused_before_anything_runs(section, key):
    """A number that would make the run hang or exhaust memory is one clear line, not a stuck search."""
    doc = {k: (dict(v) if isinstance(v, dict) else v) for k, v in VALID.items()}
    if key is None:
        doc[section] = HUGE
    else:
        doc[section] = {**doc.get(section, {}), key: HUGE}
    with pytest.raises(ConfigError, match=r"^fuzz.yaml: .* must be .*, but got 1180591620717411303424\.$"):
        parse_config(doc, source="fuzz.yaml")
