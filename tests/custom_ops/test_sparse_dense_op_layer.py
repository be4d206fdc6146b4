"""Tests of OpSparseDense: same training as masked SparseDense, pattern rebuilds, serialization, errors."""

import keras
import numpy as np
import pytest

from state_of_sparsity import ConstantPenalty
from state_of_sparsity import SparseDense
from state_of_sparsity import VariationalDropout
from state_of_sparsity.custom_ops import OpSparseDense
from state_of_sparsity.layers.pruning import ConstantSparsity
from state_of_sparsity.layers.pruning import MagnitudePruning

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 20)).astype(np.float32)
Y = RNG.normal(size=(64, 3)).astype(np.float32)
MASK = (RNG.random((20, 16)) < 0.2).astype(np.float32)


def make_model(layer_cls, mask=MASK, **kwargs):
    keras.utils.set_random_seed(1)
    # A schedule that never fires: the mask stays the one assigned below.
    technique = MagnitudePruning(ConstantSparsity(0.8, begin_step=10**6, frequency=1))
    model = keras.Sequential([
        keras.Input((20,)),
        layer_cls(16, activation="relu", technique=technique, name="hidden", **kwargs),
        keras.layers.Dense(3),
    ])
    model.layers[0].mask.assign(mask)
    model.compile(keras.optimizers.SGD(0.05), "mse")
    return model


def masked_dense_reference(model, x):
    hidden = model.layers[0]
    h = np.maximum(x @ (hidden.kernel.numpy() * hidden.mask.numpy()) + hidden.bias.numpy(), 0)
    return h @ model.layers[1].kernel.numpy() + model.layers[1].bias.numpy()


def test_trains_to_the_same_loss_as_masked_sparse_dense():
    op_model, dense_model = make_model(OpSparseDense), make_model(SparseDense)
    op_loss = op_model.fit(X, Y, epochs=4, batch_size=16, verbose=0).history["loss"]
    dense_loss = dense_model.fit(X, Y, epochs=4, batch_size=16, verbose=0).history["loss"]
    np.testing.assert_allclose(op_loss, dense_loss, rtol=1e-4)
    assert op_loss[-1] < op_loss[0]
    np.testing.assert_allclose(op_model.predict(X, verbose=0), dense_model.predict(X, verbose=0),
                               rtol=1e-4, atol=1e-5)
    # Pruned weights get no update: they keep their initial values under the mask.
    hidden = op_model.layers[0]
    np.testing.assert_allclose(hidden.kernel.numpy() * (1 - MASK),
                               dense_model.layers[0].kernel.numpy() * (1 - MASK))


def test_pattern_is_rebuilt_when_the_mask_changes():
    model = make_model(OpSparseDense)
    np.testing.assert_allclose(model(X), masked_dense_reference(model, X), rtol=1e-5, atol=1e-5)
    model.layers[0].mask.assign((RNG.random((20, 16)) < 0.1).astype(np.float32))
    np.testing.assert_allclose(model(X), masked_dense_reference(model, X), rtol=1e-5, atol=1e-5)
    predict = model.predict(X, verbose=0)  # traced graph, same check
    np.testing.assert_allclose(predict, masked_dense_reference(model, X), rtol=1e-5, atol=1e-5)


def test_dense_mask_uses_the_dense_path_with_the_same_result():
    model = make_model(OpSparseDense, mask=np.ones((20, 16), np.float32), max_density=0.5)
    np.testing.assert_allclose(model(X), masked_dense_reference(model, X), rtol=1e-5, atol=1e-5)


def test_keras_file_round_trip(tmp_path):
    model = make_model(OpSparseDense, max_density=0.3)
    model.fit(X, Y, epochs=1, batch_size=32, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.layers[0], OpSparseDense)
    assert loaded.layers[0].max_density == 0.3
    np.testing.assert_allclose(loaded.predict(X, verbose=0), model.predict(X, verbose=0), rtol=1e-6)


def test_rejects_non_pruning_technique_and_bad_density():
    technique = VariationalDropout(ConstantPenalty(1e-3))
    with pytest.raises(ValueError, match=r"needs a pruning technique.*technique='variational_dropout'"):
        OpSparseDense(4, technique=technique)
    with pytest.raises(ValueError, match=r"`max_density` must be in \[0, 1\].*max_density=2"):
        OpSparseDense(4, max_density=2)


def test_falls_back_to_masked_dense_with_one_warning(monkeypatch):
    from state_of_sparsity.custom_ops import fallback

    monkeypatch.setattr(fallback, "op_unavailable_reason", lambda: "a GPU is visible (test)")
    monkeypatch.setattr(fallback, "_warned", set())
    model = make_model(OpSparseDense)
    with pytest.warns(UserWarning, match="a GPU is visible.*masked dense math"):
        y = model(X)
    np.testing.assert_allclose(y, masked_dense_reference(model, X), rtol=1e-5, atol=1e-5)


def test_mixed_bfloat16_runs_the_op_on_bfloat16_activations():
    import tensorflow as tf

    float_model = make_model(OpSparseDense)
    mixed_model = make_model(OpSparseDense, dtype="mixed_bfloat16")
    mixed_model.set_weights(float_model.get_weights())
    hidden = mixed_model.layers[0]
    graph = tf.function(hidden).get_concrete_function(tf.TensorSpec([None, 20])).graph
    # The op sits in a tf.cond branch (dense path above max_density): search the functions.
    nodes = [node for function in graph.as_graph_def().library.function
             for node in function.node_def if node.op == "SosSparseMatmulBiasActivation"]
    assert nodes and all(n.attr["T"].type == tf.bfloat16.as_datatype_enum for n in nodes)
    x = X[:8]
    # bfloat16 keeps 8 bits of mantissa: outputs agree to about 1%.
    np.testing.assert_allclose(hidden(x).numpy().astype(np.float32), float_model.layers[0](x),
                               rtol=3e-2, atol=3e-2)
    loss = mixed_model.train_on_batch(X, Y)
    assert np.isfinite(loss)
