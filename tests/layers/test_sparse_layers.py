"""Tests of the Sparse* layers: NumPy numerics, gradients, optimizers, serialization, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from state_of_sparsity import layers as sparse
from state_of_sparsity.layers import CubicEMAPenalty
from state_of_sparsity.layers import L0Regularization
from state_of_sparsity.layers import LinearPenalty
from state_of_sparsity.layers import VariationalDropout
from state_of_sparsity.layers.pruning import ConstantSparsity
from state_of_sparsity.layers.pruning import MagnitudePruning
from state_of_sparsity.layers.pruning import PolynomialDecay
from state_of_sparsity.layers.pruning import RandomPruning

RNG = np.random.default_rng(0)


def random_mask(shape, keep=0.4, seed=0):
    return (np.random.default_rng(seed).random(shape) < keep).astype(np.float32)


def np_conv2d_valid(x, w):
    """Naive NHWC 'valid' convolution, stride 1."""
    n, h, wd, _ = x.shape
    kh, kw, _, co = w.shape
    out = np.zeros((n, h - kh + 1, wd - kw + 1, co), np.float32)
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            patch = x[:, i : i + kh, j : j + kw, :]
            out[:, i, j, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
    return out


def np_depthwise_valid(x, w):
    """Naive NHWC depthwise 'valid' convolution, depth_multiplier 1."""
    kh, kw = w.shape[:2]
    out = np.zeros((x.shape[0], x.shape[1] - kh + 1, x.shape[2] - kw + 1, x.shape[3]), np.float32)
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j, :] = np.einsum("nhwc,hwc->nc", x[:, i : i + kh, j : j + kw, :], w[..., 0])
    return out


# (layer factory, input, NumPy reference of the op on (input, effective weight, bias)).
CASES = {
    "dense": (
        lambda: sparse.SparseDense(5),
        RNG.normal(size=(3, 4)).astype(np.float32),
        lambda x, w, b: x @ w + b,
    ),
    "einsum_dense": (
        lambda: sparse.SparseEinsumDense("abc,cde->abde", output_shape=(None, 2, 3), bias_axes="de"),
        RNG.normal(size=(2, 3, 4)).astype(np.float32),
        lambda x, w, b: np.einsum("abc,cde->abde", x, w) + b,
    ),
    "conv2d": (
        lambda: sparse.SparseConv2D(3, 2),
        RNG.normal(size=(2, 5, 5, 2)).astype(np.float32),
        lambda x, w, b: np_conv2d_valid(x, w) + b,
    ),
    "depthwise_conv2d": (
        lambda: sparse.SparseDepthwiseConv2D(3),
        RNG.normal(size=(2, 5, 5, 3)).astype(np.float32),
        lambda x, w, b: np_depthwise_valid(x, w) + b,
    ),
    "embedding": (
        lambda: sparse.SparseEmbedding(7, 4),
        np.array([[0, 3, 6], [2, 2, 5]], np.int32),
        lambda x, w, b: w[x],
    ),
}


def built_with_mask(name):
    factory, x, reference = CASES[name]
    layer = factory()
    layer(x)
    # Random non-zero biases so the epilogue is checked too.
    if getattr(layer, "bias", None) is not None:
        layer.bias.assign(RNG.normal(size=layer.bias.shape).astype(np.float32))
    layer.mask.assign(random_mask(layer.mask.shape))
    return layer, x, reference


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_matches_numpy_with_masked_weight(name):
    layer, x, reference = built_with_mask(name)
    w = layer.sparse_weight.numpy() * layer.mask.numpy()
    b = layer.bias.numpy() if getattr(layer, "bias", None) is not None else 0.0
    np.testing.assert_allclose(layer(x).numpy(), reference(x, w, b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_of_pruned_weights_is_zero_and_others_match_dense(name):
    layer, x, _ = built_with_mask(name)
    dense_cls = sparse.keras_base_class(type(layer))
    dense = dense_cls.from_config({k: v for k, v in layer.get_config().items() if k != "technique"})
    dense(x)
    dense.set_weights([layer.sparse_weight.numpy() * layer.mask.numpy()]
                      + [v.numpy() for v in dense.weights[1:]])
    if getattr(layer, "bias", None) is not None:
        dense.bias.assign(layer.bias.numpy())
    with tf.GradientTape(persistent=True) as tape:
        sparse_loss = tf.reduce_sum(tf.square(layer(x)))
        dense_loss = tf.reduce_sum(tf.square(dense(x)))
    sparse_grad = tf.convert_to_tensor(tape.gradient(sparse_loss, layer.sparse_weight.value))
    dense_grad = tf.convert_to_tensor(tape.gradient(dense_loss, dense.weights[0].value))
    mask = layer.mask.numpy()
    np.testing.assert_allclose(sparse_grad.numpy(), dense_grad.numpy() * mask, rtol=1e-5, atol=1e-5)
    assert np.all(sparse_grad.numpy()[mask == 0] == 0)


def test_dense_gradient_matches_numpy():
    layer, x, _ = built_with_mask("dense")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x))
    grad = tape.gradient(loss, layer.sparse_weight.value)
    # d sum(x W m + b) / dW = x^T 1 * m
    expected = x.T @ np.ones((x.shape[0], 5), np.float32) * layer.mask.numpy()
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize(
    "optimizer",
    [
        lambda: keras.optimizers.SGD(0.1, momentum=0.9),
        lambda: keras.optimizers.Adam(0.05),
        lambda: keras.optimizers.AdamW(0.05, weight_decay=0.1),
        lambda: keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    ],
)
def test_masked_weights_stay_exactly_zero_through_optimizers(optimizer):
    inputs = keras.Input((6,))
    layer = sparse.SparseDense(4, kernel_regularizer=keras.regularizers.L2(0.1))
    model = keras.Model(inputs, layer(inputs))
    mask = random_mask((6, 4))
    model.compile(optimizer(), "mse")
    x, y = RNG.normal(size=(32, 6)), RNG.normal(size=(32, 4))
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # dense steps build up momentum first
    layer.mask.assign(mask)
    model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    effective = layer.sparse_weight.numpy() * layer.mask.numpy()
    # The raw pruned weights keep moving (momentum, decay) but never reach the output.
    assert not np.all(layer.sparse_weight.numpy()[mask == 0] == 0.0)
    np.testing.assert_array_equal(layer.mask.numpy(), mask)  # not trainable
    # The outputs are those of the zeroed kernel: no leakage of raw pruned values.
    np.testing.assert_allclose(
        model.predict(x, verbose=0), x @ effective + layer.bias.numpy(), rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_variables_are_named_like_the_original(name):
    layer, _, _ = built_with_mask(name)
    names = {v.name for v in layer.weights}
    assert {"mask", "threshold", "last_mask_update_step"} <= names
    assert not layer.mask.trainable and not layer.threshold.trainable
    assert layer.mask.shape == layer.sparse_weight.shape


TECHNIQUES = {
    "random": RandomPruning(ConstantSparsity(0.3, begin_step=1, end_step=9, frequency=2), seed=3),
    "magnitude_global": MagnitudePruning(PolynomialDecay(0.9, 5, 50, 5, 0.1, 2.0), granularity="global"),
    "variational_dropout": VariationalDropout(CubicEMAPenalty(1e-3, 2, 20), threshold=1.5, clip_alpha=4.0),
    "l0_regularization": L0Regularization(LinearPenalty(1e-3, 0, 10), beta=0.5, log_alpha_mean=1.0),
}
# Technique state set to random values before saving, so a lost variable shows.
RANDOM_STATE = {"mask": lambda s: random_mask(s, seed=5), "threshold": lambda s: np.float32(0.25),
                "log_sigma2": lambda s: RNG.uniform(-6, 2, s).astype(np.float32),
                "log_alpha": lambda s: RNG.uniform(-4, 4, s).astype(np.float32),
                "penalty_weight": lambda s: np.float32(0.125), "log_alpha_threshold": lambda s: np.float32(2.0)}


@pytest.mark.parametrize("technique", sorted(TECHNIQUES))
@pytest.mark.parametrize("name", sorted(CASES))
def test_keras_file_round_trip_gives_identical_predictions(name, technique, tmp_path):
    factory, x, _ = CASES[name]
    layer = factory()
    layer.technique = TECHNIQUES[technique]
    inputs = keras.Input(x.shape[1:], dtype=x.dtype)
    model = keras.Model(inputs, layer(inputs))
    for variable in layer.weights:
        if variable.name in RANDOM_STATE:
            variable.assign(RANDOM_STATE[variable.name](variable.shape))
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    restored_layer = restored.layers[-1]
    assert type(restored_layer) is type(layer)
    assert restored_layer.technique.get_config() == layer.technique.get_config()
    assert restored_layer.technique.schedule == layer.technique.schedule
    for saved, loaded in zip(layer.weights, restored_layer.weights, strict=True):
        np.testing.assert_array_equal(loaded.numpy(), saved.numpy(), err_msg=saved.name)
    np.testing.assert_array_equal(restored(x).numpy(), model(x).numpy())


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_round_trip(name):
    layer = CASES[name][0]()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config


def test_weights_file_stores_variables_by_name(tmp_path):
    import h5py

    inputs = keras.Input((3,))
    model = keras.Model(inputs, sparse.SparseDense(2, name="fc")(inputs))
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    with h5py.File(path, "r") as f:
        assert set(f["layers/sparse_dense/vars"].keys()) == {
            "kernel", "bias", "mask", "threshold", "last_mask_update_step"}


def test_loading_weights_of_another_technique_names_the_missing_variable(tmp_path):
    inputs = keras.Input((3,))
    plain = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    path = tmp_path / "plain.weights.h5"
    plain.save_weights(path)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, sparse.SparseDense(2)(inputs))
    with pytest.raises(ValueError, match="has no variable 'kernel'"):
        model.load_weights(path)


def test_unknown_technique_is_rejected_with_the_valid_names():
    with pytest.raises(ValueError, match=r"Expected one of \[.*'magnitude_pruning'.*Received: technique='prune'"):
        sparse.SparseDense(3, technique="prune")


def test_mixed_precision_keeps_mask_in_float32_and_computes_in_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = sparse.SparseDense(3)
        y = layer(np.ones((2, 4), np.float32))
        assert y.dtype == "float16"
        assert layer.mask.dtype == "float32" and layer.sparse_weight.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_default_technique_is_magnitude_pruning():
    assert isinstance(sparse.SparseConv2D(2, 3).technique, MagnitudePruning)
