"""`search.early_stopping: mo-asha` from a config file, on the local engine with real (tiny) training."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from particle_nas.cli import main

CONFIG = {
    "name": "es",
    "seed": 0,
    "search": {"sampler": "random", "trials": 5, "early_stopping": "mo-asha", "grace_epochs": 1, "reduction_factor": 2},
    "space": {"factorization": ["full", "r2plus1d", "spatial_only"], "wiring": ["plain"], "temporal_kernel": [1, 3]},
    "network": {"stem_channels": 4, "widths": [4, 8], "depths": [1, 1], "temporal_strides": [1, 1], "spatial_strides": [1, 2]},
    "data": {"num_classes": 2, "clip": [4, 8, 8], "train_size": 16, "val_size": 8},
    "train": {"epochs": 3, "batch_size": 8, "threads": 1},
}


@pytest.mark.parametrize("source", ["file", "flags"])
def test_a_config_with_mo_asha_runs_on_the_local_engine(tmp_path, capsys, source):
    config = tmp_path / "es.yaml"
    flags = []
    if source == "file":
        config.write_text(yaml.safe_dump(CONFIG))
    else:  # the same search from a plain config: --sampler and --early-stopping override search:
        config.write_text(yaml.safe_dump({**CONFIG, "search": {"sampler": "nsga2", "trials": 5, "grace_epochs": 1, "reduction_factor": 2}}))
        flags = ["--sampler", "random", "--early-stopping", "mo-asha", "--name", "es"]  # README's quickstart line
    assert main(["search", str(config), "--output-dir", str(tmp_path / "runs"), "--no-progress", *flags]) == 0
    df = pd.read_csv(tmp_path / "runs" / "es" / "trials.csv")
    assert len(df) == 5 and set(df["state"]) <= {"COMPLETE", "PRUNED"}
    stopped = df[df["state"] == "PRUNED"]
    assert len(stopped) >= 1  # seeded: the tiny task's accuracies tie, and ties go to the earlier trial
    assert f"({5 - len(stopped)} complete, {len(stopped)} stopped early, 0 failed;" in capsys.readouterr().out
    assert stopped["stopped_at_epoch"].isin([1, 2]).all()  # the rungs before the last of 3 epochs
    assert stopped["fail_reason"].str.fullmatch(r"pruned: stopped by MO-ASHA after epoch [12]").all()
    assert [len(str(e).split()) for e in stopped["epoch_accuracy"]] == stopped["stopped_at_epoch"].tolist()
    assert not df.loc[df["state"] == "PRUNED", "pareto"].any()


def test_a_bad_early_stopping_flag_is_one_line_naming_the_setting(tmp_path, capsys):
    config = tmp_path / "es.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    assert main(["search", str(config), "--output-dir", str(tmp_path / "runs"), "--early-stopping", "hyperband"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"particle-nas: error: {config}: search.early_stopping must be one of ('none', 'asha', 'mo-asha'), but got 'hyperband'."
    assert not (tmp_path / "runs").exists()


def test_the_search_flags_help_names_every_sampler_and_rule():
    """The help is written out (the parser does not import the search package); it must not drift from the registries."""
    import argparse

    from particle_nas.cli import build_parser
    from particle_nas.search import EARLY_STOPPING, SAMPLERS

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {flag: action.help for action in commands.choices["search"]._actions for flag in action.option_strings}
    assert helps["--sampler"].split(" (")[0].split(" | ") == ["auto", *SAMPLERS]  # auto: the default, chosen by objectives
    assert helps["--early-stopping"].split(":")[0].split(" | ") == list(EARLY_STOPPING)
