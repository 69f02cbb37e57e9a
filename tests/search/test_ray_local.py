"""`particle-nas search CONFIG --backend ray` with no address: a local Ray started for the run, the same study as ever."""

from __future__ import annotations

import json

import pytest
import yaml
from optuna.trial import TrialState

pytest.importorskip("ray.tune", reason='the ray backend needs pip install "ray[tune]"')

from particle_nas.cli import main  # noqa: E402
from particle_nas.results import open_run  # noqa: E402

TINY = {
    "name": "raylocal",
    "seed": 0,
    "search": {"sampler": "random", "trials": 2, "resources_per_trial": {"cpu": 1}},
    "space": {"factorization": ["full", "csn_ir"], "wiring": ["residual"], "temporal_kernel": [3]},
    "network": {"stem_channels": 8, "widths": [8, 16], "depths": [1, 1], "temporal_strides": [1, 1], "spatial_strides": [1, 2]},
    "data": {"num_classes": 4, "clip": [4, 16, 16], "train_size": 48, "val_size": 24},
    "train": {"epochs": 1, "batch_size": 16},
}


@pytest.mark.slow
def test_backend_flag_runs_the_search_on_a_local_ray(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a throwaway local Ray
    config = tmp_path / "raylocal.yaml"
    config.write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp_path / "runs")}))  # the file says optuna (the default)
    assert main(["search", str(config), "--backend", "ray", "--no-progress"]) == 0
    run_dir = tmp_path / "runs" / "raylocal"
    study = open_run(run_dir)
    assert study.user_attrs["config"]["search"]["backend"] == "ray"
    assert json.loads((run_dir / "run.json").read_text())["backend"] == "ray"
    assert (run_dir / "ray").is_dir()  # Tune's experiment
    trials = study.get_trials()
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)
    assert (run_dir / "best.yaml").is_file()
