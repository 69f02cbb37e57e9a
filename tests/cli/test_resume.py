"""`particle-nas resume`: a search killed with SIGKILL continues without losing or redoing a trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from particle_nas.cli import main
from particle_nas.results import open_run

TINY = {
    "name": "tiny",
    "seed": 0,
    "search": {"sampler": "random", "trials": 8},
    "space": {
        "factorization": ["full", "r2plus1d", "csn_ir", "spatial_only", "temporal_shift"],
        "wiring": ["plain", "residual", "bottleneck"],
        "temporal_kernel": [3, 5],
        "prune_ratio": [0.0, 0.25, 0.5],
    },
    "network": {"stem_channels": 8, "widths": [8, 16], "depths": [1, 1], "temporal_strides": [1, 1], "spatial_strides": [1, 2]},
    "data": {"num_classes": 4, "clip": [4, 16, 16], "train_size": 48, "val_size": 24},
    "train": {"epochs": 2, "batch_size": 16},
}


def _complete(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    """The complete trials of the run; raises whatever reading it raises (a crashed run must read)."""
    return [t for t in open_run(run_dir).get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]


def _complete_so_far(run_dir: Path) -> int:
    """While the search runs: its complete trials, 0 before its study has been created."""
    if not any((run_dir / name).is_file() for name in ("study.db", "study.journal")):
        return 0
    try:
        return len(_complete(run_dir))
    except (optuna.exceptions.StorageInternalError, ValueError) as err:  # the study's schema being created right now
        if "must hold an Optuna study" in str(err) or "no such table" in str(err) or "Record does not exist" in str(err):
            return 0
        raise


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigkilled_search_resumes_with_every_completed_trial(tmp_path, workers):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp_path / "runs")}))
    run_dir = tmp_path / "runs" / "tiny"
    cmd = [sys.executable, "-m", "particle_nas", "search", str(config), "--no-progress", "--workers", str(workers)]
    log = tmp_path / "search.log"  # what the killed search printed, for a failure's message
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 50
        while _complete_so_far(run_dir) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the search ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the search and its worker processes, with no chance to clean up
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = {t.number: (t.values, t.user_attrs["particle"], t.user_attrs["accuracy"]) for t in _complete(run_dir)}
    assert 2 <= len(before) < 8, f"{len(before)} complete trials when killed; the run held {sorted(p.name for p in run_dir.glob('*'))}; the search printed:\n{log.read_text()[-3000:]}"

    assert main(["resume", str(run_dir), "--no-progress"]) == 0
    trials = open_run(run_dir).get_trials()
    after = {t.number: (t.values, t.user_attrs["particle"], t.user_attrs["accuracy"]) for t in trials if t.state == TrialState.COMPLETE}
    assert {n: after[n] for n in before} == before  # every trial completed before the kill is still there, unchanged
    finished = [t for t in trials if t.state == TrialState.COMPLETE or not str(t.user_attrs.get("fail_reason", "")).startswith("interrupted")]
    assert len(finished) == 8  # the run reached its trial count
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    killed = [t for t in trials if t.state == TrialState.FAIL]
    assert all(t.user_attrs["fail_reason"] == "interrupted: the process running it stopped" for t in killed)
    assert len(killed) <= workers
    assert (run_dir / "trials.csv").is_file() and (run_dir / "pareto.html").is_file()


@pytest.mark.parametrize(
    "search, message",
    [
        ({"early_stopping": "mo-asha", "reduction_factor": 1}, "search.reduction_factor must be in [2, 1000], but got 1."),
        ({"backend": "ray", "early_stopping": "hyperband"}, "search.early_stopping must be one of ('none', 'asha', 'mo-asha'), but got 'hyperband'."),
        ({"backend": "ray", "resources_per_trial": {"cpu": -1}}, "search.resources_per_trial.cpu must be"),
        ({"backend": "ray", "resources_per_trial": {"tpu": 1}}, "search.resources_per_trial must be a mapping with keys cpu and gpu"),
        ({"sampler": "progressive"}, "search.flops_budget must be set for the progressive sampler"),
        ({"backend": "dask"}, "search.backend must be one of ('optuna', 'ray'), but got 'dask'."),
    ],
)
def test_bad_parallel_settings_are_one_line_errors(tmp_path, capsys, search, message):
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({**TINY, "search": {**TINY["search"], **search}}))
    assert main(["search", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"particle-nas: error: {config}: {message}")


def test_resume_of_a_missing_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["resume", str(tmp_path / "nowhere")]) == 2
    assert "particle-nas: error: run directory must contain study.db" in capsys.readouterr().err


def test_workers_must_be_positive(tmp_path, capsys):
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp_path / "runs")}))
    assert main(["search", str(config), "--workers", "0", "--no-progress"]) == 2
    assert "particle-nas: error: workers must be" in capsys.readouterr().err


def test_a_run_that_named_no_sampler_resumes_with_the_one_it_ran_with(tmp_path, capsys):
    """The default sampler became auto (ehvi here); a run begun when it was gp, its config naming none, still resumes, with gp."""
    import optuna

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "search": {"trials": 2}, "output_dir": str(tmp_path / "runs")}))
    assert main(["search", str(config), "--no-progress"]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    study = open_run(run_dir)
    fingerprint = study.user_attrs["fingerprint"]
    assert fingerprint["search"]["sampler"] == "ehvi"
    fingerprint["search"]["sampler"] = "gp"  # what the earlier version stored for the same config
    optuna.load_study(study_name=study.study_name, storage=f"sqlite:///{run_dir / 'study.db'}").set_user_attr("fingerprint", fingerprint)
    capsys.readouterr()
    assert main(["resume", str(run_dir), "--trials", "3", "--no-progress"]) == 0
    assert "sampler gp" in capsys.readouterr().err
    assert len([t for t in open_run(run_dir).get_trials() if t.state == TrialState.COMPLETE]) == 3
