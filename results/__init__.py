"""particle_nas.results: finished trials as tables, Pareto fronts, figures and particle files.

Compute, then draw: ``pareto_mask``, ``knee_index``, ``pareto_front`` and
``pick`` return plain data; ``pareto_figure`` only draws (plotly is imported
when it is called). Reads the Optuna study the search writes; never imports
the search or evaluators packages.
"""

from __future__ import annotations

from ._export import load_network, load_particle, particle_document, write_particle_yaml
from ._pareto import COLUMN_DIRECTIONS, ParetoFront, knee_index, pareto_front, pareto_mask, pick
from ._plots import hover_text, human, pareto_figure, write_html
from ._report import RunOutputs, write_run_outputs
from ._table import COLUMNS, PARTICLE_FIELDS, open_run, trials_table, write_trials_csv

__all__ = [
    "COLUMNS",
    "COLUMN_DIRECTIONS",
    "PARTICLE_FIELDS",
    "ParetoFront",
    "RunOutputs",
    "hover_text",
    "human",
    "knee_index",
    "load_network",
    "load_particle",
    "open_run",
    "pareto_figure",
    "pareto_front",
    "pareto_mask",
    "particle_document",
    "pick",
    "trials_table",
    "write_html",
    "write_particle_yaml",
    "write_run_outputs",
    "write_trials_csv",
]
