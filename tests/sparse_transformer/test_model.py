"""SparseTransformer: shapes per technique, the shared matrix, penalties, cached decoding, packing, pruning, names."""

import dataclasses
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import state_of_sparsity as sos
from state_of_sparsity.layers import walk
from state_of_sparsity.sparse_transformer import hparams as hparams_lib
from state_of_sparsity.sparse_transformer import model as model_lib

VOCAB = 20
TECHNIQUES = (None,) + hparams_lib.TECHNIQUES
FEATURES = {
    "inputs": np.array([[3, 4, 5, 1, 0], [6, 7, 1, 0, 0]]),
    "targets": np.array([[8, 9, 1, 0], [10, 11, 12, 1]]),
}


def micro(**changes):
    changes.setdefault("vocab_size", VOCAB)
    return dataclasses.replace(hparams_lib.get_hparams("sparse_transformer_micro"), **changes)


def sparse_layer_count(h):
    projections = 3 * (h.num_heads if h.split_heads else 1) + 1
    per_encoder, per_decoder = projections + 2, 2 * projections + 2
    embedding = 1 if h.sparse_embedding else 0
    return h.encoder_layers * per_encoder + h.decoder_layers * per_decoder + embedding


@pytest.mark.parametrize("technique", TECHNIQUES)
def test_logits_shape_for_every_technique(technique):
    h = micro(sparsity_technique=technique)
    model = model_lib.SparseTransformer(h)
    for training in (False, True):
        logits = model(FEATURES, training=training)
        assert tuple(logits.shape) == (2, 4, VOCAB)
        assert keras.backend.standardize_dtype(logits.dtype) == "float32"
        assert np.all(np.isfinite(np.asarray(logits)))
    sparse = walk.sparse_layers(model)
    assert len(sparse) == (0 if technique is None else sparse_layer_count(h))
    penalized = technique in ("variational_dropout", "l0_regularization")
    assert len(model.losses) == (len(sparse) if penalized else 0)


def test_shared_matrix_is_one_variable_fed_by_lookups_and_softmax():
    model = model_lib.SparseTransformer(micro(sparsity_technique="variational_dropout"))
    model.build()
    matrices = [v for v in model.trainable_variables
                if tuple(v.shape) in ((VOCAB, 16), (16, VOCAB)) and "log_sigma2" not in v.path]
    assert [v.path for v in matrices] == ["sparse_transformer/shared_embedding/embeddings"]
    features = {"inputs": np.array([[3, 4, 1]]), "targets": np.array([[4, 1]])}
    with tf.GradientTape() as tape:
        logits = model(features, training=True)
        objective = tf.reduce_sum(logits[..., 7])  # id 7 is never looked up
    gradients = tape.gradient(objective, model.trainable_variables)
    missing = [v.path for v, g in zip(model.trainable_variables, gradients) if g is None]
    assert not missing
    gradient = np.asarray(gradients[model.trainable_variables.index(matrices[0])])
    used = np.abs(gradient).sum(1) > 0
    assert used[7]  # only through the softmax
    assert used[3] and used[4]  # only through the lookups
    assert not used[9] and not used[0]  # neither looked up nor in the objective; pad row


@pytest.mark.parametrize("technique", ["variational_dropout", "l0_regularization"])
def test_penalty_of_every_layer_is_added_once_per_step(technique):
    model = model_lib.SparseTransformer(micro(sparsity_technique=technique))
    model.build()
    layers = walk.sparse_layers(model)
    for layer in layers:
        layer.penalty_weight.assign(1.0)
    model(FEATURES, training=True)
    expected = sum(float(layer.technique.penalty(layer, layer.sparse_weight)) for layer in layers)
    assert len(model.losses) == len(layers)
    assert float(tf.add_n(model.losses)) == pytest.approx(expected, rel=1e-5)
    embedding = model.shared_embedding
    embedding_penalty = float(embedding.technique.penalty(embedding, embedding.sparse_weight))
    matches = [loss for loss in model.losses if abs(float(loss) - embedding_penalty) < 1e-3]
    assert len(matches) == 1


DECODING_VARIANTS = {
    "dense": {},
    "variational_dropout": {"sparsity_technique": "variational_dropout"},
    "l0_split_heads": {"sparsity_technique": "l0_regularization", "split_heads": True},
    "post_norm_pruned": {"sparsity_technique": "magnitude_pruning",
                         "layer_preprocess_sequence": "none", "layer_postprocess_sequence": "dan",
                         "attention_key_channels": 8, "attention_value_channels": 12},
}


