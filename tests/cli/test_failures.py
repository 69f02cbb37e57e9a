"""Failing trials and Ctrl-C, through the real command line: nothing is lost, the summary says what happened."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import yaml
from optuna.trial import TrialState

from cli_tools import TINY, run_cli


def _config(tmp_path: Path, **changes) -> Path:
    doc = {**TINY, **changes}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_diverging_trials_fail_with_their_reason_and_the_run_says_so(tmp_path):
    config = _config(tmp_path, train={"epochs": 1, "batch_size": 16, "lr": 1e30, "optimizer": "sgd"}, search={"sampler": "random", "trials": 2})
    done = run_cli("search", str(config), "--no-progress", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "2 trial(s) failed: 2x TrainingDiverged: training diverged: loss is" in done.stderr
    assert "no trial completed" in done.stderr and "Traceback" not in done.stderr
    table = pd.read_csv(tmp_path / "runs" / "tiny" / "trials.csv")
    assert list(table["state"]) == ["FAIL", "FAIL"]
    assert table["fail_reason"].str.startswith("TrainingDiverged: training diverged").all()


def test_ctrl_c_stops_cleanly_and_the_run_resumes(tmp_path):
    # Trials long enough (a few seconds each) that the poll below sees one running: with TINY's 48 clips a whole
    # search can finish between two polls on an idle machine, and the test then waited for a state that never came.
    config = _config(tmp_path, search={"sampler": "random", "trials": 6}, train={"epochs": 3, "batch_size": 16}, data={**TINY["data"], "train_size": 384})
    run = tmp_path / "runs" / "tiny"
    # The search gets SIGINT's default disposition, as under a terminal: a runner started in the background (nohup ... &)
    # hands its children SIGINT ignored, and Python then never raises KeyboardInterrupt, so the signal did nothing.
    proc = subprocess.Popen(
        [sys.executable, "-m", "particle_nas", "search", str(config), "--no-progress"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    storage = f"sqlite:///{run / 'study.db'}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # wait until at least one trial is complete and another is running
        time.sleep(0.5)
        if proc.poll() is not None:
            raise AssertionError(f"the search ended (exit {proc.returncode}) before a second trial was seen running: {proc.stderr.read()[-500:]}")
        if not (run / "study.db").exists():
            continue
        try:
            trials = optuna.load_study(study_name="tiny", storage=storage).trials
        except Exception:  # the study is being created
            continue
        states = [t.state for t in trials]
        # A running trial with at least 3 more to come: the signal must land while the search still has work
        # (under load, a last trial seen running could finish before the signal, and the search then exits 0).
        if TrialState.COMPLETE in states and states[-1] == TrialState.RUNNING and len(states) <= 3:
            break
    else:  # pragma: no cover
        proc.kill()
        raise AssertionError("the search never reached a running trial")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "To continue: particle-nas resume" in err and "Traceback" not in err
    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    complete_before = {t.number: t.values for t in trials if t.state == TrialState.COMPLETE}
    assert complete_before and not any(t.state == TrialState.RUNNING for t in trials)  # storage consistent
    assert [t.user_attrs.get("fail_reason") for t in trials if t.state == TrialState.FAIL] == ["interrupted: Ctrl-C"]

    done = run_cli("search", str(config), "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 6
    assert all(trials[n].values == v for n, v in complete_before.items())  # nothing lost or redone


def test_a_task_too_big_for_memory_fails_in_one_line_before_a_clip_is_made(tmp_path):
    config = _config(tmp_path, data={**TINY["data"], "clip": [1024, 1024, 1024]}, search={"sampler": "random", "trials": 1})
    script = (
        "import resource, sys; from particle_nas.cli import main; code = main(sys.argv[1:]); "
        "print('peak_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", script, "search", str(config), "--no-progress"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-3000:]
    assert lines[-2].startswith("particle-nas: error: data must fit in memory, but the synthetic task's 72 clips of 3x1024x1024x1024 take 232 GB and ")
    assert lines[-2].endswith(" are free; lower data.clip, data.train_size or data.val_size.")
    assert "Traceback" not in done.stderr
    assert int(lines[-1].split()[1]) < 2_000_000  # KiB: nothing of the 232 GB was allocated
