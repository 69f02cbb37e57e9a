"""A CUDA error other than out of memory (illegal address, device-side assert) ends the worker it happened in;
its trial is failed-interrupted (run again, not counted), never failed for a reason of its own."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from particle_nas.evaluators import Evaluator
from particle_nas.search import SearchSettings, open_storage, resolve_storage, run_search
from particle_nas.space import NetworkSpec, SearchSpace

SPACE = SearchSpace.from_dict({"factorization": ["full", "r2plus1d", "csn_ir"], "wiring": ["plain", "residual"], "temporal_kernel": [3, 5]})
NETWORK = NetworkSpec(widths=(8, 16), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), clip=(4, 16, 16))
ILLEGAL_ADDRESS = "CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be asynchronously reported"


@dataclass(frozen=True)
class BrokenGpuEvaluator(Evaluator):
    """Scores from the particle; the first trial of the whole search (a marker file made atomically) raises a CUDA error, as torch does."""

    marker: Path

    def evaluate(self, spec, *, seed, on_epoch=None, weights_path=None):
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            p = spec.particle
            return {"accuracy": 0.1 * p.temporal_kernel, "flops": 1000 * p.temporal_kernel, "params": 10}
        self.marker.write_text(str(os.getpid()))
        raise RuntimeError(ILLEGAL_ADDRESS)


def _search(run_dir: Path, marker: Path, *, trials: int, workers: int):
    return run_search(
        run_dir=run_dir, name="run", space=SPACE, network=NETWORK, evaluator=BrokenGpuEvaluator(marker),
        settings=SearchSettings(trials=trials, sampler="random"), seed=0, fingerprint={"space": SPACE.to_dict()},
        config={"seed": 0}, progress=False, workers=workers,
    )  # fmt: skip


def _trials(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="run", storage=open_storage(resolve_storage(run_dir))).get_trials()


def test_a_cuda_error_stops_the_search_process_and_its_trial_runs_again_on_resume(tmp_path) -> None:
    run_dir, marker = tmp_path / "run", tmp_path / "raised"
    summary = _search(run_dir, marker, trials=4, workers=1)
    (broken,) = _trials(run_dir)  # the process stopped: no trial after the error
    assert broken.state == TrialState.FAIL
    assert broken.user_attrs["fail_reason"] == "interrupted: the worker stopped after a CUDA error (RuntimeError: CUDA error: an illegal memory access was encountered)"
    assert summary.interrupted and (summary.finished, summary.failed, summary.interrupted_trials) == (0, 0, 1)
    summary = _search(run_dir, marker, trials=4, workers=1)  # resumed in a new process (a fresh CUDA context)
    assert (summary.finished, summary.complete, summary.failed) == (4, 4, 0) and not summary.interrupted


def test_a_cuda_error_ends_only_its_worker_process_and_the_others_finish_the_search(tmp_path) -> None:
    run_dir, marker = tmp_path / "run", tmp_path / "raised"
    summary = _search(run_dir, marker, trials=6, workers=2)
    trials = _trials(run_dir)
    broken = [t for t in trials if t.state == TrialState.FAIL]
    assert len(broken) == 1 and broken[0].user_attrs["fail_reason"].startswith("interrupted: the worker stopped after a CUDA error (RuntimeError: CUDA error: an illegal")
    pid = int(marker.read_text())
    assert broken[0].user_attrs["worker"].split(":")[1] == str(pid) and pid != os.getpid()  # raised in a worker process
    ran_after = [t.number for t in trials if t.user_attrs["worker"].split(":")[1] == str(pid) and t.number > broken[0].number]
    assert ran_after == []  # that worker stopped at once; the other one ran the rest
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 6 and summary.finished == 6 and summary.failed == 0
