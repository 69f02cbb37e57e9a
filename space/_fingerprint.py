"""What a network is, read off the built network: two specs whose built networks are the same share a fingerprint.

``network_fingerprint(spec)`` builds the network on PyTorch's meta device (no
memory, no initialization), traces it with torch.fx and hashes the graph: for
every operation in order, what it is (a module's type with its settings and the
shapes of its own weights: in and out channels, kernel, stride, padding,
groups, bias; a function's or method's name and its constant arguments) and
which earlier operations it reads (the connections). Module names, which
differ between builders of the same network, are left out. A spec that prunes
is trained unpruned and then pruned, so its fingerprint holds both networks;
one that is quantized after training holds its mode. The input clip is part of it.

So ``full``/``inverted`` and ``csn_ir``/``inverted`` (the inverted block's
middle conv is depthwise either way) share a fingerprint, as does a prune
ratio that removes no channel with the unpruned spec; hand-written rules of
which particles are the same network are not needed. About 10 ms a spec on a
CPU, cached by spec.
"""

from __future__ import annotations

import functools
import hashlib
import json
import operator
from typing import Any

import torch
import torch.fx
from torch import nn

from ._build import _create_network, effective_prune_ratio
from ._layers import ConvGRU, TemporalShift
from ._spec import NetworkSpec

# Modules traced whole (their forward has control flow on tensor sizes): described by type, settings and weight shapes.
LEAF_MODULES: tuple[type[nn.Module], ...] = (TemporalShift, ConvGRU)
_SETTINGS = (bool, int, float, str, tuple, type(None))


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, LEAF_MODULES) or super().is_leaf_module(m, module_qualified_name)


def _describe_module(module: nn.Module) -> list[Any]:
    """A module as the fingerprint sees it: its type, its public settings, and the shapes of all its weights and buffers."""
    settings = sorted((k, repr(v)) for k, v in vars(module).items() if not k.startswith("_") and k != "training" and isinstance(v, _SETTINGS))
    tensors = [[repr(tuple(t.shape)), str(t.dtype)] for t in [*module.parameters(), *module.buffers()]]
    return [type(module).__module__ + "." + type(module).__qualname__, settings, tensors]


def _callable_name(target: Any) -> str:
    if isinstance(target, str):
        return target
    if target in vars(operator).values():
        return "operator." + getattr(target, "__name__", repr(target))
    return f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', getattr(target, '__name__', repr(target)))}"


def _argument(value: Any, index: dict[torch.fx.Node, int]) -> Any:
    """An argument of a node: another node by its position (a connection), or a constant."""
    if isinstance(value, torch.fx.Node):
        return ["node", index[value]]
    if isinstance(value, (list, tuple)):
        return [type(value).__name__, [_argument(v, index) for v in value]]
    if isinstance(value, dict):
        return ["dict", sorted((str(k), _argument(v, index)) for k, v in value.items())]
    if isinstance(value, slice):
        return ["slice", [_argument(v, index) for v in (value.start, value.stop, value.step)]]
    return ["const", repr(value)]


def graph_record(module: nn.Module) -> list[Any]:
    """The traced graph of ``module`` as plain data: per node, its operation and the nodes and constants it reads."""
    graph = _Tracer().trace(module)
    index: dict[torch.fx.Node, int] = {}
    record = []
    for node in graph.nodes:
        index[node] = len(index)
        if node.op == "call_module":
            what: Any = _describe_module(module.get_submodule(str(node.target)))
        elif node.op == "get_attr":
            attr = module
            for part in str(node.target).split("."):
                attr = getattr(attr, part)
            what = [repr(tuple(attr.shape)), str(attr.dtype)] if isinstance(attr, torch.Tensor) else repr(attr)
        elif node.op in ("placeholder", "output"):
            what = node.op
        else:
            what = _callable_name(node.target)
        record.append([node.op, what, _argument(node.args, index), _argument(node.kwargs, index)])
    return record


@functools.lru_cache(maxsize=65536)
def _built(text: str) -> str:
    """The graph record of the network ``text`` (a spec's JSON) builds, as JSON (a pruned spec's unpruned network is shared)."""
    with torch.device("meta"):  # no memory and no initial weights (the global RNG is left as it was): only read
        model = _create_network(NetworkSpec.from_dict(json.loads(text)), init=False)
    return json.dumps(graph_record(model))


def _text(spec: NetworkSpec) -> str:
    return json.dumps(spec.to_dict(), sort_keys=True)


@functools.lru_cache(maxsize=65536)
def _fingerprint(text: str) -> str:
    spec = NetworkSpec.from_dict(json.loads(text))
    particles = spec.stage_particles
    prunes = any(effective_prune_ratio(p) > 0 for p in particles)
    record: dict[str, Any] = {
        "input": [spec.in_channels, *spec.clip],
        "network": _built(text),
        "quantize": sorted({p.quantize for p in particles}),
    }
    if prunes:
        unpruned = spec.replace(particle=tuple(p.replace(prune_ratio=0.0) for p in spec.particle)) if isinstance(spec.particle, tuple) else spec.replace(particle=spec.particle.replace(prune_ratio=0.0))
        record["trained"] = _built(_text(unpruned))  # the network that is trained, then pruned into "network"
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:20]


def network_fingerprint(spec: NetworkSpec) -> str:
    """A short hash of what ``spec`` builds (see the module docstring): equal for specs that build the same network."""
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"network_fingerprint expects a NetworkSpec, but got {type(spec).__name__}.")
    return _fingerprint(_text(spec))
