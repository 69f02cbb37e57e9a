from __future__ import annotations

from collections.abc import Callable

import pytest

from particle_nas.evaluators import SyntheticConfig, TrainConfig
from particle_nas.space import NetworkSpec, ParticleSpec

TINY_CLIP = (4, 8, 8)


@pytest.fixture
def tiny_data() -> SyntheticConfig:
    """A task small enough to train on in well under a second."""
    return SyntheticConfig(num_classes=4, train_size=64, val_size=32, clip=TINY_CLIP, seed=3)


@pytest.fixture
def tiny_train() -> TrainConfig:
    return TrainConfig(epochs=2, batch_size=16, threads=2)


def make_tiny_spec(particle: ParticleSpec | None = None, *, num_classes: int = 4, clip: tuple[int, int, int] = TINY_CLIP) -> NetworkSpec:
    """Two narrow stages: cheap to build, trace and train."""
    return NetworkSpec(
        particle=particle or ParticleSpec(),
        widths=(8, 8),
        depths=(1, 1),
        temporal_strides=(1, 1),
        spatial_strides=(1, 2),
        stem_channels=8,
        clip=clip,
        num_classes=num_classes,
    )


@pytest.fixture
def tiny_spec() -> Callable[..., NetworkSpec]:
    return make_tiny_spec
