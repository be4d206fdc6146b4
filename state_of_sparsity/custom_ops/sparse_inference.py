"""`SparseInferenceDense` (kept weights only, through the op) and `to_sparse_inference(model)`."""

import re

import keras
import numpy as np
import tensorflow as tf

from state_of_sparsity import conversion
from state_of_sparsity.custom_ops import fallback
from state_of_sparsity.custom_ops import sparse_format
from state_of_sparsity.custom_ops import sparse_matmul_ops
from state_of_sparsity.layers import walk

_INDEX_ARRAYS = ("col_ptr", "row_idx", "row_ptr", "col_idx", "perm")


@keras.saving.register_keras_serializable(package="state_of_sparsity")
class SparseInferenceDense(keras.layers.Layer):
    """A Dense layer that stores only its kept weights and multiplies through the sparse op.

    Made by `to_sparse_inference`; the sparsity pattern is fixed. `values`
    (the kept weights, CSC order) and `bias` stay trainable for fine-tuning.
    Falls back to dense math (one-time warning) on a non-TensorFlow backend
    or when a GPU is visible.

    Args:
      units: output features N.
      nnz: number of kept weights.
      activation, use_bias: as `keras.layers.Dense`.

    Input shape: `(..., K)`. Output shape: `(..., units)`.
    """

    def __init__(self, units, nnz, activation=None, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        for name, value, minimum in (("units", units, 1), ("nnz", nnz, 0)):
            if not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(
                    f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}"
                )
        self.units = int(units)
        self.nnz = int(nnz)
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape):
        k = input_shape[-1]
        if k is None:
            raise ValueError(
                f"Layer '{self.name}': the last input dimension must be known. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        self.values = self.add_weight(name="values", shape=(self.nnz,), initializer="zeros",
                                      dtype="float32")
        sizes = {"col_ptr": self.units + 1, "row_idx": self.nnz, "row_ptr": k + 1,
                 "col_idx": self.nnz, "perm": self.nnz}
        for name in _INDEX_ARRAYS:
            setattr(self, name, self.add_weight(name=name, shape=(sizes[name],),
                                                initializer="zeros", dtype="int32",
                                                trainable=False))
        self.bias = (self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
                     if self.use_bias else None)
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: k})

    def set_weight(self, kernel, bias=None):
        """Loads a dense [K, units] kernel (its nonzeros) and bias."""
        sparse = sparse_format.SparseWeight.from_dense(kernel)
        if len(sparse.values) != self.nnz:
            raise ValueError(
                f"Layer '{self.name}': the kernel has {len(sparse.values)} nonzeros, the "
                f"layer was made for nnz={self.nnz}."
            )
        self.values.assign(sparse.values)
        for name in _INDEX_ARRAYS:
            getattr(self, name).assign(getattr(sparse, name))
        if self.use_bias:
            self.bias.assign(np.zeros(self.units, np.float32) if bias is None else bias)

    def sparse_weight(self):
        return sparse_format.SparseWeight(
            # float32 always: a mixed policy autocasts the read to the compute dtype.
            tf.cast(self.values, tf.float32), *(getattr(self, name) for name in _INDEX_ARRAYS),
            shape=(self.row_ptr.shape[0] - 1, self.units),
        )

    def call(self, inputs):
        reason = fallback.op_unavailable_reason()
        if reason is None:
            return sparse_matmul_ops.dense_layer_output(inputs, self.sparse_weight(), self.bias,
                                                        self.activation, self.compute_dtype)
        fallback.warn_once(type(self).__name__, reason)
        y = keras.ops.matmul(tf.cast(inputs, tf.float32), self._dense_kernel())
        y = keras.ops.cast(y, self.compute_dtype)
        if self.bias is not None:
            y = keras.ops.add(y, self.bias)
        return self.activation(y) if self.activation is not None else y

    def _dense_kernel(self):
        k = self.row_ptr.shape[0] - 1
        # Entry j lies in column n when col_ptr[n] <= j < col_ptr[n + 1].
        columns = keras.ops.searchsorted(self.col_ptr[1:], keras.ops.arange(self.nnz, dtype="int32"),
                                         side="right")
        indices = keras.ops.stack([self.row_idx, keras.ops.cast(columns, "int32")], axis=1)
        return keras.ops.scatter(indices, self.values, (k, self.units))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "nnz": self.nnz,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
        }


