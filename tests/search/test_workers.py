"""Several worker processes on one study: journal storage, exact trial count, stale trials of dead workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from particle_nas.evaluators import Evaluator
from particle_nas.search import STUDY_JOURNAL, SearchSettings, open_storage, resolve_storage, run_search
from particle_nas.search._study import fail_stale_trials
from particle_nas.search._storage import worker_id
from particle_nas.space import NetworkSpec, SearchSpace

SPACE = SearchSpace.from_dict(
    {
        "factorization": ["full", "r2plus1d", "csn_ir", "spatial_only", "temporal_shift"],
        "wiring": ["plain", "residual", "bottleneck"],
        "temporal_kernel": [3, 5, 7],
        "prune_ratio": [0.0, 0.25, 0.5],
    }
)
NETWORK = NetworkSpec(widths=(8, 16), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), clip=(4, 16, 16))


@dataclass(frozen=True)
class Scored:
    accuracy: float
    flops: int
    params: int


@dataclass(frozen=True)
class LoggingEvaluator(Evaluator):
    """Scores from the particle's fields, after a short sleep; appends every call (pid, particle) to a log file."""

    log: Path
    sleep_s: float = 0.3

    def evaluate(self, spec, *, seed, on_epoch=None, weights_path=None):
        time.sleep(self.sleep_s)
        p = spec.particle
        with open(self.log, "a") as handle:
            handle.write(json.dumps({"pid": os.getpid(), "particle": p.to_dict()}, sort_keys=True) + "\n")
        acc = 0.3 + 0.05 * p.temporal_kernel * (p.factorization != "spatial_only") - 0.1 * p.prune_ratio
        flops = int(1e6 * p.temporal_kernel * (1 - p.prune_ratio))
        return Scored(acc, flops, flops // 10)


def _search(run_dir, evaluator, trials, workers):
    return run_search(
        run_dir=run_dir,
        name="run",
        space=SPACE,
        network=NETWORK,
        evaluator=evaluator,
        settings=SearchSettings(trials=trials, sampler="random"),
        seed=3,
        fingerprint={"space": SPACE.to_dict()},
        config={"seed": 3},
        progress=False,
        workers=workers,
    )


@pytest.mark.slow
def test_two_workers_share_one_study_without_lost_or_duplicated_trials(tmp_path):
    run_dir = tmp_path / "run"
    log = tmp_path / "calls.jsonl"
    summary = _search(run_dir, LoggingEvaluator(log), trials=10, workers=2)
    assert (run_dir / STUDY_JOURNAL).is_file() and not (run_dir / "study.db").exists()
    study = optuna.load_study(study_name="run", storage=open_storage(resolve_storage(run_dir)))
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(10))  # exactly the target, none lost, none extra
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert (summary.finished, summary.complete, summary.new) == (10, 10, 10)
    # both workers ran trials, each trial was run by exactly one of them
    pids = {int(t.user_attrs["worker"].split(":")[1]) for t in trials}
    assert len(pids) == 2 and os.getpid() not in pids
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    trained = [t for t in trials if "duplicate_of" not in t.user_attrs]
    assert len(calls) == len(trained)  # no trial trained twice
    assert sorted((c["pid"], json.dumps(c["particle"], sort_keys=True)) for c in calls) == sorted(
        (int(t.user_attrs["worker"].split(":")[1]), json.dumps(t.user_attrs["particle"], sort_keys=True)) for t in trained
    )
    for t in trials:
        assert t.values == [t.user_attrs["accuracy"], t.user_attrs["flops"]]
    # resuming with more trials adds exactly the missing ones
    summary = _search(run_dir, LoggingEvaluator(log, sleep_s=0.0), trials=13, workers=2)
    assert (summary.finished, summary.new) == (13, 3)


def test_several_workers_refuse_an_sqlite_study(tmp_path):
    run_dir = tmp_path / "run"
    _search(run_dir, LoggingEvaluator(tmp_path / "log", sleep_s=0.0), trials=2, workers=1)
    assert (run_dir / "study.db").is_file()
    with pytest.raises(ValueError, match="workers must be 1 for .*SQLite study.*but got 2"):
        _search(run_dir, LoggingEvaluator(tmp_path / "log", sleep_s=0.0), trials=4, workers=2)
    with pytest.raises(ValueError, match="workers must be 1 with a SQLite storage"):
        resolve_storage(tmp_path / "other", url="sqlite:///x.db", workers=2)


def test_only_trials_of_dead_workers_are_failed(tmp_path):
    storage = open_storage(str(tmp_path / STUDY_JOURNAL))
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "minimize"])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    live, gone, anonymous = study.ask(), study.ask(), study.ask()
    live.set_user_attr("worker", worker_id())
    host = worker_id().rsplit(":", 2)[0]
    gone.set_user_attr("worker", f"{host}:{int(dead.stdout)}:1")
    elsewhere = study.ask()
    elsewhere.set_user_attr("worker", "some-other-host:1:1")
    assert fail_stale_trials(study) == 2
    states = {t.number: (t.state, t.user_attrs.get("fail_reason")) for t in study.get_trials()}
    assert states[live.number][0] == TrialState.RUNNING
    assert states[elsewhere.number][0] == TrialState.RUNNING
    for trial in (gone, anonymous):
        assert states[trial.number] == (TrialState.FAIL, "interrupted: the process running it stopped")


@dataclass(frozen=True)
class OneBrokenWorker(LoggingEvaluator):
    """As LoggingEvaluator, but the first worker process to warm up finds its data gone (its warm-up raises)."""

    token: Path = Path("unused")

    def warm_up(self) -> None:
        try:
            os.close(os.open(self.token, os.O_CREAT | os.O_EXCL))  # one process wins the token
        except FileExistsError:
            return
        raise FileNotFoundError(f"[Errno 2] No such file or directory: '{self.token.parent / 'videos'}'")


def test_a_worker_that_fails_before_its_first_trial_stops_the_search_with_its_reason(tmp_path):
    from particle_nas.search import SearchStopped

    run_dir = tmp_path / "run"
    evaluator = OneBrokenWorker(tmp_path / "calls.jsonl", sleep_s=0.5, token=tmp_path / "token")
    with pytest.raises(SearchStopped) as stopped:
        _search(run_dir, evaluator, trials=40, workers=2)
    message = str(stopped.value)
    assert "stopped before its first trial: FileNotFoundError: [Errno 2] No such file or directory:" in message
    assert f"(traceback in {run_dir / 'search.log'})" in message
    assert "Traceback" in (run_dir / "search.log").read_text()
    study = optuna.load_study(study_name="run", storage=open_storage(resolve_storage(run_dir)))
    trials = study.get_trials()
    assert len(trials) < 40 and not [t for t in trials if t.state == TrialState.RUNNING]  # the other worker was stopped, its trial failed
