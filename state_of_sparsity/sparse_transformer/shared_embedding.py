"""One matrix for the source lookup, the target lookup and the softmax, dense or through a technique (sos_spec 3.2, 5.3)."""

import keras
from keras import ops

from state_of_sparsity.layers import penalized
from state_of_sparsity.layers import sparse_layers

_PACKAGE = "state_of_sparsity"
MODES = ("embedding", "logits")


def _check_mode(layer, mode):
    if mode not in MODES:
        raise ValueError(
            f"Layer '{layer.name}': `mode` must be one of {list(MODES)}. Received: mode={mode!r}"
        )


def _logits_op(inputs, weight):
    """h . E^T over the last axis: [..., hidden] x [vocab, hidden] -> [..., vocab].

    A 2-D matmul on flattened positions: TF's gradient of the equivalent
    broadcasting einsum materialises a [vocab, hidden, batch, length] tensor.
    """
    weight = ops.cast(weight, inputs.dtype)
    flat = ops.reshape(inputs, (-1, ops.shape(inputs)[-1]))
    logits = ops.matmul(flat, ops.transpose(weight))
    return ops.reshape(logits, tuple(ops.shape(inputs)[:-1]) + (ops.shape(weight)[0],))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SharedEmbedding(keras.layers.Embedding):
    """`keras.layers.Embedding` whose matrix also produces the output logits (the dense model).

    Call arguments:
      inputs: integer ids (mode "embedding") or hidden states [..., hidden] (mode "logits").
      mode: "embedding" looks rows up; "logits" returns `inputs . E^T`.
    """

    def call(self, inputs, training=None, mode="embedding"):
        del training
        _check_mode(self, mode)
        if mode == "logits":
            return ops.cast(_logits_op(inputs, self.embeddings), self.compute_dtype)
        return super().call(inputs)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SparseSharedEmbedding(sparse_layers.SparseEmbedding):
    """`SparseEmbedding` whose one sparse matrix serves both lookups and the softmax.

    Every use goes through the technique: pruning multiplies by the mask,
    variational dropout uses per-lookup noise for lookups and the local
    reparameterisation trick (noise per logit) for the softmax, L0 samples
    gates per looked-up element for lookups and one gate matrix for the
    softmax, as the original's sparse modality does.

    A call never adds the VD/L0 penalty, because the matrix is used several
    times per step while the original counts it once (sos_spec 5.5): the
    model adds `penalty_loss()` once per training forward pass.

    Args:
      input_dim, output_dim, embeddings_initializer: as `keras.layers.Embedding`.
      technique: a technique name or instance, as for `SparseEmbedding`.

    Call arguments:
      inputs: integer ids (mode "embedding") or hidden states [..., hidden] (mode "logits").
      training: whether to sample (VD/L0) rather than use the evaluation weight.
      mode: "embedding" or "logits".
    """

    _mode = "embedding"

    @property
    def is_lookup(self):
        # Techniques ask this to pick per-lookup (gather) or whole-matrix noise and gates.
        return self._mode == "embedding"

    def call(self, inputs, training=None, mode="embedding"):
        _check_mode(self, mode)
        op = self._op if mode == "embedding" else _logits_op
        self._mode = mode
        try:
            if training and isinstance(self.technique, penalized.PenalizedTechnique):
                outputs = self.technique.training_forward(self, op, inputs, self.sparse_weight)
            else:
                outputs = self.technique.apply(self, op, inputs, self.sparse_weight, training)
        finally:
            self._mode = "embedding"
        return ops.cast(outputs, self.compute_dtype)

    def _variance_op(self, inputs, variance):
        if self._mode == "embedding":
            return super()._variance_op(inputs, variance)
        return _logits_op(ops.square(ops.cast(inputs, variance.dtype)), variance)

    def penalty_loss(self):
        """The weighted VD KL / L0 penalty of the matrix (0 for pruning), to add once per step."""
        if not isinstance(self.technique, penalized.PenalizedTechnique):
            return ops.zeros((), "float32")
        return self.penalty_weight * self.technique.penalty(self, self.sparse_weight)
