"""particle_nas.search: decides which particles to try and runs the trials."""

from ._optuna import SearchSummary, make_sampler, open_study, run_search, storage_url, suggest
from ._trial import INTERRUPTED, Evaluator, evaluation_record, objective_values, score_particle
from ._settings import BACKENDS, OBJECTIVES, SAMPLERS, Constraint, SearchSettings

__all__ = [
    "BACKENDS",
    "Constraint",
    "Evaluator",
    "INTERRUPTED",
    "OBJECTIVES",
    "SAMPLERS",
    "SearchSettings",
    "SearchSummary",
    "evaluation_record",
    "objective_values",
    "score_particle",
    "make_sampler",
    "open_study",
    "run_search",
    "storage_url",
    "suggest",
]
