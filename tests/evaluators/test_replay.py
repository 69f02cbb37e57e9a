from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from particle_nas.config import load_config
from particle_nas.evaluators import ReplayEvaluator, SyntheticConfig, Table, TrainConfig, canonical_networks, check_replay, load_table, space_hash, table_particles
from particle_nas.evaluators._replay import write_table
from particle_nas.space import NetworkSpec, ParticleSpec, SearchSpace, SpecError, network_fingerprint, read_yaml

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"
QUICKSTART_SPACE = read_yaml(QUICKSTART)["space"]  # the space of the table


def test_table_particles_are_the_distinct_networks_of_the_quickstart_space():
    """Particles are one network when they build one (their fingerprints): 1056 specs, 952 networks."""
    config = load_config(QUICKSTART)
    space, network = config.space, config.network
    particles = table_particles(space, network)
    # specs: (5 factorizations x 2 kernels + spatial_only) x (plain, residual, 3 bottleneck, 3 inverted) x 2 SE x 2 activations x 3 prune ratios
    assert len(list(space.grid())) == 11 * 8 * 2 * 2 * 3 == 1056
    # csn_ir plain/residual cannot prune (its depthwise conv writes the output): 2 x 2 x 2 x 2 x 2 extra prune ratios collapse;
    # csn_ir/inverted builds full/inverted (the inverted block's middle conv is depthwise either way): 2 x 3 x 2 x 2 x 3 = 72 more
    assert len(particles) == 1056 - 32 - 72 == 952 == len(set(particles))
    assert particles == table_particles(SearchSpace.from_dict(dict(reversed(list(QUICKSTART_SPACE.items())))), network)
    first = canonical_networks(space, network)
    named = {p: fp for fp, p in first.items()}
    twin = ParticleSpec(factorization="csn_ir", wiring="inverted", expansion=2.0, squeeze_excite=0.25, prune_ratio=0.5)
    assert twin not in named and named[twin.replace(factorization="full")] == network_fingerprint(network.replace(particle=twin))
    assert ParticleSpec(factorization="csn_ir", wiring="plain") in named and ParticleSpec(factorization="csn_ir", wiring="plain", prune_ratio=0.5) not in named
    assert ParticleSpec(factorization="csn_ir", wiring="bottleneck", expansion=0.5, prune_ratio=0.5) in named  # its prune removes channels


def test_space_hash_depends_on_the_particles_not_their_order():
    space = SearchSpace.from_dict(QUICKSTART_SPACE)
    shuffled = SearchSpace.from_dict({k: list(reversed(v)) if isinstance(v, list) else v for k, v in QUICKSTART_SPACE.items()})
    assert space_hash(space) == space_hash(shuffled)
    assert space_hash(space) != space_hash(SearchSpace.from_dict({**QUICKSTART_SPACE, "activation": ["relu"]}))


def _spec(table: Table, particle: ParticleSpec) -> NetworkSpec:
    return table.network.replace(particle=particle)


def test_replay_answers_what_the_table_recorded(tiny_bench):
    table = load_table(tiny_bench[1])
    replay = ReplayEvaluator(table=table)
    assert replay.epochs == table.epochs == 1
    for row in table.rows:
        if row["seed"] != 0:
            continue
        seen = []
        record = replay.evaluate(_spec(table, ParticleSpec.from_dict(row["particle"])), seed=7, on_epoch=lambda e, a: seen.append((e, a)))
        assert seen == [(1, row["epoch_accuracy"][0])]
        assert record["accuracy"] == row["accuracy"] and record["epoch_accuracy"] == row["epoch_accuracy"]
        assert (record["flops"], record["params"], record["latency_ms"]) == (row["flops"], row["params"], row["latency_ms"])
        assert record["duration_s"] == row["wall_s"] and record["replay"] is True
        assert record.get("accuracy_before_prune") == row["accuracy_before_prune"]


def test_replay_at_an_earlier_epoch_answers_that_epoch(tiny_bench, tmp_path):
    table = load_table(tiny_bench[1])
    rows = [dict(r, epoch_accuracy=[0.25, 0.5, 0.75], accuracy=0.75, train_loss=[3.0, 2.0, 1.0], epoch_seconds=[1.0, 2.0, 3.0], wall_s=6.5) for r in table.rows]
    row = rows[0]
    longer = load_table(write_table(tmp_path / "t.jsonl.gz", {**table.meta, "epochs": 3}, rows))
    spec = _spec(longer, ParticleSpec.from_dict(row["particle"]))
    record = ReplayEvaluator(table=longer, epochs=2).evaluate(spec, seed=0)
    assert (record["accuracy"], record["epoch_accuracy"], record["duration_s"]) == (0.5, [0.25, 0.5], 3.0)
    assert ReplayEvaluator(table=longer).evaluate(spec, seed=0)["duration_s"] == 6.5
    assert ReplayEvaluator(table=longer, epochs=2).epochs == 2  # the budget engines read (early stopping)
    with pytest.raises(SpecError, match="ReplayEvaluator.epochs"):
        ReplayEvaluator(table=longer, epochs=4)


def test_table_round_trip_and_lookup(tiny_bench, tmp_path):
    table = load_table(tiny_bench[1])
    again = load_table(write_table(tmp_path / "copy.jsonl.gz", table.meta, table.rows))
    assert again.meta == table.meta and again.rows == table.rows
    first = ParticleSpec.from_dict(next(r for r in table.rows if r["seed"] == 1)["particle"])
    assert table.row(first, seed=1)["seed"] == 1 and table.row(first)["seed"] == 0
    frame = table.frame()
    assert len(frame) == len(table.rows) and {"factorization", "prune_ratio", "accuracy", "latency_ms"} <= set(frame.columns)


