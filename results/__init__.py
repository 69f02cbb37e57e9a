"""particle_nas.results: finished trials as tables, Pareto fronts, figures and particle files.

Compute, then draw: ``pareto_mask``, ``knee_index``, ``pareto_front``,
``pick``, ``baseline_results``, ``hypervolume_history``, ``param_importance``, ``parallel_axes`` and
``pareto_members`` return plain data; ``pareto_figure`` and ``write_dashboard``
only draw (plotly is imported when they are called). Reads the Optuna study the search writes. Downstream
of search and evaluators: the run directory's files come from ``particle_nas.search.RunLayout``, metric
names, directions and formats from ``particle_nas.evaluators.METRIC_INFO``; neither imports results.
"""

from __future__ import annotations

from particle_nas.search import hypervolume_2d, running_hypervolume_2d

from ._dashboard import HypervolumeHistory, Importance, dashboard_table, hypervolume_history, param_importance, parallel_axes, pareto_members, searched_axes, study_yardstick
from ._dashboard_page import dashboard_html, write_dashboard
from ._deploy import MissingWeightsError, export_outputs, trial_weights
from ._predict import RUNTIMES, PredictionRun, Predictor, PredictSettings, VideoPrediction, finetuned_model, prediction_document, read_class_names, video_paths, write_predictions
from ._finetune_report import REPORT_JSON, Classification, ClassMetrics, classification_metrics, finetune_html, finetune_report, write_finetune_report
from ._export import load_network, load_particle, particle_document, particle_yaml, write_particle_yaml
from ._pareto import COLUMN_DIRECTIONS, BaselineResult, ParetoFront, baseline_lines, baseline_results, knee_index, pareto_front, pareto_mask, pick
from ._plots import hover_text, human, pareto_figure, write_html
from ._report import RunOutputs, write_run_outputs
from ._table import COLUMNS, PARTICLE_FIELDS, open_run, trials_table, write_trials_csv

__all__ = [
    "MissingWeightsError",
    "RUNTIMES",
    "PredictionRun",
    "Predictor",
    "PredictSettings",
    "VideoPrediction",
    "finetuned_model",
    "prediction_document",
    "read_class_names",
    "video_paths",
    "write_predictions",
    "export_outputs",
    "trial_weights",
    "Classification",
    "REPORT_JSON",
    "ClassMetrics",
    "classification_metrics",
    "finetune_html",
    "finetune_report",
    "write_finetune_report",
    "COLUMNS",
    "COLUMN_DIRECTIONS",
    "BaselineResult",
    "HypervolumeHistory",
    "Importance",
    "PARTICLE_FIELDS",
    "ParetoFront",
    "RunOutputs",
    "hover_text",
    "baseline_lines",
    "baseline_results",
    "dashboard_html",
    "dashboard_table",
    "human",
    "hypervolume_2d",
    "hypervolume_history",
    "running_hypervolume_2d",
    "study_yardstick",
    "knee_index",
    "load_network",
    "load_particle",
    "open_run",
    "parallel_axes",
    "param_importance",
    "pareto_figure",
    "pareto_front",
    "pareto_mask",
    "pareto_members",
    "particle_document",
    "particle_yaml",
    "pick",
    "searched_axes",
    "trials_table",
    "write_dashboard",
    "write_html",
    "write_particle_yaml",
    "write_run_outputs",
    "write_trials_csv",
]
