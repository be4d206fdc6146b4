"""Pure mask selection math for magnitude and random pruning (no Keras, testable alone)."""

import tensorflow as tf


def kept_count(size, sparsity):
    """round(size * (1 - sparsity)) with halves rounded up, computed in float64."""
    size = tf.cast(size, tf.float64)
    sparsity = tf.cast(sparsity, tf.float64)
    return tf.cast(tf.floor(size * (1.0 - sparsity) + 0.5), tf.int32)


def _top_k_mask(scores, sparsity):
    """0/1 mask keeping exactly kept_count(n, sparsity) largest scores of a flat vector.

    Ties go to the lower index (tf.math.top_k is stable), so the count is
    exact and the result deterministic. Also returns the smallest kept score
    (+inf when nothing is kept).
    """
    n = tf.size(scores)
    k = kept_count(n, sparsity)
    values, indices = tf.math.top_k(scores, k=k, sorted=True)
    mask = tf.scatter_nd(
        indices[:, tf.newaxis], tf.ones_like(values), tf.reshape(n, [1])
    )
    return mask, tf.reduce_min(values)


def magnitude_masks(weights, sparsity):
    """Masks keeping the round(n * (1 - s)) largest |w| over all `weights` jointly.

    One tensor gives per-layer (uniform) pruning; several tensors give global
    magnitude pruning with one shared threshold.

    Args:
      weights: list of float tensors.
      sparsity: scalar fraction of zeros in [0, 1).

    Returns:
      (masks, threshold): masks with the shapes and dtypes of `weights`, and
      the smallest kept magnitude (+inf if none is kept).
    """
    flat = tf.concat(
        [tf.reshape(tf.abs(tf.cast(w, tf.float32)), [-1]) for w in weights], axis=0
    )
    flat_mask, threshold = _top_k_mask(flat, sparsity)
    sizes = [tf.size(w) for w in weights]
    pieces = tf.split(flat_mask, tf.stack(sizes), num=len(weights))
    masks = [
        tf.cast(tf.reshape(piece, tf.shape(w)), w.dtype)
        for piece, w in zip(pieces, weights)
    ]
    return masks, threshold


def random_cumulative_mask(old_mask, sparsity, seed):
    """A random mask nested in `old_mask`: keep previously kept weights first.

    Scores are old_mask + U[0, 0.5): every kept weight outranks every pruned
    one, and ties among them are broken uniformly at random. When sparsity
    grows the new kept set is a uniform random subset of the old one (the
    intended `random_cumulative` rule of sos_spec 3.4, not its inverted public
    code). The result depends only on `seed`, so replicas and resumed runs agree.

    Args:
      old_mask: current 0/1 mask.
      sparsity: scalar fraction of zeros in [0, 1).
      seed: int tensor of shape [2] for the stateless RNG.
    """
    noise = tf.random.stateless_uniform(
        [tf.size(old_mask)], seed=seed, minval=0.0, maxval=0.5
    )
    scores = tf.reshape(tf.cast(old_mask, tf.float32), [-1]) + noise
    flat_mask, _ = _top_k_mask(scores, sparsity)
    return tf.cast(tf.reshape(flat_mask, tf.shape(old_mask)), old_mask.dtype)
