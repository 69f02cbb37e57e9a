"""The registry: one entry per factorization and per wiring, holding every fact about it.

A factorization (how a particle's spatiotemporal conv is split) and a wiring
(how particle convs make a block) are each one module, in
``space/factorizations/`` and ``space/wirings/``, that ends with one call::

    register_factorization(Factorization(name="full", build=create_full_conv, cost=full_cost, ...))

The entry holds its spec rules (``check``, the fields it owns), its builder,
its analytic cost (the same walk tallies the training-memory estimate), its
inflation rule and its pruning rule. Everything else reads them from here:
``ParticleSpec`` validation, ``build_network``, ``cost`` and
``training_memory``, inflation, ``effective_prune_ratio`` and
``evaluators.prune_network``. ``tests/space/test_registry.py`` checks every
entry against the others (built cost = analytic cost = fvcore).

The order of registration is the order of ``FACTORIZATIONS`` and ``WIRINGS``
(validation messages and search spaces list them in it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._errors import SpecError

if TYPE_CHECKING:
    from torch import nn

    from ._spec import ParticleSpec
    from ._tally import Tally

# A factorization's builder: ``(*, cin, cout, kt, k, stride, depthwise, particle, basis, dense) -> nn.Module``; its cost
# function: ``(tally, *, the same) -> None``, adding to the tally what the builder's layers cost, layer for layer.
ConvBuilder = Callable[..., "nn.Module"]
ConvCost = Callable[..., None]
# A wiring's builder: ``(*, particle, cin, cout, stride) -> nn.Module``; its cost function: ``(tally, *, the same) -> None``.
BlockBuilder = Callable[..., "nn.Module"]
BlockCost = Callable[..., None]


def _no_rule(particle: ParticleSpec, prefix: str) -> None:
    """A factorization or wiring that imposes no rule of its own on the particle's fields."""


@dataclass(frozen=True)
class Factorization:
    """How a particle's spatiotemporal conv is factorized: everything the space knows about one factorization."""

    name: str  # the short name a spec gives (ParticleSpec.factorization)
    # Build and cost
    build: ConvBuilder  # keyword-only builder of the conv, see ConvBuilder
    cost: ConvCost  # its analytic params, FLOPs and saved activations, mirroring ``build`` layer for layer
    # Spec rules
    check: Callable[[ParticleSpec, str], None] = _no_rule  # raises SpecError for a rule it imposes (prefix: "ParticleSpec.")
    owned_fields: Mapping[str, Any] = field(default_factory=dict)  # fields only this factorization may set, with their defaults
    reads: tuple[str, ...] = ()  # fields only this factorization reads (owned ones included): a search asks them only for it
    temporal_kernel: bool = True  # False: no temporal kernel of its own (temporal_kernel must be 1)
    min_temporal_kernel: int = 1  # the smallest temporal_kernel it accepts (a search samples only those)
    min_temporal_kernel_reason: str = ""  # why, said when a smaller one is refused
    recurrent: bool = False  # mixes frames by a recurrence over time, whatever its temporal_kernel (which sizes something else)
    # Inflation (I3D): None when its 2D form (temporal_kernel 1) has its layers; else why it cannot be inflated
    not_inflatable: str | None = None
    # Pruning
    channelwise_output: bool = False  # its last conv is channel-wise from its input onto its output: inner channels feeding it are tied
    traced_as_identity: tuple[type, ...] = ()  # modules it builds that pruning's dependency tracer must see as the identity (channel i -> i)

    def check_kernels(self, particle: ParticleSpec, prefix: str) -> None:
        """Its temporal-kernel rules on ``particle``, then its own ``check``; raises SpecError."""
        if not self.temporal_kernel and particle.temporal_kernel != 1:
            raise SpecError(prefix + "temporal_kernel", f"must be 1 when factorization is {self.name!r}", particle.temporal_kernel)
        if particle.temporal_kernel < self.min_temporal_kernel:
            why = f" ({self.min_temporal_kernel_reason})" if self.min_temporal_kernel_reason else ""
            rule = f"must be >= {self.min_temporal_kernel} when factorization is {self.name!r}{why}"
            raise SpecError(prefix + "temporal_kernel", rule, particle.temporal_kernel)
        self.check(particle, prefix)


@dataclass(frozen=True)
class Wiring:
    """How particle convs make a block: everything the space knows about one wiring."""

    name: str  # the short name a spec gives (ParticleSpec.wiring)
    # Build and cost
    build: BlockBuilder  # keyword-only builder of the block, see BlockBuilder
    cost: BlockCost  # its analytic cost, mirroring ``build`` layer for layer
    # Spec rules
    check: Callable[[ParticleSpec, str], None] = _no_rule  # raises SpecError for a rule it imposes on the particle
    check_width: Callable[[ParticleSpec, int, str], None] | None = None  # raises SpecError when a stage of this width cannot hold it
    owned_fields: Mapping[str, Any] = field(default_factory=dict)  # fields only this wiring may set, with their defaults
    default_expansion: float = 1.0  # ParticleSpec.expansion when unset
    expands: bool = False  # has a width ratio (expansion); for the others expansion must stay 1
    # Pruning
    prunable: bool = True  # False: no inner channels at all (its conv writes the block's output)
    conv_writes_output: bool = False  # its particle convs write the block's output from inner channels (channel-wise ones tie them)


