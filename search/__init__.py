"""particle_nas.search: decides which particles to try and runs the trials.

A search is a ``SearchJob`` (a ``SearchTask``: what to search; ``RunOptions``:
how and where) run by one ``Engine`` (``LocalEngine``: Optuna worker processes;
``RayEngine``: Ray Tune; ``ProgressiveEngine``: progressive expansion) through
``run``, which owns what every engine honours (the study: ``_study``); every
engine runs its trials through one ``TrialRunner``. ``RunLayout`` names the files of a run directory. Early stopping (ASHA, MO-ASHA)
ranks a rung with ``promote`` (``nondominated_sort``, ``crowding_distance``) on
every engine.
"""

from ._engine import Engine, log_to_file
from ._hypervolume import YARDSTICK_ATTR, Yardstick, cost_bounds, hypervolume_2d, observed_yardstick, running_hypervolume_2d, space_particles, yardstick_for
from ._job import RunOptions, SearchJob, SearchTask
from ._sampler import make_sampler, suggest
from ._study import open_study
from ._summary import SearchSummary
from ._early_stopping import EarlyStopping, crowding_distance, nondominated_sort, promote, rank_order
from ._layout import STUDY_DB, STUDY_JOURNAL, RunLayout, read_run_file, resolve_storage, write_run_file
from ._local import LocalEngine
from ._progressive import ProgressiveEngine
from ._ray import RayEngine
from ._run import check_run_options, engine_for, run, run_search
from ._runner import Plan, TrialOutcome, TrialRecorder, TrialRunner
from ._settings import BACKENDS, EARLY_STOPPING, RESUMABLE, SAMPLERS, SearchSettings
from ._stopped import SearchStopped
from ._storage import STORAGE_ENV, open_storage, recover_journal, shown_location, without_password
from ._trial import BASELINE_ATTR, INTERRUPTED, Evaluator, evaluation_record, objective_values, score_particle

__all__ = [
    "YARDSTICK_ATTR",
    "Yardstick",
    "cost_bounds",
    "hypervolume_2d",
    "observed_yardstick",
    "running_hypervolume_2d",
    "space_particles",
    "yardstick_for",
    "BACKENDS",
    "BASELINE_ATTR",
    "EARLY_STOPPING",
    "EarlyStopping",
    "Engine",
    "Evaluator",
    "INTERRUPTED",
    "LocalEngine",
    "Plan",
    "ProgressiveEngine",
    "RESUMABLE",
    "RunOptions",
    "RayEngine",
    "RunLayout",
    "SAMPLERS",
    "STORAGE_ENV",
    "STUDY_DB",
    "STUDY_JOURNAL",
    "SearchJob",
    "SearchSettings",
    "SearchStopped",
    "SearchSummary",
    "SearchTask",
    "TrialOutcome",
    "TrialRecorder",
    "TrialRunner",
    "crowding_distance",
    "check_run_options",
    "engine_for",
    "evaluation_record",
    "log_to_file",
    "make_sampler",
    "nondominated_sort",
    "objective_values",
    "open_storage",
    "open_study",
    "promote",
    "rank_order",
    "read_run_file",
    "recover_journal",
    "resolve_storage",
    "run",
    "run_search",
    "score_particle",
    "shown_location",
    "suggest",
    "without_password",
    "write_run_file",
]
