"""A CUDA error other than out of memory (illegal address, device-side assert) breaks the CUDA context of the
process it happened in: that process runs no further trial, its trial is failed-interrupted (run again, not
counted), and the search goes on in fresh processes (local workers, Ray actors) or stops in one line (one process).

The fault is as real as a CPU allows: ``BrokenGpuEvaluator`` raises the error torch raises, and from then on
every evaluation in that process raises it too, as a broken context does, while a fresh process works.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from particle_nas.evaluators import Evaluator
from particle_nas.search import SearchJob, SearchSettings, SearchStopped, open_storage, resolve_storage, run
from particle_nas.space import NetworkSpec, SearchSpace

SPACE = SearchSpace.from_dict({"factorization": ["full", "r2plus1d", "csn_ir"], "wiring": ["plain", "residual"], "temporal_kernel": [3, 5]})
NETWORK = NetworkSpec(widths=(8, 16), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), clip=(4, 16, 16))
ILLEGAL_ADDRESS = "CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be asynchronously reported"
CUDA_ERROR = getattr(torch, "AcceleratorError", RuntimeError)  # what torch >= 2.8 raises for it
ERROR_LINE = f"{CUDA_ERROR.__name__}: CUDA error: an illegal memory access was encountered"
REASON = f"interrupted: the worker stopped after a CUDA error ({ERROR_LINE})"
BROKEN = "PARTICLE_NAS_TEST_BROKEN_CUDA_PID"  # set in a process whose context broke: lives as long as the process, whichever copy of this module reads it


@dataclass(frozen=True)
class BrokenGpuEvaluator(Evaluator):
    """Scores from the particle; appends every call to ``calls`` (pid, ok). Once a process has raised the CUDA error,
    every later call in that process raises it again.

    ``breaks``: "first" breaks the process running the first trial of the whole search (a marker file made
    atomically); "every" breaks each process at its first trial (a faulty GPU).
    """

    calls: Path
    breaks: str = "first"
    sleep_s: float = 0.0

    def evaluate(self, spec, *, seed, on_epoch=None, weights_path=None):
        broken = os.environ.get(BROKEN) == str(os.getpid())
        if not broken and (self.breaks == "every" or _first_call(self.calls.with_suffix(".first"))):
            os.environ[BROKEN] = str(os.getpid())
            broken = True
        with open(self.calls, "a") as handle:
            handle.write(json.dumps({"pid": os.getpid(), "ok": not broken}) + "\n")
        if broken:
            raise CUDA_ERROR(ILLEGAL_ADDRESS)
        time.sleep(self.sleep_s)
        p = spec.particle
        return {"accuracy": 0.1 * p.temporal_kernel, "flops": 1000 * p.temporal_kernel, "params": 10}


def _first_call(marker: Path) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _job(run_dir: Path, evaluator: Evaluator, *, trials: int, workers: int, backend: str = "optuna") -> SearchJob:
    settings = SearchSettings(trials=trials, sampler="random", backend=backend)
    return SearchJob(run_dir=run_dir, name="run", space=SPACE, network=NETWORK, evaluator=evaluator, settings=settings, seed=0, fingerprint={"space": SPACE.to_dict()}, config={"seed": 0}, workers=workers)


def _search(run_dir: Path, evaluator: Evaluator, *, trials: int, workers: int, backend: str = "optuna"):
    return run(_job(run_dir, evaluator, trials=trials, workers=workers, backend=backend), progress=False)


def _trials(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="run", storage=open_storage(resolve_storage(run_dir))).get_trials()


def _calls(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _pid(trial: optuna.trial.FrozenTrial) -> int:
    return int(trial.user_attrs["worker"].split(":")[1])  # host:pid:start


def _in_a_fresh_process(*args, **kwargs):
    """``_search`` in a new process (a fresh CUDA context), as ``particle-nas resume`` is; its exception is raised here."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_search, *args, **kwargs).result()


@pytest.mark.parametrize("sampler", ["random", "progressive"])
def test_a_cuda_error_stops_a_single_process_search_in_one_line(tmp_path, monkeypatch, sampler) -> None:
    monkeypatch.setenv(BROKEN, "none")  # this process's "context" is whole again after the test
    run_dir, calls = tmp_path / "run", tmp_path / "calls.jsonl"
    job = _job(run_dir, BrokenGpuEvaluator(calls), trials=4, workers=1)
    if sampler == "progressive":
        job = dataclasses.replace(job, settings=SearchSettings(trials=4, sampler="progressive", flops_budget=10**12))
    with pytest.raises(SearchStopped) as stopped:
        run(job, progress=False)
    assert str(stopped.value) == (
        f"a CUDA error in trial 0 ({ERROR_LINE}) left this process unable to use the GPU; the search stopped with that trial marked "
        f"interrupted (it runs again): particle-nas resume {run_dir} goes on in a fresh process"
    )
    (broken,) = _trials(run_dir)  # no trial after the error
    assert broken.state == TrialState.FAIL and broken.user_attrs["fail_reason"] == REASON
    assert _calls(calls) == [{"pid": os.getpid(), "ok": False}]


