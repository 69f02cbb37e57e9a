"""particle-nas: neural-architecture search for spatiotemporal video particles."""

from __future__ import annotations

from typing import Any

from particle_nas.space import NetworkSpec, ParticleSpec, SearchSpace, SpecError, build_network, build_particle

__version__ = "0.1.0"

__all__ = ["NetworkSpec", "ParticleSpec", "SearchSpace", "SpecError", "build_network", "build_particle", "load_network", "load_particle", "Predictor", "PredictSettings", "__version__"]

_LAZY = {"load_network": "particle_nas.results", "load_particle": "particle_nas.results", "Predictor": "particle_nas.results", "PredictSettings": "particle_nas.results"}


def __getattr__(name: str) -> Any:
    """``load_network``, ``load_particle``, ``Predictor`` and ``PredictSettings`` load particle_nas.results (pandas, the dashboard) on first use only."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'particle_nas' has no attribute {name!r}")
