from __future__ import annotations

import dataclasses
import json
from unittest import mock

import pytest
import yaml

from particle_nas.cli import main
from particle_nas.config import FINGERPRINT_ADDED_LATER, ConfigError, load_config, parse_config
from particle_nas.evaluators import TrainConfig

BASE = {
    "name": "t",
    "space": {"factorization": ["full", "spatial_only"]},
    "network": {"widths": [8, 16], "depths": [1, 1], "temporal_strides": [1, 2], "spatial_strides": [2, 2]},
    "data": {"clip": [4, 16, 16], "train_size": 48, "val_size": 24},
    "train": {"epochs": 1},
}


def _with(section: str, **values):
    doc = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    doc[section] = {**doc.get(section, {}), **values}
    return doc


def test_example_configs_load():
    inception = load_config("examples/inception.yaml")
    assert inception.space.axis("wiring").values() == ("residual", "inception") and inception.space.per_stage
    config = load_config("examples/quickstart.yaml")
    assert config.name == "quickstart" and config.search.trials == 20
    assert config.network.clip == config.data.clip and config.network.num_classes == config.data.num_classes
    assert config.train.epochs == TrainConfig.epochs  # the quickstart trains the budget bench/fidelity.py measured


def test_overrides_win_and_seed_flows_to_data_and_training():
    config = parse_config(BASE, overrides={"trials": 3, "seed": 7, "name": "other"})
    assert (config.search.trials, config.seed, config.name) == (3, 7, "other")
    assert config.data.seed == 7 and config.train.seed == 7


