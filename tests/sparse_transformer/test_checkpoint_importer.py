"""Import of the original's TF1 checkpoints, fabricated with a TF1 graph + Saver under the sos_spec 4.2 names."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from state_of_sparsity.layers import sparse_layers
from state_of_sparsity.sparse_transformer import checkpoint_importer
from state_of_sparsity.sparse_transformer import hparams as hparams_lib
from state_of_sparsity.sparse_transformer import model as model_lib
from state_of_sparsity.sparse_transformer import train

M = "sparse_transformer"
VOCAB = 41  # odd, so two shards have different sizes (21 + 20), as T2T splits them
FEATURES = {
    "inputs": np.array([[5, 9, 13, 2, 1, 0], [7, 3, 1, 0, 0, 0]], np.int32),
    "targets": np.array([[11, 4, 8, 1, 0], [6, 1, 0, 0, 0]], np.int32),
}


def _hparams(technique, **changes):
    changes = {"sparsity_technique": technique, "vocab_size": VOCAB, "num_hidden_layers": 1, **changes}
    return dataclasses.replace(hparams_lib.get_hparams("sparse_transformer_micro"), **changes)


def _spec_names(hparams, shards):
    """{"<our layer>/<variable>": [TF1 names]} written out from sos_spec 4.2, independently of the importer."""
    technique = hparams.sparsity_technique
    table = {}

    def dense(ours, scope, bias):
        if technique == "magnitude_pruning":
            names = {"kernel": "weights", "mask": "mask", "threshold": "threshold", "bias": "biases"}
            scope += "/fully_connected"
        else:
            names = {"kernel": "kernel", "bias": "bias"}
            if technique == "variational_dropout":
                names["log_sigma2"] = "log_sigma2"
            elif technique == "l0_regularization":
                names["log_alpha"] = "log_alpha"
        for ours_name, tf1_name in names.items():
            if ours_name != "bias" or bias:
                table[f"{ours}/{ours_name}"] = [f"{scope}/{tf1_name}"]

    def norm(ours, scope):
        table[f"{ours}/gamma"] = [f"{scope}/layer_norm/layer_norm_scale"]
        table[f"{ours}/beta"] = [f"{scope}/layer_norm/layer_norm_bias"]

    for stack, blocks in (("encoder", ["self_attention"]), ("decoder", ["self_attention", "encdec_attention"])):
        for i in range(hparams.num_hidden_layers):
            body = f"{M}/body/{stack}/layer_{i}"
            for block in blocks:
                for part in ("q", "k", "v", "output_transform"):
                    scope = f"{body}/{block}/multihead_attention/{part}"
                    if hparams.split_heads and part != "output_transform":
                        for head in range(hparams.num_heads):
                            for name in ("kernel", "mask", "threshold"):
                                table[f"{stack}_layer_{i}_{block}_{part}_shard_{head}/{name}"] = [
                                    f"{scope}_shard_{head}/{name}"]
                    else:
                        dense(f"{stack}_layer_{i}_{block}_{part}", scope, bias=False)
                norm(f"{stack}_layer_{i}_{block}_layer_norm", f"{body}/{block}/layer_prepostprocess")
            for conv in ("conv1", "conv2"):
                dense(f"{stack}_layer_{i}_ffn_{conv}", f"{body}/ffn/{conv}", bias=True)
            norm(f"{stack}_layer_{i}_ffn_layer_norm", f"{body}/ffn/layer_prepostprocess")
        norm(f"{stack}_layer_norm", f"{M}/body/{stack}/layer_prepostprocess")
    table["target_space_embedding/embeddings"] = [f"{M}/body/target_space_embedding/kernel"]
    shared = f"{M}/symbol_modality_{hparams.vocab_size}_{hparams.hidden_size}/shared"
    table["shared_embedding/embeddings"] = [f"{shared}/weights_{i}" for i in range(shards)]
    if technique == "magnitude_pruning":
        table["shared_embedding/mask"] = [f"{shared}//mask"]
        table["shared_embedding/threshold"] = [f"{shared}//threshold"]
    elif technique == "variational_dropout":
        table["shared_embedding/log_sigma2"] = [f"{shared}/weights_{i}_aux" for i in range(shards)]
    elif technique == "l0_regularization":
        table["shared_embedding/log_alpha"] = [f"{shared}/weights_{i}_aux" for i in range(shards)]
    return table


def _variables(model):
    return {f"{layer.name}/{v.name}": v for layer in model._flatten_layers(include_self=False, recursive=True)
            for v in sparse_layers.own_variables(layer)}


def _random_model(hparams, seed):
    """A built model whose every weight (masks, gates, norms, biases too) is random, so a misplaced one shows."""
    model = train.build_model(hparams, seed=seed)
    rng = np.random.default_rng(seed)
    for label, variable in _variables(model).items():
        name, shape = label.rsplit("/", 1)[1], tuple(variable.shape)
        if name == "mask":
            value = rng.random(shape) < 0.6
        elif name in ("bias", "beta", "threshold"):
            value = rng.normal(0, 0.1, shape)
        elif name == "gamma":
            value = 1 + rng.normal(0, 0.1, shape)
        elif name == "log_sigma2":
            value = rng.uniform(-12, 2, shape)  # log alpha spans the 3.0 threshold
        elif name == "log_alpha":
            value = rng.normal(0, 3, shape)  # deterministic gates at 0, 1 and between
        elif name in ("kernel", "embeddings"):
            value = rng.normal(0, 0.5, shape)
        else:
            continue
        variable.assign(np.asarray(value, np.float32))
    return model


def _shard(value, shards):
    """T2T's symbol-modality split: shard i has vocab // N rows, plus one for i < vocab % N."""
    sizes = [len(value) // shards + (1 if i < len(value) % shards else 0) for i in range(shards)]
    return np.split(value, np.cumsum(sizes)[:-1])


def _write_tf1_checkpoint(prefix, arrays, global_step):
    """A name-based checkpoint as the original wrote it: TF1 graph variables saved by a v1 Saver."""
    graph = tf.Graph()
    with graph.as_default():
        variables = {name: tf.compat.v1.Variable(value, name=f"v{i}") for i, (name, value) in enumerate(arrays.items())}
        saver = tf.compat.v1.train.Saver(var_list=variables)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            return saver.save(session, str(prefix), global_step=global_step)


def _tf1_arrays(model, shards, global_step=250):
    """{TF1 name: array} of `model` under the spec names, plus non-weight entries the original also saved."""
    variables = _variables(model)
    arrays = {}
    for label, names in _spec_names(model.hparams, shards).items():
        value = variables[label].numpy()
        for name, part in zip(names, _shard(value, len(names)) if len(names) > 1 else [value]):
            arrays[name] = part
    first = next(iter(arrays))
    arrays[first + "/Adam"] = np.zeros_like(arrays[first])
    arrays[first + "/Adam_1"] = np.zeros_like(arrays[first])
    arrays[f"{M}/body/dkl_weight"] = np.float32(1e-7)
    arrays["global_step"] = np.int64(global_step)
    arrays["beta1_power"] = np.float32(0.9)
    return arrays


def _logits(model):
    return model(FEATURES, training=False).numpy()


@pytest.mark.parametrize("technique, shards, changes", [
    ("magnitude_pruning", 1, {}),
    ("magnitude_pruning", 1, {"split_heads": True}),
    ("variational_dropout", 2, {}),
    ("l0_regularization", 2, {}),
    (None, 1, {}),
])
def test_imported_model_computes_the_logits_of_the_original_weights(tmp_path, technique, shards, changes):
    hparams = _hparams(technique, **changes)
    reference = _random_model(hparams, seed=1)
    spec = _spec_names(hparams, shards)
    kept = {label for label in _variables(reference)
            if label.rsplit("/", 1)[1] in checkpoint_importer.UNSAVED_VARIABLES}
    assert set(spec) == set(_variables(reference)) - kept  # the spec table covers every weight
    arrays = _tf1_arrays(reference, shards)
    path = _write_tf1_checkpoint(tmp_path / "model.ckpt", arrays, global_step=250)

    model = train.build_model(hparams, seed=7)
    assert not np.allclose(_logits(model), _logits(reference))
    summary = checkpoint_importer.import_tf1_checkpoint(model, tmp_path)  # the directory resolves to the latest

    np.testing.assert_allclose(_logits(model), _logits(reference), rtol=1e-6, atol=1e-6)
    assert summary.checkpoint == path and summary.global_step == 250
    assert summary.assigned == {label: tuple(names) for label, names in spec.items()}
    assert set(summary.kept) == kept
    assert {f"{M}/body/dkl_weight", "global_step", "beta1_power"} <= set(summary.ignored)
    assert sum(name.endswith(("/Adam", "/Adam_1")) for name in summary.ignored) == 2
    embedding = np.concatenate([arrays[name] for name in spec["shared_embedding/embeddings"]])
    np.testing.assert_array_equal(_variables(model)["shared_embedding/embeddings"].numpy(), embedding)


def test_embedding_mask_spelled_with_a_single_slash_is_accepted(tmp_path):
    hparams = _hparams("magnitude_pruning")
    reference = _random_model(hparams, seed=2)
    arrays = {name.replace("shared//", "shared/"): value for name, value in _tf1_arrays(reference, 1).items()}
    _write_tf1_checkpoint(tmp_path / "model.ckpt", arrays, global_step=3)
    model = train.build_model(hparams, seed=5)
    checkpoint_importer.import_tf1_checkpoint(model, tmp_path)
    np.testing.assert_array_equal(_variables(model)["shared_embedding/mask"].numpy(),
                                  _variables(reference)["shared_embedding/mask"].numpy())


def test_missing_and_mismatched_variables_raise_naming_them_and_assign_nothing(tmp_path):
    hparams = _hparams("variational_dropout")
    reference = _random_model(hparams, seed=3)
    arrays = _tf1_arrays(reference, 1)
    q_sigma = f"{M}/body/encoder/layer_0/self_attention/multihead_attention/q/log_sigma2"
    conv1 = f"{M}/body/decoder/layer_0/ffn/conv1/kernel"
    del arrays[q_sigma]
    arrays[conv1] = arrays[conv1][:, :8]
    _write_tf1_checkpoint(tmp_path / "model.ckpt", arrays, global_step=1)
    model = train.build_model(hparams, seed=4)
    before = _logits(model)
    with pytest.raises(ValueError, match="missing 1 variable") as error:
        checkpoint_importer.import_tf1_checkpoint(model, tmp_path)
    message = str(error.value)
    assert q_sigma in message and conv1 in message and "(16, 8)" in message and "\n" not in message
    np.testing.assert_array_equal(_logits(model), before)


def test_checkpoint_of_a_deeper_model_is_refused(tmp_path):
    deeper = _random_model(_hparams("l0_regularization", num_hidden_layers=2), seed=3)
    _write_tf1_checkpoint(tmp_path / "model.ckpt", _tf1_arrays(deeper, 1), global_step=1)
    with pytest.raises(ValueError, match=r"no place for: .*layer_1"):
        checkpoint_importer.import_tf1_checkpoint(train.build_model(_hparams("l0_regularization")), tmp_path)


def test_other_vocabulary_is_named_in_the_error(tmp_path):
    reference = _random_model(_hparams("magnitude_pruning"), seed=3)
    _write_tf1_checkpoint(tmp_path / "model.ckpt", _tf1_arrays(reference, 1), global_step=1)
    model = train.build_model(_hparams("magnitude_pruning", vocab_size=50))
    with pytest.raises(ValueError, match=r"symbol_modality_50_16/shared/weights_0.*has \['symbol_modality_41_16'\]"):
        checkpoint_importer.import_tf1_checkpoint(model, tmp_path)


def test_tf2_checkpoints_are_told_apart_and_not_imported(tmp_path):
    hparams = _hparams("magnitude_pruning")
    model = train.build_model(hparams)
    tf2_path = tf.train.Checkpoint(model=model).save(str(tmp_path / "tf2" / "model.ckpt"))
    tf1_path = _write_tf1_checkpoint(tmp_path / "tf1" / "model.ckpt", _tf1_arrays(model, 1), global_step=9)
    assert checkpoint_importer.is_tf1_checkpoint(tf1_path)
    assert checkpoint_importer.is_tf1_checkpoint(tf1_path + ".index")
    assert not checkpoint_importer.is_tf1_checkpoint(tf2_path)
    with pytest.raises(ValueError, match="not an original TF1"):
        checkpoint_importer.import_tf1_checkpoint(model, tf2_path)


@pytest.mark.parametrize("make_path, message", [
    (lambda tmp: tmp / "nothing", "No checkpoint at"),
    (lambda tmp: tmp, "has no checkpoint"),
])
def test_missing_checkpoint_is_a_one_line_error(tmp_path, make_path, message):
    with pytest.raises(ValueError, match=message):
        checkpoint_importer.resolve_checkpoint(make_path(tmp_path))


def test_unbuilt_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="built SparseTransformer"):
        checkpoint_importer.import_tf1_checkpoint(model_lib.SparseTransformer(_hparams(None)), tmp_path)


