"""A full disk at a trial's weights: the trial keeps its result, says its weights are missing, and leaves no file.

The disk is full for real: the run's ``weights/`` folder is a tiny tmpfs filled
to the last byte before the search starts (skipped where mounting is not allowed).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from particle_nas.cli import main
from particle_nas.results import open_run

TINY = {
    "name": "full",
    "seed": 0,
    "search": {"sampler": "random", "trials": 2, "baselines": []},
    "space": {"factorization": ["r2plus1d", "csn_ir"], "wiring": ["residual"], "temporal_kernel": [3]},
    "network": {"stem_channels": 8, "widths": [8, 16], "depths": [1, 1], "temporal_strides": [1, 1], "spatial_strides": [1, 2]},
    "data": {"num_classes": 4, "clip": [4, 16, 16], "train_size": 32, "val_size": 16},
    "train": {"epochs": 1, "batch_size": 16},
}


@pytest.fixture
def full_weights_dir(tmp_path, tmpfs) -> Path:
    """runs/full/weights on a 16 KiB tmpfs with no byte free."""
    return tmpfs(tmp_path / "runs" / "full" / "weights", "16k", full=True)


def test_trials_whose_weights_find_a_full_disk_keep_their_result(tmp_path, capsys, full_weights_dir):
    config = tmp_path / "full.yaml"
    config.write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp_path / "runs")}))
    assert main(["search", str(config), "--no-progress"]) == 0
    err = capsys.readouterr().err
    run = tmp_path / "runs" / "full"
    trials = open_run(run).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    for trial in trials:
        assert 0.0 <= trial.user_attrs["accuracy"] <= 1.0 and "weights" not in trial.user_attrs
        assert trial.user_attrs["weights_error"] == "not saved: No space left on device"
        assert f"particle-nas: warning: weights/trial-{trial.number:05d}.safetensors not saved: No space left on device; the trial keeps its result" in err
    assert sorted(p.name for p in full_weights_dir.iterdir()) == ["filler"]  # no temporary file left behind

    # export --weights finds no weights to copy, and says why in one line
    assert main(["export", str(run), "--pick", "max-accuracy", "--weights", "-o", str(tmp_path / "picked.yaml")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("but it has none (its weights were not saved: No space left on device).")


@pytest.fixture
def small_disk(tmp_path, tmpfs) -> Path:
    """A 224 KiB tmpfs for a whole run directory (grown later with remount, as a user frees space)."""
    return tmpfs(tmp_path / "runs", "224k")


@pytest.mark.parametrize("workers", ["1", pytest.param("2", marks=pytest.mark.slow)])
def test_a_study_that_finds_the_disk_full_stops_the_search_in_one_line_and_resumes(tmp_path, small_disk, workers):
    config = tmp_path / "full.yaml"
    config.write_text(yaml.safe_dump({**TINY, "search": {**TINY["search"], "trials": 200}, "output_dir": str(small_disk)}))
    run = small_disk / "full"
    result = subprocess.run([sys.executable, "-m", "particle_nas", "search", str(config), "--no-progress", "--workers", workers], capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("particle-nas: error: ") and "the disk is full (" in last and "Traceback" not in result.stderr
    if workers == "1":  # the search itself found the disk full
        assert last.endswith(f"every trial it holds is kept: free some space, then particle-nas resume {run}")
    else:  # a worker did, and stopped the search with its reason
        # whether that worker had begun a trial when the disk filled is a matter of timing; both are its designed line
        assert re.match(r"particle-nas: error: worker \d+ \(pid \d+\) stopped( before its first trial)?: the disk is full \(", last), last
    assert not [p for p in run.rglob("*.tmp")]  # no temporary file left behind

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # space freed
    result = subprocess.run([sys.executable, "-m", "particle_nas", "resume", str(run), "--trials", "4", "--no-progress"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sum(t.state == TrialState.COMPLETE for t in open_run(run).get_trials()) >= 4
