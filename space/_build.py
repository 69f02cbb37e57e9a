"""Building a network: the stem, the stages of particle blocks, the head, and their initial weights.

Each block comes from its wiring's entry in the registry, and each particle
conv from its factorization's (``space/_registry.py``; one module per entry
in ``space/factorizations/`` and ``space/wirings/``). The builders are
keyword-only ``create_*`` functions that do the channel and stride arithmetic.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._layers import ParticleNet
from ._parts import ACTIVATION_LAYERS, channel_groups, conv3d, dense_inner_width, inner_width, pruned_width, round_width, se_width
from ._registry import BlockBuilder, ConvBuilder, create_particle_conv, effective_prune_ratio, get_factorization, get_wiring
from ._spec import FACTORIZATIONS, POOLS, WIRINGS, NetworkSpec, ParticleSpec
from .factorizations.r2plus1d import r2plus1d_mid_width
from .wirings.inception import inception_widths, split_width

__all__ = [  # the names space/__init__ and the other space modules take from here
    "ACTIVATION_LAYERS",
    "FACTORIZATION_BUILDERS",
    "WIRING_BUILDERS",
    "build_network",
    "build_particle",
    "channel_groups",
    "create_particle_conv",
    "dense_inner_width",
    "effective_prune_ratio",
    "head_in_features",
    "inception_widths",
    "inner_width",
    "pruned_width",
    "r2plus1d_mid_width",
    "round_width",
    "se_width",
    "split_width",
]

# Views of the registry: each factorization's and wiring's builder by short name.
FACTORIZATION_BUILDERS: dict[str, ConvBuilder] = {name: get_factorization(name).build for name in FACTORIZATIONS}
WIRING_BUILDERS: dict[str, BlockBuilder] = {name: get_wiring(name).build for name in WIRINGS}


def build_particle(particle: ParticleSpec, *, in_channels: int, out_channels: int, stride: tuple[int, int] = (1, 1)) -> nn.Module:
    """One particle as a module mapping (N, in_channels, T, H, W) to (N, out_channels, T', H', W')."""
    return get_wiring(particle.wiring).build(particle=particle, cin=in_channels, cout=out_channels, stride=tuple(stride))


# ---------------------------------------------------------------- network
def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)


def build_network(spec: NetworkSpec, *, seed: int | None = None) -> ParticleNet:
    """The proxy network of ``spec``.

    With ``seed`` the initial weights are reproducible and the caller's global
    RNG state is left untouched; without it they come from the global RNG.
    """
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"build_network expects a NetworkSpec, but got {type(spec).__name__}.")
    if seed is None:
        return _create_network(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _create_network(spec)


def create_pool(name: str) -> list[nn.Module]:
    """The max pool ``name`` of ``POOLS`` as a one-layer list, or no layer for "none"."""
    spec = POOLS[name]
    if spec is None:
        return []
    kernel, stride, padding = spec
    return [nn.MaxPool3d(kernel, stride=stride, padding=padding)]


def create_stem(spec: NetworkSpec) -> nn.Module:
    """One conv, or with ``stem_mid_channels`` the (2+1)D stem of R(2+1)D, or with ``stem_depthwise_temporal`` X3D's,
    then ``stem_pool`` when set::

        C -> [kt x k x k, stride (st, s, s)] -> stem_channels -> BN -> act
        C -> [1 x k x k, stride (1, s, s)] -> mid -> BN -> act -> [kt x 1 x 1, stride (st, 1, 1)] -> stem_channels -> BN -> act
        C -> [1 x k x k, stride (1, s, s)] -> stem_channels -> [depthwise kt x 1 x 1, stride (st, 1, 1)] -> BN -> act
    """
    act = ACTIVATION_LAYERS[spec.stage_particles[0].activation]
    kt, ks = spec.stem_kernel
    st, ss = spec.stem_stride
    c = spec.stem_channels
    pool = create_pool(spec.stem_pool)
    if spec.stem_depthwise_temporal:
        return nn.Sequential(conv3d(spec.in_channels, c, (1, ks, ks), (1, ss, ss)), conv3d(c, c, (kt, 1, 1), (st, 1, 1), c), nn.BatchNorm3d(c), act(), *pool)
    if spec.stem_mid_channels == 0:
        return nn.Sequential(conv3d(spec.in_channels, c, (kt, ks, ks), (st, ss, ss)), nn.BatchNorm3d(c), act(), *pool)
    mid = spec.stem_mid_channels
    return nn.Sequential(
        conv3d(spec.in_channels, mid, (1, ks, ks), (1, ss, ss)),
        nn.BatchNorm3d(mid),
        act(),
        conv3d(mid, c, (kt, 1, 1), (st, 1, 1)),
        nn.BatchNorm3d(c),
        act(),
        *pool,
    )


def head_in_features(spec: NetworkSpec, channels: int) -> int:
    """Features the head's first linear layer takes: ``channels``, or with ``head_flatten`` channels x T x H x W of the last feature map."""
    return channels * math.prod(spec.feature_shape()) if spec.head_flatten else channels


def create_head(spec: NetworkSpec, *, in_channels: int) -> nn.Module:
    """The classifier (brackets: parts that are set)::

        [1x1x1 conv -> BN -> act (X3D)] -> global pool [-> 1x1x1 conv -> act (X3D)] -> flatten
                                        or, with head_flatten, flatten the whole map (C3D)
          -> [linear -> act -> dropout, per head_fc (C3D's fc6, fc7)] or dropout -> linear(num_classes)
    """
    act = ACTIVATION_LAYERS[spec.stage_particles[-1].activation]
    layers: list[nn.Module] = []
    cin = in_channels
    if spec.head_pre_channels:
        layers += [conv3d(cin, spec.head_pre_channels, (1, 1, 1), (1, 1, 1)), nn.BatchNorm3d(spec.head_pre_channels), act()]
        cin = spec.head_pre_channels
    if not spec.head_flatten:
        layers.append(nn.AdaptiveAvgPool3d(1))
    if spec.head_post_channels:
        layers += [conv3d(cin, spec.head_post_channels, (1, 1, 1), (1, 1, 1)), act()]
        cin = spec.head_post_channels
    layers.append(nn.Flatten(1))
    cin = head_in_features(spec, cin)
    for width in spec.head_fc:
        layers += [nn.Linear(cin, width), act(), nn.Dropout(spec.dropout)]
        cin = width
    if not spec.head_fc:
        layers.append(nn.Dropout(spec.dropout))
    return nn.Sequential(*layers, nn.Linear(cin, spec.num_classes))


def _create_network(spec: NetworkSpec, *, init: bool = True) -> ParticleNet:
    stem = create_stem(spec)
    stages = []
    cin = spec.stem_channels
    for s, (width, depth, t_stride, s_stride, pool) in enumerate(zip(spec.widths, spec.depths, spec.temporal_strides, spec.spatial_strides, spec.stage_pool_names)):
        blocks = []
        for i in range(depth):
            stride = (t_stride, s_stride) if i == 0 else (1, 1)
            blocks.append(build_particle(spec.block_particle(s, i), in_channels=cin, out_channels=width, stride=stride))
            cin = width
        stages.append(nn.Sequential(*blocks, *create_pool(pool)))
    head = create_head(spec, in_channels=cin)
    net = ParticleNet(stem=stem, stages=nn.Sequential(*stages), head=head)
    if init:  # left out only for a network that is read, never run (its fingerprint)
        _init_weights(net)
    return net
