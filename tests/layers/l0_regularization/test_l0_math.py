"""L0 maths against closed forms: penalty, deterministic gate, hard-concrete sample distribution."""

import math

import numpy as np
import pytest
import tensorflow as tf

from state_of_sparsity.layers.l0_regularization import l0_math

BETA, GAMMA, ZETA = 2 / 3, -0.1, 1.1


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_l0_penalty_matches_numpy():
    log_alpha = np.random.default_rng(0).normal(size=(3, 7)) * 3
    expected = sigmoid(log_alpha - BETA * np.log(-GAMMA / ZETA)).sum()
    np.testing.assert_allclose(float(l0_math.l0_penalty(tf.constant(log_alpha))), expected, rtol=1e-10)


def test_deterministic_gate_matches_numpy_and_is_zero_below_ln_one_eleventh():
    log_alpha = np.array([-5.0, math.log(1 / 11) - 1e-4, math.log(1 / 11) + 1e-3, 0.0, 2.197, 5.0])
    expected = np.clip(sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA, 0, 1)
    got = l0_math.deterministic_gate(tf.constant(log_alpha)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert got[0] == 0 and got[1] == 0 and got[2] > 0
    assert got[-1] == 1.0


def test_sample_gate_matches_numpy_formula():
    u = np.array([0.0, 0.1, 0.5, 0.9, 0.999999])
    log_alpha = np.array([0.0, -1.0, 2.0, 0.5, -3.0])
    s = sigmoid((np.log(u + 1e-8) - np.log(1 - u) + log_alpha) / BETA)
    expected = np.clip(s * (ZETA - GAMMA) + GAMMA, 0, 1)
    np.testing.assert_allclose(l0_math.sample_gate(tf.constant(log_alpha), tf.constant(u)).numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("log_alpha", [-2.0, 0.0, 2.197])
def test_hard_concrete_fractions_of_exact_zeros_and_ones_match_closed_form(log_alpha):
    n = 200_000
    u = tf.random.stateless_uniform([n], seed=[1, 2], dtype=tf.float64)
    gates = l0_math.sample_gate(tf.fill([n], tf.constant(log_alpha, tf.float64)), u).numpy()
    # z = 0 iff u <= sigmoid(beta * log(-gamma / zeta) - log_alpha); z = 1 iff u >= sigmoid(beta * log((1 - gamma) / (zeta - 1)) - log_alpha).
    p_zero = sigmoid(BETA * np.log(-GAMMA / ZETA) - log_alpha)
    p_one = 1 - sigmoid(BETA * np.log((1 - GAMMA) / (ZETA - 1)) - log_alpha)
    for observed, expected in ((np.mean(gates == 0), p_zero), (np.mean(gates == 1), p_one)):
        tolerance = 5 * math.sqrt(expected * (1 - expected) / n)  # 5 standard errors
        assert abs(observed - expected) < tolerance
    # The penalty is the probability of a non-zero gate.
    np.testing.assert_allclose(float(l0_math.l0_penalty(tf.constant([log_alpha], tf.float64))), 1 - p_zero, rtol=1e-12)


@pytest.mark.parametrize("log_alpha", [-20.0, 20.0])
def test_gates_penalty_and_gradients_are_finite_at_extreme_log_alpha(log_alpha):
    variable = tf.Variable([log_alpha] * 4)
    u = tf.constant([0.0, 1e-7, 0.5, 1 - 6e-8])
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(l0_math.sample_gate(variable, u)) + l0_math.l0_penalty(variable)
    grad = tape.gradient(total, variable)
    assert np.isfinite(float(total)) and np.all(np.isfinite(grad.numpy()))
    assert np.all(np.isfinite(l0_math.deterministic_gate(variable).numpy()))
