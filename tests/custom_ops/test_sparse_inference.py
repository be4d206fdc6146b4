"""Tests of to_sparse_inference and SparseInferenceDense: same predictions, selection rules, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import state_of_sparsity as sos
from state_of_sparsity.custom_ops import SparseInferenceDense
from state_of_sparsity.custom_ops import to_sparse_inference

X = np.random.default_rng(0).normal(size=(40, 16)).astype(np.float32)


def pruned_mlp(sparsity=0.9):
    keras.utils.set_random_seed(2)
    model = keras.Sequential([
        keras.Input((16,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(24, activation="tanh"),
        keras.layers.Dense(5),
    ])
    schedule = sos.ConstantSparsity(sparsity, begin_step=0, frequency=1)
    pruned = sos.sparsify(model, "magnitude_pruning", schedule)
    pruned.compile("sgd", "mse")
    pruned.fit(X, np.zeros((40, 5), np.float32), epochs=1, batch_size=20, verbose=0,
               callbacks=[sos.PruningCallback()])
    return pruned


def test_gives_the_pruned_model_predictions():
    pruned = pruned_mlp()
    converted = to_sparse_inference(pruned)
    assert [type(layer) for layer in converted.layers] == [SparseInferenceDense] * 3
    np.testing.assert_allclose(converted.predict(X, verbose=0), pruned.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-5)
    assert converted.layers[0].nnz == round(16 * 32 * 0.1)


def test_bias_and_relu_run_inside_the_op():
    converted = to_sparse_inference(pruned_mlp())
    graph = tf.function(converted).get_concrete_function(tf.TensorSpec([None, 16])).graph
    op_types = [op.type for op in graph.get_operations()]
    # relu and linear layers: bias and activation fused; tanh is applied after the op.
    assert op_types.count("SosSparseMatmulBiasActivation") == 2
    assert op_types.count("SosSparseMatmul") == 1
    assert "Relu" not in op_types and "Tanh" in op_types


def test_dense_layers_below_min_sparsity_stay_dense():
    pruned = pruned_mlp(sparsity=0.3)
    converted = to_sparse_inference(pruned, min_sparsity=0.5)
    assert [type(layer) for layer in converted.layers] == [keras.layers.Dense] * 3
    np.testing.assert_allclose(converted.predict(X, verbose=0), pruned.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-5)


def test_converts_last_axis_einsum_dense_only():
    inputs = keras.Input((3, 16))
    matmul = keras.layers.EinsumDense("abc,cd->abd", output_shape=(3, 8), bias_axes="d")
    heads = keras.layers.EinsumDense("abc,cde->abde", output_shape=(3, 2, 4))
    outputs = heads(matmul(inputs))
    model = keras.Model(inputs, outputs)
    for layer in (matmul, heads):
        kernel = layer.kernel.numpy()
        layer.kernel.assign(kernel * (np.random.default_rng(3).random(kernel.shape) < 0.2))
    matmul.bias.assign(np.arange(8, dtype=np.float32))
    converted = to_sparse_inference(model)
    kinds = [type(layer) for layer in converted.layers[1:]]
    assert kinds == [SparseInferenceDense, keras.layers.EinsumDense]
    x = np.random.default_rng(4).normal(size=(5, 3, 16)).astype(np.float32)
    np.testing.assert_allclose(converted.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)


def test_keras_file_round_trip(tmp_path):
    converted = to_sparse_inference(pruned_mlp())
    path = tmp_path / "sparse.keras"
    converted.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.layers[0], SparseInferenceDense)
    np.testing.assert_allclose(loaded.predict(X, verbose=0), converted.predict(X, verbose=0))


def test_dense_fallback_matches(monkeypatch):
    from state_of_sparsity.custom_ops import fallback

    converted = to_sparse_inference(pruned_mlp())
    expected = converted.predict(X, verbose=0)
    monkeypatch.setattr(fallback, "op_unavailable_reason", lambda: "the backend is 'jax' (test)")
    monkeypatch.setattr(fallback, "_warned", set())
    with pytest.warns(UserWarning, match="masked dense math"):
        np.testing.assert_allclose(converted(X), expected, rtol=1e-5, atol=1e-5)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"`min_sparsity` must be in \[0, 1\].*min_sparsity=1.5"):
        to_sparse_inference(pruned_mlp(), min_sparsity=1.5)
    with pytest.raises(ValueError, match=r"`nnz` must be an integer >= 0.*nnz=-1"):
        SparseInferenceDense(4, nnz=-1)


def test_mixed_bfloat16_layers_run_the_op_on_bfloat16():
    pruned = pruned_mlp()
    layer = to_sparse_inference(pruned).layers[0]
    mixed = SparseInferenceDense(units=32, nnz=layer.nnz, activation="relu", dtype="mixed_bfloat16")
    mixed.build((None, 16))
    mixed.set_weights(layer.get_weights())
    graph = tf.function(mixed).get_concrete_function(tf.TensorSpec([None, 16])).graph
    fused = [op for op in graph.get_operations() if op.type == "SosSparseMatmulBiasActivation"]
    assert len(fused) == 1 and fused[0].get_attr("T") == tf.bfloat16
    y = mixed(X)
    assert y.dtype == "bfloat16"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(y).astype(np.float32), layer(X),
                               rtol=3e-2, atol=3e-2)
