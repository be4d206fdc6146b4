"""Loads the compiled sparse-weight matmul ops, wraps them and registers their gradient."""

import pathlib

import keras
import tensorflow as tf

from state_of_sparsity.custom_ops import sparse_format

BUILD_COMMAND = (
    'pip install "tensorflow>=2.21,<2.22" && pip install --no-build-isolation .'
    "  (or, in a source checkout, `python setup.py build_ext --inplace`)"
)
# setuptools names the library with the interpreter's extension suffix.
LIBRARY_DIR = pathlib.Path(__file__).resolve().parent
LIBRARY_GLOB = "_sparse_matmul_ops*.so"

_library = None


def load_library():
    """The op library, loaded once; ImportError naming the build command if it is missing."""
    global _library
    if _library is None:
        candidates = sorted(LIBRARY_DIR.glob(LIBRARY_GLOB))
        if not candidates:
            raise ImportError(
                f"The sparse-matmul op library ({LIBRARY_GLOB}) was not found in "
                f"{LIBRARY_DIR}: it is compiled when the package is installed. Build it "
                f"with: {BUILD_COMMAND}"
            )
        _library = tf.load_op_library(str(candidates[-1]))
    return _library


ACTIVATIONS = ("linear", "relu")


def sparse_matmul(x, weight, bias=None, activation=None):
    """`activation(x @ W + bias)` for dense `x` [..., K] and a `SparseWeight` W [K, N].

    Differentiable in x, the values and the bias. `x` (and the result) may be
    float32 or bfloat16; W's values and the bias are float32 and the math
    runs in float32 either way (bfloat16 halves the activation traffic). With a bias or "relu" the
    bias add and the activation run inside the op on each output tile (one
    op, no extra passes over the output), like TF's fused dense matmul.

    Example:
    ```python
    w = SparseWeight.from_dense(np.array([[0., 2.], [3., 0.]], "float32"))
    sparse_matmul(tf.ones([1, 2]), w)  # [[3., 2.]]
    sparse_matmul(tf.ones([1, 2]), w, bias=[-4., 0.], activation="relu")  # [[0., 2.]]
    ```
    """
    x = _activations("x", x)
    _check_features("x", x, weight.shape[0], "rows of the weight")
    activation = "linear" if activation is None else activation
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"`activation` must be one of {ACTIVATIONS} or None (apply others after the "
            f"op). Received: activation={activation!r}"
        )
    arrays = (weight.values, weight.col_ptr, weight.row_idx, weight.row_ptr, weight.col_idx,
              weight.perm)
    if bias is None and activation == "linear":
        return load_library().sos_sparse_matmul(x, *arrays)
    bias = tf.zeros([0], tf.float32) if bias is None else _float32("bias", bias)
    return load_library().sos_sparse_matmul_bias_activation(x, *arrays, bias,
                                                            activation=activation)


def sparse_matmul_grad_input(dy, weight):
    """`dy @ Wᵀ` [..., K] for `dy` [..., N]: the backward pass to the input."""
    dy = _float32("dy", dy)
    _check_features("dy", dy, weight.shape[1], "columns of the weight")
    return load_library().sos_sparse_matmul_grad_input(
        dy, weight.values, weight.row_ptr, weight.col_idx, weight.perm
    )


def sparse_matmul_grad_values(x, dy, weight):
    """`(xᵀ @ dy)` at W's nonzeros, in `weight.values` order: the update pass (SDDMM)."""
    return load_library().sos_sparse_matmul_grad_values(
        _float32("x", x), _float32("dy", dy), weight.col_ptr, weight.row_idx
    )


def sparse_matmul_grad(x, dy, weight):
    """Both gradients of `sparse_matmul(x, W)` for upstream `dy`: (dx [..., K], dvalues [nnz]).

    One sweep over dy: each dy row W's nonzeros touch serves both `dy·Wᵀ` and
    the dot product of the update, so this costs about one pass instead of the
    two that `sparse_matmul_grad_input` + `sparse_matmul_grad_values` take. The
    registered gradient of `sparse_matmul` uses it.
    """
    x, dy = _activations("x", x), _activations("dy", dy)
    if x.dtype != dy.dtype:
        raise TypeError(
            f"`x` and `dy` must have the same dtype. Received: x.dtype={x.dtype.name}, "
            f"dy.dtype={dy.dtype.name}"
        )
    _check_features("dy", dy, weight.shape[1], "columns of the weight")
    return load_library().sos_sparse_matmul_grad(
        x, dy, weight.values, weight.row_ptr, weight.col_idx, weight.perm
    )


