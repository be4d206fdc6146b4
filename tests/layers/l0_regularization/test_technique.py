"""L0 layers: shared training gates, per-lookup gates, deterministic evaluation, penalty loss, safety."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import state_of_sparsity as sos
from state_of_sparsity.layers.l0_regularization import l0_math


def l0(**kwargs):
    return sos.L0Regularization(sos.ConstantPenalty(0.1), **kwargs)


def test_log_alpha_initialiser_is_normal_2197_001():
    layer = sos.SparseDense(200, technique=l0())
    layer.build((None, 100))
    values = layer.log_alpha.numpy()
    assert values.mean() == pytest.approx(2.197, abs=0.001)
    assert values.std() == pytest.approx(0.01, rel=0.05)


def test_training_gate_is_sampled_per_weight_and_shared_by_the_batch():
    layer = sos.SparseDense(4, use_bias=False, technique=l0())
    x = np.ones((8, 3), np.float32)
    layer(x)
    layer.log_alpha.assign(np.zeros((3, 4), np.float32))
    first, second = layer(x, training=True).numpy(), layer(x, training=True).numpy()
    np.testing.assert_array_equal(first, np.repeat(first[:1], 8, axis=0))  # one gate set per step
    assert not np.allclose(first, second)  # fresh gates every step


def test_embedding_samples_a_gate_per_lookup():
    layer = sos.SparseEmbedding(2, 3, technique=l0())
    layer(np.zeros((1, 1), np.int32))
    layer.log_alpha.assign(np.zeros((2, 3), np.float32))
    out = layer(np.zeros((4000, 1), np.int32), training=True).numpy()[:, 0, :]
    gates = out / layer.sparse_weight.numpy()[0]
    p_zero = 1 / (1 + np.exp(-(2 / 3) * np.log(0.1 / 1.1)))
    assert np.mean(gates == 0) == pytest.approx(p_zero, abs=5 * np.sqrt(p_zero * (1 - p_zero) / 12_000))


def test_evaluation_uses_the_deterministic_gate_and_strip_bakes_it_in():
    log_alpha = np.array([[-5.0, 0.0], [1.0, 3.0]], np.float32)
    inputs = keras.Input((2,))
    layer = sos.SparseDense(2, use_bias=False, technique=l0())
    model = keras.Model(inputs, layer(inputs))
    layer.log_alpha.assign(log_alpha)
    theta = layer.sparse_weight.numpy()
    gate = np.clip(1 / (1 + np.exp(-log_alpha)) * 1.2 - 0.1, 0, 1)
    x = np.array([[1.0, -2.0]], np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), x @ (theta * gate), rtol=1e-6)
    np.testing.assert_allclose(sos.strip(model).predict(x, verbose=0), x @ (theta * gate), rtol=1e-6)
    assert sos.sparsity_report(model)["global"] == 0.25


def test_penalty_is_a_weighted_layer_loss_in_training_only():
    layer = sos.SparseDense(3, technique=l0())
    layer(np.ones((1, 2), np.float32))
    layer.penalty_weight.assign(0.3)
    layer(np.ones((1, 2), np.float32), training=True)
    (loss,) = layer.losses
    np.testing.assert_allclose(float(loss), 0.3 * float(l0_math.l0_penalty(layer.log_alpha.value)), rtol=1e-6)
    layer(np.ones((1, 2), np.float32))
    assert layer.losses == []


@pytest.mark.parametrize("log_alpha", [-20.0, 20.0])
def test_outputs_and_gradients_are_finite_at_extreme_log_alpha(log_alpha):
    layer = sos.SparseConv2D(2, 2, technique=l0())
    x = np.ones((1, 3, 3, 2), np.float32)
    layer(x)
    layer.log_alpha.assign(np.full(layer.log_alpha.shape, log_alpha, np.float32))
    layer.sparse_weight.assign(np.zeros(layer.sparse_weight.shape, np.float32))
    layer.penalty_weight.assign(1.0)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(layer(x, training=True)) + tf.add_n(layer.losses)
    grads = tape.gradient(total, [v.value for v in layer.trainable_variables])
    assert np.isfinite(float(total)) and all(np.all(np.isfinite(g.numpy())) for g in grads)


def test_mixed_precision_keeps_log_alpha_and_penalty_in_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = sos.SparseDense(3, technique=l0())
        out = layer(np.ones((2, 4), np.float32), training=True)
        assert out.dtype == "float16" and layer.log_alpha.dtype == "float32"
        assert layer.losses[0].dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(beta=0.0), "beta.*> 0.*Received: beta=0.0"),
        (dict(gamma=0.1), "gamma < 0 and zeta > 1.*Received: gamma=0.1, zeta=1.1"),
        (dict(zeta=0.9), "Received: gamma=-0.1, zeta=0.9"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        l0(**kwargs)
