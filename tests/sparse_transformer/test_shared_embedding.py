"""The shared embedding/softmax matrix: lookups and logits through each technique, penalty left to the model."""

import numpy as np
import pytest

import state_of_sparsity as sos
from state_of_sparsity.sparse_transformer import shared_embedding


def built(layer):
    layer.build((None, None))
    return layer


def sparse(technique):
    return built(shared_embedding.SparseSharedEmbedding(6, 4, technique=technique, name="shared"))


def test_dense_layer_looks_up_rows_and_computes_h_dot_e_transposed():
    layer = built(shared_embedding.SharedEmbedding(6, 4, name="shared"))
    matrix = np.asarray(layer.embeddings)
    np.testing.assert_allclose(layer(np.array([[2, 5]])), matrix[[[2, 5]]])
    h = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(layer(h, mode="logits"), h @ matrix.T, atol=1e-5)


def test_pruning_mask_applies_to_lookup_and_logits():
    layer = sparse(sos.MagnitudePruning())
    mask = np.ones((6, 4), np.float32)
    mask[2, 1] = mask[4, :] = 0
    layer.mask.assign(mask)
    effective = np.asarray(layer.embeddings) * mask
    np.testing.assert_allclose(layer(np.array([[2, 4]])), effective[[[2, 4]]])
    h = np.random.default_rng(1).normal(size=(1, 2, 4)).astype(np.float32)
    np.testing.assert_allclose(layer(h, mode="logits"), h @ effective.T, atol=1e-5)
    assert sos.sparsity_report(layer)["layers"]["shared"] == pytest.approx(5 / 24)


def test_variational_dropout_eval_uses_the_log_alpha_mask_in_both_modes():
    layer = sparse(sos.VariationalDropout(sos.ConstantPenalty(1.0), threshold=3.0))
    theta = np.asarray(layer.embeddings)
    log_sigma2 = np.full((6, 4), -10.0, np.float32)
    log_sigma2[1, 2] = log_sigma2[3, 0] = 5.0  # log alpha > 3: dropped
    layer.log_sigma2.assign(log_sigma2)
    keep = (log_sigma2 - np.log(theta**2 + 1e-8)) < 3.0
    h = np.random.default_rng(2).normal(size=(1, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(layer(h, mode="logits", training=False), h @ (theta * keep).T,
                               atol=1e-5)
    np.testing.assert_allclose(layer(np.array([[1, 3]]), training=False), (theta * keep)[[[1, 3]]])


def test_variational_dropout_training_noise_per_logit_and_per_lookup():
    layer = sparse(sos.VariationalDropout(sos.ConstantPenalty(1.0), clip_alpha=None))
    layer.embeddings.assign(np.full((6, 4), 0.5, np.float32))
    layer.log_sigma2.assign(np.log(np.full((6, 4), 0.04, np.float32)))  # sigma^2 = 0.04
    # 4000 identical positions: the spread across positions is the LRT noise alone.
    h = np.tile(np.array([1.0, -2.0, 0.5, 1.0], np.float32), (1, 4000, 1))
    logits = np.asarray(layer(h, mode="logits", training=True))[0]
    np.testing.assert_allclose(logits.mean(0), np.full(6, 0.25), atol=0.05)
    expected_variance = (h[0, 0] ** 2).sum() * 0.04  # sum_i h_i^2 sigma_i^2
    np.testing.assert_allclose(logits.var(0), np.full(6, expected_variance), rtol=0.15)
    rows = np.asarray(layer(np.full((1, 4000), 3), training=True))[0]
    np.testing.assert_allclose(rows.var(0), np.full(4, 0.04), rtol=0.15)
    assert not layer.losses  # the model adds the penalty, once


def test_l0_training_gates_whole_matrix_for_logits_and_each_lookup():
    layer = sparse(sos.L0Regularization(sos.ConstantPenalty(1.0), log_alpha_mean=0.0))
    h = np.tile(np.array([1.0, 2.0, -1.0, 0.5], np.float32), (1, 50, 1))
    logits = np.asarray(layer(h, mode="logits", training=True))[0]
    np.testing.assert_array_equal(logits, np.broadcast_to(logits[0], logits.shape))
    rows = np.asarray(layer(np.full((1, 50), 2), training=True))[0]
    assert len({tuple(row) for row in rows}) > 10  # fresh gates for every lookup
    assert np.all(np.abs(rows) <= np.abs(np.asarray(layer.embeddings)[2]) + 1e-6)


@pytest.mark.parametrize("technique", [
    sos.VariationalDropout(sos.ConstantPenalty(1.0)), sos.L0Regularization(sos.ConstantPenalty(1.0)),
])
def test_penalty_loss_is_the_weighted_technique_penalty(technique):
    layer = sparse(technique)
    layer.penalty_weight.assign(0.5)
    expected = 0.5 * float(technique.penalty(layer, layer.embeddings))
    assert expected > 0
    assert float(layer.penalty_loss()) == pytest.approx(expected, rel=1e-6)
    assert float(sparse(sos.MagnitudePruning()).penalty_loss()) == 0.0


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match=r"Layer 'shared': `mode` must be one of \['embedding', "
                                         r"'logits'\]. Received: mode='softmax'"):
        sparse(sos.MagnitudePruning())(np.zeros((1, 1, 4), np.float32), mode="softmax")
    with pytest.raises(ValueError, match=r"`mode` must be one of"):
        built(shared_embedding.SharedEmbedding(6, 4, name="shared"))(np.array([[1]]), mode="x")
