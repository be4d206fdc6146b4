"""Tests of the pruning schedules against hand-worked NumPy values."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from state_of_sparsity.layers.pruning import schedules


def np_polynomial(step, target, begin, end, initial, exponent):
    p = np.clip((step - begin) / (end - begin), 0.0, 1.0)
    return target + (initial - target) * (1.0 - p) ** exponent


@pytest.mark.parametrize("step", [0, 10, 11, 50, 99, 110, 200, 10_000])
def test_polynomial_decay_matches_numpy_formula(step):
    schedule = schedules.PolynomialDecay(0.9, begin_step=10, end_step=110, frequency=5,
                                         initial_sparsity=0.1, exponent=3)
    expected = np_polynomial(step, 0.9, 10, 110, 0.1, 3.0)
    np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-6, atol=1e-7)


def test_polynomial_decay_default_is_cubic_zhu_gupta_ramp():
    schedule = schedules.PolynomialDecay(0.8, begin_step=0, end_step=100, frequency=10)
    # s = 0.8 * (1 - (1 - 0.5)^3) = 0.7 at the midpoint.
    np.testing.assert_allclose(float(schedule(50)), 0.7, rtol=1e-6)
    assert float(schedule(0)) == 0.0
    np.testing.assert_allclose(float(schedule(100)), 0.8, rtol=1e-6)


def test_polynomial_decay_works_on_a_step_tensor_inside_tf_function():
    schedule = schedules.PolynomialDecay(0.5, 0, 10, 1)
    values = tf.function(lambda s: schedule(s))(tf.constant(5, tf.int64))
    np.testing.assert_allclose(float(values), np_polynomial(5, 0.5, 0, 10, 0.0, 3.0), rtol=1e-6)


def test_constant_sparsity_is_constant():
    schedule = schedules.ConstantSparsity(0.75, begin_step=3)
    assert [float(schedule(s)) for s in (0, 3, 1000)] == [0.75, 0.75, 0.75]


def updates(schedule, last_step):
    """Steps at which masks update when stepping 0..last_step, by the schedule's rule."""
    last, fired = -1, []
    for step in range(last_step + 1):
        if bool(schedule.is_update_step(step, last)):
            fired.append(step)
            last = step
    return fired


def test_update_steps_start_at_begin_then_follow_frequency_and_hit_end_step():
    schedule = schedules.PolynomialDecay(0.9, begin_step=10, end_step=45, frequency=10)
    # 45 is off the frequency grid, but one last update lands on it so the target is reached.
    assert updates(schedule, 100) == [10, 20, 30, 40, 45]


def test_update_after_end_step_happens_once_when_steps_jump_past_it():
    schedule = schedules.PolynomialDecay(0.9, begin_step=0, end_step=10, frequency=4)
    assert bool(schedule.is_update_step(13, last_update_step=8))
    assert not bool(schedule.is_update_step(17, last_update_step=13))


def test_constant_sparsity_without_end_keeps_updating():
    schedule = schedules.ConstantSparsity(0.5, begin_step=0, end_step=-1, frequency=25)
    assert updates(schedule, 100) == [0, 25, 50, 75, 100]


def test_update_is_idempotent_at_one_step():
    schedule = schedules.PolynomialDecay(0.9, begin_step=0, end_step=10, frequency=1)
    assert not bool(schedule.is_update_step(10, last_update_step=10))


def test_with_target_rescales_the_whole_ramp_like_weight_sparsity_map():
    base = schedules.PolynomialDecay(0.8, 0, 100, 10, initial_sparsity=0.2)
    layer = base.with_target(0.4)
    for step in (0, 30, 70, 100):
        np.testing.assert_allclose(float(layer(step)), float(base(step)) * 0.5, rtol=1e-6)
    assert schedules.ConstantSparsity(0.5).with_target(0.9).target_sparsity == 0.9


@pytest.mark.parametrize(
    "schedule",
    [
        schedules.PolynomialDecay(0.9, 5, 50, 5, initial_sparsity=0.1, exponent=2.0),
        schedules.ConstantSparsity(0.3, begin_step=2, end_step=9, frequency=3),
    ],
)
def test_config_is_flat_and_round_trips(schedule):
    config = schedule.get_config()
    assert all(not isinstance(v, dict) for v in config.values())
    assert type(schedule).from_config(config) == schedule
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert restored == schedule


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(target_sparsity=1.0), "target_sparsity.*Received: target_sparsity=1.0"),
        (dict(target_sparsity=-0.1), "target_sparsity.*Received: target_sparsity=-0.1"),
        (dict(initial_sparsity=1.0), "initial_sparsity"),
        (dict(begin_step=-1), "begin_step.*>= 0.*Received: begin_step=-1"),
        (dict(frequency=0), "frequency.*>= 1.*Received: frequency=0"),
        (dict(begin_step=20, end_step=10), "end_step.*Received: begin_step=20, end_step=10"),
        (dict(begin_step=10, end_step=10), "greater than `begin_step`"),
        (dict(exponent=0.0), "exponent.*Received: exponent=0.0"),
        (dict(frequency=2.5), "frequency.*Received: frequency=2.5"),
    ],
)
def test_polynomial_decay_rejects_bad_arguments(kwargs, message):
    args = dict(target_sparsity=0.5, begin_step=0, end_step=10, frequency=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        schedules.PolynomialDecay(**args)


@pytest.mark.parametrize("target", [0.0, 0.999])
def test_boundary_sparsities_are_accepted(target):
    assert schedules.ConstantSparsity(target).target_sparsity == target


def test_constant_sparsity_accepts_no_end_and_rejects_end_below_minus_one():
    assert schedules.ConstantSparsity(0.5, end_step=-1).end_step == -1
    with pytest.raises(ValueError, match="end_step.*Received: end_step=-2"):
        schedules.ConstantSparsity(0.5, end_step=-2)


def test_base_class_names_the_subclass_that_lacks_get_config():
    class Custom(schedules.PruningSchedule):
        def __call__(self, step):
            return 0.5

    with pytest.raises(NotImplementedError, match="Custom must implement `get_config"):
        Custom(0, -1, 1).get_config()


def test_get_rejects_non_schedules_and_defaults_to_constant_half():
    assert schedules.get(None) == schedules.ConstantSparsity(0.5)
    with pytest.raises(ValueError, match="Received: schedule=0.9"):
        schedules.get(0.9)
