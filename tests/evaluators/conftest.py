from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
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


def write_video(path: Path, *, direction: int = 1, codec: str = "mpeg4", frames: int = 12, size: int = 32, rate: int = 12) -> None:
    """A bright square crossing a dark frame left to right (direction 1) or right to left (-1), encoded with PyAV."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width = stream.height = size
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for i in range(frames):
            image = np.full((size, size, 3), 20, dtype=np.uint8)
            x = 2 + (size - 12) * i // max(1, frames - 1)
            x = x if direction > 0 else size - 10 - x
            image[size * 3 // 8 : size * 5 // 8, x : x + 8] = 230
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="session")
def video_writer() -> Callable[..., None]:
    """``write_video``: real encoded videos for the video folder tests."""
    return write_video
