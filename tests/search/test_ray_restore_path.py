"""A run directory from someone else: run.json's ``ray_experiment`` never sends Tuner.restore outside ``RUN/ray/``."""

from __future__ import annotations

import json
import os

import optuna
import pytest

from particle_nas.search import RunLayout
from particle_nas.search._ray import ray_experiment


def _run(tmp_path, experiment):
    layout = RunLayout(tmp_path / "runs" / "crafted")
    (layout.ray_dir / "tune-0").mkdir(parents=True)
    layout.write_run_file(backend="ray", ray_experiment=experiment)
    return layout


def test_the_runs_own_experiment_is_restored(tmp_path):
    layout = _run(tmp_path, "tune-0")
    assert ray_experiment(layout) == layout.ray_dir / "tune-0"
    layout.write_run_file(ray_experiment=None)
    assert ray_experiment(layout) is None


@pytest.mark.parametrize("experiment", ["../../elsewhere", "..", ".", "tune-0/../..", "tune-0/nested", "/tmp/elsewhere", 3, ["tune-0"], "tune-\0"])
def test_a_path_out_of_the_ray_folder_is_refused(tmp_path, experiment):
    layout = _run(tmp_path, experiment)
    with pytest.raises(ValueError, match=r"^run.json's ray_experiment must name a Tune experiment inside .*, but got ") as err:
        ray_experiment(layout)
    assert "\n" not in str(err.value)


def test_a_symlink_pointing_out_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    layout = _run(tmp_path, "tune-1")
    os.symlink(elsewhere, layout.ray_dir / "tune-1")
    with pytest.raises(ValueError, match="resolving to .*elsewhere"):
        ray_experiment(layout)


def test_a_ray_folder_that_is_a_symlink_out_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "tune-0").mkdir(parents=True)
    layout = RunLayout(tmp_path / "runs" / "crafted")
    layout.root.mkdir(parents=True)
    os.symlink(elsewhere, layout.ray_dir)
    layout.write_run_file(backend="ray", ray_experiment="tune-0")
    with pytest.raises(ValueError, match="must name a Tune experiment inside"):
        ray_experiment(layout)


RAY_CONFIG = {
    "name": "crafted",
    "seed": 0,
    "search": {"sampler": "random", "trials": 2, "backend": "ray"},
    "network": {"stem_channels": 8, "widths": [8], "depths": [1], "temporal_strides": [1], "spatial_strides": [1]},
    "data": {"num_classes": 2, "clip": [4, 8, 8], "train_size": 8, "val_size": 4},
    "train": {"epochs": 1, "batch_size": 4},
}


def test_resume_refuses_a_crafted_run_json_before_ray_starts(tmp_path, capsys):
    pytest.importorskip("ray.tune", reason='the ray backend needs pip install "ray[tune]"')
    import ray

    from particle_nas.cli import main

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_dir = tmp_path / "runs" / "crafted"
    run_dir.mkdir(parents=True)
    study = optuna.create_study(study_name="crafted", storage=f"sqlite:///{run_dir}/study.db", directions=["maximize", "minimize"])
    study.set_user_attr("config", RAY_CONFIG)
    (run_dir / "run.json").write_text(json.dumps({"backend": "ray", "ray_experiment": "../../elsewhere"}))

    assert main(["resume", str(run_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("particle-nas: error: run.json's ray_experiment must name a Tune experiment inside") and "'../../elsewhere'" in err
    assert not ray.is_initialized() and not (run_dir / "ray").exists()
    assert list(elsewhere.iterdir()) == []
