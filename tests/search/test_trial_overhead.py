"""What the local engine does between trials stays cheap on a long study: the bar's Pareto front is recounted at most every few seconds."""

from __future__ import annotations

import optuna
from optuna.trial import create_trial

from particle_nas.search._optuna import _BestLine


def _study(points):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"])
    for accuracy, flops in points:
        study.add_trial(create_trial(values=[accuracy, flops]))
    return study


def test_the_bar_counts_the_front_at_most_every_interval(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("particle_nas.search._optuna.time.monotonic", lambda: clock[0])
    study = _study([(0.5, 10.0), (0.4, 5.0)])  # both on the front
    line = _BestLine(every=5.0)
    assert line(study, 0.5) == "best acc 0.500 | front 2"
    study.add_trial(create_trial(values=[0.7, 1.0]))  # dominates both
    clock[0] += 1.0
    assert line(study, 0.7) == "best acc 0.700 | front 2"  # best from the trial just told; the front not recounted yet
    clock[0] += 5.0
    assert line(study, 0.2) == "best acc 0.700 | front 1"