def test_export_writes_the_spec_names_and_round_trips(tmp_path):
    hparams = _hparams("variational_dropout")
    reference = _random_model(hparams, seed=6)
    prefix = checkpoint_importer.export_tf1_checkpoint(reference, tmp_path / "model.ckpt-12", global_step=12)
    names = {name for name, _ in tf.train.list_variables(prefix)}
    assert names == {n for ns in _spec_names(hparams, 1).values() for n in ns} | {"global_step"}
    model = train.build_model(hparams, seed=8)
    assert checkpoint_importer.import_tf1_checkpoint(model, tmp_path).global_step == 12
    np.testing.assert_allclose(_logits(model), _logits(reference), rtol=1e-6, atol=1e-6)


def test_convert_refuses_a_tf2_checkpoint_that_loses_weights(tmp_path, monkeypatch):
    hparams = _hparams("magnitude_pruning")
    tf1 = _write_tf1_checkpoint(tmp_path / "tf1" / "model.ckpt", _tf1_arrays(_random_model(hparams, 9), 1, 77), 77)
    # A restore that brings nothing back stands for a checkpoint that cannot reach the weights.
    monkeypatch.setattr(checkpoint_importer.train, "restore", lambda model, path, description: None)
    with pytest.raises(RuntimeError, match=r"model.ckpt-77 does not hold \d+ of the model's weights"):
        checkpoint_importer.convert(tf1, hparams, str(tmp_path / "tf2"))


