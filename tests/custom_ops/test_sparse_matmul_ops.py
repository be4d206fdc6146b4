"""Tests of the compiled sparse-matmul ops: NumPy numerics, gradients, input validation, loader."""

import numpy as np
import pytest
import tensorflow as tf

from state_of_sparsity.custom_ops import sparse_matmul_ops as ops
from state_of_sparsity.custom_ops.sparse_format import SparseWeight

RAW = ops.load_library()


def random_weight(k, n, sparsity, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(k, n)) * (rng.random((k, n)) >= sparsity)).astype(np.float32)


def nonzeros_of(weight, dense):
    """dense[k, n] at W's nonzeros, in the op's value (CSC) order."""
    cols, rows = np.nonzero(weight.T)
    return dense[rows, cols]


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.99, 1.0])
@pytest.mark.parametrize("shape", [(5, 7, 9), (37, 40, 33), (130, 24, 70)])
def test_forward_backward_update_match_numpy(shape, sparsity):
    b, k, n = shape
    w = random_weight(k, n, sparsity)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(b, k)).astype(np.float32)
    dy = rng.normal(size=(b, n)).astype(np.float32)
    weight = SparseWeight.from_dense(w)
    x64, dy64, w64 = x.astype(np.float64), dy.astype(np.float64), w.astype(np.float64)
    np.testing.assert_allclose(ops.sparse_matmul(x, weight), x64 @ w64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ops.sparse_matmul_grad_input(dy, weight), dy64 @ w64.T,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ops.sparse_matmul_grad_values(x, dy, weight),
                               nonzeros_of(w, x64.T @ dy64), rtol=1e-5, atol=1e-5)
    dx, dvalues = ops.sparse_matmul_grad(x, dy, weight)
    np.testing.assert_allclose(dx, dy64 @ w64.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dvalues, nonzeros_of(w, x64.T @ dy64), rtol=1e-5, atol=1e-5)


