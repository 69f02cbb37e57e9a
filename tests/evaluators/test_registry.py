"""One registry of metrics and one constraint grammar, read by the search, the table, the front and the CLI."""

from __future__ import annotations

import math

import pytest

from particle_nas.evaluators import METRIC_INFO, METRICS, OBJECTIVES, OPTIONAL_METRICS, ZERO_COST, Constraint, EvaluatorSettings
from particle_nas.results import COLUMN_DIRECTIONS, COLUMNS
from particle_nas.search import SearchSettings
from particle_nas.space import SpecError


@pytest.mark.parametrize("name", sorted(METRIC_INFO))
def test_every_metric_has_a_direction_a_column_and_a_format(name):
    info = METRIC_INFO[name]
    assert info.direction in ("maximize", "minimize") and COLUMN_DIRECTIONS[info.column] == info.direction
    assert info.column in COLUMNS  # a trials.csv column
    assert info.format(None) == "n/a" and info.format(float("nan")) == "n/a" and info.format(12.0) != "n/a"


@pytest.mark.parametrize("name", sorted(METRICS))
def test_the_metric_classes_take_their_direction_from_the_registry(name):
    assert METRICS[name].direction == METRIC_INFO[name].direction
    assert name in OPTIONAL_METRICS and name in OBJECTIVES


def test_every_number_an_evaluator_reports_and_a_search_may_use_is_registered():
    outputs = EvaluatorSettings(latency=True, zero_cost=ZERO_COST).outputs
    assert {n for n in outputs if n in OBJECTIVES} == set(OBJECTIVES)
    assert SearchSettings(objectives=("accuracy", "latency_ms")).directions == ["maximize", "minimize"]


def test_formats():
    assert METRIC_INFO["flops"].format(12_345_678) == "12.3 MFLOPs"
    assert METRIC_INFO["params"].format(45_600) == "45.6 k"
    assert METRIC_INFO["accuracy"].format(0.81234) == "0.8123"
    assert METRIC_INFO["latency_ms"].format(12.3456) == "12.3"
    assert METRIC_INFO["flops"].exact(1e6) == "1000000" and METRIC_INFO["accuracy"].exact(0.82) == "0.82"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("flops <= 2e9", ("flops", "<=", 2e9)),
        ("flops<=2e8", ("flops", "<=", 2e8)),
        ("params<100k", ("params", "<", 1e5)),
        ("flops <= 200M", ("flops", "<=", 2e8)),
        ("accuracy>=0.8", ("accuracy", ">=", 0.8)),
        ("latency_ms > 1_000", ("latency_ms", ">", 1000.0)),
        ("speed <= 3", None),
        ("flops == 3", None),
        ("flops <= inf", None),
        ("flops <= 1.2.3", None),
        (3, None),
    ],
)
def test_one_constraint_grammar(text, expected):
    found = Constraint.match(text)
    assert (found[:3] if found else None) == expected


def test_a_search_constraint_is_an_upper_or_lower_bound_and_reads_as_optuna_violations():
    with pytest.raises(SpecError, match=r"^search.constraints must be 'NAME <= NUMBER' or 'NAME >= NUMBER'"):
        Constraint.parse("params < 100k")
    upper, lower = Constraint.parse("flops <= 2G"), Constraint.parse("accuracy >= 0.5")
    assert upper.violation(3e9) == 1e9 and upper.violation(1e9) < 0
    assert math.isclose(lower.violation(0.4), 0.1) and lower.violation(0.9) < 0
    assert list(upper.holds([1e9, 2e9, 3e9, float("nan")])) == [True, True, False, False]
