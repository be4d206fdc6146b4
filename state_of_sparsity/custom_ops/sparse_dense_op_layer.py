"""`OpSparseDense`: a pruned Dense layer that trains and infers through the sparse-matmul op."""

import keras
import tensorflow as tf

from state_of_sparsity.custom_ops import fallback
from state_of_sparsity.custom_ops import sparse_format
from state_of_sparsity.custom_ops import sparse_matmul_ops
from state_of_sparsity.layers import sparse_layers
from state_of_sparsity.layers.pruning import technique as pruning


class _Pattern:
    """The op's index arrays for the current mask, and the mask they were built from.

    A plain object (not tracked by Keras): the arrays derive from `mask` and
    are rebuilt on demand, so they are never saved.
    """

    def __init__(self, kernel_shape):
        def vector(dtype):
            return tf.Variable(tf.zeros([0], dtype), shape=tf.TensorShape([None]), trainable=False)

        self.arrays = {
            "col_ptr": vector(tf.int32), "row_idx": vector(tf.int32),
            "row_ptr": vector(tf.int32), "col_idx": vector(tf.int32),
            "perm": vector(tf.int32),
        }
        self.mask = tf.Variable(tf.zeros(kernel_shape), trainable=False)
        self.valid = tf.Variable(False, trainable=False)


@keras.saving.register_keras_serializable(package="state_of_sparsity")
class OpSparseDense(sparse_layers.SparseDense):
    """`SparseDense` with magnitude or random pruning whose matmul runs through the sparse op.

    Forward, input gradient and weight gradient (at the kept weights only)
    run in the compiled CPU op, so at high sparsity a training step is faster
    than with the masked dense matmul (about 2x for a 90%-sparse 3x1024 MLP
    at batch 256 on 2 cores; `to_sparse_inference` is the faster way to serve).
    A relu or linear activation and the bias run inside the op. The raw
    `kernel` and the `mask` stay as in `SparseDense` (same checkpoints, same
    `PruningCallback`); the op's index arrays are rebuilt whenever the mask
    changes (one comparison of the mask per call detects it). The dense
    `kernel` still gets a dense gradient (zeros off the pattern) and optimizer
    update, so a training step keeps O(K·N) elementwise work.

    Above `max_density` kept weights the layer uses the masked dense matmul,
    which is faster there on CPU. On a non-TensorFlow backend or with a GPU
    visible it always does, with a one-time warning. The op cannot be XLA
    compiled: keep `jit_compile=False` (the CPU default).

    Args:
      units, activation, use_bias, ...: as `keras.layers.Dense`.
      technique: "magnitude_pruning", "random_pruning" or a `Pruning` instance.
      max_density: fraction of kept weights above which dense math is used.

    Example:
    ```python
    layer = OpSparseDense(64, technique="magnitude_pruning")
    y = layer(np.ones((8, 32), "float32"))
    ```
    """

    def __init__(self, *args, max_density=0.4, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.technique, pruning.Pruning):
            raise ValueError(
                f"Layer '{self.name}': OpSparseDense needs a pruning technique (its "
                "sparsity pattern is a 0/1 mask). Received: technique="
                f"{self.technique.technique_name!r}"
            )
        if not 0.0 <= max_density <= 1.0:
            raise ValueError(
                f"Layer '{self.name}': `max_density` must be in [0, 1]. "
                f"Received: max_density={max_density!r}"
            )
        self.max_density = max_density

    def build(self, input_shape):
        super().build(input_shape)
        self._pattern = None
        if fallback.op_unavailable_reason() is None:
            with tf.init_scope():
                self._pattern = _Pattern(self.sparse_weight.shape)

    def call(self, inputs, training=None):
        reason = fallback.op_unavailable_reason()
        if reason is not None or self._pattern is None:
            fallback.warn_once(type(self).__name__, reason or "the layer was built without the op")
            return super().call(inputs, training)
        mask = tf.cast(self.mask, tf.float32)  # 0/1, exact in any float (autocast may read bf16)
        # The pattern is refreshed outside the branch: index arrays made inside a
        # differentiated tf.cond trip TF's graph type inference.
        arrays = self._current_pattern(mask)
        density = tf.cast(tf.size(arrays["row_idx"]), tf.float32) / float(
            max(1, self.sparse_weight.shape[0] * self.sparse_weight.shape[1])
        )
        return tf.cond(
            density > self.max_density,
            lambda: super(OpSparseDense, self).call(inputs, training),
            lambda: self._sparse_call(inputs, arrays),
        )

    def _sparse_call(self, inputs, arrays):
        structure = sparse_format.SparseWeight(
            values=None, col_ptr=arrays["col_ptr"], row_idx=arrays["row_idx"],
            row_ptr=arrays["row_ptr"], col_idx=arrays["col_idx"], perm=arrays["perm"],
            shape=tuple(self.sparse_weight.shape),
        )
        kernel = tf.cast(self.sparse_weight, tf.float32)
        weight = structure._replace(values=sparse_matmul_ops.gather_nonzeros(kernel, structure))
        return sparse_matmul_ops.dense_layer_output(inputs, weight, self.bias, self.activation,
                                                    self.compute_dtype)

    def _current_pattern(self, mask):
        pattern = self._pattern
        names = sorted(pattern.arrays)

        def rebuild():
            structure = sparse_format.tf_structure_from_mask(mask)
            updates = [pattern.arrays[n].assign(structure[n]) for n in names]
            with tf.control_dependencies(updates):
                updates = [pattern.mask.assign(mask), pattern.valid.assign(True)]
            with tf.control_dependencies(updates):
                return [tf.identity(structure[n]) for n in names]

        def reuse():
            return [pattern.arrays[n].read_value() for n in names]

        stale = tf.logical_or(
            tf.logical_not(pattern.valid), tf.reduce_any(tf.not_equal(mask, pattern.mask))
        )
        return dict(zip(names, tf.cond(stale, rebuild, reuse)))

    def get_config(self):
        return {**super().get_config(), "max_density": self.max_density}
