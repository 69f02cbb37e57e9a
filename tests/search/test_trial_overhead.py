"""What the local engine does between trials stays cheap on a long study.

The bar's Pareto front is recounted at most every few seconds; the lookup of
identical networks and the trial counts are kept per process and see the trials
another process adds in between.
"""

from __future__ import annotations

import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from particle_nas.search import SearchJob, SearchSettings, TrialRecorder, open_storage
from particle_nas.search._study import count_finished, is_finished, network_key, target_reached
from particle_nas.search._local import _BestLine
from particle_nas.space import NetworkSpec, SearchSpace


def _study(points):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"])
    for accuracy, flops in points:
        study.add_trial(create_trial(values=[accuracy, flops]))
    return study


def test_the_bar_counts_the_front_at_most_every_interval(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("particle_nas.search._local.time.monotonic", lambda: clock[0])
    study = _study([(0.5, 10.0), (0.4, 5.0)])  # both on the front
    line = _BestLine(every=5.0)
    assert line(study, 0.5) == "best acc 0.500 | front 2"
    study.add_trial(create_trial(values=[0.7, 1.0]))  # dominates both
    clock[0] += 1.0
    assert line(study, 0.7) == "best acc 0.700 | front 2"  # best from the trial just told; the front not recounted yet
    clock[0] += 5.0
    assert line(study, 0.2) == "best acc 0.700 | front 1"


# ---------------------------------------------------------------- the per-process ledger: what the engine counts before each trial
NETWORK = NetworkSpec(stem_channels=8, widths=(16, 32), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), clip=(8, 32, 32))

# Run by a second process: adds trials to the study, and finishes the trial the first process left RUNNING.
_WRITER = """
import sys
import optuna
from optuna.trial import TrialState, create_trial
from particle_nas.search import open_storage

location, name, first, running = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
study = optuna.load_study(study_name=name, storage=open_storage(location))
base = {NETWORK!r}
def net(stem):
    return {{**base, "stem_channels": stem}}
for i in range(first, first + 3):  # new networks
    study.add_trial(create_trial(values=[0.5, float(i)], user_attrs={{"network": net(100 + i)}}))
study.add_trial(create_trial(values=[0.9, 1.0], user_attrs={{"network": net(100 + first), "duplicate_of": 0}}))  # a duplicate: never a source
study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={{"fail_reason": "interrupted: Ctrl-C"}}))  # not finished
study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={{"fail_reason": "raised: boom"}}))  # finished
study.add_trial(create_trial(state=TrialState.PRUNED))  # finished
study.tell(running, [0.7, 7.0])  # the trial the first process asked for
"""


def _direct(study):
    """The definitions, by a full scan: sources by network (the first complete non-duplicate of each), finished, running."""
    known = {}
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.state == TrialState.COMPLETE and isinstance(t.user_attrs.get("network"), dict) and "duplicate_of" not in t.user_attrs:
            known.setdefault(network_key(t.user_attrs["network"]), t.number)
    trials = study.get_trials(deepcopy=False)
    return known, sum(is_finished(t) for t in trials), sum(t.state == TrialState.RUNNING for t in trials)


def _seen(study, recorder):
    finished = count_finished(study)
    running = next(n for n in range(finished + 100) if target_reached(study, finished + n + 1) is False)  # the smallest target not reached, less the finished ones
    return {k: t.number for k, t in recorder.known(study).items()}, finished, running


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_known_and_counts_see_the_trials_a_second_process_added(tmp_path, kind):
    location = f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else str(tmp_path / "study.journal")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=open_storage(location), directions=["maximize", "minimize"])
    for i in range(3):
        study.add_trial(create_trial(values=[0.4, float(i)], user_attrs={"network": NETWORK.replace(stem_channels=8 + i).to_dict()}))
    running = study.ask()  # left RUNNING here, told by the other process
    job = SearchJob(run_dir=tmp_path, name="s", space=SearchSpace.from_dict({}), network=NETWORK, evaluator=None, settings=SearchSettings(), seed=0, fingerprint={}, config={})
    recorder = TrialRecorder(job)
    before = _seen(study, recorder)
    assert before == _direct(study) and before[1:] == (3, 1) and len(before[0]) == 3

    writer = _WRITER.format(NETWORK=NETWORK.to_dict())
    subprocess.run([sys.executable, "-c", writer, location, "s", "10", str(running.number)], check=True, timeout=120)

    after = _seen(study, recorder)  # the same process, the same ledger: only the new and the open trials are visited
    assert after == _direct(study)
    assert after[1:] == (3 + 1 + 3 + 1 + 1 + 1, 0)  # the told trial, three new networks, the duplicate, one failed, one pruned
    assert len(after[0]) == 3 + 3 and after[0][network_key(NETWORK.replace(stem_channels=110))] == 4  # the source, not its duplicate (trial 7)
    fresh = optuna.load_study(study_name="s", storage=open_storage(location))  # another process's view from scratch agrees
    assert _seen(fresh, TrialRecorder(job)) == after