def to_sparse_inference(model, min_sparsity=0.6):
    """Copy of a pruned model whose sparse Dense layers multiply through the op.

    Sparse layers are first stripped (`conversion.strip`: zeros baked in);
    then every Dense layer, and every EinsumDense whose equation is a plain
    matmul over the last axis (e.g. "abc,cd->abd"), with at least
    `min_sparsity` zeros in its kernel becomes a `SparseInferenceDense` with
    the same outputs. Other layers are copied unchanged.

    Args:
      model: a Sequential or functional model (sparse layers or plain ones).
      min_sparsity: layers with fewer zeros stay dense (the op only pays off
        at high sparsity).

    Returns:
      A new, uncompiled `keras.Model` for inference (or fine-tuning of the
      kept weights).
    """
    if not 0.0 <= min_sparsity <= 1.0:
        raise ValueError(
            f"`min_sparsity` must be in [0, 1]. Received: min_sparsity={min_sparsity!r}"
        )
    plain = conversion.strip(model) if walk.sparse_layers(model) else model
    conversion._check_rebuildable(plain, "to_sparse_inference")

    def to_op(layer):
        plan = _matmul_plan(layer, min_sparsity)
        if plan is None:
            return layer.__class__.from_config(layer.get_config())
        kernel, activation, use_bias = plan
        return SparseInferenceDense(
            units=kernel.shape[1], nnz=int(np.count_nonzero(kernel)), activation=activation,
            use_bias=use_bias, name=layer.name, dtype=layer.dtype_policy,
        )

    clone = keras.models.clone_model(plain, clone_function=to_op, recursive=True)
    for source, target in conversion._layer_pairs(plain, clone):
        if isinstance(target, SparseInferenceDense):
            bias = getattr(source, "bias", None)
            target.set_weight(_kernel_2d(source),
                              None if bias is None else np.reshape(bias.numpy(), [-1]))
        else:
            conversion._copy_variables(source, target, overrides={})
    return clone


def _matmul_plan(layer, min_sparsity):
    """(kernel [K, N], activation, use_bias) when `layer` converts, else None."""
    if type(layer) is keras.layers.Dense:
        if not layer.built or layer.quantization_mode:
            return None
        activation, use_bias = layer.activation, layer.use_bias
    elif type(layer) is keras.layers.EinsumDense:
        if not layer.built or not _is_last_axis_matmul(layer.equation, layer.bias_axes):
            return None
        activation, use_bias = layer.activation, layer.bias is not None
    else:
        return None
    kernel = _kernel_2d(layer)
    if 1.0 - np.count_nonzero(kernel) / max(kernel.size, 1) < min_sparsity:
        return None
    return kernel, keras.activations.serialize(activation), use_bias


def _kernel_2d(layer):
    return np.asarray(keras.ops.convert_to_numpy(layer.kernel), np.float32)


def _is_last_axis_matmul(equation, bias_axes):
    """True for "<prefix>x,xy-><prefix>y" (with or without "..."), bias on y or none."""
    match = re.fullmatch(r"([a-z.]*)([a-z]),([a-z])([a-z])->([a-z.]*)", equation.replace(" ", ""))
    if not match:
        return False
    prefix, contracted, kernel_in, kernel_out, output = match.groups()
    return (
        contracted == kernel_in
        and output == prefix + kernel_out
        and kernel_out not in prefix + contracted
        and bias_axes in (None, "", kernel_out)
    )