def test_fingerprint_ignores_what_may_change_on_resume():
    a = parse_config(BASE, overrides={"trials": 3})
    b = parse_config(BASE, overrides={"trials": 9, "timeout": 60})
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != parse_config(BASE, overrides={"seed": 1}).fingerprint()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_with("space", factorization=["full", "x3d"]), "cfg.yaml: space.factorization must be one of ('full', 'r2plus1d', 'csn_ip', 'csn_ir', 'spatial_only', 'temporal_shift', 'p3d_b', 'depthwise_2plus1d', 'conv_gru'), but got 'x3d'."),
        (_with("space", temporal_kernel=[3, 9]), "cfg.yaml: space.temporal_kernel must be one of (1, 3, 5, 7), but got 9."),
        (_with("network", temporal_strides=[4, 2]), "cfg.yaml: network.clip must have at least as many frames as the total temporal stride (8), but got [4, 16, 16]."),
        (_with("network", widths=[8, -1]), "cfg.yaml: network.widths[1] must be in [1, 8192], but got -1."),
        (_with("network", clip=[8, 8, 8]), "cfg.yaml: network.clip is set by data.clip, not under network, but got [8, 8, 8]."),
        (_with("network", width=[8]), "cfg.yaml: network.width is not a setting; known settings are"),
        (_with("search", trials=0), "cfg.yaml: search.trials must be in [1, 1000000], but got 0."),
        ({**_with("space", wiring=["residual", "inception"]), "network": {**BASE["network"], "widths": [3, 16]}}, "cfg.yaml: network.widths must all be >= 4 when space.wiring includes 'inception' (one channel for each of its branches), but got [3, 16]."),
        (_with("space", branch_fractions=[0.5, 0.5, 0.5, 0.5]), "cfg.yaml: space.branch_fractions must sum to 1"),
        (_with("search", sampler="grid"), "cfg.yaml: search.sampler must be one of ('auto', 'ehvi', 'gp', 'nsga2', 'tpe', 'random', 'distinct', 'progressive'), but got 'grid'."),
        (_with("search", objectives=["flops"]), "cfg.yaml: search.objectives must start with accuracy"),
        (_with("train", epochs=0), "cfg.yaml: train.epochs must be"),
        (_with("search", objectives=["accuracy", "latency_ms"]), "cfg.yaml: search.objectives[1] is not reported by the enabled evaluators"),
        (_with("search", constraints=["naswot >= 100"]), "cfg.yaml: search.constraints[0] is on a number the enabled evaluators do not report"),
        (_with("search", constraints=["flops << 1"]), "cfg.yaml: search.constraints[0] must be 'NAME <= NUMBER' or 'NAME >= NUMBER'"),
        (_with("evaluators", zero_cost=["jacov"]), "cfg.yaml: evaluators.zero_cost must be a list of distinct names from"),
        (_with("evaluators", latency_repeats=0), "cfg.yaml: evaluators.latency_repeats must be in [1, 10000], but got 0."),
        (_with("data", difficulty=2), "cfg.yaml: data.difficulty must be in [0.0, 1.0], but got 2."),
        (_with("data", kind="webcam"), "cfg.yaml: data.kind must be one of ('synthetic', 'video_folder', 'video_pretext'), but got 'webcam'."),
        ({**BASE, "data": {"kind": "video_folder", "root": "/nonexistent"}}, "cfg.yaml: data.root must be a folder with one sub-folder of videos per class"),
        ({**BASE, "seed": -1}, "cfg.yaml: seed must be an integer in [0, 2**32), but got -1."),
        ({**BASE, "name": "../escape"}, "cfg.yaml: name must be 1-128 letters"),
        ({**BASE, "searhc": {}}, "cfg.yaml: searhc is not a section; sections are"),
        ({**BASE, "space": [1, 2]}, "cfg.yaml: space must be a mapping"),
        ([1, 2, 3], "cfg.yaml: document must be a mapping"),
    ],
)
def test_bad_configs_name_file_field_rule_and_value(doc, message):
    with pytest.raises(ConfigError) as info:
        parse_config(doc, source="cfg.yaml")
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nspace:\n  wiring: [plain, residual\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+:\d+: invalid YAML"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_evaluators_section_feeds_objectives_and_constraints():
    doc = _with("evaluators", latency=True, zero_cost=["synflow", "naswot"])
    doc["search"] = {**doc.get("search", {}), "objectives": ["accuracy", "latency_ms", "synflow"], "constraints": ["flops <= 2e9", "latency_ms <= 30"]}
    config = parse_config(doc, source="cfg.yaml")
    assert config.evaluators.latency and config.evaluators.zero_cost == ("synflow", "naswot")
    assert config.search.directions == ["maximize", "minimize", "maximize"]
    assert config.fingerprint()["evaluators"]["zero_cost"] == ["synflow", "naswot"]
    assert "evaluators" not in parse_config(BASE, source="cfg.yaml").fingerprint()  # runs made before the section resume


def test_video_folder_data_sets_the_network_input(tmp_path):
    for cls in ("a", "b", "c"):
        (tmp_path / cls).mkdir()
    doc = {**BASE, "data": {"kind": "video_folder", "root": str(tmp_path), "clip": [4, 16, 16]}}
    config = parse_config(doc, source="cfg.yaml")
    assert config.data.class_names == ("a", "b", "c") and config.network.num_classes == 3 and config.data.seed == config.seed
    assert config.fingerprint()["data"]["root"] == str(tmp_path)


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"device": "cuda"}, "cfg.yaml: train.device must be available: cuda was asked but torch.cuda.is_available() is False"),
        ({"device": "cuda:1"}, "cfg.yaml: train.device must be available: cuda:1 was asked but torch.cuda.is_available() is False"),
        ({"device": "gpu"}, "cfg.yaml: train.device must be auto, cpu, cuda or cuda:N (N a CUDA device index), but got 'gpu'."),
        ({"precision": "fp8"}, "cfg.yaml: train.precision must be one of ('auto', 'fp32', 'bf16', 'fp16'), but got 'fp8'."),
        ({"precision": "fp16"}, "cfg.yaml: train.precision must be fp32 or bf16 on cpu (fp16 needs CUDA), but got 'fp16'."),
        ({"deterministic": "yes"}, "cfg.yaml: train.deterministic must be true or false, but got 'yes'."),
    ],
)
def test_devices_and_precisions_this_machine_lacks_are_refused_before_any_trial(train, message):
    with mock.patch("torch.cuda.is_available", return_value=False):
        with pytest.raises(ConfigError) as info:
            parse_config(_with("train", **train), source="cfg.yaml")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_search_with_cuda_on_a_machine_without_it_exits_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(_with("train", device="cuda")))
    with mock.patch("torch.cuda.is_available", return_value=False):
        assert main(["search", str(path), "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("particle-nas: error: ") and "train.device must be available: cuda was asked" in err and "\n" not in err
    assert not (tmp_path / "t").exists()  # refused before the run directory or any trial


def test_device_may_change_on_resume_and_precision_only_fingerprints_when_set():
    base = parse_config(BASE).fingerprint()
    assert parse_config(_with("train", device="cpu")).fingerprint() == base
    assert "precision" not in base["train"] and "deterministic" not in base["train"]  # runs made before these settings still resume
    assert parse_config(_with("train", precision="fp32")).fingerprint()["train"]["precision"] == "fp32"
    assert parse_config(_with("train", deterministic=True)).fingerprint()["train"]["deterministic"] is True


def test_a_video_folder_study_made_before_class_index_still_resumes(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
    (tmp_path / "classInd.txt").write_text("1 b\n2 a\n")
    doc = {**BASE, "data": {"kind": "video_folder", "root": str(tmp_path), "clip": [4, 16, 16]}}
    config = parse_config(doc, source="cfg.yaml")
    # the data section as a study made before VideoFolderConfig had class_index stored it (as JSON)
    old_data = {"root": str(tmp_path), "clip": [4, 16, 16], "train_list": None, "val_list": None, "hmdb_split_dir": None, "split": 1, "val_fraction": 0.2, "seed": 0, "class_names": ["a", "b"]}
    fingerprint = json.loads(json.dumps(config.fingerprint()))
    assert fingerprint["data"] == old_data
    with_index = parse_config({**doc, "data": {**doc["data"], "class_index": "classInd.txt"}}, source="cfg.yaml").fingerprint()
    assert with_index["data"]["class_index"] == "classInd.txt" and with_index["data"]["class_names"] == ["b", "a"]  # set: it counts


def test_every_field_added_later_exists_with_a_default():
    for cls, names in FINGERPRINT_ADDED_LATER.items():
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name in names:
            assert name in fields and fields[name].default is not dataclasses.MISSING, (cls.__name__, name)
