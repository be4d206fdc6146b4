"""Token-level metrics over non-padding targets: accuracy, and a running count for tokens/s."""

import keras
from keras import ops

from state_of_sparsity.sparse_transformer import losses

PAD_ID = 0


def _non_pad(targets):
    return ops.cast(ops.not_equal(targets, PAD_ID), "float32")


@keras.saving.register_keras_serializable(package="state_of_sparsity")
class PaddedAccuracy(keras.metrics.Mean):
    """Fraction of non-padding target tokens whose arg-max logit is the target (T2T's `accuracy`)."""

    def __init__(self, name="accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        correct = ops.cast(ops.equal(predicted, ops.cast(y_true, "int32")), "float32")
        super().update_state(correct, sample_weight=_non_pad(y_true))


@keras.saving.register_keras_serializable(package="state_of_sparsity")
class NonPadTokens(keras.metrics.Sum):
    """Non-padding target tokens seen since the last reset (drives the tokens/s progress line)."""

    def __init__(self, name="tokens", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        super().update_state(ops.sum(_non_pad(y_true)))


@keras.saving.register_keras_serializable(package="state_of_sparsity")
class NegLogPerplexity(keras.metrics.Mean):
    """Mean log-probability of the non-padding target tokens, without label smoothing (T2T's metric)."""

    def __init__(self, name="neg_log_perplexity", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        log_probs = -losses.smoothed_cross_entropy(y_pred, y_true, label_smoothing=0.0)
        super().update_state(log_probs, sample_weight=_non_pad(y_true))
