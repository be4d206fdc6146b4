"""Tests of the penalty-weight schedules against NumPy recurrences."""

import keras
import numpy as np
import pytest

from state_of_sparsity.layers import penalty_schedules as ps


def run(schedule, steps):
    weight, weights = 0.0, []
    for step in steps:
        weight = float(schedule.next_weight(step, weight))
        weights.append(weight)
    return np.array(weights)


def test_linear_ramp_matches_formula():
    steps = np.arange(0, 40)
    expected = 0.5 * np.minimum(np.maximum(steps - 10, 0) / 20.0, 1.0)
    np.testing.assert_allclose(run(ps.LinearPenalty(0.5, 10, 30), steps), expected, rtol=1e-6)


def test_cubic_ema_matches_numpy_recurrence():
    steps = np.arange(0, 120)
    weight, expected = 0.0, []
    for step in steps:
        x = max(step - 5, 0) / 20.0
        target = 2.0 * min(1 - (1 - x) ** 3, 1.0)  # x not clipped before the power
        weight = 0.1 * target + 0.9 * weight
        expected.append(weight)
    np.testing.assert_allclose(run(ps.CubicEMAPenalty(2.0, 5, 25), steps), expected, rtol=1e-5)
    assert expected[-1] == pytest.approx(2.0, rel=1e-3)


def test_constant_penalty_is_constant():
    np.testing.assert_array_equal(run(ps.ConstantPenalty(3e-5), range(3)), np.float32(3e-5))


@pytest.mark.parametrize(
    "schedule",
    [ps.ConstantPenalty(0.1), ps.LinearPenalty(0.2, 3, 9), ps.CubicEMAPenalty(1.0, 0, 10, decay=0.5)],
)
def test_config_round_trip_is_flat(schedule):
    config = schedule.get_config()
    assert all(not isinstance(value, dict) for value in config.values())
    assert type(schedule).from_config(config) == schedule
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule)) == schedule


@pytest.mark.parametrize(
    "factory, message",
    [
        (lambda: ps.ConstantPenalty(-1.0), "weight.*Received: weight=-1.0"),
        (lambda: ps.LinearPenalty(1.0, 5, 5), "greater than `begin_step`.*begin_step=5, end_step=5"),
        (lambda: ps.LinearPenalty(1.0, -1, 5), "begin_step.*Received: begin_step=-1"),
        (lambda: ps.CubicEMAPenalty(1.0, 0, 5, decay=1.0), r"decay.*\[0, 1\).*Received: decay=1.0"),
        (lambda: ps.CubicEMAPenalty(float("nan"), 0, 5), "weight.*Received: weight=nan"),
    ],
)
def test_bad_arguments_are_rejected(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


def test_boundaries_are_accepted():
    assert ps.ConstantPenalty(0.0).weight == 0.0
    assert ps.CubicEMAPenalty(1.0, 0, 1, decay=0.0).decay == 0.0


def test_missing_schedule_names_the_technique_and_an_example():
    with pytest.raises(ValueError, match="VariationalDropout needs a penalty-weight schedule.*LinearPenalty"):
        ps.get(None, "VariationalDropout")