@pytest.mark.slow
def test_a_single_process_search_a_cuda_error_stopped_is_completed_by_resume_in_a_fresh_process(tmp_path) -> None:
    run_dir, calls = tmp_path / "run", tmp_path / "calls.jsonl"
    with pytest.raises(SearchStopped) as stopped:
        _in_a_fresh_process(run_dir, BrokenGpuEvaluator(calls), trials=4, workers=1)
    assert str(stopped.value).startswith(f"a CUDA error in trial 0 ({ERROR_LINE})")
    (broken,) = _trials(run_dir)
    assert broken.state == TrialState.FAIL and broken.user_attrs["fail_reason"] == REASON
    summary = _in_a_fresh_process(run_dir, BrokenGpuEvaluator(calls), trials=4, workers=1)  # resumed: a new process, a working context
    assert (summary.finished, summary.complete, summary.failed) == (4, 4, 0) and not summary.interrupted
    trials = _trials(run_dir)
    assert len(trials) == 5 and [t.state for t in trials[1:]] == [TrialState.COMPLETE] * 4  # a new trial in place of the interrupted one
    first, *later = _calls(calls)
    assert not first["ok"] and later and all(c["ok"] and c["pid"] != first["pid"] for c in later)  # a reused identical network calls nothing


@pytest.mark.slow
def test_a_cuda_error_ends_only_its_worker_and_a_fresh_worker_takes_its_slot(tmp_path, capsys) -> None:
    run_dir, calls = tmp_path / "run", tmp_path / "calls.jsonl"
    summary = _search(run_dir, BrokenGpuEvaluator(calls, sleep_s=1.0), trials=8, workers=2)  # the healthy worker alone would need 8 s
    assert not summary.interrupted and (summary.finished, summary.complete, summary.failed, summary.interrupted_trials) == (8, 8, 0, 1)
    trials = _trials(run_dir)
    (broken,) = [t for t in trials if t.state == TrialState.FAIL]
    assert broken.user_attrs["fail_reason"] == REASON
    pid = _pid(broken)
    assert pid != os.getpid() and [t.number for t in trials if _pid(t) == pid] == [broken.number]  # no trial after the error in that process
    assert [c for c in _calls(calls) if c["pid"] == pid] == [{"pid": pid, "ok": False}]
    assert len({_pid(t) for t in trials}) == 3  # the other worker, and the fresh one in the broken worker's slot, ran the rest
    err = capsys.readouterr().err
    warning = f"particle-nas: warning: worker {{}} (pid {pid}) stopped after a CUDA error in trial {broken.number} ({ERROR_LINE}); a fresh worker process takes its slot"
    assert any(warning.format(i) in err for i in (0, 1)), err


@pytest.mark.slow
def test_a_fresh_worker_that_meets_a_cuda_error_before_completing_a_trial_stops_the_search(tmp_path) -> None:
    from particle_nas.search._workers import WorkerFailed

    run_dir, calls = tmp_path / "run", tmp_path / "calls.jsonl"
    with pytest.raises(WorkerFailed) as stopped:
        _search(run_dir, BrokenGpuEvaluator(calls, breaks="every"), trials=8, workers=2)
    message = str(stopped.value)
    assert "\n" not in message and "stopped after a CUDA error again before completing a trial" in message and ERROR_LINE in message
    assert f"(traceback in {run_dir / 'search.log'})" in message
    assert len({c["pid"] for c in _calls(calls)}) <= 4  # two workers and at most one fresh one per slot: no endless restarts
    trials = _trials(run_dir)
    assert trials and all(t.state == TrialState.FAIL and t.user_attrs["fail_reason"].startswith("interrupted: ") for t in trials)


@pytest.mark.slow
def test_a_ray_actor_that_meets_a_cuda_error_runs_no_further_trial(tmp_path, local_ray) -> None:
    run_dir, calls = tmp_path / "run", tmp_path / "calls.jsonl"
    summary = _search(run_dir, BrokenGpuEvaluator(calls, sleep_s=0.2), trials=6, workers=2, backend="ray")
    assert not summary.interrupted and (summary.finished, summary.complete, summary.failed) == (6, 6, 0)
    trials = _trials(run_dir)
    (broken,) = [t for t in trials if t.state == TrialState.FAIL]
    assert broken.user_attrs["fail_reason"] == REASON
    made = _calls(calls)
    (pid,) = [c["pid"] for c in made if not c["ok"]]  # one error, in one actor: that actor was not reused
    assert [c for c in made if c["pid"] == pid] == [{"pid": pid, "ok": False}]
    assert len(trials) == 7 and (run_dir / "ray" / "tune-1").is_dir()  # a second experiment, in fresh actors, ran a trial in its place


@pytest.mark.slow
def test_a_ray_experiment_whose_every_trial_meets_a_cuda_error_stops_the_search(tmp_path, local_ray) -> None:
    run_dir, calls = tmp_path / "run", tmp_path / "calls.jsonl"
    with pytest.raises(SearchStopped) as stopped:
        _search(run_dir, BrokenGpuEvaluator(calls, breaks="every"), trials=3, workers=2, backend="ray")
    message = str(stopped.value)
    assert "\n" not in message and message.startswith("the last Ray experiment finished no trial: 3 stopped after a CUDA error") and ERROR_LINE in message
    made = _calls(calls)
    assert len(made) == 3 and len({c["pid"] for c in made}) == 3  # each in a fresh actor, and no second experiment
    assert not (run_dir / "ray" / "tune-1").exists()
