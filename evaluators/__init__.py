"""particle_nas.evaluators: what a spec costs and how well its proxy network learns a temporal task."""

from ._cost import COUNTED_OPERATORS, Cost, count_cost, count_parameters, network_cost
from ._data import (
    CLASS_NAMES,
    CLASS_PAIRS,
    ClipSet,
    SyntheticConfig,
    SyntheticTask,
    cache_path,
    clear_synthetic_cache,
    generate_clips,
    load_or_make_synthetic_task,
    make_synthetic_task,
    normalize,
)
from ._prune import prune_network, prunes, unpruned_spec
from ._evaluate import Evaluation, ProxyEvaluator, training_seed
from ._train import OPTIMIZERS, SCHEDULES, TrainConfig, TrainingDiverged, TrainResult, evaluate_accuracy, lr_factor, train_proxy

__all__ = [
    "CLASS_NAMES",
    "CLASS_PAIRS",
    "COUNTED_OPERATORS",
    "ClipSet",
    "Cost",
    "Evaluation",
    "OPTIMIZERS",
    "ProxyEvaluator",
    "SCHEDULES",
    "SyntheticConfig",
    "SyntheticTask",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "cache_path",
    "clear_synthetic_cache",
    "count_cost",
    "count_parameters",
    "evaluate_accuracy",
    "generate_clips",
    "load_or_make_synthetic_task",
    "lr_factor",
    "make_synthetic_task",
    "network_cost",
    "normalize",
    "prune_network",
    "prunes",
    "train_proxy",
    "training_seed",
    "unpruned_spec",
]
