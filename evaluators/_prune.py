"""Structured channel pruning of a trained proxy network with torch-pruning.

The pruned architecture has one definition, in ``particle_nas.space``: the
unpruned network with ``effective_prune_ratio`` of each inner width removed
(``pruned_width``), by the pruning rules of each factorization's and wiring's
registry entry (``space.get_factorization``, ``space.get_wiring``).
``prune_network`` takes a trained unpruned network and physically removes, for every conv that creates inner channels, the channels
of lowest L1 magnitude (torch-pruning's group L1, summed over every layer the
channel touches: batch norms, depthwise convs, parallel branches, the next
conv's inputs), until each layer has the width ``build_network`` gives the
pruned spec. The residual stream, the stem and the head are never touched.
The hidden channels of a conv_gru particle's GRU are inner channels: each is
removed from its six gate convs at once (their outputs, the inputs of the
three that read the previous state) and from the layer after the GRU, as
torch-pruning follows the recurrence through the traced frames.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from particle_nas.space import FACTORIZATIONS, NetworkSpec, ParticleNet, SpecError, build_network, effective_prune_ratio, get_factorization

_INSTALL_HINT = "structured pruning needs torch-pruning, a dependency of particle-nas: pip install 'torch-pruning>=1.6.1,<2'"


def _torch_pruning():
    try:
        import torch_pruning
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(_INSTALL_HINT) from error
    return torch_pruning


def _channel_sources(model: nn.Module) -> dict[str, nn.Conv3d]:
    """Convs in the stages that create channels (not channel-wise), by name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv3d) and m.groups == 1 and name.startswith("stages.")}


@contextlib.contextmanager
def _traced_as_identity(model: nn.Module) -> Iterator[None]:
    """Trace the modules factorization entries name in ``traced_as_identity`` (TemporalShift) as the identity.

    Channel i out is channel i in, which is all the dependency graph needs.
    """
    kinds = tuple(kind for name in FACTORIZATIONS for kind in get_factorization(name).traced_as_identity)
    traced = [m for m in model.modules() if isinstance(m, kinds)]
    for m in traced:
        m.forward = _identity  # type: ignore[method-assign]
    try:
        yield
    finally:
        for m in traced:
            del m.forward


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


def prune_network(model: ParticleNet, spec: NetworkSpec) -> ParticleNet:
    """``model`` (shaped like ``build_network(unpruned_spec(spec))``, trained) pruned to ``spec``'s shape.

    Returns a network built by ``build_network(spec)`` holding the surviving
    trained weights (so its non-tensor settings, such as a TemporalShift's
    fold, are the pruned spec's), on ``model``'s device; ``model`` itself is
    pruned in place on the way. Raises ValueError when ``model`` does not have
    the unpruned layout of ``spec``.
    """
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"prune_network expects a NetworkSpec, but got {type(spec).__name__}.")
    tp = _torch_pruning()
    target = build_network(spec, seed=0)  # its weights are all replaced; the seed keeps the global RNG untouched
    sources = _channel_sources(model)
    target_modules = dict(target.named_modules())
    if not set(sources) <= set(target_modules):
        raise SpecError("prune_network.model", "must have the unpruned layout of the spec", type(model).__name__)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    example = torch.zeros(1, *spec.input_shape, device=device)
    with _traced_as_identity(model):
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example, ignored_layers=[model.head], verbose=False)
    importance = tp.importance.GroupMagnitudeImportance(p=1)
    for name, conv in sources.items():
        remove = conv.out_channels - target_modules[name].out_channels
        if remove <= 0:  # not an inner layer, or already pruned with an earlier group (a parallel branch)
            continue
        group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=list(range(conv.out_channels)))
        scores = importance(group)
        weakest = torch.argsort(scores)[:remove].tolist()
        group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=sorted(weakest))
        if not graph.check_pruning_group(group):
            raise SpecError("prune_network.layer", "must be prunable without emptying a layer", name)
        group.prune()
    wanted = {k: v.shape for k, v in target.state_dict().items()}
    got = {k: v.shape for k, v in model.state_dict().items()}
    if wanted != got:
        bad = sorted(k for k in wanted.keys() | got.keys() if wanted.get(k) != got.get(k))
        raise RuntimeError(f"pruned network does not have the shape of build_network(spec): {bad[:5]}")
    target.to(device).load_state_dict(model.state_dict())
    target.train(was_training)
    return target


def unpruned_spec(spec: NetworkSpec) -> NetworkSpec:
    """``spec`` with every particle's ``prune_ratio`` set to 0: the network that is trained, then pruned."""
    if isinstance(spec.particle, tuple):
        return spec.replace(particle=tuple(p.replace(prune_ratio=0.0) for p in spec.particle))
    return spec.replace(particle=spec.particle.replace(prune_ratio=0.0))


def prunes(spec: NetworkSpec) -> bool:
    """Whether pruning removes any channel from ``spec``'s network (some particle's effective prune ratio > 0)."""
    return any(effective_prune_ratio(p) > 0 for p in spec.stage_particles)