def gather_nonzeros(kernel, weight):
    """The values of `weight` (CSC order) read from a dense `kernel` [K, N]; differentiable in `kernel`.

    Only `weight`'s structure is used. `tf.gather` on the flattened kernel does
    the same, but it and its IndexedSlices gradient take longer than the
    sparse matmul they feed; this op walks the kernel row by row.
    """
    return load_library().sos_gather_nonzeros(
        _float32("kernel", kernel), weight.row_ptr, weight.col_idx, weight.perm
    )


def _gather_nonzeros_grad(op, dvalues):
    kernel, row_ptr, col_idx, perm = op.inputs
    dkernel = load_library().sos_scatter_nonzeros(dvalues, row_ptr, col_idx, perm, kernel)
    return [dkernel, None, None, None]


def _sparse_matmul_grad(op, dy):
    x, values, _, _, row_ptr, col_idx, perm = op.inputs
    dx, dvalues = load_library().sos_sparse_matmul_grad(x, dy, values, row_ptr, col_idx, perm)
    return [dx, dvalues, None, None, None, None, None]


def _fused_activation(activation):
    """The `activation` name under which the op applies a Keras activation itself, else None."""
    if activation is None or activation is keras.activations.linear:
        return "linear"
    if activation is keras.activations.relu:
        return "relu"
    return None


def dense_layer_output(inputs, weight, bias, activation, compute_dtype):
    """`activation(inputs @ W + bias)` in `compute_dtype`, as a Keras Dense layer computes it.

    The op's layers share it: bfloat16 activations stay bfloat16 (others run
    in float32), and a relu or linear activation runs inside the op together
    with the bias; other activations are applied to the op's output.
    """
    x = tf.cast(inputs, tf.bfloat16 if compute_dtype == "bfloat16" else tf.float32)
    fused = _fused_activation(activation)
    if fused is not None:
        bias = None if bias is None else tf.cast(bias, tf.float32)
        return tf.cast(sparse_matmul(x, weight, bias=bias, activation=fused), compute_dtype)
    outputs = tf.cast(sparse_matmul(x, weight), compute_dtype)
    if bias is not None:
        outputs = outputs + tf.cast(bias, compute_dtype)
    return activation(outputs)


def _sparse_matmul_bias_activation_grad(op, dy):
    x, values, _, _, row_ptr, col_idx, perm, bias = op.inputs
    if op.get_attr("activation") == b"relu":
        dy = dy * tf.cast(op.outputs[0] > 0, dy.dtype)
    dx, dvalues = load_library().sos_sparse_matmul_grad(x, dy, values, row_ptr, col_idx, perm)
    flat = tf.reshape(dy, [-1, tf.shape(dy)[-1]])
    dbias = tf.cond(tf.size(bias) > 0,
                    lambda: tf.reduce_sum(tf.cast(flat, tf.float32), axis=0),
                    lambda: tf.zeros_like(bias))
    return [dx, dvalues, None, None, None, None, None, dbias]


def _activations(name, tensor):
    return _of_dtype(name, tensor, (tf.float32, tf.bfloat16))


def _float32(name, tensor):
    return _of_dtype(name, tensor, (tf.float32,))


def _of_dtype(name, tensor, dtypes):
    """`tensor` as a Tensor; TypeError naming the kernels' dtypes when it has another."""
    tensor = tf.convert_to_tensor(tensor)
    if tensor.dtype not in dtypes:
        raise TypeError(
            f"`{name}` must be {' or '.join(d.name for d in dtypes)} (the op's kernels; cast it "
            f"first). Received: {name}.dtype={tensor.dtype.name}"
        )
    return tensor


def _check_features(name, tensor, expected, what):
    last = tensor.shape[-1] if tensor.shape.rank else None
    if tensor.shape.rank is not None and tensor.shape.rank < 2:
        raise ValueError(
            f"`{name}` must have rank >= 2 ([..., features]). Received: "
            f"{name}.shape={tuple(tensor.shape)}"
        )
    if last is not None and expected is not None and last != expected:
        raise ValueError(
            f"The last dimension of `{name}` must be {expected} ({what}). Received: "
            f"{name}.shape={tuple(tensor.shape)}"
        )


SparseWeight = sparse_format.SparseWeight

load_library()  # fail at import, with the build command, rather than at first use


def _register_gradient(op_name, function):
    # Idempotent: a failed import of the package (e.g. library missing) is retried
    # by the next import, which would otherwise register the gradient twice.
    try:
        tf.RegisterGradient(op_name)(function)
    except KeyError:
        pass


_register_gradient("SosGatherNonzeros", _gather_nonzeros_grad)
_register_gradient("SosSparseMatmul", _sparse_matmul_grad)
_register_gradient("SosSparseMatmulBiasActivation", _sparse_matmul_bias_activation_grad)
