"""T2T's label-smoothed cross-entropy over non-padding target tokens (sos_spec 5.2)."""

import math

from keras import ops

PAD_ID = 0


def smoothed_cross_entropy(logits, labels, label_smoothing=0.0):
    """Per-token cross-entropy against smoothed one-hot targets, shifted so a perfect fit gives 0.

    The target distribution puts `1 - label_smoothing` on the label and
    `label_smoothing / (vocab - 1)` on every other id (T2T's
    `smoothing_cross_entropy`); the constant entropy of that distribution is
    subtracted, which changes the reported value but not the gradients.

    Args:
      logits: [..., vocab] float logits.
      labels: [...] integer ids.
      label_smoothing: in [0, 1).

    Returns:
      [...] float32 losses, padding positions included.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(
            f"`label_smoothing` must be in [0, 1). Received: label_smoothing={label_smoothing!r}"
        )
    logits = ops.cast(logits, "float32")
    vocab_size = logits.shape[-1]
    confidence = 1.0 - label_smoothing
    low_confidence = label_smoothing / (vocab_size - 1)
    soft_targets = ops.one_hot(ops.cast(labels, "int32"), vocab_size) * (
        confidence - low_confidence
    ) + low_confidence
    cross_entropy = -ops.sum(soft_targets * ops.log_softmax(logits, axis=-1), axis=-1)
    # The best achievable value: the entropy of the smoothed targets (T2T's 1e-20 keeps log finite).
    normalizing = -(
        confidence * math.log(confidence)
        + (vocab_size - 1) * low_confidence * math.log(low_confidence + 1e-20)
    )
    return cross_entropy - normalizing


def padded_cross_entropy(logits, targets, label_smoothing=0.0):
    """Mean smoothed cross-entropy over the non-padding (id != 0) target tokens (T2T's training loss).

    Returns 0 for a batch of padding only (T2T divides by max(1, count)).
    """
    losses = smoothed_cross_entropy(logits, targets, label_smoothing)
    weights = ops.cast(ops.not_equal(targets, PAD_ID), "float32")
    return ops.sum(losses * weights) / ops.maximum(ops.sum(weights), 1.0)
