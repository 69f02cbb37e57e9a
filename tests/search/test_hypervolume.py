"""The hypervolume yardstick: one definition (log cost by default, linear by name), its box from the space's analytic costs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from particle_nas.search import Yardstick, hypervolume_2d, observed_yardstick, running_hypervolume_2d, yardstick_for
from particle_nas.space import NetworkSpec, SearchSpace, SpecError, cost


def test_hypervolume_2d_by_hand():
    # losses (lower better); reference (4, 4): boxes 3x1 + 2x... computed by hand
    points = np.array([[1.0, 3.0], [2.0, 1.0], [3.0, 2.0], [5.0, 0.0]])  # (3,2) dominated, (5,0) beyond the reference
    # (1,3): width 2-1=1, height 4-3=1 -> 1 ; (2,1): width 4-2=2, height 4-1=3 -> 6
    assert hypervolume_2d(points, (4.0, 4.0)) == pytest.approx(7.0)
    assert hypervolume_2d(points[:0], (4.0, 4.0)) == 0.0
    assert hypervolume_2d(np.array([[1.0, 1.0], [1.0, 1.0]]), (2.0, 2.0)) == pytest.approx(1.0)  # duplicates count once


@pytest.mark.parametrize("seed", range(6))
def test_running_hypervolume_equals_the_direct_definition_after_every_point(seed):
    """The incremental history gives hypervolume_2d(loss[: i + 1]) exactly, ties, duplicates and points beyond the reference included."""
    rng = np.random.default_rng(seed)
    n = 400
    grid = (1, 5, 50)[seed % 3]  # coarse grids make ties in one loss, repeated points and repeated fronts
    loss = np.round(rng.random((n, 2)) * grid) / grid * np.array([1.0, 3e7]) - np.array([1.0, 0.0])
    loss[rng.random(n) < 0.1] = loss[rng.integers(0, n)]  # exact repeats of one earlier point
    reference = (-0.05, 2.5e7)  # some points are not strictly better than it
    direct = [hypervolume_2d(loss[: i + 1], reference) for i in range(n)]
    assert running_hypervolume_2d(loss, reference) == direct
    assert running_hypervolume_2d(loss[:0], reference) == []


def test_the_log_yardstick_values_the_cheap_end_of_a_front_as_much_as_the_costly_end():
    log = Yardstick(low=1e6, high=1e8)
    linear = log.with_scale("linear")
    assert log.position([1e6, 1e7, 1e8]).tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert linear.position([0.0, 1e7, 1e8]).tolist() == pytest.approx([0.0, 0.1, 1.0])
    # two fronts: one accurate network at 1e7 FLOPs, or a cheap one (1e6) 0.2 less accurate beside it
    accurate, both = ([0.8], [1e7]), ([0.8, 0.6], [1e7, 1e6])
    assert log.hypervolume(*accurate) == pytest.approx(0.8 * 0.5) and log.hypervolume(*both) == pytest.approx(0.8 * 0.5 + 0.6 * 0.5)
    assert linear.hypervolume(*accurate) == pytest.approx(0.8 * 0.9) and linear.hypervolume(*both) == pytest.approx(0.8 * 0.9 + 0.6 * 0.09)
    # a point beyond the costly edge, or with no accuracy (stopped early), adds nothing
    assert log.running([0.9, None, 0.5], [2e8, 1e6, 1e6]) == pytest.approx([0.0, 0.0, 0.5])
    assert Yardstick.from_dict(log.to_dict()) == log


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"scale": "sqrt"}, "yardstick.scale must be one of"),
        ({"low": 0.0}, "yardstick.low must be above 0 on the log scale"),
        ({"high": 0.5}, r"yardstick.high must be finite and above low \(1\)"),
        ({"scale": "linear", "low": -1.0}, "yardstick.low must be at least 0"),
    ],
)
def test_a_yardstick_refuses_a_box_that_is_not_one(fields, message):
    with pytest.raises(SpecError, match=message):
        Yardstick(**fields)


def test_the_yardstick_of_a_space_spans_its_cheapest_to_1_1_times_its_largest_network():
    space = SearchSpace.from_dict({"factorization": ["full", "csn_ir", "spatial_only"], "wiring": ["plain", "inverted"], "expansion": [1.0, 2.0]})
    network = NetworkSpec(widths=(8, 16), depths=(1, 1), temporal_strides=(1, 1), spatial_strides=(1, 2), stem_channels=8, clip=(4, 16, 16), num_classes=4)
    flops = [cost(network.replace(particle=p)).flops for p in space.grid()]
    yardstick = yardstick_for(space, network)
    assert (yardstick.scale, yardstick.low, yardstick.high) == ("log", min(flops), pytest.approx(1.1 * max(flops)))
    assert "the space's cheapest network to 1.1 x its largest" in yardstick.describe()
    params = yardstick_for(space, network, cost_name="params", scale="linear")
    assert params.low == 0.0 and params.high == pytest.approx(1.1 * max(cost(network.replace(particle=p)).params for p in space.grid()))
    seen = observed_yardstick([4e6, 2e6, None, 8e6])
    assert (seen.low, seen.high) == (2e6, pytest.approx(8.8e6)) and math.isclose(seen.position(2e6), 0.0)
