from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from particle_nas.results import knee_index, pareto_front, pareto_mask, pick, trials_table

from results_study import make_study


def brute_force(values: np.ndarray, directions: list[str]) -> np.ndarray:
    loss = values * np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    n = len(loss)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        for j in range(n):
            if np.all(loss[j] <= loss[i]) and np.any(loss[j] < loss[i]):
                mask[i] = False
                break
    return mask


@st.composite
def points(draw):
    m = draw(st.integers(1, 4))
    n = draw(st.integers(0, 40))
    # Few distinct values, so ties and exact duplicates are common.
    element = st.one_of(st.integers(-3, 3).map(float), st.floats(-1e6, 1e6, allow_nan=False), st.sampled_from([math.inf, -math.inf]))
    values = draw(hnp.arrays(np.float64, (n, m), elements=element))
    if n and draw(st.booleans()):
        values = np.concatenate([values, values[draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=5))]])
    directions = draw(st.lists(st.sampled_from(["maximize", "minimize"]), min_size=m, max_size=m))
    return values, directions


@settings(max_examples=300, deadline=None)
@given(points())
def test_pareto_mask_matches_brute_force(case):
    values, directions = case
    np.testing.assert_array_equal(pareto_mask(values, directions), brute_force(values, directions))


def test_duplicates_of_a_member_are_all_members():
    values = np.array([[1.0, 3.0], [1.0, 3.0], [2.0, 4.0], [2.0, 4.0], [2.0, 6.0]])
    assert pareto_mask(values, ["maximize", "minimize"]).tolist() == [True, True, True, True, False]


def test_accepts_dataframe_and_study_directions(study):
    df = pd.DataFrame({"acc": [0.5, 0.6, 0.4], "flops": [10, 20, 30]})
    assert pareto_mask(df, ["maximize", "minimize"]).tolist() == [True, True, False]
    assert pareto_mask(df, study.directions).tolist() == [True, True, False]
    assert pareto_mask(np.zeros((0, 2)), ["maximize", "minimize"]).tolist() == []


def test_matches_optuna_best_trials(tmp_path):
    rng = np.random.default_rng(0)
    rows = [("COMPLETE", float(a), int(f), int(p)) for a, f, p in zip(rng.integers(0, 6, 24) / 10, rng.integers(1, 8, 24) * 1000, rng.integers(1, 5, 24))]
    rows[7] = ("FAIL", None, None, None)
    for three in (False, True):
        study = make_study(tmp_path / f"random{three}", rows, three=three)
        df = trials_table(study)
        done = df[df["state"] == "COMPLETE"]
        columns = ["accuracy", "flops", "params"][: 3 if three else 2]
        mask = pareto_mask(done[columns], study.directions)
        assert sorted(done.loc[mask, "number"]) == sorted(t.number for t in study.best_trials)


@pytest.mark.parametrize("m", [2, 3])
def test_ten_thousand_points_is_fast(m):
    values = np.random.default_rng(1).random((10_000, m))
    start = time.perf_counter()
    mask = pareto_mask(values, ["maximize"] + ["minimize"] * (m - 1))
    assert time.perf_counter() - start < 5.0
    assert 0 < mask.sum() < 10_000
    sub = values[:400]
    np.testing.assert_array_equal(pareto_mask(sub, ["maximize"] + ["minimize"] * (m - 1)), brute_force(sub, ["maximize"] + ["minimize"] * (m - 1)))


def test_pareto_mask_errors():
    with pytest.raises(ValueError, match="one direction per objective \\(2\\), but got \\['maximize'\\]"):
        pareto_mask(np.zeros((3, 2)), ["maximize"])
    with pytest.raises(ValueError, match="direction must be 'maximize' or 'minimize', but got 'up'"):
        pareto_mask(np.zeros((3, 2)), ["up", "minimize"])
    with pytest.raises(ValueError, match="must not contain NaN, but got NaN in row 1"):
        pareto_mask(np.array([[1.0, 2.0], [np.nan, 1.0]]), ["maximize", "minimize"])


# ---------------------------------------------------------------- knee
def quarter_circle(n: int) -> np.ndarray:
    """Points bulging toward the ideal corner (0, 0) of two minimized objectives; knee at 45 degrees."""
    t = np.linspace(0.0, np.pi / 2, n)
    return np.stack([1.0 - np.cos(t), 1.0 - np.sin(t)], axis=1)


def test_knee_on_convex_curve():
    curve = quarter_circle(21)
    assert knee_index(curve, ["minimize", "minimize"]) == 10
    # Scaling an objective does not move the knee (normalized over the front).
    assert knee_index(curve * [1e8, 1.0], ["minimize", "minimize"]) == 10
    # As (accuracy up, flops down): accuracy = 1 - y, flops = 1e6 * (1 + x).
    acc_flops = np.stack([1.0 - curve[:, 1], 1e6 * (1.0 + curve[:, 0])], axis=1)
    assert knee_index(acc_flops, ["maximize", "minimize"]) == 10


def test_knee_ignores_dominated_points_and_uses_positions():
    curve = quarter_circle(21)
    dominated = curve[::3] + 0.5
    values = np.concatenate([dominated, curve[::-1]])
    assert knee_index(values, ["minimize", "minimize"]) == len(dominated) + 10


