"""Variational dropout maths against a NumPy reference: log alpha, KL value and gradient, safety."""

import numpy as np
import pytest
import tensorflow as tf

from state_of_sparsity.layers.variational_dropout import vd_math

K1, K2, K3 = 0.63576, 1.8732, 1.48695


def np_kl(theta, log_sigma2, limit=None):
    log_alpha = log_sigma2 - np.log(theta**2 + 1e-8)
    if limit is not None:
        log_alpha = np.clip(log_alpha, -limit, limit)
    negative = K1 / (1 + np.exp(-(K2 + K3 * log_alpha))) - 0.5 * np.log1p(np.exp(-log_alpha)) - K1
    return -negative.sum()


RNG = np.random.default_rng(0)
THETA = RNG.normal(size=(4, 5))
LOG_SIGMA2 = RNG.uniform(-12, 2, size=(4, 5))


@pytest.mark.parametrize("limit", [None, 8.0, 2.0])
def test_kl_value_matches_numpy(limit):
    got = vd_math.kl_divergence(tf.constant(THETA), tf.constant(LOG_SIGMA2), limit)
    np.testing.assert_allclose(float(got), np_kl(THETA, LOG_SIGMA2, limit), rtol=1e-10)


def test_kl_gradient_matches_numpy_finite_differences():
    theta, log_sigma2 = tf.Variable(THETA), tf.Variable(LOG_SIGMA2)
    with tf.GradientTape() as tape:
        kl = vd_math.kl_divergence(theta, log_sigma2, limit=8.0)
    grad_theta, grad_ls2 = tape.gradient(kl, [theta, log_sigma2])
    h = 1e-6
    for index in [(0, 0), (1, 3), (3, 4)]:
        for grad, base, is_theta in ((grad_theta, THETA, True), (grad_ls2, LOG_SIGMA2, False)):
            plus, minus = base.copy(), base.copy()
            plus[index] += h
            minus[index] -= h
            args = ((plus, LOG_SIGMA2), (minus, LOG_SIGMA2)) if is_theta else ((THETA, plus), (THETA, minus))
            numeric = (np_kl(*args[0], 8.0) - np_kl(*args[1], 8.0)) / (2 * h)
            np.testing.assert_allclose(grad.numpy()[index], numeric, rtol=1e-5, atol=1e-8)


def test_kl_is_positive_and_vanishes_for_large_alpha():
    assert float(vd_math.kl_divergence(tf.constant([0.5]), tf.constant([-10.0]))) > 0
    # KL -> 0 as log alpha -> +inf (weight fully noisy, i.e. dropped).
    assert float(vd_math.kl_divergence(tf.constant([1.0]), tf.constant([30.0]))) < 1e-6


def test_log_alpha_and_keep_mask():
    theta, ls2 = tf.constant([1.0, 0.01, 0.0]), tf.constant([0.0, 0.0, -30.0])
    expected = np.array([0.0, 0.0, -30.0]) - np.log(np.array([1.0, 1e-4, 0.0]) + 1e-8)
    np.testing.assert_allclose(vd_math.log_alpha(theta, ls2).numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(vd_math.keep_mask(theta, ls2, 3.0).numpy(), expected < 3.0)
    np.testing.assert_allclose(vd_math.log_alpha(theta, ls2, limit=8.0).numpy(), np.clip(expected, -8, 8), rtol=1e-5, atol=1e-6)


def test_clipped_log_sigma2_bounds_variance_to_alpha_range():
    theta = tf.constant([0.5, 0.5, 0.5])
    clipped = vd_math.clipped_log_sigma2(theta, tf.constant([-30.0, -2.0, 30.0]), 8.0).numpy()
    log_theta2 = np.log(0.25 + 1e-8)
    np.testing.assert_allclose(clipped, [log_theta2 - 8, -2.0, log_theta2 + 8], rtol=1e-5)
    assert vd_math.clipped_log_sigma2(theta, tf.constant([30.0] * 3), None).numpy()[0] == 30.0


@pytest.mark.parametrize("log_sigma2", [-30.0, 0.0, 30.0])
@pytest.mark.parametrize("limit", [None, 8.0])
def test_kl_and_gradients_are_finite_at_theta_zero_and_extreme_log_sigma2(log_sigma2, limit):
    theta, ls2 = tf.Variable([0.0, 1e-30, 3.0]), tf.Variable([log_sigma2] * 3)
    with tf.GradientTape() as tape:
        kl = vd_math.kl_divergence(theta, ls2, limit)
    grads = tape.gradient(kl, [theta, ls2])
    assert np.isfinite(float(kl))
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)
