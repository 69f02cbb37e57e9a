"""particle_nas.search: decides which particles to try and runs the trials."""

from ._optuna import SearchSummary, log_to_file, make_sampler, open_study, run_search, storage_url, suggest
from ._ray import run_ray_search
from ._storage import STUDY_DB, STUDY_JOURNAL, open_storage, read_run_file, resolve_storage, write_run_file
from ._trial import INTERRUPTED, Evaluator, evaluation_record, objective_values, score_particle
from ._settings import BACKENDS, EARLY_STOPPING, OBJECTIVES, SAMPLERS, Constraint, SearchSettings

__all__ = [
    "BACKENDS",
    "Constraint",
    "EARLY_STOPPING",
    "Evaluator",
    "INTERRUPTED",
    "OBJECTIVES",
    "SAMPLERS",
    "SearchSettings",
    "STUDY_DB",
    "STUDY_JOURNAL",
    "SearchSummary",
    "evaluation_record",
    "log_to_file",
    "objective_values",
    "score_particle",
    "make_sampler",
    "open_storage",
    "open_study",
    "read_run_file",
    "resolve_storage",
    "run_ray_search",
    "run_search",
    "storage_url",
    "suggest",
    "write_run_file",
]