@pytest.mark.parametrize("variant", sorted(DECODING_VARIANTS))
def test_incremental_decoding_equals_full_decoding(variant):
    model = model_lib.SparseTransformer(micro(**DECODING_VARIANTS[variant]))
    model.build()
    if variant == "post_norm_pruned":
        sos.update_masks(model, 200_000)  # prune to the target so masks matter
    targets = FEATURES["targets"]
    full = np.asarray(model(FEATURES, training=False))
    encoder_output, bias = model.encode(FEATURES["inputs"])
    cache = model.initial_cache(encoder_output, bias, targets.shape[1] + 3)
    previous = np.zeros(2, np.int32)
    for step in range(targets.shape[1]):
        logits, cache = model.decode_step(previous, cache, step)
        np.testing.assert_allclose(logits, full[:, step], atol=1e-5)
        previous = targets[:, step].astype(np.int32)


def packed_and_alone():
    sources = [[3, 4, 1], [5, 6, 7, 1]]
    targets = [[8, 1], [9, 9, 1]]
    packed = {
        "inputs": np.array([[3, 4, 1, 5, 6, 7, 1, 0]]),
        "inputs_segmentation": np.array([[1, 1, 1, 2, 2, 2, 2, 0]]),
        "inputs_position": np.array([[0, 1, 2, 0, 1, 2, 3, 0]]),
        "targets": np.array([[8, 1, 9, 9, 1, 0]]),
        "targets_segmentation": np.array([[1, 1, 2, 2, 2, 0]]),
        "targets_position": np.array([[0, 1, 0, 1, 2, 0]]),
    }
    return sources, targets, packed


@pytest.mark.parametrize("technique", [None, "variational_dropout"])
def test_packed_batch_gives_each_example_its_unpacked_logits(technique):
    model = model_lib.SparseTransformer(micro(sparsity_technique=technique))
    sources, targets, packed = packed_and_alone()
    logits = np.asarray(model(packed))[0]
    starts = [0, 2]
    for source, target, start in zip(sources, targets, starts):
        alone = np.asarray(model({"inputs": np.array([source + [0, 0]]),
                                  "targets": np.array([target + [0]])}))[0]
        np.testing.assert_allclose(logits[start:start + len(target)], alone[:len(target)],
                                   atol=1e-5)


def test_shift_right_restarts_in_every_segment():
    targets = np.array([[8, 1, 9, 9, 1, 0]])
    np.testing.assert_array_equal(model_lib.shift_right(targets), [[0, 8, 1, 9, 9, 1]])
    np.testing.assert_array_equal(
        model_lib.shift_right(targets, np.array([[1, 1, 2, 2, 2, 0]])), [[0, 8, 0, 9, 9, 0]])


def test_update_masks_prunes_every_layer_to_target_and_embedding_to_its_own():
    h = micro(sparsity_technique="magnitude_pruning", target_sparsity=0.75,
              begin_pruning_step=0, end_pruning_step=10, pruning_frequency=5,
              embedding_sparsity=0.5)
    model = model_lib.SparseTransformer(h)
    model.build()
    assert bool(sos.update_masks(model, 10))
    report = sos.sparsity_report(model)["layers"]
    assert len(report) == sparse_layer_count(h)
    for name, sparsity in report.items():
        layer = next(layer for layer in walk.sparse_layers(model) if layer.name == name)
        size = int(np.prod(layer.sparse_weight.shape))
        target = 0.5 if name == "shared_embedding" else 0.75
        assert abs(sparsity - target) <= 1.0 / size, name
    logits = model(FEATURES)  # masked weights are used
    masked = model.get_layer("encoder_layer_0").ffn.conv1
    assert np.all(np.asarray(masked.mask)[np.asarray(masked.mask) != 1] == 0)
    assert np.all(np.isfinite(np.asarray(logits)))


