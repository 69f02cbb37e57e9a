"""What the local engine pays per trial on a long study, outside the trial: finding identical particles, and the Pareto front.

    python bench/search_overhead.py                 # a study of 2000 complete trials (in memory)
    python bench/search_overhead.py --trials 5000

Before each trial the engine looks up the study's complete trials by network
(``TrialRecorder.known``: a repeated particle reuses its record). It used to
parse every stored network again for every trial; a per-process ledger of the
study now visits only the trials new (or unfinished) since the last call, so
each stored network is parsed once. bench/long_run.py measures the whole
engine and ``report`` on a replayed search of 10,000 trials. The progress
bar's "front N" used ``study.best_trials`` after every trial; it is now
recounted at most every 5 s (and never with --no-progress). Both are timed on
an in-memory study of distinct networks (no database: the lookups alone).
"""

from __future__ import annotations

import argparse
import os
import random
import time

import optuna
from optuna.trial import TrialState, create_trial

from particle_nas.search import SearchJob, SearchSettings, TrialRecorder
from particle_nas.search._study import network_key
from particle_nas.space import NetworkSpec, ParticleSpec, SearchSpace


def study_of(trials: int) -> tuple[optuna.Study, NetworkSpec]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"])
    base = NetworkSpec(stem_channels=8, widths=(16, 32), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), clip=(8, 32, 32))
    rng = random.Random(0)
    for i in range(trials):  # stem_channels makes every network distinct, as a search's mostly are
        particle = ParticleSpec(temporal_kernel=rng.choice([1, 3, 5]), expansion=rng.choice([0.5, 1.0, 2.0]), wiring="bottleneck")
        network = base.replace(stem_channels=8 + i, particle=particle).to_dict()
        study.add_trial(create_trial(values=[rng.random(), rng.random() * 1e7], user_attrs={"network": network}))
    return study, base


def parsed_every_time(study: optuna.Study) -> dict:
    """The lookup as it was: every stored network parsed again."""
    known = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        known.setdefault(network_key(t.user_attrs["network"]), t)
    return known


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=2000)
    args = parser.parse_args()
    study, base = study_of(args.trials)
    job = SearchJob(run_dir=None, name="bench", space=SearchSpace.from_dict({}), network=base, evaluator=None, settings=SearchSettings(), seed=0, fingerprint={}, config={})
    recorder = TrialRecorder(job)
    steps = (
        ("known(): every network parsed (before)", lambda: parsed_every_time(study)),
        ("known(): cached keys, first call", lambda: recorder.known(study)),
        ("known(): cached keys, every later trial", lambda: recorder.known(study)),
        ("study.best_trials (before: after every trial)", lambda: study.best_trials),
    )
    print(f"{args.trials} complete trials in memory; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for name, step in steps:
        started = time.perf_counter()
        step()
        print(f"{name:<48} {time.perf_counter() - started:8.3f} s")


if __name__ == "__main__":
    main()
