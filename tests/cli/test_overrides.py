"""Every command-line override takes one path: written into the document, then validated once.

A flag given on the command line must mean what the same field written in the YAML means: the
same parsed config, the same fingerprint, and the same document stored on the study (which
``particle-nas resume`` parses again).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from particle_nas.cli import SEARCH_OVERRIDES, build_parser, main
from particle_nas.config import OVERRIDES, ConfigError, apply_overrides, load_config, parse_config
from particle_nas.results import open_run

from cli_tools import TINY

# The shared tiny config, with a space of one particle: a search of it trains one network.
BASE = {**TINY, "search": {"sampler": "random", "trials": 1}, "space": {"factorization": ["full"], "wiring": ["residual"], "temporal_kernel": [3]}}
# One value per override flag, as the command line gives it, and where the same value is written in the YAML.
FLAGS = {
    "trials": ("--trials", "4", ("search", "trials"), 4),
    "timeout": ("--timeout", "60", ("search", "timeout"), 60.0),
    "seed": ("--seed", "7", (None, "seed"), 7),
    "name": ("--name", "other", (None, "name"), "other"),
    "output_dir": ("--output-dir", "elsewhere", (None, "output_dir"), "elsewhere"),
    "sampler": ("--sampler", "tpe", ("search", "sampler"), "tpe"),
    "early_stopping": ("--early-stopping", "asha", ("search", "early_stopping"), "asha"),
    "backend": ("--backend", "ray", ("search", "backend"), "ray"),
}
# The search flags that are not config fields: how and where this run's trials run.
RUN_OPTIONS = {"config", "workers", "gpus", "storage", "address", "no_progress"}


def _written(doc: dict, section: str | None, key: str, value) -> dict:
    doc = {k: (dict(v) if isinstance(v, dict) else v) for k, v in doc.items()}
    if section is None:
        doc[key] = value
    else:
        doc[section] = {**doc.get(section, {}), key: value}
    return doc


def _search_flags() -> set[str]:
    return set(vars(build_parser().parse_args(["search", "x.yaml"]))) - {"command", "func"}


def test_every_search_flag_is_a_config_override_or_a_run_option():
    """A new flag that sets a config field must be listed in SEARCH_OVERRIDES, so it goes through load_config."""
    assert set(FLAGS) == set(SEARCH_OVERRIDES)
    assert _search_flags() == set(SEARCH_OVERRIDES) | RUN_OPTIONS
    assert {OVERRIDES.get(key, key) for key in SEARCH_OVERRIDES} == {".".join(filter(None, where)) for _, _, where, _ in FLAGS.values()}


@pytest.mark.parametrize("key", sorted(FLAGS))
def test_a_flag_means_the_same_field_written_in_the_yaml(tmp_path, key):
    flag, text, (section, field), value = FLAGS[key]
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(BASE))
    args = build_parser().parse_args(["search", str(path), flag, text])
    given = load_config(path, overrides={k: getattr(args, k) for k in SEARCH_OVERRIDES})
    written_path = tmp_path / "written.yaml"
    written_path.write_text(yaml.safe_dump(_written(BASE, section, field, value)))
    written = load_config(written_path, overrides={k: None for k in SEARCH_OVERRIDES})
    assert given.raw == written.raw
    assert given.fingerprint() == written.fingerprint()
    assert (given.name, given.output_dir, given.seed, given.search) == (written.name, written.output_dir, written.seed, written.search)


def test_an_override_obeys_the_files_rules_in_the_same_words():
    with pytest.raises(ConfigError) as from_flag:
        parse_config(BASE, source="cfg.yaml", overrides={"backend": "slurm"})
    with pytest.raises(ConfigError) as from_file:
        parse_config(_written(BASE, "search", "backend", "slurm"), source="cfg.yaml")
    assert str(from_flag.value) == str(from_file.value)
    assert str(from_flag.value).startswith("cfg.yaml: search.backend must be one of")


def test_apply_overrides_copies_and_skips_what_is_not_given():
    doc = {"search": {"trials": 2}}
    out = apply_overrides(doc, {"trials": 5, "sampler": None, "train.epochs": 3, "name": "n"})
    assert out == {"search": {"trials": 5}, "train": {"epochs": 3}, "name": "n"}
    assert doc == {"search": {"trials": 2}}  # the document given is left as it was


def test_the_stored_config_of_a_flag_equals_the_yamls_and_resume_reads_it(tmp_path):
    """The document a search stores (for resume) is the same whether --trials and --sampler came by flag or by file."""
    runs = {}
    for how in ("flag", "file"):
        doc = {**BASE, "output_dir": str(tmp_path / how)}
        flags = ["--trials", "2", "--sampler", "tpe"] if how == "flag" else []
        if how == "file":
            doc = _written(_written(doc, "search", "trials", 2), "search", "sampler", "tpe")
        path = tmp_path / f"{how}.yaml"
        path.write_text(yaml.safe_dump(doc))
        assert main(["search", str(path), *flags, "--no-progress"]) == 0
        study = open_run(Path(doc["output_dir"]) / "tiny")
        runs[how] = study.user_attrs
    for attr in ("config", "fingerprint"):
        flag, file = dict(runs["flag"][attr]), dict(runs["file"][attr])
        flag.pop("output_dir", None)
        file.pop("output_dir", None)
        assert flag == file, attr
    assert runs["flag"]["config"]["search"] == {"sampler": "tpe", "trials": 2}
    assert main(["resume", str(tmp_path / "flag" / "tiny"), "--no-progress"]) == 0  # the stored document means the same run
