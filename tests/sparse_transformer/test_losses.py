"""Label-smoothed padded cross-entropy against a NumPy reference."""

import numpy as np
import pytest

from state_of_sparsity.sparse_transformer import losses


def numpy_loss(logits, targets, smoothing):
    vocab = logits.shape[-1]
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs = log_probs - np.log(np.exp(log_probs).sum(-1, keepdims=True))
    soft = np.full(logits.shape, smoothing / (vocab - 1))
    np.put_along_axis(soft, targets[..., None], 1.0 - smoothing, axis=-1)
    entropy = -(soft * np.log(soft + 1e-20)).sum(-1)
    per_token = -(soft * log_probs).sum(-1) - entropy
    weights = (targets != 0).astype(np.float64)
    return (per_token * weights).sum() / max(weights.sum(), 1.0)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.4])
def test_padded_cross_entropy_matches_numpy(smoothing):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 7)).astype(np.float32) * 3
    targets = np.array([[2, 3, 1, 0, 0], [4, 1, 0, 0, 0], [6, 5, 4, 3, 1]])
    got = float(losses.padded_cross_entropy(logits, targets, smoothing))
    assert got == pytest.approx(numpy_loss(logits.astype(np.float64), targets, smoothing),
                                rel=1e-5)


def test_padding_positions_do_not_count():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(1, 4, 6)).astype(np.float32)
    changed = logits.copy()
    changed[0, 2:] += 100.0  # only padding positions change
    targets = np.array([[3, 1, 0, 0]])
    assert float(losses.padded_cross_entropy(logits, targets, 0.1)) == pytest.approx(
        float(losses.padded_cross_entropy(changed, targets, 0.1)), rel=1e-6)
    assert float(losses.padded_cross_entropy(logits, np.zeros((1, 4), int), 0.1)) == 0.0


def test_perfect_prediction_scores_zero_with_smoothing():
    vocab, smoothing = 5, 0.2
    soft = np.full(vocab, smoothing / (vocab - 1))
    soft[3] = 1 - smoothing
    logits = np.log(soft)[None, None, :].astype(np.float32)  # softmax == the smoothed target
    assert float(losses.padded_cross_entropy(logits, np.array([[3]]), smoothing)) == (
        pytest.approx(0.0, abs=1e-6))


def test_label_smoothing_out_of_range_is_rejected():
    with pytest.raises(ValueError, match=r"`label_smoothing` must be in \[0, 1\)"):
        losses.padded_cross_entropy(np.zeros((1, 1, 3), np.float32), np.array([[1]]), 1.0)
