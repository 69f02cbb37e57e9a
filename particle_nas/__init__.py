"""particle-nas: neural-architecture search for spatiotemporal video particles."""

from particle_nas.results import load_network, load_particle
from particle_nas.space import NetworkSpec, ParticleSpec, SearchSpace, SpecError, build_network, build_particle

__version__ = "0.1.0"

__all__ = ["NetworkSpec", "ParticleSpec", "SearchSpace", "SpecError", "build_network", "build_particle", "load_network", "load_particle", "__version__"]
