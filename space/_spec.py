"""Specs: what a particle is and how a proxy network stacks it.

Every rule a spec must obey is checked here, in one place, by the
``_check_*`` helpers called from ``__post_init__``. Builders and cost models
may assume a spec they receive is valid.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from . import factorizations, wirings  # noqa: F401  (importing them registers every factorization and wiring)
from ._checks import check_choice as _check_choice
from ._checks import check_number as _check_float
from ._checks import check_int as _check_int
from ._errors import SpecError
from ._registry import factorization_names, get_factorization, get_wiring, wiring_names
from .wirings.inception import DEFAULT_BRANCH_FRACTIONS, DEFAULT_REDUCE_FRACTIONS, INCEPTION_FIELDS

# The axes of the space, in the registry's order (space/factorizations/, space/wirings/). Order matters only for display.
FACTORIZATIONS: tuple[str, ...] = factorization_names()
WIRINGS: tuple[str, ...] = wiring_names()
ACTIVATIONS: tuple[str, ...] = ("relu", "silu")
KERNELS: tuple[int, ...] = (1, 3, 5, 7)

# Views of the registry entries' facets (each entry's module is where they are set).
# Factorizations whose conv has no temporal kernel of its own.
NO_TEMPORAL_KERNEL = frozenset(name for name in FACTORIZATIONS if not get_factorization(name).temporal_kernel)
# Factorizations that mix frames by a recurrence over time, whatever their temporal_kernel (it sizes their gate convs).
RECURRENT = frozenset(name for name in FACTORIZATIONS if get_factorization(name).recurrent)
# Wirings with a width ratio; for the others, expansion must stay 1.
EXPANDING_WIRINGS = frozenset(name for name in WIRINGS if get_wiring(name).expands)
DEFAULT_EXPANSION = {name: get_wiring(name).default_expansion for name in WIRINGS}
# Max pools a network may place after its stem or after a stage: name -> (kernel, stride, padding), each (T, H, W).
POOLS: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]] | None] = {
    "none": None,
    "max1x3x3": ((1, 3, 3), (1, 2, 2), (0, 1, 1)),  # ResNet-50+ stem pool (CSN, R(2+1)D-152 in VMZ)
    "max1x2x2": ((1, 2, 2), (1, 2, 2), (0, 0, 0)),  # C3D pool1
    "max2x2x2": ((2, 2, 2), (2, 2, 2), (0, 0, 0)),  # C3D pool2 .. pool5; I3D's pool before Mixed_5
    "max3x3x3": ((3, 3, 3), (2, 2, 2), (1, 1, 1)),  # I3D's pool before Mixed_4 (TF "SAME" padding, equal on even sizes)
}
# Where r2plus1d's mid width comes from: each conv's own widths (the R(2+1)D paper), the block's first conv (torchvision),
# or the conv's output width (S3D's separable 1 x k x k -> kt x 1 x 1, both convs as wide as the output).
R2PLUS1D_MIDS: tuple[str, ...] = ("conv", "block", "out")
MAX_STAGES = 16  # I3D: two stem convs and nine Inception modules, each its own stage
# How the trained network is stored: float32 weights, or int8 post-training quantization (evaluators.quantize_int8).
QUANTIZE_MODES: tuple[str, ...] = ("none", "int8")


@dataclass(frozen=True)
class ParticleSpec:
    """One spatiotemporal unit: how its conv is factorized, sized, wired and pruned."""

    factorization: str = "r2plus1d"  # see FACTORIZATIONS
    wiring: str = "residual"  # see WIRINGS
    temporal_kernel: int = 3  # kt; must be 1 for spatial_only; >= 3 for temporal_shift (shift reach (kt-1)/2); conv_gru: gate convs 1 x kt x kt
    spatial_kernel: int = 3  # k, square
    expansion: float | None = None  # inner width / output width (bottleneck) or / input width (inverted); None = wiring default
    squeeze_excite: float = 0.0  # SE bottleneck ratio of the inner width; 0 = no SE
    activation: str = "relu"  # see ACTIVATIONS
    prune_ratio: float = 0.0  # fraction of inner channels removed by structured pruning, in [0, 0.9); see space.effective_prune_ratio
    shift_fraction: float = 0.25  # temporal_shift only: fraction of channels moved along time
    r2plus1d_mid: str = "conv"  # r2plus1d only, see R2PLUS1D_MIDS: "block" sizes every conv's mid like the block's first (torchvision), "out" as its output (S3D)
    branch_fractions: tuple[float, ...] = DEFAULT_BRANCH_FRACTIONS  # inception only: output shares of (1x1x1, conv a, conv b, pool proj), sum 1
    reduce_fractions: tuple[float, ...] = DEFAULT_REDUCE_FRACTIONS  # inception only: reduce width / output width of conv a and conv b
    branch_widths: tuple[int, ...] = ()  # inception only: absolute (1x1x1, reduce a, a, reduce b, b, pool proj) widths instead of fractions
    quantize: str = "none"  # see QUANTIZE_MODES: int8 = the trained network is quantized to int8 after training (post-training, calibrated)

    def __post_init__(self) -> None:
        p = "ParticleSpec."
        _check_choice(p + "factorization", self.factorization, factorization_names())
        _check_choice(p + "wiring", self.wiring, wiring_names())
        _check_choice(p + "temporal_kernel", self.temporal_kernel, KERNELS)
        _check_choice(p + "spatial_kernel", self.spatial_kernel, KERNELS)
        _check_choice(p + "activation", self.activation, ACTIVATIONS)
        get_factorization(self.factorization).check_kernels(self, p)
        if self.expansion is None:
            object.__setattr__(self, "expansion", get_wiring(self.wiring).default_expansion)
        _check_float(p + "expansion", self.expansion, low=0.0, high=8.0, high_open=False, low_open=True)
        object.__setattr__(self, "expansion", float(self.expansion))
        if not get_wiring(self.wiring).expands and self.expansion != 1.0:
            raise SpecError(p + "expansion", f"must be 1.0 for wiring {self.wiring!r} (only bottleneck and inverted have a width ratio)", self.expansion)
        _check_float(p + "squeeze_excite", self.squeeze_excite, low=0.0, high=1.0, high_open=True)
        _check_float(p + "prune_ratio", self.prune_ratio, low=0.0, high=0.9, high_open=True)
        _check_float(p + "shift_fraction", self.shift_fraction, low=0.0, high=1.0, high_open=False, low_open=True)
        _check_choice(p + "r2plus1d_mid", self.r2plus1d_mid, R2PLUS1D_MIDS)
        for owner in factorization_names():  # fields a factorization owns stay at their defaults in the others
            for name, default in get_factorization(owner).owned_fields.items():
                if owner != self.factorization and getattr(self, name) != default:
                    raise SpecError(p + name, f"must be {default!r} unless factorization is {owner!r}", getattr(self, name))
        _check_choice(p + "quantize", self.quantize, QUANTIZE_MODES)
        for name in ("squeeze_excite", "prune_ratio", "shift_fraction"):
            object.__setattr__(self, name, float(getattr(self, name)))
        self._check_inception(p)

    def _check_inception(self, p: str) -> None:
        object.__setattr__(self, "branch_fractions", _as_float_tuple(p + "branch_fractions", self.branch_fractions, 4))
        object.__setattr__(self, "reduce_fractions", _as_float_tuple(p + "reduce_fractions", self.reduce_fractions, 2))
        empty = isinstance(self.branch_widths, (list, tuple)) and not self.branch_widths  # () or [] (JSON): widths from the fractions
        object.__setattr__(self, "branch_widths", () if empty else _as_int_tuple(p + "branch_widths", self.branch_widths, 6))
        for i, f in enumerate(self.branch_fractions):
            _check_float(f"{p}branch_fractions[{i}]", f, low=0.0, high=1.0, low_open=True, high_open=True)
        if abs(sum(self.branch_fractions) - 1.0) > 1e-6:
            raise SpecError(p + "branch_fractions", "must sum to 1 (each branch's share of the concatenated output)", list(self.branch_fractions))
        for i, f in enumerate(self.reduce_fractions):
            _check_float(f"{p}reduce_fractions[{i}]", f, low=0.0, high=8.0, low_open=True)
        for i, n in enumerate(self.branch_widths):
            _check_int(f"{p}branch_widths[{i}]", n, low=1, high=8192)
        for owner in wiring_names():  # fields a wiring owns stay at their defaults in the others
            for name, default in get_wiring(owner).owned_fields.items():
                if owner != self.wiring and getattr(self, name) != default:
                    raise SpecError(p + name, f"must be left at its default unless wiring is {owner!r}", list(getattr(self, name)))
        get_wiring(self.wiring).check(self, p)

    def inception_out(self, width: int) -> int:
        """The concatenated output width of an inception particle in a stage of ``width``: the branch widths' sum, when set."""
        b = self.branch_widths
        return b[0] + b[2] + b[4] + b[5] if b else width

    @property
    def mixes_time(self) -> bool:
        """Whether the particle's conv mixes information across frames."""
        conv = get_factorization(self.factorization)
        return conv.recurrent or (conv.temporal_kernel and self.temporal_kernel > 1)

    def to_dict(self) -> dict[str, Any]:
        return _drop_defaults(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParticleSpec:
        return _from_mapping(cls, data, "ParticleSpec")

    def replace(self, **changes: Any) -> ParticleSpec:
        return dataclasses.replace(self, **changes)


# Fields added after the first release: written only when set, so earlier files, studies and fingerprints stay as they were.
_OMIT_WHEN_DEFAULT = {
    "r2plus1d_mid": "conv",
    "quantize": "none",
    "stem_mid_channels": 0,
    "stem_depthwise_temporal": False,
    "se_every": 1,
    "head_pre_channels": 0,
    "head_post_channels": 0,
    "stem_pool": "none",
    "stage_pools": (),
    "head_flatten": False,
    "head_fc": (),
    **INCEPTION_FIELDS,
}


def _drop_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without the later fields left at their defaults, its tuples as lists (JSON / YAML-able)."""
    for key, default in _OMIT_WHEN_DEFAULT.items():
        if key in data and data[key] == default:
            del data[key]
    for key, value in data.items():
        if isinstance(value, tuple) and key != "particle":
            data[key] = list(value)
    return data


@functools.lru_cache(maxsize=1024)
def _without_se(particle: ParticleSpec) -> ParticleSpec:
    return particle.replace(squeeze_excite=0.0)


def _as_int_tuple(name: str, value: Any, length: int | None = None) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise SpecError(name, "must be a list of integers", value)
    items = tuple(value)
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int):
            raise SpecError(name, "must be a list of integers", list(items))
    if length is not None and len(items) != length:
        raise SpecError(name, f"must have {length} entries", list(items))
    return items


def _as_float_tuple(name: str, value: Any, length: int) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise SpecError(name, f"must be a list of {length} numbers", value)
    items = tuple(value)
    if len(items) != length or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in items):
        raise SpecError(name, f"must be a list of {length} numbers", list(items))
    return tuple(float(v) for v in items)


@dataclass(frozen=True)
class NetworkSpec:
    """A proxy network: a stem, stages of repeated particles, and a linear head.

    ``particle`` is one particle shared by every stage, or a tuple of one per stage.

    ::

        clip (C, T, H, W)
          -> stem conv (stem_kernel[0] x k x k, stride stem_stride) -> BN -> act [-> stem_pool]
             or, with stem_mid_channels > 0, the (2+1)D stem of R(2+1)D:
             1 x k x k (stride (1, s, s)) -> stem_mid_channels -> BN -> act -> kt x 1 x 1 (stride (st, 1, 1)) -> BN -> act
             or, with stem_depthwise_temporal, X3D's: 1 x k x k (stride (1, s, s)) -> depthwise kt x 1 x 1 (stride (st, 1, 1)) -> BN -> act
          -> stage i: depths[i] particles of width widths[i]; the first has
             stride (temporal_strides[i], spatial_strides[i], spatial_strides[i])
             (squeeze-excite only on every se_every-th block of a stage) [-> stage_pools[i]]
          [-> 1x1x1 conv to head_pre_channels -> BN -> act]
          -> global average pool [-> 1x1x1 conv to head_post_channels -> act]
             or, with head_flatten, the whole (C, T, H, W) feature map flattened (C3D)
          -> [linear(head_fc[j]) -> act -> dropout for each j] (or dropout alone when head_fc is empty) -> linear(num_classes)
    """

    particle: ParticleSpec | tuple[ParticleSpec, ...] = field(default_factory=ParticleSpec)  # shared, or one per stage
    widths: tuple[int, ...] = (16, 32, 64)  # output channels of each stage
    depths: tuple[int, ...] = (1, 1, 1)  # particles per stage
    temporal_strides: tuple[int, ...] = (1, 1, 1)  # temporal stride of each stage's first particle
    spatial_strides: tuple[int, ...] = (1, 2, 2)  # spatial stride of each stage's first particle
    stem_channels: int = 16
    stem_kernel: tuple[int, int] = (1, 3)  # (temporal, spatial) kernel of the stem conv
    stem_stride: tuple[int, int] = (1, 2)  # (temporal, spatial) stride of the stem conv
    stem_mid_channels: int = 0  # > 0: factorize the stem as R(2+1)D does, with this many mid channels; 0 = one conv
    stem_depthwise_temporal: bool = False  # split the stem as X3D does: 1 x k x k conv, then a depthwise kt x 1 x 1 conv
    se_every: int = 1  # squeeze-excite (where the particle has it) on every n-th block of a stage, from the first; X3D: 2
    head_pre_channels: int = 0  # > 0: a 1x1x1 conv -> BN -> act to this width before the pool (X3D: 432)
    head_post_channels: int = 0  # > 0: a 1x1x1 conv -> act to this width after the pool, before the linear (X3D: 2048)
    stem_pool: str = "none"  # see POOLS: a max pool after the stem ("max1x3x3": CSN's; "max1x2x2": C3D's pool1)
    stage_pools: tuple[str, ...] = ()  # empty, or one POOLS name per stage: a max pool after that stage (C3D: "max2x2x2")
    head_flatten: bool = False  # flatten the last feature map into the linear layers instead of pooling it globally (C3D)
    head_fc: tuple[int, ...] = ()  # hidden fully connected layers before the classifier, each linear -> act -> dropout (C3D: 4096, 4096)
    clip: tuple[int, int, int] = (8, 32, 32)  # input frames T, height H, width W
    in_channels: int = 3
    num_classes: int = 6
    dropout: float = 0.0

    def __post_init__(self) -> None:
        p = "NetworkSpec."
        if isinstance(self.particle, Mapping):
            object.__setattr__(self, "particle", ParticleSpec.from_dict(self.particle))
        elif isinstance(self.particle, (list, tuple)):
            particles = tuple(ParticleSpec.from_dict(q) if isinstance(q, Mapping) else q for q in self.particle)
            if not particles or not all(isinstance(q, ParticleSpec) for q in particles):
                raise SpecError(p + "particle", "must be a ParticleSpec or a list of one per stage", self.particle)
            object.__setattr__(self, "particle", particles)
        elif not isinstance(self.particle, ParticleSpec):
            raise SpecError(p + "particle", "must be a ParticleSpec or a list of one per stage", self.particle)
        for name in ("widths", "depths", "temporal_strides", "spatial_strides", "head_fc"):
            object.__setattr__(self, name, _as_int_tuple(p + name, getattr(self, name)))
        stages = len(self.widths)
        if isinstance(self.particle, tuple) and len(self.particle) != stages:
            raise SpecError(p + "particle", f"must have one particle per stage ({stages}, as widths) when it is a list", len(self.particle))
        if not 1 <= stages <= MAX_STAGES:
            raise SpecError(p + "widths", f"must list 1 to {MAX_STAGES} stages", list(self.widths))
        for name in ("depths", "temporal_strides", "spatial_strides"):
            if len(getattr(self, name)) != stages:
                raise SpecError(p + name, f"must have one entry per stage ({stages}, as widths)", list(getattr(self, name)))
        for i, w in enumerate(self.widths):
            _check_int(f"{p}widths[{i}]", w, low=1, high=8192)
        for i, (w, particle) in enumerate(zip(self.widths, self.stage_particles)):
            check_width = get_wiring(particle.wiring).check_width
            if check_width is not None:
                check_width(particle, w, f"{p}widths[{i}]")
        for i, d in enumerate(self.depths):
            _check_int(f"{p}depths[{i}]", d, low=1, high=64)
        for name in ("temporal_strides", "spatial_strides"):
            for i, s in enumerate(getattr(self, name)):
                _check_int(f"{p}{name}[{i}]", s, low=1, high=4)
        object.__setattr__(self, "stem_kernel", _as_int_tuple(p + "stem_kernel", self.stem_kernel, 2))
        object.__setattr__(self, "stem_stride", _as_int_tuple(p + "stem_stride", self.stem_stride, 2))
        object.__setattr__(self, "clip", _as_int_tuple(p + "clip", self.clip, 3))
        for i, k in enumerate(self.stem_kernel):
            _check_choice(f"{p}stem_kernel[{i}]", k, KERNELS)
        for i, s in enumerate(self.stem_stride):
            _check_int(f"{p}stem_stride[{i}]", s, low=1, high=4)
        for i, n in enumerate(self.clip):
            _check_int(f"{p}clip[{i}]", n, low=1, high=4096)
        _check_int(p + "stem_channels", self.stem_channels, low=1, high=8192)
        _check_int(p + "stem_mid_channels", self.stem_mid_channels, low=0, high=8192)
        if not isinstance(self.stem_depthwise_temporal, bool):
            raise SpecError(p + "stem_depthwise_temporal", "must be true or false", self.stem_depthwise_temporal)
        if self.stem_depthwise_temporal and self.stem_mid_channels:
            raise SpecError(p + "stem_mid_channels", "must be 0 when stem_depthwise_temporal is set (the stems are alternatives)", self.stem_mid_channels)
        _check_int(p + "se_every", self.se_every, low=1, high=64)
        _check_int(p + "head_pre_channels", self.head_pre_channels, low=0, high=8192)
        _check_int(p + "head_post_channels", self.head_post_channels, low=0, high=8192)
        _check_choice(p + "stem_pool", self.stem_pool, tuple(POOLS))
        if isinstance(self.stage_pools, (str, bytes)) or not hasattr(self.stage_pools, "__iter__"):
            raise SpecError(p + "stage_pools", f"must be a list of pool names, one per stage ({stages}, as widths), or empty", self.stage_pools)
        object.__setattr__(self, "stage_pools", tuple(self.stage_pools))
        if self.stage_pools and len(self.stage_pools) != stages:
            raise SpecError(p + "stage_pools", f"must have one entry per stage ({stages}, as widths), or none", list(self.stage_pools))
        for i, pool in enumerate(self.stage_pools):
            _check_choice(f"{p}stage_pools[{i}]", pool, tuple(POOLS))
        if not isinstance(self.head_flatten, bool):
            raise SpecError(p + "head_flatten", "must be true or false", self.head_flatten)
        if self.head_flatten and self.head_post_channels:
            raise SpecError(p + "head_post_channels", "must be 0 when head_flatten is set (it works on the globally pooled features)", self.head_post_channels)
        for i, width in enumerate(self.head_fc):
            _check_int(f"{p}head_fc[{i}]", width, low=1, high=65_536)
        _check_int(p + "in_channels", self.in_channels, low=1, high=64)
        _check_int(p + "num_classes", self.num_classes, low=2, high=100_000)
        _check_float(p + "dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        # The clip must survive every stride: each strided layer needs at least one frame / pixel.
        t_total = self.stem_stride[0] * math.prod(self.temporal_strides)
        s_total = self.stem_stride[1] * math.prod(self.spatial_strides)
        frames, height, width = self.clip
        if frames < t_total:
            raise SpecError(p + "clip", f"must have at least as many frames as the total temporal stride ({t_total})", list(self.clip))
        if min(height, width) < s_total:
            raise SpecError(p + "clip", f"must be at least as high and wide as the total spatial stride ({s_total})", list(self.clip))
        if min(self.feature_shape()) < 1:  # the pools shrink it further
            raise SpecError(p + "clip", "must be large enough for every stride and pool to leave at least one frame and pixel", list(self.clip))

    def block_particle(self, stage: int, block: int) -> ParticleSpec:
        """The particle of block ``block`` of stage ``stage``: without squeeze-excite off the se_every rhythm."""
        particle = self.stage_particles[stage]
        if block % self.se_every and particle.squeeze_excite > 0:
            return _without_se(particle)
        return particle

    def feature_shape(self, clip: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
        """(T, H, W) of the last stage's output (after its pool) for ``clip`` (default: the spec's); a size may come out < 1."""
        t, h, w = self.clip if clip is None else clip
        t, h, w = _strided(t, self.stem_stride[0]), _strided(h, self.stem_stride[1]), _strided(w, self.stem_stride[1])
        t, h, w = pool_shape(self.stem_pool, (t, h, w))
        for st, ss, pool in zip(self.temporal_strides, self.spatial_strides, self.stage_pool_names):
            t, h, w = pool_shape(pool, (_strided(t, st), _strided(h, ss), _strided(w, ss)))
        return t, h, w

    @property
    def stage_pool_names(self) -> tuple[str, ...]:
        """The pool after each stage (``stage_pools``, or "none" for every stage when it is empty)."""
        return self.stage_pools or ("none",) * len(self.widths)

    @property
    def stage_particles(self) -> tuple[ParticleSpec, ...]:
        """The particle of each stage (the shared one repeated, or the per-stage ones)."""
        if isinstance(self.particle, ParticleSpec):
            return (self.particle,) * len(self.widths)
        return self.particle

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(C, T, H, W) of one clip."""
        return (self.in_channels, *self.clip)

    def to_dict(self) -> dict[str, Any]:
        data = _drop_defaults(dataclasses.asdict(self))
        particles = data["particle"] if isinstance(data["particle"], tuple) else (data["particle"],)
        for particle in particles:
            _drop_defaults(particle)
        if isinstance(data["particle"], tuple):
            data["particle"] = list(data["particle"])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkSpec:
        return _from_mapping(cls, data, "NetworkSpec")

    def replace(self, **changes: Any) -> NetworkSpec:
        return dataclasses.replace(self, **changes)


