"""Variational dropout layers: LRT statistics, noise sharing, evaluation threshold, loss, safety."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import state_of_sparsity as sos
from state_of_sparsity.layers.variational_dropout import vd_math

SCHEDULE = sos.ConstantPenalty(0.5)


def vd(**kwargs):
    return sos.VariationalDropout(SCHEDULE, **kwargs)


def dense_with(theta, log_sigma2, **kwargs):
    layer = sos.SparseDense(theta.shape[1], use_bias=False, technique=vd(**kwargs))
    layer.build((None, theta.shape[0]))
    layer.sparse_weight.assign(theta)
    layer.log_sigma2.assign(log_sigma2)
    return layer


def test_training_output_mean_and_variance_match_the_local_reparameterisation():
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(3, 2)).astype(np.float32)
    log_sigma2 = rng.uniform(-3, 0, size=(3, 2)).astype(np.float32)
    layer = dense_with(theta, log_sigma2, clip_alpha=None)
    x = np.array([0.5, -1.0, 2.0], np.float32)
    n = 20_000
    samples = layer(np.tile(x, (n, 1)), training=True).numpy()
    mean, variance = x @ theta, (x**2) @ np.exp(log_sigma2) + 1e-8
    # Mean: 5 standard errors. Variance: the sample variance of n normals has
    # relative standard deviation sqrt(2 / (n - 1)) ~ 1%; allow 5 of them.
    np.testing.assert_array_less(np.abs(samples.mean(0) - mean), 5 * np.sqrt(variance / n))
    np.testing.assert_allclose(samples.var(0), variance, rtol=5 * np.sqrt(2 / (n - 1)))


def test_conv_training_mean_and_variance_match_the_lrt():
    layer = sos.SparseConv2D(2, 2, use_bias=False, technique=vd(clip_alpha=None))
    x = np.random.default_rng(1).normal(size=(1, 3, 3, 1)).astype(np.float32)
    layer(x)
    layer.log_sigma2.assign(np.full(layer.log_sigma2.shape, -2.0, np.float32))
    layer.log_alpha_threshold.assign(1e9)  # evaluation keeps every weight: the LRT mean
    n = 10_000
    samples = layer(np.repeat(x, n, axis=0), training=True).numpy()
    mean = layer(x, training=False).numpy()[0]  # log alpha well below 3: nothing dropped
    variance = tf.nn.conv2d(x**2, np.exp(layer.log_sigma2.numpy()), 1, "VALID").numpy()[0] + 1e-8
    np.testing.assert_array_less(np.abs(samples.mean(0) - mean), 5 * np.sqrt(variance / n))
    np.testing.assert_allclose(samples.var(0), variance, rtol=5 * np.sqrt(2 / (n - 1)))


def test_rank3_dense_and_einsum_share_noise_over_positions():
    x = np.random.default_rng(2).normal(size=(4, 6, 3)).astype(np.float32)
    for layer in (sos.SparseDense(5, technique=vd()),
                  sos.SparseEinsumDense("abc,cde->abde", (None, 2, 5), technique=vd())):
        layer(x)
        layer.log_sigma2.assign(np.full(layer.log_sigma2.shape, -1.0, np.float32))
        layer.log_alpha_threshold.assign(1e9)  # evaluation keeps every weight: the LRT mean
        out, mean = layer(x, training=True).numpy(), layer(x, training=False).numpy()
        variance = layer._variance_op(tf.constant(x), tf.exp(layer.log_sigma2.value)).numpy()
        noise = (out - mean) / np.sqrt(variance + 1e-8)
        # Same standardised noise at every position, different across examples and units.
        np.testing.assert_allclose(noise, np.repeat(noise[:, :1], 6, axis=1), atol=1e-3)
        assert np.std(noise[:, 0]) > 0.1


def test_embedding_draws_fresh_noise_per_lookup():
    layer = sos.SparseEmbedding(3, 4, technique=vd(clip_alpha=None))
    layer(np.zeros((1, 1), np.int32))
    layer.log_sigma2.assign(np.zeros((3, 4), np.float32))  # sigma = 1
    ids = np.zeros((5000, 2), np.int32)
    out = layer(ids, training=True).numpy()
    theta = layer.sparse_weight.numpy()[0]
    assert not np.allclose(out[:, 0], out[:, 1])
    np.testing.assert_allclose(out.reshape(-1, 4).mean(0), theta, atol=5 * np.sqrt(1 / 10_000))
    np.testing.assert_allclose(out.reshape(-1, 4).var(0), 1.0, rtol=0.07)


def test_evaluation_drops_weights_with_log_alpha_above_threshold_and_threshold_is_settable():
    theta = np.array([[1.0, 0.1], [0.5, 2.0]], np.float32)
    log_sigma2 = np.array([[0.0, 0.0], [-5.0, 2.0]], np.float32)
    inputs = keras.Input((2,))
    layer = sos.SparseDense(2, use_bias=False, technique=vd())
    model = keras.Model(inputs, layer(inputs))
    layer.sparse_weight.assign(theta)
    layer.log_sigma2.assign(log_sigma2)
    x = np.array([[1.0, 1.0]], np.float32)
    log_alpha = log_sigma2 - np.log(theta**2 + 1e-8)  # [[0, 4.6], [-3.6, 0.6]]
    np.testing.assert_allclose(model.predict(x, verbose=0), x @ (theta * (log_alpha < 3.0)), rtol=1e-6)
    sos.set_log_alpha_threshold(model, 0.5)  # same compiled predict function, new threshold
    np.testing.assert_allclose(model.predict(x, verbose=0), x @ (theta * (log_alpha < 0.5)), rtol=1e-6)
    assert sos.sparsity_report(model)["global"] == pytest.approx(0.5)


def test_kl_is_a_weighted_layer_loss_in_training_only():
    theta = np.random.default_rng(3).normal(size=(4, 3)).astype(np.float32)
    layer = dense_with(theta, np.full((4, 3), -6.0, np.float32))
    layer.penalty_weight.assign(0.25)
    layer(np.ones((2, 4), np.float32), training=True)
    expected = 0.25 * vd_math.kl_divergence(tf.constant(theta), tf.constant(np.full((4, 3), -6.0, np.float32)), 8.0)
    (loss,) = layer.losses
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)
    layer(np.ones((2, 4), np.float32), training=False)
    assert layer.losses == []


def test_training_clips_log_alpha():
    theta = np.array([[0.5]], np.float32)
    layer = dense_with(theta, np.array([[30.0]], np.float32), clip_alpha=2.0)
    out = layer(np.ones((20_000, 1), np.float32), training=True).numpy()
    np.testing.assert_allclose(out.var(), 0.25 * np.exp(2.0), rtol=0.05)


@pytest.mark.parametrize("log_sigma2", [-30.0, 30.0])
@pytest.mark.parametrize("clip_alpha", [None, 8.0])
def test_layer_outputs_loss_and_gradients_are_finite_at_theta_zero(log_sigma2, clip_alpha):
    layer = dense_with(np.zeros((3, 2), np.float32), np.full((3, 2), log_sigma2, np.float32),
                       clip_alpha=clip_alpha)
    layer.penalty_weight.assign(1.0)
    with tf.GradientTape() as tape:
        out = layer(np.ones((4, 3), np.float32), training=True)
        total = tf.reduce_sum(out) + tf.add_n(layer.losses)
    grads = tape.gradient(total, [v.value for v in layer.trainable_variables])
    assert np.all(np.isfinite(out.numpy())) and np.isfinite(float(total))
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)
    assert np.all(np.isfinite(layer(np.ones((4, 3), np.float32)).numpy()))


def test_mixed_precision_keeps_vd_variables_and_penalty_in_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = sos.SparseDense(3, technique=vd())
        out = layer(np.ones((2, 4), np.float32), training=True)
        assert out.dtype == "float16" and np.all(np.isfinite(out.numpy()))
        assert layer.log_sigma2.dtype == "float32" and layer.penalty_weight.dtype == "float32"
        assert layer.losses[0].dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="clip_alpha.*>= 0.0.*Received: clip_alpha=-1"):
        vd(clip_alpha=-1)
    with pytest.raises(ValueError, match="needs a penalty-weight schedule"):
        sos.SparseDense(2, technique="variational_dropout")
    with pytest.raises(ValueError, match="no variational dropout layer"):
        sos.set_log_alpha_threshold(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]), 1.0)


def test_clip_alpha_zero_disables_clipping_in_training_and_in_the_kl():
    technique = vd(clip_alpha=0)
    assert technique.clip_alpha is None
    theta, ls2 = np.array([[0.5]], np.float32), np.array([[20.0]], np.float32)
    layer = dense_with(theta, ls2, clip_alpha=0)
    layer.penalty_weight.assign(1.0)
    layer(np.ones((1, 1), np.float32), training=True)
    expected = vd_math.kl_divergence(tf.constant(theta), tf.constant(ls2), None)
    np.testing.assert_allclose(float(layer.losses[0]), float(expected), rtol=1e-6)
