"""The ray backend killed with SIGKILL mid-search, then `particle-nas resume`: Tuner.restore, nothing lost or redone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from optuna.trial import TrialState

pytest.importorskip("ray.tune", reason='the ray backend needs pip install "ray[tune]"')

from particle_nas.cli import main  # noqa: E402
from particle_nas.results import open_run  # noqa: E402

TINY = {
    "name": "raykill",
    "seed": 0,
    "search": {"sampler": "random", "trials": 6, "backend": "ray", "resources_per_trial": {"cpu": 1}},
    "space": {"factorization": ["full", "r2plus1d", "csn_ir", "temporal_shift"], "wiring": ["plain", "residual"], "temporal_kernel": [3, 5]},
    "network": {"stem_channels": 8, "widths": [8, 16], "depths": [1, 1], "temporal_strides": [1, 1], "spatial_strides": [1, 2]},
    "data": {"num_classes": 4, "clip": [4, 16, 16], "train_size": 240, "val_size": 24},
    "train": {"epochs": 3, "batch_size": 16},
}


def _complete(run_dir):
    try:
        return [t for t in open_run(run_dir).get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    except Exception:  # not created yet, or mid-write
        return []


@pytest.mark.slow
def test_sigkilled_ray_search_resumes_with_tuner_restore(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a throwaway local Ray, for the killed run and the resume alike
    config = tmp_path / "raykill.yaml"
    config.write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp_path / "runs")}))
    run_dir = tmp_path / "runs" / "raykill"
    proc = subprocess.Popen([sys.executable, "-m", "particle_nas", "search", str(config), "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 55
        while len(_complete(run_dir)) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, "the search ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        proc.wait(timeout=10)
    before = {t.number: (t.values, t.user_attrs["particle"]) for t in _complete(run_dir)}
    assert 2 <= len(before) < 6 and (run_dir / "ray").is_dir()

    assert main(["resume", str(run_dir), "--no-progress"]) == 0
    trials = open_run(run_dir).get_trials()
    after = {t.number: (t.values, t.user_attrs["particle"]) for t in trials if t.state == TrialState.COMPLETE}
    assert {n: after[n] for n in before} == before  # every trial completed before the kill, unchanged
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    finished = [t for t in trials if t.state == TrialState.COMPLETE or not str(t.user_attrs.get("fail_reason", "")).startswith("interrupted")]
    assert len(finished) == 6, [(t.number, t.state.name, t.user_attrs.get("fail_reason")) for t in trials]
