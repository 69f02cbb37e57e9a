"""Baselines: the particles of hand-designed video networks, for a search to evaluate beside its own.

A baseline is only a particle: a search puts it into the run's own proxy
network (the same widths, depths and clip; only the particle changes), so it
costs and trains exactly like a searched trial and answers "did the search
beat the classic blocks at this budget?". Where a reference preset
(``space.presets``) reproduces the published network, the baseline takes that
preset's particle, so the two never drift apart.

    >>> from particle_nas.space import BASELINES
    >>> BASELINES["R(2+1)D"].particle.factorization
    'r2plus1d'
"""

from __future__ import annotations

from dataclasses import dataclass

from ._errors import SpecError
from ._spec import ParticleSpec
from .presets import PRESETS


@dataclass(frozen=True)
class Baseline:
    """A hand-designed particle, named after the network it comes from."""

    name: str  # the label on trials, plots and the summary, e.g. "R(2+1)D"
    particle: ParticleSpec
    source: str  # where the block comes from
    preset: str | None = None  # the reference preset (space.presets) reproducing the whole network, whose particle this is


def _from_preset(name: str, preset: str, paper: str) -> Baseline:
    particle = PRESETS[preset].spec.particle
    return Baseline(name=name, particle=particle, source=paper, preset=preset)


BASELINES: dict[str, Baseline] = {
    b.name: b
    for b in (
        # C3D: every layer one full 3x3x3 conv (+ BN + ReLU in VMZ's build).
        _from_preset("C3D", "c3d", "Tran et al., ICCV 2015 (C3D): one 3x3x3 conv per layer"),
        # R(2+1)D: each 3x3x3 of a residual basic block split into 1x3x3 -> mid -> 3x1x1 (torchvision's mid rule).
        _from_preset("R(2+1)D", "r2plus1d_18", "Tran et al., CVPR 2018 (R(2+1)D): (2+1)D convs in residual basic blocks"),
        # CSN: ResNet bottlenecks (inner = width / 4) whose 3x3x3 is depthwise, with (ip) or without (ir) a 1x1x1 before it.
        _from_preset("ip-CSN", "ip_csn_152", "Tran et al., ICCV 2019 (CSN, interaction-preserved): 1x1x1 + depthwise 3x3x3 in bottlenecks"),
        _from_preset("ir-CSN", "ir_csn_152", "Tran et al., ICCV 2019 (CSN, interaction-reduced): depthwise 3x3x3 in bottlenecks"),
        # X3D: bottlenecks 2.25x wide with a depthwise 3x3x3, squeeze-excite 1/16, swish.
        _from_preset("X3D", "x3d_s", "Feichtenhofer, CVPR 2020 (X3D): depthwise 3x3x3 in 2.25x bottlenecks with SE, swish"),
        # TSM: a quarter of the channels shifted one frame (half each way), then a 2D 1x3x3 conv, in residual blocks.
        Baseline(
            name="TSM",
            particle=ParticleSpec(factorization="temporal_shift", wiring="residual", temporal_kernel=3, shift_fraction=0.25),
            source="Lin et al., ICCV 2019 (TSM): residual shift, 1/4 of the channels (1/8 each way) before the 2D conv",
        ),
    )
}


def baseline_names(value: object, *, field: str = "search.baselines") -> tuple[str, ...]:
    """The baselines a ``search.baselines`` value asks for: true (all, in registry order), false (none), or a list of names."""
    if isinstance(value, bool):
        return tuple(BASELINES) if value else ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise SpecError(field, f"must be true, false or a list of names from {list(BASELINES)}", value)
    unknown = [v for v in value if v not in BASELINES]
    if unknown or len(set(value)) != len(value):
        raise SpecError(field, f"must list distinct names from {list(BASELINES)}", list(value))
    return tuple(value)
