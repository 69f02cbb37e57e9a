"""Sharding of training data over processes (DistributedSampler) and the environment torchrun sets."""

from __future__ import annotations

import pytest

from particle_nas.evaluators import from_environment, shard_indices


@pytest.mark.parametrize(("n", "world"), [(9, 2), (64, 2), (100, 3), (7, 8), (33, 4)])
def test_shards_never_overlap_are_equal_and_change_every_epoch(n: int, world: int) -> None:
    for epoch in (1, 2):
        shards = [shard_indices(n, rank=r, world_size=world, seed=5, epoch=epoch).tolist() for r in range(world)]
        flat = [i for shard in shards for i in shard]
        assert len(flat) == len(set(flat)) == world * (n // world)
        assert {len(shard) for shard in shards} == {n // world} and set(flat) <= set(range(n))
    first = shard_indices(n, rank=0, world_size=world, seed=5, epoch=1).tolist()
    assert first == shard_indices(n, rank=0, world_size=world, seed=5, epoch=1).tolist()
    if n // world > 2:
        assert first != shard_indices(n, rank=0, world_size=world, seed=5, epoch=2).tolist()


def test_the_environment_torchrun_sets_is_read_and_one_process_is_none() -> None:
    assert from_environment({}) is None
    assert from_environment({"WORLD_SIZE": "1", "RANK": "0"}) is None
    assert from_environment({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == (3, 4, 1)