def test_replay_refuses_a_particle_not_in_the_table_and_another_network(tiny_bench):
    table = load_table(tiny_bench[1])
    replay = ReplayEvaluator(table=table)
    with pytest.raises(ValueError, match=rf"is not in table .* \(space hash {table.space_hash}\); the replay answers only the table's space"):
        replay.evaluate(_spec(table, ParticleSpec(factorization="csn_ip", wiring="plain")), seed=0)
    with pytest.raises(ValueError, match="proxy network"):
        replay.evaluate(table.network.replace(particle=ParticleSpec(factorization="full", wiring="plain"), widths=(4, 16)), seed=0)


def test_check_replay_refuses_another_space_network_or_recipe(tiny_bench):
    from particle_nas.evaluators import SyntheticConfig, TrainConfig

    table = load_table(tiny_bench[1])
    data, train = SyntheticConfig(**{**table.meta["data"], "clip": tuple(table.meta["data"]["clip"])}), TrainConfig(**table.meta["train"])
    ok = dict(space=table.space, network=table.network, data=dataclasses.replace(data, seed=5), train=dataclasses.replace(train, seed=5, threads=1))
    check_replay(table, **ok)  # seeds and threads may differ
    with pytest.raises(SpecError, match="evaluators.replay must name a table of the config's space"):
        check_replay(table, **{**ok, "space": SearchSpace.from_dict({**table.meta["space"], "prune_ratio": [0.0]})})
    with pytest.raises(SpecError, match="stem_channels"):
        check_replay(table, **{**ok, "network": table.network.replace(stem_channels=8)})
    with pytest.raises(SpecError, match="train.epochs"):
        check_replay(table, **{**ok, "train": dataclasses.replace(train, epochs=2)})


def test_load_table_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="no such table"):
        load_table(tmp_path / "missing.jsonl.gz")
    bad = write_table(tmp_path / "bad.jsonl.gz", {"format": "other"})
    with pytest.raises(ValueError, match="must start with a 'particlebench-1' header"):
        load_table(bad)


def test_an_unfinished_table_is_refused_with_how_far_it_got(tiny_bench, tmp_path):
    table = load_table(tiny_bench[1])
    first = [r for r in table.rows if r["seed"] == 0]
    partial = load_table(write_table(tmp_path / "partial.jsonl.gz", table.meta, first[:3]))
    assert len(partial.missing) == 1 and not table.missing
    with pytest.raises(SpecError, match=r"ReplayEvaluator.table must name a complete table, but it holds 3 of its 4 particles .*rerun the command in its header"):
        ReplayEvaluator(table=partial)
    data, train = SyntheticConfig(**{**table.meta["data"], "clip": tuple(table.meta["data"]["clip"])}), TrainConfig(**table.meta["train"])
    with pytest.raises(SpecError, match="evaluators.replay must name a complete table"):
        check_replay(partial, space=table.space, network=table.network, data=data, train=train)


def test_seed_noise_comes_from_the_particles_trained_with_both_seeds(tiny_bench, tmp_path):
    table = load_table(tiny_bench[1])
    one = table.noise()
    (twin,) = [r for r in table.rows if r["seed"] == 1]
    d = twin["accuracy"] - table.row(ParticleSpec.from_dict(twin["particle"]))["accuracy"]
    assert one.pairs == 1 and one.std == pytest.approx(abs(d) / 2**0.5) and one.max_abs_difference == pytest.approx(abs(d))

    first = [r for r in table.rows if r["seed"] == 0]
    seconds = [dict(r, seed=1, accuracy=r["accuracy"] + d, epoch_accuracy=[a + d for a in r["epoch_accuracy"]]) for r, d in zip(first, (0.1, -0.1, 0.3, 0.0))]
    noise = load_table(write_table(tmp_path / "noise.jsonl.gz", table.meta, first + seconds)).noise()
    assert noise.pairs == 4 and noise.std == pytest.approx(((0.01 + 0.01 + 0.09) / 4 / 2) ** 0.5)
    assert noise.mean_abs_difference == pytest.approx(0.125) and noise.max_abs_difference == pytest.approx(0.3)
    assert noise.epoch_std[0] == pytest.approx(noise.std)
    assert load_table(write_table(tmp_path / "none.jsonl.gz", table.meta, first)).noise().pairs == 0


def test_a_twin_particle_is_answered_by_its_networks_canonical_row():
    """The committed table holds csn_ir/inverted rows too (generated before the fingerprint); full/inverted's row answers for both."""
    table = load_table(Path(__file__).resolve().parents[2] / "bench" / "particlebench" / "table.jsonl.gz")
    full = ParticleSpec(factorization="full", wiring="inverted", temporal_kernel=5, expansion=2.0, squeeze_excite=0.25, activation="silu", prune_ratio=0.25)
    twin = full.replace(factorization="csn_ir")
    own = [r for r in table.rows if r["particle"] == twin.to_dict() and r["seed"] == table.seeds[0]]
    assert len(own) == 1 and (own[0]["flops"], own[0]["params"]) == (table.row(full)["flops"], table.row(full)["params"])
    assert table.row(twin) is table.row(full) and table.row(full)["particle"] == full.to_dict()
    assert len(table.particles) == 952 and full in table.particles and twin not in table.particles
    replayed = ReplayEvaluator(table=table).evaluate(table.network.replace(particle=twin), seed=0)
    assert replayed["accuracy"] == table.row(full)["accuracy"]
