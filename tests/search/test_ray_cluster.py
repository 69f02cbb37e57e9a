"""The ray backend on a real Ray head (127.0.0.1, 2 CPUs): same study, table and exports as the local backend."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

pytest.importorskip("ray.tune", reason='the ray backend needs pip install "ray[tune]"')

from particle_nas.cli import main  # noqa: E402
from particle_nas.results import COLUMNS, open_run  # noqa: E402

TINY = {
    "seed": 0,
    "search": {"sampler": "random", "trials": 3},
    "space": {"factorization": ["full", "r2plus1d", "csn_ir", "temporal_shift"], "wiring": ["plain", "residual"], "temporal_kernel": [3, 5]},
    "network": {"stem_channels": 8, "widths": [8, 16], "depths": [1, 1], "temporal_strides": [1, 1], "spatial_strides": [1, 2]},
    "data": {"num_classes": 4, "clip": [4, 16, 16], "train_size": 48, "val_size": 24},
    "train": {"epochs": 1, "batch_size": 16},
}


def _ray_cli() -> str:
    return shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray") or "ray"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """`ray start --head` on 127.0.0.1 with 2 CPUs; `ray stop --force` however the tests end."""
    port = _free_port()
    # A throwaway local cluster: no token authentication, for the head and for this test's driver alike.
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = [_ray_cli(), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard=false", "--disable-usage-stats"]
    try:
        subprocess.run(start, check=True, capture_output=True, text=True, timeout=120, env=env)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([_ray_cli(), "stop", "--force"], capture_output=True, timeout=120, env=env)
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


def _config(tmp_path: Path, name: str, **search) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**TINY, "name": name, "output_dir": str(tmp_path / "runs"), "search": {**TINY["search"], **search}}))
    return path


@pytest.mark.slow
def test_search_through_a_running_cluster_matches_the_local_backend(tmp_path, ray_head):
    assert main(["search", str(_config(tmp_path, "onray")), "--backend", "ray", "--address", ray_head, "--no-progress"]) == 0
    assert main(["search", str(_config(tmp_path, "local")), "--no-progress"]) == 0
    ray_run, local_run = tmp_path / "runs" / "onray", tmp_path / "runs" / "local"
    for run in (ray_run, local_run):
        assert (run / "study.db").is_file() and (run / "pareto.html").is_file() and (run / "best.yaml").is_file()
    assert (ray_run / "ray").is_dir()  # Tune's experiment, for Tuner.restore
    ray_study, local_study = open_run(ray_run), open_run(local_run)
    assert ray_study.directions == local_study.directions
    assert ray_study.user_attrs["objectives"] == local_study.user_attrs["objectives"]
    assert ray_study.user_attrs["config"]["search"]["backend"] == "ray"
    trials = ray_study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2] and all(t.state == TrialState.COMPLETE for t in trials)
    local_attrs = set(local_study.get_trials()[0].user_attrs) - {"worker", "duplicate_of"}
    for t in trials:
        assert set(t.user_attrs) - {"worker", "duplicate_of"} == local_attrs  # the same record, whichever backend
        assert t.values == [t.user_attrs["accuracy"], t.user_attrs["flops"]]
        assert t.user_attrs["network"]["particle"] == t.user_attrs["particle"]
    ray_table, local_table = pd.read_csv(ray_run / "trials.csv"), pd.read_csv(local_run / "trials.csv")
    assert list(ray_table.columns) == list(local_table.columns) == list(COLUMNS)
    assert ray_table["flops"].notna().all() and ray_table["accuracy"].between(0, 1).all()
    assert main(["export", str(ray_run), "--pick", "max-accuracy", "-o", str(tmp_path / "best.yaml")]) == 0
    # resume of a finished ray run restores its Tune experiment and adds exactly the missing trials
    assert main(["resume", str(ray_run), "--trials", "4", "--no-progress"]) == 0
    trials = open_run(ray_run).get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
