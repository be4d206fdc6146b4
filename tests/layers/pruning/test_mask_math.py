"""Tests of mask selection against NumPy references and invariants."""

import numpy as np
import pytest
import tensorflow as tf

from state_of_sparsity.layers.pruning import mask_math


def np_magnitude_mask(weights, sparsity):
    """Keep the k largest |w|, ties to the lower flat index (stable sort)."""
    flat = np.abs(np.concatenate([w.ravel() for w in weights]))
    k = int(np.floor(flat.size * (1.0 - np.float64(np.float32(sparsity))) + 0.5))
    order = np.argsort(-flat, kind="stable")
    keep = np.zeros(flat.size, np.float32)
    keep[order[:k]] = 1.0
    pieces = np.split(keep, np.cumsum([w.size for w in weights])[:-1])
    return [p.reshape(w.shape) for p, w in zip(pieces, weights)]


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.9, 0.95])
def test_magnitude_mask_keeps_exactly_the_largest_weights(sparsity):
    w = np.random.default_rng(0).normal(size=(7, 13)).astype(np.float32)
    (mask,), threshold = mask_math.magnitude_masks([tf.constant(w)], sparsity)
    (expected,) = np_magnitude_mask([w], sparsity)
    np.testing.assert_array_equal(mask.numpy(), expected)
    assert float(threshold) == np.abs(w)[expected == 1].min()


def test_magnitude_mask_count_is_exact_with_ties():
    w = np.array([[1.0, -1.0, 1.0, 0.5], [1.0, 0.5, -0.5, 1.0]], np.float32)
    (mask,), threshold = mask_math.magnitude_masks([tf.constant(w)], 0.5)
    # Five weights tie at |w| = 1; exactly 4 are kept, the lowest flat indices.
    np.testing.assert_array_equal(mask.numpy(), [[1, 1, 1, 0], [1, 0, 0, 0]])
    assert float(threshold) == 1.0


def test_kept_count_rounds_half_up():
    assert [int(mask_math.kept_count(n, 0.5)) for n in (1, 3, 5)] == [1, 2, 3]
    assert int(mask_math.kept_count(1000, np.float32(0.9))) == 100


def test_global_magnitude_masks_rank_all_tensors_together():
    rng = np.random.default_rng(1)
    small = (0.01 * rng.normal(size=(10, 10))).astype(np.float32)
    large = rng.normal(size=(5, 20)).astype(np.float32)
    masks, _ = mask_math.magnitude_masks([tf.constant(small), tf.constant(large)], 0.5)
    expected = np_magnitude_mask([small, large], 0.5)
    for got, want in zip(masks, expected):
        np.testing.assert_array_equal(got.numpy(), want)
    assert masks[0].numpy().sum() < masks[1].numpy().sum()  # small weights go first
    assert sum(m.numpy().sum() for m in masks) == 100


def test_magnitude_mask_keeps_weight_dtype_and_shape():
    w = tf.random.normal([2, 3, 4, 5])
    (mask,), _ = mask_math.magnitude_masks([w], 0.3)
    assert mask.shape == w.shape and mask.dtype == w.dtype


def test_nothing_kept_gives_infinite_threshold():
    (mask,), threshold = mask_math.magnitude_masks([tf.constant([0.3])], 0.9)
    assert mask.numpy().sum() == 0 and np.isinf(float(threshold))


def seed(step):
    return tf.constant([7, step], tf.int64)


def test_random_masks_are_nested_as_sparsity_grows():
    mask = tf.ones([40, 25])
    previous = mask.numpy()
    for step, sparsity in enumerate([0.2, 0.5, 0.8, 0.95], start=1):
        mask = mask_math.random_cumulative_mask(mask, sparsity, seed(step))
        current = mask.numpy()
        assert current.sum() == int(np.floor(1000 * (1 - np.float32(sparsity)) + 0.5))
        assert np.all(current <= previous)  # every kept weight was kept before
        assert set(np.unique(current)) <= {0.0, 1.0}
        previous = current


def test_random_mask_keeps_old_set_and_adds_random_weights_when_sparsity_drops():
    old = mask_math.random_cumulative_mask(tf.ones([100]), 0.9, seed(1))
    new = mask_math.random_cumulative_mask(old, 0.5, seed(2))
    assert np.all(new.numpy() >= old.numpy()) and new.numpy().sum() == 50


def test_random_mask_is_reproducible_from_seed_and_differs_across_seeds():
    a = mask_math.random_cumulative_mask(tf.ones([500]), 0.5, seed(3)).numpy()
    b = mask_math.random_cumulative_mask(tf.ones([500]), 0.5, seed(3)).numpy()
    c = mask_math.random_cumulative_mask(tf.ones([500]), 0.5, seed(4)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_random_mask_is_uniform_over_positions():
    hits = np.zeros(20)
    for step in range(400):
        hits += mask_math.random_cumulative_mask(tf.ones([20]), 0.75, seed(step)).numpy()
    # Each position is kept with probability 0.25; 400 draws give sd = sqrt(400*.25*.75) ~ 8.7.
    assert np.all(np.abs(hits - 100) < 5 * 8.7)