def _strided(n: int, stride: int) -> int:
    """Output size of a conv padded by kernel // 2 (odd kernel) with ``stride``."""
    return (n - 1) // stride + 1 if n >= 1 else n


def pool_shape(pool: str, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """(T, H, W) after max pool ``pool`` (see POOLS; floor mode, as torch's MaxPool3d)."""
    spec = POOLS[pool]
    if spec is None:
        return shape
    kernel, stride, padding = spec
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(shape, kernel, stride, padding))  # type: ignore[return-value]


def _from_mapping(cls: type, data: Any, label: str) -> Any:
    if not isinstance(data, Mapping):
        raise SpecError(label, "must be a mapping of field names to values", data)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in data if k not in names)
    if unknown:
        raise SpecError(f"{label}.{unknown[0]}", f"is not a field; known fields are {sorted(names)}", data[unknown[0]])
    return cls(**dict(data))


def particle_to_record(particle: ParticleSpec | tuple[ParticleSpec, ...]) -> dict[str, Any] | list[dict[str, Any]]:
    """A shared particle as its mapping, per-stage particles as a list of them (JSON / YAML-able)."""
    if isinstance(particle, ParticleSpec):
        return particle.to_dict()
    return [p.to_dict() for p in particle]


def particle_from_record(data: Any) -> ParticleSpec | tuple[ParticleSpec, ...]:
    """The inverse of ``particle_to_record``: a mapping gives a ParticleSpec, a list a tuple of them."""
    if isinstance(data, (list, tuple)) and data and all(isinstance(item, Mapping) for item in data):
        return tuple(ParticleSpec.from_dict(item) for item in data)
    return ParticleSpec.from_dict(data)  # anything else but a mapping is refused there

