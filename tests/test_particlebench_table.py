"""The committed ParticleBench table: the documented space and recipe, and rows that retrain to what they say."""

from __future__ import annotations

from pathlib import Path

import pytest

from particle_nas.evaluators import load_table, table_particles
from particle_nas.space import ParticleSpec, network_fingerprint


ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "bench" / "particlebench" / "table.jsonl.gz"
SPACE_HASH = "8a1cb3d683b6d296"  # docs/particlebench.md: the quickstart's space, 1,056 specs, 952 distinct networks
# The second and third seeds of the front and the 50 networks nearest it (docs/particlebench.md: noise where the front is).
NOISE_COMMAND = "python bench/particlebench.py generate --out bench/particlebench/table.jsonl.gz --workers 1 --threads 1 --seeds 0 1 2 --noise-particles bench/particlebench/near_front.json"


@pytest.fixture(scope="module")
def table():
    return load_table(TABLE)


def test_the_table_is_the_documented_space_and_recipe(table, bench_script):
    recipe = bench_script("particlebench").load_recipe()
    expected = recipe.header(seeds=[0, 1, 2])
    assert table.space_hash == SPACE_HASH == expected["space_hash"]
    assert (table.meta["particles"], table.meta["networks"]) == (1056, 952) == (expected["particles"], expected["networks"])
    for key in ("space", "network", "data", "train", "epochs", "seeds", "order_seed"):
        assert table.meta[key] == expected[key], key
    assert table.meta["commands"][0] == "python bench/particlebench.py generate --out bench/particlebench/table.jsonl.gz --workers 2 --threads 1"
    assert NOISE_COMMAND in table.meta["commands"]
    networks = {table.fingerprint(p) for p in table_particles(table.space, table.network)}
    assert len(networks) == 952
    for row in table.rows:
        particle = ParticleSpec.from_dict(row["particle"])
        assert row["fingerprint"] in networks and row["fingerprint"] == network_fingerprint(table.network.replace(particle=particle))
        assert row["seed"] in (0, 1, 2)
        assert len(row["epoch_accuracy"]) == 5 + (row["particle"]["prune_ratio"] > 0 and row["accuracy_before_prune"] is not None)
        assert row["machine"]["threads"] == 1 and row["latency_threads"] == 1 and row["machine"]["commit"]
    assert len(table.rows) == len({(r["seed"], str(sorted(r["particle"].items()))) for r in table.rows})  # no row twice
    # the first seed holds every spec the table was first generated with (1,024: csn_ir/inverted beside its twin full/inverted)
    assert len({r["fingerprint"] for r in table.rows if r["seed"] == 0}) == 952 and sum(r["seed"] == 0 for r in table.rows) == 1024


def test_the_noise_subset_comes_first_and_is_measured(table):
    noise = table.noise()
    assert noise.pairs == 30 + 61 + 64  # the first 30 of the order with seed 1; the front and the 50 nearest it with seeds 1 and 2 (3 of them among the 30)
    assert 0 < noise.std < 0.1 and len(noise.epoch_std) == 5


def _quickest_rows(table, k: int):
    """The quickest seed-0 row of each of the k quickest factorizations (a minute of CI time, not many)."""
    quickest: dict[str, dict] = {}
    for row in table.rows:
        kind = row["particle"]["factorization"]
        if row["seed"] == 0 and (kind not in quickest or row["wall_s"] < quickest[kind]["wall_s"]):
            quickest[kind] = row
    return sorted(quickest.values(), key=lambda r: r["wall_s"])[:k]


@pytest.mark.slow
def test_retrained_rows_match_the_table_within_its_seed_noise(table, bench_script):
    """Same particle, same seed, one thread: on the machine that made the table the numbers repeat exactly;
    elsewhere float rounding differs, so a row must come back within 3 standard deviations of the seed noise."""
    pb = bench_script("particlebench")
    recipe = pb.load_recipe()
    noise = table.noise()
    rows = _quickest_rows(table, 3)  # about a minute on one core
    assert len({r["particle"]["factorization"] for r in rows}) == 3
    for row in rows:
        particle = ParticleSpec.from_dict(row["particle"])
        again = pb.measure(recipe, particle, 0, threads=1)
        assert (again["flops"], again["params"]) == (row["flops"], row["params"])
        assert abs(again["accuracy"] - row["accuracy"]) <= 3 * noise.std, (particle, again["accuracy"], row["accuracy"], noise.std)
        for epoch, (a, b) in enumerate(zip(again["epoch_accuracy"], row["epoch_accuracy"])):
            bound = 3 * (noise.epoch_std[epoch] if epoch < len(noise.epoch_std) else noise.std)
            assert abs(a - b) <= bound, (particle, epoch + 1, a, b, bound)