def test_knee_of_asymmetric_front():
    # Accuracy jumps early, then flattens: the knee is where the curve bends.
    flops = np.array([1, 2, 3, 4, 10, 20, 40], dtype=float)
    acc = np.array([0.10, 0.50, 0.70, 0.75, 0.78, 0.79, 0.80])
    assert knee_index(np.stack([acc, flops], axis=1), ["maximize", "minimize"]) == 3


def test_knee_small_fronts_pick_best_first_objective():
    one = np.array([[0.5, 10.0], [0.4, 20.0]])  # 1 member
    assert knee_index(one, ["maximize", "minimize"]) == 0
    two = np.array([[0.5, 10.0], [0.9, 30.0], [0.4, 40.0]])  # 2 members
    assert knee_index(two, ["maximize", "minimize"]) == 1


def test_knee_concave_or_straight_front_picks_best_first_objective():
    straight = np.array([[0.2, 1.0], [0.5, 2.0], [0.8, 3.0]])
    assert knee_index(straight, ["maximize", "minimize"]) == 2
    t = np.linspace(0.0, np.pi / 2, 9)
    concave = np.stack([np.sin(t), np.cos(t)], axis=1)  # bulges away from the ideal (0, 0)
    assert knee_index(concave, ["minimize", "minimize"]) == 0


def test_knee_duplicates_go_to_the_earliest():
    values = np.array([[0.1, 1.0], [0.8, 4.0], [0.8, 4.0], [0.9, 40.0]])
    assert knee_index(values, ["maximize", "minimize"]) == 1


def test_knee_errors():
    with pytest.raises(ValueError, match="exactly 2 objectives, but got 3"):
        knee_index(np.zeros((3, 3)), ["minimize"] * 3)
    with pytest.raises(ValueError, match="at least one point, but got 0"):
        knee_index(np.zeros((0, 2)), ["minimize"] * 2)


def test_pareto_front_of_table(study):
    front = pareto_front(trials_table(study))
    df = trials_table(study)
    assert [int(df.loc[i, "number"]) for i in front.members] == [0, 2, 3, 8, 5]
    assert int(df.loc[front.knee, "number"]) == 3
    assert len(front.complete) == 7


# ---------------------------------------------------------------- pick
def number(row) -> int:
    return int(row["number"])


def test_pick_named_rules(study):
    df = trials_table(study)
    assert number(pick(df, "knee")) == 3
    assert number(pick(df, "max-accuracy")) == 5
    assert number(pick(df, "min-flops")) == 0
    assert number(pick(df, "min-params")) == 0


def test_pick_constraints(study):
    df = trials_table(study)
    assert number(pick(df, "flops<=2e6")) == 2  # best accuracy under the budget
    assert number(pick(df, "flops<2e6")) == 0
    assert number(pick(df, "params<1e5")) == 5
    assert number(pick(df, "params<20k")) == 3  # tie 3/8 goes to the original
    assert number(pick(df, "flops <= 4M, params<=12000")) == 3
    assert number(pick(df, "accuracy>=0.7")) == 2  # accuracy only: fewest flops
    assert number(pick(df, "accuracy>0.7")) == 3
    assert number(pick(df, "accuracy>=0.6,flops<=1e7")) == 3  # a cost constraint: best accuracy
    assert number(pick(df, "knee,flops<=2e6")) == 2  # knee of what remains (2 members: most accurate)
    assert number(pick(df, "min-params,accuracy>=0.75")) == 3
    assert number(pick(df, "max-accuracy, flops<=1E7")) == 3


def test_pick_ties():
    df = pd.DataFrame(
        {
            "number": [0, 1, 2, 3],
            "state": ["COMPLETE"] * 4,
            "accuracy": [0.8, 0.8, 0.8, 0.7],
            "flops": [300, 200, 200, 100],
            "params": [5, 9, 7, 1],
        }
    )
    assert number(pick(df, "max-accuracy")) == 2  # fewer flops, then fewer params
    assert number(pick(df, "min-flops")) == 3
    assert number(pick(df, "accuracy>=0.8")) == 2  # fewest flops, then fewer params


def test_pick_unsatisfiable_states_best_available(study):
    df = trials_table(study)
    with pytest.raises(ValueError) as err:
        pick(df, "flops<=1000")
    assert str(err.value) == "no complete trial satisfies flops<=1000; the smallest flops is 1000000."
    with pytest.raises(ValueError, match=r"^no complete trial satisfies accuracy>=0.9; the largest accuracy is 0.82.$"):
        pick(df, "accuracy>=0.9")
    with pytest.raises(ValueError, match=r"satisfies accuracy>=0.81,flops<=5e6; the largest accuracy is 0.82 and the smallest flops is 1000000.$"):
        pick(df, "knee,accuracy>=0.81,flops<=5e6")


@pytest.mark.parametrize("rule", ["best", "", "flops=<3", "latency<=3", "flops<=abc", "knee,max-accuracy", "flops<=1e5x", "accuracy>=nan"])
def test_pick_unparseable_lists_accepted_forms(study, rule):
    df = trials_table(study)
    with pytest.raises(ValueError, match="'knee', 'max-accuracy', 'min-flops', 'min-params'|at most one of") as err:
        pick(df, rule)
    assert repr(rule) in str(err.value)
    assert "\n" not in str(err.value)


def test_pick_without_complete_trials(tmp_path):
    df = trials_table(make_study(tmp_path / "failed", [("FAIL", None, None, None), ("RUNNING", None, None, None)]))
    with pytest.raises(ValueError, match="no complete trial to pick from with 'knee'; the table has 2 trials"):
        pick(df, "knee")
