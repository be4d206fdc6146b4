"""The hparams -> technique mapping: schedules, penalties and the embedding override of the original."""

import dataclasses

import keras
import numpy as np
import pytest

import state_of_sparsity as sos
from state_of_sparsity.sparse_transformer import hparams as hparams_lib
from state_of_sparsity.sparse_transformer import shared_embedding
from state_of_sparsity.sparse_transformer import techniques


def tiny(**changes):
    return dataclasses.replace(hparams_lib.get_hparams("sparse_transformer_tiny"), **changes)


def test_no_technique_gives_plain_keras_layers():
    h = tiny()
    assert techniques.technique_for(h, "encoder_layer_0_ffn_conv1") is None
    layer = techniques.dense(h, 8, "encoder_layer_0_ffn_conv1", use_bias=True)
    assert type(layer) is keras.layers.Dense and layer.use_bias
    assert type(techniques.embedding(h)) is shared_embedding.SharedEmbedding


def test_magnitude_pruning_uses_the_cubic_schedule_and_embedding_sparsity():
    h = tiny(sparsity_technique="magnitude_pruning", target_sparsity=0.8, begin_pruning_step=10,
             end_pruning_step=110, pruning_frequency=5, embedding_sparsity=0.4)
    dense = techniques.technique_for(h, "decoder_layer_1_self_attention_v")
    assert isinstance(dense, sos.MagnitudePruning)
    assert dense.schedule == sos.PolynomialDecay(0.8, 10, 110, 5, exponent=3.0)
    embedding = techniques.technique_for(h, techniques.EMBEDDING_NAME)
    assert embedding.schedule == sos.PolynomialDecay(0.4, 10, 110, 5, exponent=3.0)
    assert techniques.sparsity_map(h) == {"^shared_embedding$": 0.4}
    default = dataclasses.replace(h, embedding_sparsity=-1.0)
    assert techniques.technique_for(default, techniques.EMBEDDING_NAME).schedule == dense.schedule
    layer = techniques.dense(h, 8, "encoder_layer_0_ffn_conv2", use_bias=True)
    assert isinstance(layer, sos.SparseDense) and layer.use_bias
    assert isinstance(techniques.embedding(h), shared_embedding.SparseSharedEmbedding)


def test_random_pruning_carries_the_seed_and_mpfc_keeps_the_embedding_dense():
    h = tiny(sparsity_technique="random_pruning")
    technique = techniques.technique_for(h, "encoder_layer_0_ffn_conv1", seed=7)
    assert isinstance(technique, sos.RandomPruning) and technique.seed == 7
    mpfc = hparams_lib.get_hparams("sparse_transformer_mpfc_tpu")
    assert techniques.technique_for(mpfc, techniques.EMBEDDING_NAME) is None
    assert isinstance(techniques.technique_for(mpfc, "encoder_layer_0_ffn_conv1"),
                      sos.MagnitudePruning)


@pytest.mark.parametrize("function, schedule_class", [
    ("linear", sos.LinearPenalty), ("cubic", sos.CubicEMAPenalty),
])
def test_variational_dropout_maps_threshold_clip_and_penalty_window(function, schedule_class):
    h = tiny(sparsity_technique="variational_dropout", dkl_weight=2e-7, dkl_weight_start=50,
             dkl_weight_diff=150, dkl_weight_fn=function, log_alpha_threshold=2.5,
             clip_log_alpha=6.0)
    technique = techniques.technique_for(h, "encoder_layer_0_self_attention_q")
    assert isinstance(technique, sos.VariationalDropout)
    assert (technique.threshold, technique.clip_alpha, technique.log_sigma2_initializer) == (
        2.5, 6.0, -10.0)
    assert isinstance(technique.schedule, schedule_class)
    assert (technique.schedule.weight, technique.schedule.begin_step,
            technique.schedule.end_step) == (2e-7, 50, 200)
    if function == "cubic":
        assert technique.schedule.decay == 0.9


def test_l0_uses_its_own_weights_with_the_dkl_weight_function():
    h = tiny(sparsity_technique="l0_regularization", l0_norm_weight=7.78e-7, l0_weight_start=0,
             l0_weight_diff=200, dkl_weight_fn="cubic")
    technique = techniques.technique_for(h, techniques.EMBEDDING_NAME)
    assert isinstance(technique, sos.L0Regularization)
    assert technique.schedule == sos.CubicEMAPenalty(7.78e-7, 0, 200, decay=0.9)
    assert technique.log_alpha_mean == pytest.approx(2.197)


def test_initialisers_are_t2t_uniform_unit_scaling_and_normal_embedding():
    keras.utils.set_random_seed(3)
    h = tiny(hidden_size=64, num_heads=4)
    layer = techniques.dense(h, 256, "encoder_layer_0_ffn_conv1", use_bias=True)
    layer.build((None, 64))
    kernel = np.asarray(layer.kernel)
    limit = np.sqrt(3.0 / ((64 + 256) / 2))  # fan_avg, uniform, gain 1
    assert kernel.max() <= limit and kernel.min() >= -limit and kernel.max() > 0.95 * limit
    assert np.all(np.asarray(layer.bias) == 0)
    embedding = techniques.embedding(dataclasses.replace(h, vocab_size=4000))
    embedding.build((None, None))
    assert np.asarray(embedding.embeddings).std() == pytest.approx(64**-0.5, rel=0.05)