_FACTORIZATIONS: dict[str, Factorization] = {}
_WIRINGS: dict[str, Wiring] = {}


def _register(registry: dict[str, Any], entry: Any, kind: type) -> Any:
    if not isinstance(entry, kind):
        raise TypeError(f"register_{kind.__name__.lower()} expects a {kind.__name__}, but got {type(entry).__name__}.")
    if not isinstance(entry.name, str) or not entry.name.isidentifier():
        raise ValueError(f"{kind.__name__}.name must be a short identifier, but got {entry.name!r}")
    if entry.name in registry:
        raise ValueError(f"{kind.__name__}.name must be unique, but got {entry.name!r} (already registered)")
    for facet in ("build", "cost", "check"):
        if not callable(getattr(entry, facet)):
            raise ValueError(f"{kind.__name__}.{facet} must be callable, but got {getattr(entry, facet)!r}")
    registry[entry.name] = entry
    return entry


def register_factorization(entry: Factorization) -> Factorization:
    """Add ``entry`` to the registry (its name must be new); returns it."""
    return _register(_FACTORIZATIONS, entry, Factorization)


def register_wiring(entry: Wiring) -> Wiring:
    """Add ``entry`` to the registry (its name must be new); returns it."""
    return _register(_WIRINGS, entry, Wiring)


def factorization_names() -> tuple[str, ...]:
    """Registered factorizations, in registration order."""
    return tuple(_FACTORIZATIONS)


def wiring_names() -> tuple[str, ...]:
    """Registered wirings, in registration order."""
    return tuple(_WIRINGS)


def get_factorization(name: str) -> Factorization:
    """The registry entry of factorization ``name`` (KeyError when none is registered by that name)."""
    return _FACTORIZATIONS[name]


def get_wiring(name: str) -> Wiring:
    """The registry entry of wiring ``name`` (KeyError when none is registered by that name)."""
    return _WIRINGS[name]


# ---------------------------------------------------------------- what the wirings call
def effective_prune_ratio(particle: ParticleSpec) -> float:
    """The fraction of inner channels pruning removes from ``particle``.

    The pruned network is the unpruned one minus this fraction of each inner
    width (channels off the residual stream). In a wiring whose particle convs
    write the block's output (plain, residual, inception), a factorization whose
    last conv is channel-wise (csn_ir, depthwise_2plus1d) ties every inner
    channel to an output channel, so none can be removed without removing an
    output channel: pruning leaves those blocks whole. A wiring without inner
    channels (``single``) is never pruned.
    """
    conv, block = _FACTORIZATIONS[particle.factorization], _WIRINGS[particle.wiring]
    if conv.channelwise_output and block.conv_writes_output:
        return 0.0
    if not block.prunable:
        return 0.0
    return particle.prune_ratio


def create_particle_conv(
    *,
    particle: ParticleSpec,
    cin: int,
    cout: int,
    stride: tuple[int, int] = (1, 1),
    depthwise: bool = False,
    basis: tuple[int, int] | None = None,
    dense: tuple[int, int] | None = None,
) -> nn.Module:
    """The particle's factorized spatiotemporal conv from ``cin`` to ``cout`` channels.

    ``dense`` is this conv's (in, out) widths before pruning (default: ``(cin, cout)``);
    ``basis`` the unpruned (in, out) widths of the block's first particle conv (default: ``dense``).
    """
    builder = _FACTORIZATIONS[particle.factorization].build
    dense = (cin, cout) if dense is None else dense
    basis = dense if basis is None else basis
    return builder(
        cin=cin, cout=cout, kt=particle.temporal_kernel, k=particle.spatial_kernel, stride=stride, depthwise=depthwise, particle=particle, basis=basis, dense=dense
    )


def particle_conv_cost(
    tally: Tally, particle: ParticleSpec, cin: int, cout: int, stride: tuple[int, int] = (1, 1), depthwise: bool = False,
    basis: tuple[int, int] | None = None, dense: tuple[int, int] | None = None,
) -> None:
    """What ``create_particle_conv`` with the same arguments costs, added to ``tally``."""
    dense = (cin, cout) if dense is None else dense
    _FACTORIZATIONS[particle.factorization].cost(
        tally, cin=cin, cout=cout, kt=particle.temporal_kernel, k=particle.spatial_kernel, stride=stride, depthwise=depthwise, particle=particle,
        basis=dense if basis is None else basis, dense=dense,
    )  # fmt: skip
