"""Inflation (I3D): the weights of a 3D network from a trained 2D one.

The 2D network of a spec is the same network with every temporal kernel 1
(``as_2d``): each particle's ``temporal_kernel`` and the stem's, built with
``build_network``. Its layers are the 3D network's, with a temporal extent of
1 where the 3D network has ``kt``. I3D's rule fills the 3D network from it:

- a conv weight ``(out, in, 1, kh, kw)`` becomes ``(out, in, kt, kh, kw)``: the
  kernel repeated over ``kt`` frames and divided by ``kt``;
- every other tensor (batch norms with their running statistics, 1x1x1 and
  spatial convs, linear layers, squeeze-excite) is copied.

On a clip of identical frames each inflated conv then gives the 2D conv's
output, except near the first and last frames, where the zero padding of the
temporal kernel leaves part of it on the padding (I3D's "boring video" holds
away from the clip's ends).

Which factorizations inflate: those whose 2D form has the 3D form's layers
(``INFLATABLE``). ``NOT_INFLATABLE`` says why the others do not: each
factorization's registry entry says it (``Factorization.not_inflatable``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ._build import build_network
from ._errors import SpecError
from ._layers import ParticleNet
from ._registry import get_factorization
from ._spec import FACTORIZATIONS, NetworkSpec

# Views of the registry (each factorization's ``not_inflatable``): those whose 2D form (temporal_kernel 1) has the same
# layers, a temporal extent of 1 where theirs is kt; and why each of the others cannot be inflated.
INFLATABLE: tuple[str, ...] = tuple(name for name in FACTORIZATIONS if get_factorization(name).not_inflatable is None)
NOT_INFLATABLE: dict[str, str] = {name: reason for name in FACTORIZATIONS if (reason := get_factorization(name).not_inflatable) is not None}


def check_inflatable(spec: NetworkSpec) -> None:
    """Raise SpecError when a particle of ``spec`` has a factorization I3D's rule cannot inflate (see ``NOT_INFLATABLE``)."""
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"inflation expects a NetworkSpec, but got {type(spec).__name__}.")
    for i, particle in enumerate(spec.stage_particles):
        if particle.factorization not in INFLATABLE:
            field = f"NetworkSpec.particle[{i}]" if isinstance(spec.particle, tuple) else "NetworkSpec.particle"
            raise SpecError(
                field + ".factorization",
                f"must be one of {INFLATABLE} to inflate a 2D network into it ({particle.factorization}: {NOT_INFLATABLE[particle.factorization]})",
                particle.factorization,
            )


def as_2d(spec: NetworkSpec) -> NetworkSpec:
    """The 2D network of ``spec``: every particle's temporal kernel 1 and the stem's too (strides and pools kept)."""
    check_inflatable(spec)
    if isinstance(spec.particle, tuple):
        particle = tuple(p.replace(temporal_kernel=1) for p in spec.particle)
    else:
        particle = spec.particle.replace(temporal_kernel=1)
    return spec.replace(particle=particle, stem_kernel=(1, spec.stem_kernel[1]))


def inflate_state_dict(state_2d: Mapping[str, torch.Tensor], network_3d: nn.Module) -> dict[str, torch.Tensor]:
    """A ``state_dict`` for ``network_3d`` from the 2D network's ``state_2d`` by I3D's rule (see the module doc).

    Tensors of equal shape are copied; a conv weight whose temporal extent is 1
    in ``state_2d`` and ``kt`` in ``network_3d`` is repeated over ``kt`` frames and
    divided by ``kt``. Raises SpecError naming the first tensor that is missing on
    either side or whose shape cannot be inflated.
    """
    if not isinstance(network_3d, nn.Module):
        raise TypeError(f"inflate_state_dict expects the 3D network as an nn.Module, but got {type(network_3d).__name__}.")
    target = network_3d.state_dict()
    missing = sorted(set(target) - set(state_2d))
    if missing:
        raise SpecError("inflate.state_2d", f"must hold every tensor of the 3D network (it lacks {missing[0]!r})", f"{len(state_2d)} tensors")
    extra = sorted(set(state_2d) - set(target))
    if extra:
        raise SpecError("inflate.state_2d", f"must hold only tensors of the 3D network (it has {extra[0]!r})", f"{len(state_2d)} tensors")
    state: dict[str, torch.Tensor] = {}
    for key, want in target.items():
        got = state_2d[key]
        if got.shape == want.shape:
            state[key] = got.detach().clone()
        elif got.dim() == want.dim() == 5 and got.shape[2] == 1 and got.shape[:2] == want.shape[:2] and got.shape[3:] == want.shape[3:]:
            kt = want.shape[2]
            state[key] = got.detach().repeat(1, 1, kt, 1, 1) / kt
        else:
            raise SpecError(
                f"inflate.state_2d[{key!r}]",
                f"must have the 3D layer's shape {list(want.shape)} with a temporal extent of 1 to be inflated",
                list(got.shape),
            )
    return state


def inflate(model_2d: nn.Module, spec_3d: NetworkSpec) -> ParticleNet:
    """``build_network(spec_3d)`` holding ``model_2d``'s weights, inflated; ``model_2d`` is ``build_network(as_2d(spec_3d))``, trained."""
    check_inflatable(spec_3d)
    network = build_network(spec_3d, seed=0)  # every tensor is replaced; the seed leaves the global RNG alone
    first = next(model_2d.parameters(), None)
    network.load_state_dict(inflate_state_dict(model_2d.state_dict(), network))
    return network.to(first.device) if first is not None else network
