"""space.stages: per_stage samples one particle per stage, under per-stage Optuna names, end to end."""

from __future__ import annotations

import optuna
import pytest

from particle_nas.evaluators import Evaluator
from particle_nas.results import load_network, particle_document, trials_table, write_particle_yaml
from particle_nas.search import SearchSettings, run_search
from particle_nas.space import NetworkSpec, ParticleSpec, SearchSpace, SpecError, cost

SPACE = {"factorization": ["full", "spatial_only", "csn_ir"], "temporal_kernel": [1, 3], "wiring": "residual"}
NETWORK = NetworkSpec(widths=(8, 16), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), clip=(4, 16, 16))


class CostEvaluator(Evaluator):
    """Scores a spec by its analytic cost (deterministic, no training)."""

    def evaluate(self, spec, *, seed, on_epoch=None, weights_path=None):
        c = cost(spec)
        temporal = sum(p.mixes_time for p in spec.stage_particles)
        return {"accuracy": 0.3 + 0.2 * temporal, "flops": c.flops, "params": c.params, "epoch_accuracy": [0.5], "duration_s": 0.0}


def test_per_stage_space_samples_one_particle_per_stage() -> None:
    space = SearchSpace.from_dict({**SPACE, "stages": "per_stage"})
    asked: list[str] = []

    def choose(axis):
        asked.append(axis.name)
        return axis.values()[-1] if axis.name.startswith("stage1.") else axis.values()[0]

    particles = space.sample_network(choose, stages=2)
    assert particles == (ParticleSpec(factorization="full", temporal_kernel=1), ParticleSpec(factorization="csn_ir", temporal_kernel=3))
    assert asked == ["stage0.factorization", "stage0.temporal_kernel", "stage1.factorization", "stage1.temporal_kernel"]
    assert space.to_dict()["stages"] == "per_stage" and "stages" not in SearchSpace.from_dict(SPACE).to_dict()
    assert SearchSpace.from_dict(SPACE).sample_network(choose, stages=2) == ParticleSpec(factorization="full", temporal_kernel=1)
    with pytest.raises(SpecError, match=r"space.stages must be one of \('shared', 'per_stage'\), but got 'each'."):
        SearchSpace.from_dict({**SPACE, "stages": "each"})


def test_per_stage_search_records_tables_and_exports(tmp_path) -> None:
    space = SearchSpace.from_dict({**SPACE, "stages": "per_stage"})
    summary = run_search(
        run_dir=tmp_path / "run", name="run", space=space, network=NETWORK, evaluator=CostEvaluator(),
        settings=SearchSettings(trials=8, sampler="random"), seed=0, fingerprint={"space": space.to_dict()}, config={}, progress=False,
    )  # fmt: skip
    assert summary.complete == 8
    study = optuna.load_study(study_name="run", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    assert {"stage0.factorization", "stage1.factorization"} <= set(study.trials[0].params)
    table = trials_table(study)
    assert table["stage_particles"].notna().all()
    assert (table["wiring"] == "residual").all()  # shared by every stage
    differs = table[table["stage_particles"].map(lambda s: '"full"' in s and '"csn_ir"' in s)]
    assert differs["factorization"].isna().all()
    row = table.iloc[0]
    out = write_particle_yaml(particle_document(row.to_dict(), run="run", pick="knee"), tmp_path / "best.yaml")
    network = load_network(out)
    assert isinstance(network.particle, tuple) and len(network.particle) == 2
    assert network.to_dict() == study.trials[0].user_attrs["network"]
    assert cost(network).flops == row["flops"]