# Batches that give several chunks per thread, one chunk split by rows, and ragged tails.
@pytest.mark.parametrize("shape", [(300, 70, 90), (64, 300, 200), (513, 33, 17), (17, 40, 1100)])
def test_fused_gradient_matches_numpy_across_chunkings(shape):
    b, k, n = shape
    w = random_weight(k, n, 0.7, seed=8)
    rng = np.random.default_rng(9)
    x, dy = rng.normal(size=(b, k)), rng.normal(size=(b, n))
    dx, dvalues = ops.sparse_matmul_grad(x.astype(np.float32), dy.astype(np.float32),
                                         SparseWeight.from_dense(w))
    np.testing.assert_allclose(dx, dy @ w.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dvalues, nonzeros_of(w, x.T @ dy), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("sparsity", [0.0, 0.6, 1.0])
def test_bias_and_activation_in_the_op_match_numpy_with_gradients(sparsity, activation):
    b, k, n = 37, 40, 33
    w = random_weight(k, n, sparsity, seed=10)
    rng = np.random.default_rng(11)
    x, bias, dy = rng.normal(size=(b, k)), rng.normal(size=n), rng.normal(size=(b, n))
    pre = x @ w + bias
    y = np.maximum(pre, 0.0) if activation == "relu" else pre
    dpre = dy * (pre > 0) if activation == "relu" else dy
    weight = SparseWeight.from_dense(w)
    xt, bt, vt = (tf.constant(a, tf.float32) for a in (x, bias, weight.values))
    with tf.GradientTape() as tape:
        tape.watch([xt, bt, vt])
        out = ops.sparse_matmul(xt, weight._replace(values=vt), bias=bt, activation=activation)
        loss = tf.reduce_sum(out * tf.constant(dy, tf.float32))
    dx, dbias, dvalues = tape.gradient(loss, [xt, bt, vt])
    np.testing.assert_allclose(out, y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, dpre @ w.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dbias, dpre.sum(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dvalues, nonzeros_of(w, x.T @ dpre), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("shape,sparsity", [((37, 40, 33), 0.7), ((300, 70, 90), 0.7),
                                            ((64, 300, 200), 0.7), ((9, 20, 30), 1.0)])
def test_bfloat16_activations_round_the_float32_results(shape, sparsity, activation):
    # Same float32 math, only the activations' storage differs: the bfloat16 op's
    # outputs are the float32 op's outputs rounded to bfloat16, exactly.
    b, k, n = shape
    w = random_weight(k, n, sparsity, seed=12)
    weight = SparseWeight.from_dense(w)
    rng = np.random.default_rng(13)
    x = rng.normal(size=(b, k))
    x[0, 0], x[1, 1] = np.nan, np.inf  # NaN and inf outputs round like TF's cast too
    x = tf.cast(tf.constant(x, tf.float32), tf.bfloat16)
    dy = tf.cast(tf.constant(rng.normal(size=(b, n)), tf.float32), tf.bfloat16)
    bias = rng.normal(size=n).astype(np.float32)
    y = ops.sparse_matmul(x, weight, bias=bias, activation=activation)
    y32 = ops.sparse_matmul(tf.cast(x, tf.float32), weight, bias=bias, activation=activation)
    assert y.dtype == tf.bfloat16
    np.testing.assert_array_equal(tf.cast(y, tf.float32), tf.cast(tf.cast(y32, tf.bfloat16), tf.float32))
    dx, dvalues = ops.sparse_matmul_grad(x, dy, weight)
    dx32, dvalues32 = ops.sparse_matmul_grad(tf.cast(x, tf.float32), tf.cast(dy, tf.float32), weight)
    assert dx.dtype == tf.bfloat16 and dvalues.dtype == tf.float32
    np.testing.assert_array_equal(tf.cast(dx, tf.float32), tf.cast(tf.cast(dx32, tf.bfloat16), tf.float32))
    np.testing.assert_array_equal(dvalues, dvalues32)


def test_bfloat16_gradient_tape():
    w = random_weight(8, 6, 0.5, seed=14)
    weight = SparseWeight.from_dense(w)
    x = tf.cast(tf.constant(np.random.default_rng(15).normal(size=(3, 8)), tf.float32), tf.bfloat16)
    values = tf.Variable(weight.values)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = ops.sparse_matmul(x, weight._replace(values=values), bias=tf.zeros(6), activation="relu")
        loss = tf.reduce_sum(tf.cast(y, tf.float32))
    dx, dvalues = tape.gradient(loss, [x, values])
    assert dx.dtype == tf.bfloat16 and dvalues.dtype == tf.float32
    x64 = tf.cast(x, tf.float64).numpy()
    active = (x64 @ w) > 0
    np.testing.assert_allclose(tf.cast(dx, tf.float32), active @ w.T, rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(dvalues, nonzeros_of(w, x64.T @ active), rtol=1e-5, atol=1e-5)


def test_fused_op_rejects_bad_bias_and_activation():
    inputs = valid_inputs()
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"`bias` must have one entry per column of W \(4\) or none.*bias.shape=\[3\]"):
        RAW.sos_sparse_matmul_bias_activation(**inputs, bias=np.ones(3, np.float32))
    weight = SparseWeight.from_dense(random_weight(3, 4, 0.5))
    with pytest.raises(ValueError, match=r"`activation` must be one of \('linear', 'relu'\)"):
        ops.sparse_matmul(np.ones((2, 3), np.float32), weight, activation="gelu")


def test_empty_rows_and_columns_give_zero_outputs():
    w = random_weight(20, 30, 0.5)
    w[3] = 0.0
    w[:, [0, 7, 29]] = 0.0
    x = np.random.default_rng(2).normal(size=(17, 20)).astype(np.float32)
    y = ops.sparse_matmul(x, SparseWeight.from_dense(w)).numpy()
    np.testing.assert_array_equal(y[:, [0, 7, 29]], 0.0)
    dx = ops.sparse_matmul_grad_input(y, SparseWeight.from_dense(w)).numpy()
    np.testing.assert_array_equal(dx[:, 3], 0.0)


@pytest.mark.parametrize("shape", [(0, 4, 3), (3, 0, 4), (3, 4, 0)])
def test_empty_matrices(shape):
    b, k, n = shape
    weight = SparseWeight.from_dense(np.zeros((k, n), np.float32))
    y = ops.sparse_matmul(np.ones((b, k), np.float32), weight)
    assert y.shape == (b, n)
    np.testing.assert_array_equal(y, 0.0)
    assert ops.sparse_matmul_grad_input(np.ones((b, n), np.float32), weight).shape == (b, k)
    assert ops.sparse_matmul_grad_values(
        np.ones((b, k), np.float32), np.ones((b, n), np.float32), weight
    ).shape == (0,)
    dx, dvalues = ops.sparse_matmul_grad(np.ones((b, k), np.float32), np.ones((b, n), np.float32),
                                         weight)
    assert dx.shape == (b, k) and dvalues.shape == (0,)
    np.testing.assert_array_equal(dx, 0.0)


def test_leading_dimensions_are_flattened():
    w = random_weight(6, 5, 0.5)
    x = np.random.default_rng(3).normal(size=(2, 3, 6)).astype(np.float32)
    y = ops.sparse_matmul(x, SparseWeight.from_dense(w))
    assert y.shape == (2, 3, 5)
    np.testing.assert_allclose(y, x @ w, rtol=1e-5, atol=1e-5)


def test_gradient_matches_numerical_gradient():
    w = random_weight(6, 5, 0.5)
    weight = SparseWeight.from_dense(w)
    x = np.random.default_rng(4).normal(size=(4, 6)).astype(np.float64)

    def f(x, values):
        return ops.sparse_matmul(tf.cast(x, tf.float32), weight._replace(values=tf.cast(values, tf.float32)))

    theoretical, numerical = tf.test.compute_gradient(
        f, [tf.constant(x), tf.constant(weight.values, tf.float64)], delta=1e-2
    )
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, rtol=1e-3, atol=1e-3)


def test_gradient_tape_gives_masked_dense_gradients():
    w = random_weight(8, 6, 0.6)
    weight = SparseWeight.from_dense(w)
    x = tf.constant(np.random.default_rng(5).normal(size=(3, 8)), tf.float32)
    values = tf.Variable(weight.values)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        loss = tf.reduce_sum(ops.sparse_matmul(x, weight._replace(values=values)) ** 2)
    dense_w = tf.Variable(w)
    with tf.GradientTape(persistent=True) as dense_tape:
        dense_tape.watch(x)
        dense_loss = tf.reduce_sum(tf.matmul(x, dense_w) ** 2)
    np.testing.assert_allclose(tape.gradient(loss, x), dense_tape.gradient(dense_loss, x), rtol=1e-5)
    np.testing.assert_allclose(tape.gradient(loss, values),
                               nonzeros_of(w, dense_tape.gradient(dense_loss, dense_w).numpy()),
                               rtol=1e-5, atol=1e-6)


def test_works_inside_tf_function():
    w = random_weight(9, 4, 0.5)
    weight = SparseWeight.from_dense(w)
    x = np.ones((2, 9), np.float32)
    y = tf.function(lambda x: ops.sparse_matmul(x, weight))(x)
    np.testing.assert_allclose(y, x @ w, rtol=1e-5, atol=1e-6)


# Raw-op inputs (no Python checks) for a valid 3x4 weight with nonzeros
# (0,0)=1, (2,0)=2, (1,2)=3, (2,3)=4.
def valid_inputs():
    return {
        "x": np.ones((2, 3), np.float32),
        "values": np.array([1, 2, 3, 4], np.float32),
        "col_ptr": np.array([0, 2, 2, 3, 4], np.int32),
        "row_idx": np.array([0, 2, 1, 2], np.int32),
        "row_ptr": np.array([0, 1, 2, 4], np.int32),
        "col_idx": np.array([0, 2, 0, 3], np.int32),
        "perm": np.array([0, 2, 1, 3], np.int32),
    }


def test_valid_raw_inputs_multiply():
    y = RAW.sos_sparse_matmul(**valid_inputs())
    np.testing.assert_allclose(y, [[3, 0, 3, 4]] * 2)


FORWARD_ERRORS = {
    "row index too large": ({"row_idx": [0, 3, 1, 2]}, r"`row_idx` entries must be in \[0, 3\).*row_idx\[1\]=3"),
    "negative row index": ({"row_idx": [0, -1, 1, 2]}, r"row_idx\[1\]=-1"),
    "non-monotonic pointer": ({"col_ptr": [0, 3, 2, 3, 4]}, r"`col_ptr` must be non-decreasing.*col_ptr\[1\]=3 > col_ptr\[2\]=2"),
    "pointer not ending at nnz": ({"col_ptr": [0, 2, 2, 3, 3]}, r"must start at 0 and end at the number of nonzeros \(4\).*col_ptr\[4\]=3"),
    "pointer not starting at 0": ({"col_ptr": [1, 2, 2, 3, 4]}, r"col_ptr\[0\]=1"),
    "empty pointer": ({"col_ptr": np.zeros([0], np.int32)}, r"`col_ptr` must have at least one entry"),
    "values length": ({"values": [1.0, 2.0, 3.0]}, r"`row_idx` must have one entry per nonzero.*\(3\).*row_idx.shape=\[4\]"),
    "perm length": ({"perm": [0, 1, 2]}, r"`perm` must have one entry per nonzero"),
    "x features": ({"x": np.ones((2, 5), np.float32)}, r"last dimension of `x` must be 3.*x.shape=\[2,5\]"),
    "x rank": ({"x": np.ones((3,), np.float32)}, r"`x` must have rank >= 2.*x.shape=\[3\]"),
    "matrix values": ({"values": np.ones((2, 2), np.float32)}, r"`values` must be a vector.*values.shape=\[2,2\]"),
}


@pytest.mark.parametrize("case", sorted(FORWARD_ERRORS))
def test_forward_rejects_malformed_inputs(case):
    change, message = FORWARD_ERRORS[case]
    inputs = valid_inputs()
    for name, value in change.items():
        inputs[name] = np.asarray(value, inputs[name].dtype)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        RAW.sos_sparse_matmul(**inputs)


GRAD_INPUT_ERRORS = {
    "column index too large": ({"col_idx": [0, 4, 0, 3]}, r"`col_idx` entries must be in \[0, 4\).*col_idx\[1\]=4"),
    "perm out of range": ({"perm": [0, 2, 7, 3]}, r"`perm` entries must be in \[0, 4\).*perm\[2\]=7"),
    "non-monotonic pointer": ({"row_ptr": [0, 2, 1, 4]}, r"`row_ptr` must be non-decreasing"),
    "dy rank": ({"dy": np.ones((4,), np.float32)}, r"`dy` must have rank >= 2"),
}


@pytest.mark.parametrize("case", sorted(GRAD_INPUT_ERRORS))
def test_grad_input_rejects_malformed_inputs(case):
    change, message = GRAD_INPUT_ERRORS[case]
    inputs = {k: v for k, v in valid_inputs().items() if k in ("values", "row_ptr", "col_idx", "perm")}
    inputs["dy"] = np.ones((2, 4), np.float32)
    for name, value in change.items():
        inputs[name] = np.asarray(value, inputs[name].dtype)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        RAW.sos_sparse_matmul_grad_input(**inputs)


GRAD_VALUES_ERRORS = {
    "batch mismatch": ({"dy": np.ones((3, 4), np.float32)}, r"same leading \(batch\) dimensions.*x.shape=\[2,3\], dy.shape=\[3,4\]"),
    "dy features": ({"dy": np.ones((2, 5), np.float32)}, r"last dimension of `dy` must be 4"),
    "row index too large": ({"row_idx": [0, 9, 1, 2]}, r"row_idx\[1\]=9"),
    "pointer not ending at nnz": ({"col_ptr": [0, 2, 2, 3, 5]}, r"col_ptr\[4\]=5"),
}


@pytest.mark.parametrize("case", sorted(GRAD_VALUES_ERRORS))
def test_grad_values_rejects_malformed_inputs(case):
    change, message = GRAD_VALUES_ERRORS[case]
    inputs = {k: v for k, v in valid_inputs().items() if k in ("x", "col_ptr", "row_idx")}
    inputs["dy"] = np.ones((2, 4), np.float32)
    for name, value in change.items():
        inputs[name] = np.asarray(value, inputs[name].dtype)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        RAW.sos_sparse_matmul_grad_values(**inputs)


GRAD_ERRORS = {
    "column index too large": ({"col_idx": [0, 4, 0, 3]}, r"`col_idx` entries must be in \[0, 4\).*col_idx\[1\]=4"),
    "perm out of range": ({"perm": [0, 2, -1, 3]}, r"`perm` entries must be in \[0, 4\).*perm\[2\]=-1"),
    "pointer not ending at nnz": ({"row_ptr": [0, 1, 2, 3]}, r"row_ptr\[3\]=3"),
    "x features": ({"x": np.ones((2, 4), np.float32)}, r"last dimension of `x` must be 3"),
    "batch mismatch": ({"dy": np.ones((3, 4), np.float32)}, r"same leading \(batch\) dimensions"),
    "values length": ({"values": [1.0, 2.0]}, r"`col_idx` must have one entry per nonzero"),
}


@pytest.mark.parametrize("case", sorted(GRAD_ERRORS))
def test_fused_grad_rejects_malformed_inputs(case):
    change, message = GRAD_ERRORS[case]
    inputs = {k: v for k, v in valid_inputs().items()
              if k in ("x", "values", "row_ptr", "col_idx", "perm")}
    inputs["dy"] = np.ones((2, 4), np.float32)
    for name, value in change.items():
        inputs[name] = np.asarray(value, inputs[name].dtype)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        RAW.sos_sparse_matmul_grad(**inputs)


def test_python_wrapper_checks_dtype_and_features():
    weight = SparseWeight.from_dense(random_weight(3, 4, 0.5))
    with pytest.raises(TypeError, match=r"`x` must be float32.*x.dtype=float64"):
        ops.sparse_matmul(np.ones((2, 3)), weight)
    with pytest.raises(ValueError, match=r"last dimension of `x` must be 3.*x.shape=\(2, 5\)"):
        ops.sparse_matmul(np.ones((2, 5), np.float32), weight)


def test_missing_library_names_the_build_command(monkeypatch, tmp_path):
    monkeypatch.setattr(ops, "_library", None)
    monkeypatch.setattr(ops, "LIBRARY_DIR", tmp_path)
    with pytest.raises(ImportError, match=r"was not found.*pip install --no-build-isolation \."):
        ops.load_library()


_FALLBACK_CHECK = """
import numpy as np
from state_of_sparsity.custom_ops import sparse_matmul_ops as ops
from state_of_sparsity.custom_ops.sparse_format import SparseWeight
rng = np.random.default_rng(0)
w = (rng.normal(size=(70, 45)) * (rng.random((70, 45)) < 0.3)).astype(np.float32)
x, dy = rng.normal(size=(150, 70)).astype(np.float32), rng.normal(size=(150, 45)).astype(np.float32)
weight = SparseWeight.from_dense(w)
np.testing.assert_allclose(ops.sparse_matmul(x, weight), x @ w, rtol=1e-4, atol=1e-4)
np.testing.assert_allclose(ops.sparse_matmul_grad_input(dy, weight), dy @ w.T, rtol=1e-4, atol=1e-4)
cols, rows = np.nonzero(w.T)
np.testing.assert_allclose(ops.sparse_matmul_grad_values(x, dy, weight), (x.T @ dy)[rows, cols],
                           rtol=1e-4, atol=1e-4)
bias = rng.normal(size=45).astype(np.float32)
np.testing.assert_allclose(ops.sparse_matmul(x, weight, bias=bias, activation="relu"),
                           np.maximum(x @ w + bias, 0), rtol=1e-4, atol=1e-4)
dx, dvalues = ops.sparse_matmul_grad(x, dy, weight)
np.testing.assert_allclose(dx, dy @ w.T, rtol=1e-4, atol=1e-4)
np.testing.assert_allclose(dvalues, (x.T @ dy)[rows, cols], rtol=1e-4, atol=1e-4)
import tensorflow as tf
xb, dyb = tf.cast(x, tf.bfloat16), tf.cast(dy, tf.bfloat16)
yb = ops.sparse_matmul(xb, weight, bias=bias, activation="relu")
y32 = ops.sparse_matmul(tf.cast(xb, tf.float32), weight, bias=bias, activation="relu")
np.testing.assert_array_equal(tf.cast(yb, tf.float32), tf.cast(tf.cast(y32, tf.bfloat16), tf.float32))
dxb, dvb = ops.sparse_matmul_grad(xb, dyb, weight)
dx32, dv32 = ops.sparse_matmul_grad(tf.cast(xb, tf.float32), tf.cast(dyb, tf.float32), weight)
np.testing.assert_array_equal(tf.cast(dxb, tf.float32), tf.cast(tf.cast(dx32, tf.bfloat16), tf.float32))
np.testing.assert_array_equal(dvb, dv32)
"""


@pytest.mark.parametrize("isa", ["avx2", "generic"])
def test_narrower_instruction_set_builds_match_numpy(isa):
    # The library dispatches once per process, so each build runs in its own.
    import os
    import subprocess
    import sys

    env = {**os.environ, "SOS_SPARSE_MATMUL_ISA": isa, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", _FALLBACK_CHECK], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_gather_nonzeros_and_its_gradient():
    w = random_weight(5, 7, 0.6, seed=6)
    weight = SparseWeight.from_dense(w)
    kernel = tf.Variable(np.random.default_rng(7).normal(size=(5, 7)).astype(np.float32))
    scale = np.arange(1, len(weight.values) + 1, dtype=np.float32)
    with tf.GradientTape() as tape:
        values = ops.gather_nonzeros(kernel, weight)
        loss = tf.reduce_sum(values * scale)
    np.testing.assert_array_equal(values, nonzeros_of(w, kernel.numpy()))
    expected = np.zeros((5, 7), np.float32)
    cols, rows = np.nonzero(w.T)
    expected[rows, cols] = scale
    np.testing.assert_array_equal(tape.gradient(loss, kernel), expected)


def test_gather_and_scatter_reject_malformed_structure():
    inputs = valid_inputs()
    kernel = np.ones((3, 4), np.float32)
    structure = [inputs["row_ptr"], inputs["col_idx"], inputs["perm"]]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"`col_idx` entries must be in \[0, 4\).*col_idx\[1\]=9"):
        RAW.sos_gather_nonzeros(kernel, structure[0], np.array([0, 9, 0, 3], np.int32), structure[2])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`row_ptr` must have rows \+ 1 = 3"):
        RAW.sos_gather_nonzeros(np.ones((2, 4), np.float32), *structure)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"perm\[0\]=4"):
        RAW.sos_scatter_nonzeros(np.ones(4, np.float32), structure[0], structure[1],
                                 np.array([4, 0, 1, 2], np.int32), kernel)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`kernel` must be a matrix"):
        RAW.sos_gather_nonzeros(np.ones(4, np.float32), *structure)
