"""Builds a real Optuna study in a tmp SQLite file, written the way the search package writes it.

A uniquely named module (not conftest) so test folders never shadow each other's helpers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from particle_nas.space import NetworkSpec, ParticleSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)

PARTICLES = [
    ParticleSpec(),
    ParticleSpec(factorization="full", wiring="plain", temporal_kernel=5),
    ParticleSpec(factorization="csn_ir", wiring="inverted", expansion=6.0, activation="silu"),
    ParticleSpec(factorization="spatial_only", wiring="bottleneck", temporal_kernel=1, squeeze_excite=0.25),
    ParticleSpec(factorization="temporal_shift", wiring="residual", temporal_kernel=3, shift_fraction=0.125, prune_ratio=0.5),
    ParticleSpec(factorization="csn_ip", wiring="bottleneck", spatial_kernel=5, expansion=0.5),
]
NETWORK = NetworkSpec(widths=(16, 24, 48), depths=(1, 2, 1), num_classes=10)

# (state, accuracy, flops, params) of the standard study; trial number = position.
# Front on (accuracy max, flops min): trials 0, 2, 3, 5, 8 (8 duplicates 3's result).
STANDARD = [
    ("COMPLETE", 0.50, 1_000_000, 5_000),  # 0: cheapest
    ("COMPLETE", 0.45, 3_000_000, 9_000),  # 1: dominated by 0
    ("COMPLETE", 0.70, 2_000_000, 7_000),  # 2
    ("COMPLETE", 0.80, 4_000_000, 12_000),  # 3: the knee
    ("FAIL", None, None, None),  # 4
    ("COMPLETE", 0.82, 40_000_000, 90_000),  # 5: most accurate
    ("RUNNING", None, None, None),  # 6
    ("PRUNED", None, None, None),  # 7
    ("COMPLETE", 0.80, 4_000_000, 12_000),  # 8: duplicate of 3
    ("WAITING", None, None, None),  # 9
    ("COMPLETE", 0.60, 8_000_000, 30_000),  # 10: dominated
]


def make_study(path: Path, rows: list[tuple[str, Any, Any, Any]], *, name: str | None = None, three: bool = False) -> optuna.Study:
    """A study at ``path/study.db`` named after ``path`` with one trial per row."""
    path.mkdir(parents=True, exist_ok=True)
    objectives = [{"name": "accuracy", "direction": "maximize"}, {"name": "flops", "direction": "minimize"}]
    if three:
        objectives.append({"name": "params", "direction": "minimize"})
    study = optuna.create_study(
        study_name=name or path.name,
        storage=f"sqlite:///{path}/study.db",
        directions=[o["direction"] for o in objectives],
    )
    study.set_user_attr("objectives", objectives)
    study.set_user_attr("seed", 0)
    study.set_user_attr("config", {"space": {"factorization": ["full", "r2plus1d"]}, "trials": len(rows)})
    for number, (state, accuracy, flops, params) in enumerate(rows):
        particle = PARTICLES[number % len(PARTICLES)]
        attrs: dict[str, Any] = {}
        if state != "WAITING":
            attrs["particle"] = particle.to_dict()
            attrs["network"] = NETWORK.replace(particle=particle).to_dict()
        if state == "COMPLETE":
            attrs.update(accuracy=accuracy, flops=flops, params=params, epoch_accuracy=[accuracy / 2, accuracy], duration_s=1.5 + number)
        if state == "FAIL":
            attrs["fail_reason"] = "CUDA out of memory"
        if rows is STANDARD and number == 8:
            attrs["duplicate_of"] = 3
        values = None
        if state == "COMPLETE":
            values = [accuracy, flops] + ([params] if three else [])
        study.add_trial(
            create_trial(
                state=TrialState[state],
                values=values,
                params={"factorization": particle.factorization},
                distributions={"factorization": CategoricalDistribution([p.factorization for p in PARTICLES])},
                user_attrs=attrs,
            )
        )
    return study