def test_layer_names_are_unique_and_map_to_the_original_scopes():
    h = micro(sparsity_technique="magnitude_pruning", split_heads=True)
    model = model_lib.SparseTransformer(h)
    model.build()
    names = [layer.name for layer in model._flatten_layers(include_self=False, recursive=True)]
    assert len(names) == len(set(names))
    scope = {name: model_lib.original_scope(name, h) for name in names
             if "dropout" not in name and not re.match(r"^(en|de)coder_layer_\d+(_ffn)?$", name)
             and not re.match(r".*_(self|encdec)_attention$", name)}
    assert scope["encoder_layer_0_self_attention_q_shard_1"] == (
        "body/encoder/layer_0/self_attention/multihead_attention/q_shard_1")
    assert scope["decoder_layer_1_encdec_attention_output_transform"] == (
        "body/decoder/layer_1/encdec_attention/multihead_attention/output_transform")
    assert scope["decoder_layer_0_ffn_conv2"] == "body/decoder/layer_0/ffn/conv2"
    assert scope["encoder_layer_1_ffn_layer_norm"] == (
        "body/encoder/layer_1/ffn/layer_prepostprocess/layer_norm")
    assert scope["decoder_layer_norm"] == "body/decoder/layer_prepostprocess/layer_norm"
    assert scope["shared_embedding"] == "symbol_modality_20_16/shared"
    assert scope["target_space_embedding"] == "body/target_space_embedding"
    with pytest.raises(ValueError, match=r"'encoder_layer_0_residual_dropout' is not a layer"):
        model_lib.original_scope("encoder_layer_0_residual_dropout", h)


def structural_variants():
    """One hparams set per distinct model structure (the others differ in training values only)."""
    variants = {}
    for name in sorted(hparams_lib.HPARAMS_SETS):
        h = hparams_lib.get_hparams(name)
        key = (h.sparsity_technique, h.split_heads, h.sparse_embedding,
               h.layer_preprocess_sequence, h.attention_dropout_broadcast_dims)
        variants.setdefault(key, name)
    return sorted(variants.values())


@pytest.mark.parametrize("name", structural_variants())
def test_hparams_sets_build_models_of_their_structure(name):
    h = dataclasses.replace(hparams_lib.get_hparams(name), hidden_size=8, filter_size=8,
                            num_hidden_layers=1, num_heads=2, vocab_size=VOCAB)
    model = model_lib.SparseTransformer(h)
    model.build()
    expected = sparse_layer_count(h) if h.sparsity_technique else 0
    assert len(walk.sparse_layers(model)) == expected
    assert (model.encoder_norm is None) == (h.layer_preprocess_sequence == "none")


def test_dropout_and_sampling_only_in_training():
    model = model_lib.SparseTransformer(micro(layer_prepostprocess_dropout=0.5))
    first = np.asarray(model(FEATURES, training=False))
    np.testing.assert_array_equal(first, np.asarray(model(FEATURES, training=False)))
    assert not np.allclose(first, np.asarray(model(FEATURES, training=True)))


def test_config_and_weights_round_trip(tmp_path):
    model = model_lib.SparseTransformer(micro(sparsity_technique="l0_regularization"), seed=3)
    expected = np.asarray(model(FEATURES))
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    clone = model_lib.SparseTransformer.from_config(model.get_config())
    assert clone.hparams == model.hparams and clone.seed == 3
    clone.build()
    clone.load_weights(path)
    np.testing.assert_allclose(np.asarray(clone(FEATURES)), expected, atol=1e-6)


@pytest.fixture(scope="module")
def built_model():
    model = model_lib.SparseTransformer(micro())
    model.build()
    return model


@pytest.mark.parametrize("features, message", [
    ({"inputs": np.array([[1]])}, r"expects a dict with `inputs` and `targets`.*Received: \['inputs'\]"),
    ({"inputs": np.array([1, 2]), "targets": np.array([[1]])},
     r"Feature `inputs` must be integer ids of shape \(batch, length\). Received: inputs with "
     r"shape=\(2,\)"),
    ({"inputs": np.array([[1]]), "targets": np.array([[0.5]])}, r"Feature `targets` must be integer"),
    ({**FEATURES, "inputs_segmentation": np.ones((2, 5), int)},
     r"A packed batch needs all of .*add \['inputs_position', 'targets_position', "
     r"'targets_segmentation'\]"),
])
def test_bad_features_are_rejected(built_model, features, message):
    with pytest.raises(ValueError, match=message):
        built_model(features)


def test_hparams_must_be_an_hparams_instance():
    with pytest.raises(ValueError, match=r"`hparams` must be an HParams"):
        model_lib.SparseTransformer({"hidden_size": 16})
