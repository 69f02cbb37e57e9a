"""particle_nas.search: decides which particles to try and runs the trials."""

from ._optuna import INTERRUPTED, Evaluator, SearchSummary, make_sampler, open_study, run_search, storage_url, suggest
from ._settings import BACKENDS, OBJECTIVES, SAMPLERS, SearchSettings

__all__ = [
    "BACKENDS",
    "Evaluator",
    "INTERRUPTED",
    "OBJECTIVES",
    "SAMPLERS",
    "SearchSettings",
    "SearchSummary",
    "make_sampler",
    "open_study",
    "run_search",
    "storage_url",
    "suggest",
]
