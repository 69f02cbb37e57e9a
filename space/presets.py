"""Reference presets: published video networks written as plain ``NetworkSpec`` data.

Each preset reproduces an original implementation layer for layer, and carries
the parameters and FLOPs its authors published, with where they were published.
``tests/space/test_presets.py`` checks that the analytic model (and fvcore on the
built module) counts them within 0.5% of those figures.

    >>> from particle_nas.space import presets
    >>> spec = presets.get("r2plus1d_18")      # a NetworkSpec
    >>> model = presets.build("r2plus1d_18")   # its torch module

FLOPs are multiply-adds of conv and linear layers for one clip, as everywhere
in particle-nas (torchvision's "GFLOPS" column counts the same).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ._build import build_network
from ._cost import Cost, cost
from ._spec import NetworkSpec, ParticleSpec


@dataclass(frozen=True)
class Preset:
    """A published network as a spec, with the figures its source reports."""

    name: str
    spec: NetworkSpec
    params: int  # published trainable parameters
    gflops: float  # published multiply-adds of one clip, in billions, at spec.clip
    source: str  # where the figures and the architecture come from

    def counted(self) -> Cost:
        """The analytic count of ``spec`` at its clip."""
        return cost(self.spec)


# ---------------------------------------------------------------- torchvision's video ResNets
# torchvision.models.video.resnet (VideoResNet, BasicBlock): stem 3x7x7 stride (1, 2, 2), four stages of
# two basic blocks, widths 64..512, 1x1x1 conv + BN shortcuts where the shape changes, global pool, fc 512->400.
_VIDEO_RESNET = dict(
    widths=(64, 128, 256, 512),
    depths=(2, 2, 2, 2),
    spatial_strides=(1, 2, 2, 2),
    stem_channels=64,
    stem_kernel=(3, 7),
    stem_stride=(1, 2),
    clip=(16, 112, 112),
    num_classes=400,
)
_TORCHVISION = (
    "torchvision.models.video.{weights}.KINETICS400_V1: num_params from the weights meta (torchvision/models/video/resnet.py), "
    "GFLOPS from the video models table, https://pytorch.org/vision/stable/models.html (16x112x112)"
)
_R3D = ParticleSpec(factorization="full", wiring="residual", temporal_kernel=3, spatial_kernel=3)

PRESETS: dict[str, Preset] = {
    # R3D-18: every block is 3x3x3, strided in time and space in stages 2-4.
    "r3d_18": Preset(
        name="r3d_18",
        spec=NetworkSpec(particle=_R3D, temporal_strides=(1, 2, 2, 2), **_VIDEO_RESNET),
        params=33_371_472,
        gflops=40.70,
        source=_TORCHVISION.format(weights="R3D_18_Weights"),
    ),
    # MC3-18: 3x3x3 in stage 1, 1x3x3 ("no temporal") in stages 2-4, which stride in space only.
    "mc3_18": Preset(
        name="mc3_18",
        spec=NetworkSpec(particle=(_R3D,) + (_R3D.replace(temporal_kernel=1),) * 3, temporal_strides=(1, 1, 1, 1), **_VIDEO_RESNET),
        params=11_695_440,
        gflops=43.34,
        source=_TORCHVISION.format(weights="MC3_18_Weights"),
    ),
    # R(2+1)D-18: (2+1)D stem 1x7x7 -> 45 -> 3x1x1 -> 64; every 3x3x3 is 1x3x3 -> mid -> 3x1x1, with
    # torchvision's mid width taken from the block's input and output widths for both convs of a block.
    "r2plus1d_18": Preset(
        name="r2plus1d_18",
        spec=NetworkSpec(
            particle=ParticleSpec(factorization="r2plus1d", wiring="residual", r2plus1d_mid="block"),
            temporal_strides=(1, 2, 2, 2),
            stem_mid_channels=45,
            **_VIDEO_RESNET,
        ),
        params=31_505_325,
        gflops=40.52,
        source=_TORCHVISION.format(weights="R2Plus1D_18_Weights"),
    ),
}

# ---------------------------------------------------------------- X3D
# X3D (Feichtenhofer, CVPR 2020), as PyTorchVideo's create_x3d / PySlowFast build it: stem 1x3x3 (stride 1, 2, 2) to 24
# channels then a depthwise 5x1x1; four stages of bottlenecks (widths 24, 48, 96, 192; inner = 2.25 x width) whose middle
# conv is a depthwise 3x3x3 strided (1, 2, 2) in each stage's first block, squeeze-excite (ratio 1/16, width rounded to
# multiples of 8) on every other block from the first, 1x1x1 conv + BN shortcuts where the shape changes; head 1x1x1 conv
# to 432 + BN + act, global pool, 1x1x1 conv to 2048 + act, linear to 400. Activations are the particle's (swish) where
# X3D mixes ReLU and swish: that changes neither params nor FLOPs. X3D-XS is left out: at its 4x160x160 input it counts
# 0.6053 GFLOPs against 0.60 published, 0.9% apart (beyond the 0.5% tolerance).
_X3D = dict(
    particle=ParticleSpec(factorization="csn_ir", wiring="bottleneck", expansion=2.25, squeeze_excite=0.0625, activation="silu"),
    widths=(24, 48, 96, 192),
    temporal_strides=(1, 1, 1, 1),
    spatial_strides=(2, 2, 2, 2),
    stem_channels=24,
    stem_kernel=(5, 3),
    stem_stride=(1, 2),
    stem_depthwise_temporal=True,
    se_every=2,
    head_pre_channels=432,
    head_post_channels=2048,
    num_classes=400,
)
_X3D_SOURCE = (
    "params: PyTorchVideo model zoo, Kinetics-400 table (X3D {size}: {params}M), "
    "https://github.com/facebookresearch/pytorchvideo/blob/main/docs/source/model_zoo.md; "
    "GFLOPs: PySlowFast MODEL_ZOO.md, X3D models table (X3D {size}: {gflops}), at the X3D paper's input {clip}, "
    "https://github.com/facebookresearch/SlowFast/blob/main/MODEL_ZOO.md"
)
for _size, _depths, _clip, _params, _gflops in (
    ("S", (3, 5, 11, 7), (13, 160, 160), 3_790_000, 1.96),
    ("M", (3, 5, 11, 7), (16, 224, 224), 3_790_000, 4.73),
    ("L", (5, 10, 25, 15), (16, 312, 312), 6_150_000, 18.37),
):
    _name = f"x3d_{_size.lower()}"
    PRESETS[_name] = Preset(
        name=_name,
        spec=NetworkSpec(depths=_depths, clip=_clip, **_X3D),
        params=_params,
        gflops=_gflops,
        source=_X3D_SOURCE.format(size=_size, params=_params / 1e6, gflops=_gflops, clip="x".join(map(str, _clip))),
    )


def names() -> tuple[str, ...]:
    """Names of every preset."""
    return tuple(PRESETS)


def get(name: str) -> NetworkSpec:
    """The ``NetworkSpec`` of preset ``name``."""
    return preset(name).spec


def preset(name: str) -> Preset:
    """Preset ``name`` with its published figures and source."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {list(PRESETS)}, but got {name!r}.")
    return PRESETS[name]


def build(name: str, *, seed: int | None = None) -> nn.Module:
    """The torch module of preset ``name`` (random weights; nothing is downloaded)."""
    return build_network(get(name), seed=seed)
