"""Multi-head attention and its biases against NumPy; the cached step against the full pass."""

import keras
import numpy as np
import pytest

from state_of_sparsity.sparse_transformer import attention


def make_dense(units, name):
    return keras.layers.Dense(units, use_bias=False, name=name)


def numpy_attention(layer, query, memory, bias, heads):
    def kernel(component):
        layers = getattr(layer, f"{component}_layers")
        return np.concatenate([np.asarray(dense.kernel) for dense in layers], axis=1)

    def split(x):
        b, length, depth = x.shape
        return x.reshape(b, length, heads, depth // heads).transpose(0, 2, 1, 3)

    q, k, v = split(query @ kernel("q")), split(memory @ kernel("k")), split(memory @ kernel("v"))
    logits = q * (q.shape[-1] ** -0.5) @ k.transpose(0, 1, 3, 2) + bias
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out = (weights @ v).transpose(0, 2, 1, 3).reshape(query.shape[0], query.shape[1], -1)
    return out @ np.asarray(layer.output_transform.kernel)


@pytest.mark.parametrize("split_heads", [False, True])
def test_attention_matches_numpy(split_heads):
    rng = np.random.default_rng(0)
    layer = attention.MultiHeadAttention(8, 12, 6, 2, 0.0, make_dense, split_heads=split_heads,
                                         name="att")
    query = rng.normal(size=(2, 3, 6)).astype(np.float32)
    memory = rng.normal(size=(2, 4, 6)).astype(np.float32)
    ids = np.array([[5, 6, 0, 0], [5, 6, 7, 8]])
    bias = np.asarray(attention.padding_bias(ids))
    got = layer(query, memory, bias=bias)
    assert tuple(got.shape) == (2, 3, 6)
    np.testing.assert_allclose(got, numpy_attention(layer, query, memory, bias, 2), atol=1e-5)
    names = [dense.name for dense in layer.q_layers]
    assert names == (["att_q_shard_0", "att_q_shard_1"] if split_heads else ["att_q"])
    assert layer.q_layers[0].kernel.shape == ((6, 4) if split_heads else (6, 8))


def test_biases_mask_the_right_keys():
    np.testing.assert_array_equal(
        np.asarray(attention.causal_bias(3))[0, 0] < 0,
        [[False, True, True], [False, False, True], [False, False, False]])
    padding = np.asarray(attention.padding_bias(np.array([[4, 0, 3]])))
    assert padding.shape == (1, 1, 1, 3)
    np.testing.assert_array_equal(padding[0, 0, 0] < 0, [False, True, False])
    segments = np.asarray(attention.segment_bias(np.array([[1, 1, 2]]), np.array([[1, 2, 2, 0]])))
    assert segments.shape == (1, 1, 3, 4)
    np.testing.assert_array_equal(
        segments[0, 0] < 0,
        [[False, True, True, True], [False, True, True, True], [True, False, False, True]])


def test_cached_steps_equal_causal_self_attention():
    rng = np.random.default_rng(1)
    layer = attention.MultiHeadAttention(8, 8, 8, 2, 0.0, make_dense, name="self")
    x = rng.normal(size=(2, 5, 8)).astype(np.float32)
    full = np.asarray(layer(x, bias=attention.causal_bias(5)))
    keys = values = np.zeros((2, 2, 7, 4), np.float32)  # room for more steps than used
    for step in range(5):
        out, keys, values = layer.call_cached(x[:, step:step + 1], keys, values, step)
        np.testing.assert_allclose(out[:, 0], full[:, step], atol=1e-5)
    assert np.all(np.asarray(keys)[:, :, 5:] == 0)


def test_dropout_noise_is_shared_along_broadcast_axes():
    assert attention.broadcast_noise_shape("0,1", 4) == (1, 1, None, None)
    assert attention.broadcast_noise_shape("", 3) is None
    with pytest.raises(ValueError, match=r"below the tensor rank 3"):
        attention.broadcast_noise_shape("3", 3)
    layer = attention.MultiHeadAttention(4, 4, 4, 1, 0.5, make_dense,
                                         dropout_broadcast_dims="0,1", name="drop")
    probabilities = np.ones((3, 1, 2, 5), np.float32)
    dropped = np.asarray(layer.dropout(probabilities, training=True))
    assert np.any(dropped == 0) and np.all(dropped == dropped[:1])  # one mask for every example
