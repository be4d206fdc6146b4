"""Multi-head dot-product attention with sparse projections, attention biases, and cached decoding (T2T's multihead_attention)."""

import keras
from keras import ops

# Added to the logits of masked positions; exp() of it underflows to exactly 0 in float32.
NEG_INF = -1e9


def padding_bias(ids, pad_id=0):
    """[B, 1, 1, L] bias that hides padding keys (id == pad_id)."""
    padding = ops.cast(ops.equal(ids, pad_id), "float32")
    return ops.expand_dims(ops.expand_dims(padding * NEG_INF, 1), 1)


def causal_bias(length):
    """[1, 1, L, L] bias that hides future keys: query i sees keys j <= i."""
    positions = ops.arange(length)
    future = ops.cast(ops.greater(positions[None, :], positions[:, None]), "float32")
    return ops.reshape(future * NEG_INF, (1, 1, length, length))


def segment_bias(query_segments, memory_segments):
    """[B, 1, Lq, Lm] bias that keeps packed examples apart: keys of another segment are hidden."""
    different = ops.not_equal(
        ops.expand_dims(query_segments, 2), ops.expand_dims(memory_segments, 1)
    )
    return ops.expand_dims(ops.cast(different, "float32") * NEG_INF, 1)


def split_heads(x, num_heads):
    """[B, L, D] -> [B, H, L, D / H]."""
    batch, length = ops.shape(x)[0], ops.shape(x)[1]
    x = ops.reshape(x, (batch, length, num_heads, x.shape[-1] // num_heads))
    return ops.transpose(x, (0, 2, 1, 3))


def combine_heads(x):
    """[B, H, L, d] -> [B, L, H * d]."""
    x = ops.transpose(x, (0, 2, 1, 3))
    batch, length = ops.shape(x)[0], ops.shape(x)[1]
    return ops.reshape(x, (batch, length, x.shape[2] * x.shape[3]))


def broadcast_noise_shape(broadcast_dims, rank):
    """Keras `noise_shape` that shares dropout noise along the given axes (T2T's broadcast dims)."""
    axes = {int(axis) for axis in broadcast_dims.split(",") if axis.strip()}
    if not axes:
        return None
    if max(axes) >= rank:
        raise ValueError(
            f"Dropout broadcast axes must be below the tensor rank {rank}. "
            f"Received: broadcast_dims={broadcast_dims!r}"
        )
    return tuple(1 if axis in axes else None for axis in range(rank))


class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention whose q, k, v and output projections come from `make_dense`.

    Projections have no bias; q is scaled by (key_depth / num_heads)^-0.5;
    attention probabilities get dropout. With `split_heads` each head has its
    own q/k/v layer (`<name>_q_shard_<h>`), so pruning ranks each head's
    weights separately (the original's `*_shmp` / `split_head` sets).

    Args:
      key_depth, value_depth, output_depth: total channels of q/k, of v, and of the output.
      num_heads: number of heads.
      dropout_rate: dropout on the attention probabilities.
      make_dense: `(units, name) -> layer`, a projection without bias
        (dense or sparse, as the model's technique says).
      dropout_broadcast_dims: T2T's comma-separated axes of [B, H, Lq, Lk]
        that share dropout noise.
      split_heads: one projection layer per head for q, k and v.
      name: prefix of every sublayer name (`<name>_q`, ..., `<name>_output_transform`).
    """

    def __init__(self, key_depth, value_depth, output_depth, num_heads, dropout_rate,
                 make_dense, dropout_broadcast_dims="", split_heads=False, **kwargs):
        super().__init__(**kwargs)
        self.key_depth = key_depth
        self.value_depth = value_depth
        self.num_heads = num_heads
        self.split_heads = split_heads
        # One list per component (one layer, or one per head). Each layer is also an attribute of
        # its own: tf.train.Checkpoint does not follow Keras' tracked lists, and would save nothing.
        for component, depth in (("q", key_depth), ("k", key_depth), ("v", value_depth)):
            if split_heads:
                layers = [
                    make_dense(depth // num_heads, f"{self.name}_{component}_shard_{head}")
                    for head in range(num_heads)
                ]
            else:
                layers = [make_dense(depth, f"{self.name}_{component}")]
            setattr(self, f"{component}_layers", layers)
            for index, layer in enumerate(layers):
                setattr(self, f"_{component}_{index}", layer)
        self.output_transform = make_dense(output_depth, f"{self.name}_output_transform")
        self.dropout = keras.layers.Dropout(
            dropout_rate, noise_shape=broadcast_noise_shape(dropout_broadcast_dims, 4),
            name=f"{self.name}_dropout",
        )

    def build(self, query_shape, memory_shape=None):
        query_shape = tuple(query_shape)
        memory_shape = query_shape if memory_shape is None else tuple(memory_shape)
        for component in ("q", "k", "v"):
            for layer in getattr(self, f"{component}_layers"):
                layer.build(query_shape if component == "q" else memory_shape)
        self.output_transform.build(query_shape[:-1] + (self.value_depth,))

    def _project(self, component, x):
        outputs = [layer(x) for layer in getattr(self, f"{component}_layers")]
        return outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=-1)

    def project_memory(self, memory):
        """Keys and values of `memory` [B, L, D] as [B, H, L, d] (computed once per source in decoding)."""
        return (split_heads(self._project("k", memory), self.num_heads),
                split_heads(self._project("v", memory), self.num_heads))

    def attend(self, query, keys, values, bias, training=None):
        """Attention of `query` [B, Lq, D] over split-head `keys`/`values` [B, H, Lk, d]."""
        q = split_heads(self._project("q", query), self.num_heads)
        q = q * ops.cast((self.key_depth // self.num_heads) ** -0.5, q.dtype)
        # Softmax in float32: under mixed precision -1e9 would overflow float16.
        logits = ops.cast(ops.matmul(q, ops.swapaxes(keys, -1, -2)), "float32")
        if bias is not None:
            logits = logits + ops.cast(bias, "float32")
        weights = ops.cast(ops.softmax(logits, axis=-1), values.dtype)
        weights = self.dropout(weights, training=training)
        return self.output_transform(combine_heads(ops.matmul(weights, values)))

    def call(self, query, memory=None, bias=None, training=None):
        """Self-attention (memory None) or attention over `memory`, with an additive `bias`."""
        keys, values = self.project_memory(query if memory is None else memory)
        return self.attend(query, keys, values, bias, training)

    def call_cached(self, query, cache_keys, cache_values, step):
        """One decoding step of causal self-attention over keys/values cached at fixed length.

        Args:
          query: [B, 1, D], the new position `step`.
          cache_keys, cache_values: [B, H, T, d]; entries after `step` are ignored.
          step: int scalar tensor, the position being decoded.

        Returns:
          (output [B, 1, D], updated cache_keys, updated cache_values).
        """
        keys, values = self.project_memory(query)
        length = ops.shape(cache_keys)[2]
        slot = ops.reshape(ops.equal(ops.arange(length), step), (1, 1, -1, 1))
        cache_keys = ops.where(slot, keys, cache_keys)
        cache_values = ops.where(slot, values, cache_values)
        visible = ops.less_equal(ops.arange(length), step)
        bias = ops.reshape(ops.where(visible, 0.0, NEG_INF), (1, 1, 1, -1))
        return self.attend(query, cache_keys, cache_values, bias), cache_keys, cache_values
