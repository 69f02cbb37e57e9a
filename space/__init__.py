"""particle_nas.space: what a particle is, how it is validated, searched over and built."""

from ._adapters import adapter_width, add_adapters, block_out_channels, create_adapter
from ._baselines import BASELINES, Baseline, baseline_names
from ._build import (
    FACTORIZATION_BUILDERS,
    WIRING_BUILDERS,
    build_network,
    build_particle,
    channel_groups,
    dense_inner_width,
    effective_prune_ratio,
    inception_widths,
    inner_width,
    pruned_width,
    r2plus1d_mid_width,
    round_width,
    se_width,
    split_width,
)
from ._cost import FACTORIZATION_COSTS, PRECISION_BYTES, WIRING_COSTS, Cost, TrainingMemory, cost, training_memory
from ._domain import AXES, STAGE_MODES, Axis, SearchSpace
from ._fingerprint import network_fingerprint
from ._inflate import INFLATABLE, NOT_INFLATABLE, as_2d, check_inflatable, inflate, inflate_state_dict
from ._checks import check_choice, check_clip, check_int, check_number
from ._errors import SpecError
from ._registry import Factorization, Wiring, get_factorization, get_wiring, register_factorization, register_wiring
from ._io import read_yaml
from ._layers import Adapter, ConvGRU, ParallelConcat, ParallelSum, ParticleBlock, ParticleNet, SqueezeExcite, TemporalShift
from ._spec import ACTIVATIONS, FACTORIZATIONS, KERNELS, POOLS, QUANTIZE_MODES, R2PLUS1D_MIDS, RECURRENT, WIRINGS, NetworkSpec, ParticleSpec, particle_from_record, particle_to_record

__all__ = [
    "ACTIVATIONS",
    "BASELINES",
    "Baseline",
    "AXES",
    "Adapter",
    "Axis",
    "ConvGRU",
    "Cost",
    "FACTORIZATION_COSTS",
    "FACTORIZATIONS",
    "FACTORIZATION_BUILDERS",
    "Factorization",
    "INFLATABLE",
    "KERNELS",
    "NOT_INFLATABLE",
    "NetworkSpec",
    "ParallelConcat",
    "ParallelSum",
    "ParticleBlock",
    "ParticleNet",
    "POOLS",
    "PRECISION_BYTES",
    "ParticleSpec",
    "QUANTIZE_MODES",
    "R2PLUS1D_MIDS",
    "RECURRENT",
    "STAGE_MODES",
    "SearchSpace",
    "SpecError",
    "SqueezeExcite",
    "TemporalShift",
    "TrainingMemory",
    "WIRINGS",
    "Wiring",
    "WIRING_BUILDERS",
    "WIRING_COSTS",
    "adapter_width",
    "baseline_names",
    "add_adapters",
    "block_out_channels",
    "as_2d",
    "build_network",
    "check_choice",
    "check_inflatable",
    "check_clip",
    "check_int",
    "check_number",
    "channel_groups",
    "cost",
    "network_fingerprint",
    "create_adapter",
    "build_particle",
    "dense_inner_width",
    "effective_prune_ratio",
    "get_factorization",
    "get_wiring",
    "inception_widths",
    "inflate",
    "inflate_state_dict",
    "inner_width",
    "particle_from_record",
    "particle_to_record",
    "presets",
    "pruned_width",
    "r2plus1d_mid_width",
    "read_yaml",
    "register_factorization",
    "register_wiring",
    "round_width",
    "se_width",
    "split_width",
    "training_memory",
]

from . import presets  # noqa: E402  (the module of reference presets, after the names it uses)