def test_convert_writes_a_tf2_checkpoint_with_the_checkpoint_vocabulary(tmp_path):
    hparams = _hparams("l0_regularization")
    reference = _random_model(hparams, seed=9)
    tf1 = _write_tf1_checkpoint(tmp_path / "tf1" / "model.ckpt", _tf1_arrays(reference, 2, 77), global_step=77)
    # The set's own vocab_size (33 288) is replaced by the checkpoint's modality size.
    path, summary = checkpoint_importer.convert(
        tf1, dataclasses.replace(hparams, vocab_size=33288), str(tmp_path / "tf2"))
    assert path.endswith("model.ckpt-77") and summary.global_step == 77
    assert not checkpoint_importer.is_tf1_checkpoint(path)
    restored = train.build_model(hparams, seed=3)
    train.restore(restored, path, "test")
    np.testing.assert_allclose(_logits(restored), _logits(reference), rtol=1e-6, atol=1e-6)


def test_post_norm_models_read_layer_postprocess_norms():
    hparams = hparams_lib.get_hparams("sparse_transformer_base_v1")
    assert checkpoint_importer.layer_scope("encoder_layer_0_ffn_layer_norm", hparams) == (
        f"{M}/body/encoder/layer_0/ffn/layer_postprocess/layer_norm")
    assert checkpoint_importer.layer_scope("decoder_layer_2_encdec_attention_q", hparams) == (
        f"{M}/body/decoder/layer_2/encdec_attention/multihead_attention/q")
