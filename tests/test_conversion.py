"""Tests of `sparsify` and `strip` on Sequential, functional and nested models."""

import keras
import numpy as np
import pytest

import state_of_sparsity as sos
from state_of_sparsity.layers import SparseLayerMixin

X_IMG = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype(np.float32)


def cnn():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(6, activation="relu", name="fc")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="logits")(x))


def sparse_names(model):
    return sorted(layer.name for layer in model._flatten_layers() if isinstance(layer, SparseLayerMixin))


def test_sparsify_converts_supported_layers_and_keeps_predictions():
    model = cnn()
    pruned = sos.sparsify(model, "magnitude_pruning")
    assert sparse_names(pruned) == ["depthwise", "fc", "logits", "stem"]
    assert type(pruned.get_layer("bn")) is keras.layers.BatchNormalization
    np.testing.assert_allclose(pruned.predict(X_IMG, verbose=0), model.predict(X_IMG, verbose=0), rtol=1e-5)
    assert pruned.get_layer("stem").technique.schedule == sos.ConstantSparsity(0.5)


def test_sparsify_handles_sequential_embedding_einsum_and_nested_models():
    inner = keras.Sequential([keras.Input((5, 4)),
                              keras.layers.EinsumDense("abc,cd->abd", (5, 3), name="proj")], name="inner")
    inputs = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(10, 4, name="embed")(inputs)
    model = keras.Model(inputs, inner(x))
    pruned = sos.sparsify(model, "random_pruning", seed=3)
    assert sparse_names(pruned) == ["embed", "proj"]
    tokens = np.array([[1, 2, 3, 4, 9]])
    np.testing.assert_allclose(pruned(tokens).numpy(), model(tokens).numpy(), rtol=1e-6)
    assert pruned.get_layer("inner").get_layer("proj").technique.seed == 3


def test_first_and_last_layers_and_excluded_layers_stay_dense():
    pruned = sos.sparsify(cnn(), "magnitude_pruning", prune_first_layer=False, prune_last_layer=False,
                          exclude=["^depth"])
    assert sparse_names(pruned) == ["fc"]
    assert type(pruned.get_layer("stem")) is keras.layers.Conv2D


def test_sparsity_map_overrides_the_target_of_matching_layers():
    schedule = sos.PolynomialDecay(0.8, 0, 100, 10)
    pruned = sos.sparsify(cnn(), "magnitude_pruning", schedule, granularity="global",
                          sparsity_map={"^logits$": 0.4})
    logits = pruned.get_layer("logits").technique
    assert logits.schedule == sos.PolynomialDecay(0.4, 0, 100, 10)
    assert logits.granularity == "layer"
    assert pruned.get_layer("fc").technique.granularity == "global"
    sos.update_masks(pruned, 100)
    report = sos.sparsity_report(pruned)
    assert report["layers"]["logits"] == pytest.approx(1 - 7 / 12)  # keeps round(12 * 0.6) = 7
    sizes = {n: int(np.prod(pruned.get_layer(n).sparse_weight.shape)) for n in ("stem", "depthwise", "fc")}
    pooled = sum(report["layers"][n] * s for n, s in sizes.items()) / sum(sizes.values())
    kept = np.floor(sum(sizes.values()) * (1 - np.float64(np.float32(0.8))) + 0.5)
    assert pooled == pytest.approx(1 - kept / sum(sizes.values()))


@pytest.mark.parametrize("technique", ["magnitude_pruning", "random_pruning"])
def test_strip_gives_plain_layers_with_zeros_and_identical_predictions(technique, tmp_path):
    pruned = sos.sparsify(cnn(), technique, sos.ConstantSparsity(0.75))
    sos.update_masks(pruned, 0)
    stripped = sos.strip(pruned)
    assert sparse_names(stripped) == []
    assert type(stripped.get_layer("depthwise")) is keras.layers.DepthwiseConv2D
    np.testing.assert_array_equal(stripped.predict(X_IMG, verbose=0), pruned.predict(X_IMG, verbose=0))
    for name in ("stem", "depthwise", "fc", "logits"):
        kernel = stripped.get_layer(name).weights[0].numpy()
        assert np.mean(kernel == 0) == pytest.approx(0.75, abs=0.02)
    # The stripped file holds no reference to this package.
    path = tmp_path / "stripped.keras"
    stripped.save(path)
    import zipfile
    assert b"state_of_sparsity" not in zipfile.ZipFile(path).read("config.json")


def test_sparsifying_an_already_sparse_model_is_rejected():
    pruned = sos.sparsify(cnn(), "magnitude_pruning")
    with pytest.raises(ValueError, match="already has 4 sparse layers"):
        sos.sparsify(pruned, "random_pruning")


def test_sparsify_copies_sparse_layers_with_their_state_when_others_are_converted():
    inputs = keras.Input((4,))
    hidden = sos.SparseDense(5, technique=sos.MagnitudePruning(sos.ConstantSparsity(0.6)), name="sparse")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(hidden))
    sos.update_masks(model, 0)
    converted = sos.sparsify(model, "random_pruning")
    np.testing.assert_array_equal(converted.get_layer("sparse").mask.numpy(), model.get_layer("sparse").mask.numpy())
    assert isinstance(converted.get_layer("sparse").technique, sos.MagnitudePruning)
    assert isinstance(converted.get_layer("dense").technique, sos.RandomPruning)


def test_subclassed_models_are_rejected_with_advice():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = keras.layers.Dense(2)

        def call(self, x):
            return self.fc(x)

    with pytest.raises(ValueError, match="subclassed model use the Sparse.*Received: model of type Net"):
        sos.sparsify(Net(), "magnitude_pruning")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(technique="pruning"), r"Unknown sparsity technique.*Received: technique='pruning'"),
        (dict(technique="magnitude_pruning", sparsity_map={"nope": 0.5}), r"patterns \['nope'\] match no"),
        (dict(technique="magnitude_pruning", granularity="block"), "granularity.*Received: granularity='block'"),
        (dict(technique="random_pruning", granularity="global"), "Invalid options for technique 'random_pruning'"),
        (dict(technique=sos.MagnitudePruning(), schedule=sos.ConstantSparsity(0.1)), "only with a technique name"),
        (dict(technique="magnitude_pruning", exclude=[".*"]), None),
    ],
)
def test_sparsify_rejects_bad_arguments(kwargs, message):
    if message is None:  # excluding everything is allowed and gives a dense copy
        assert sparse_names(sos.sparsify(cnn(), **kwargs)) == []
        return
    with pytest.raises(ValueError, match=message):
        sos.sparsify(cnn(), **kwargs)


def test_model_without_supported_layers_is_rejected():
    model = keras.Sequential([keras.Input((3,)), keras.layers.ReLU()])
    with pytest.raises(ValueError, match="no layer that can be made sparse"):
        sos.sparsify(model, "magnitude_pruning")


def test_report_on_a_dense_model_says_how_to_convert():
    with pytest.raises(ValueError, match="no built sparse layer.*sparsify"):
        sos.sparsity_report(cnn())


def test_technique_names_lists_the_registered_techniques():
    assert {"magnitude_pruning", "random_pruning"} <= set(sos.technique_names())


@pytest.mark.parametrize(
    "technique, schedule",
    [("variational_dropout", sos.ConstantPenalty(1e-3)), ("l0_regularization", sos.ConstantPenalty(1e-3))],
)
def test_vd_and_l0_sparsify_and_strip_bake_in_the_evaluation_weights(technique, schedule):
    model = sos.sparsify(cnn(), technique, schedule, prune_first_layer=False)
    assert sparse_names(model) == ["depthwise", "fc", "logits"]
    for name in ("depthwise", "fc", "logits"):  # push about half of the weights past the cut
        layer = model.get_layer(name)
        state = layer.log_sigma2 if technique == "variational_dropout" else layer.log_alpha
        values = np.random.default_rng(0).uniform(-6, 6, state.shape).astype(np.float32)
        state.assign(values if technique == "variational_dropout" else -values)
    stripped = sos.strip(model)
    np.testing.assert_allclose(stripped.predict(X_IMG, verbose=0), model.predict(X_IMG, verbose=0), rtol=1e-5, atol=1e-6)
    zeros = sum(int(np.sum(stripped.get_layer(n).weights[0].numpy() == 0)) for n in ("depthwise", "fc", "logits"))
    sizes = sum(stripped.get_layer(n).weights[0].numpy().size for n in ("depthwise", "fc", "logits"))
    assert sos.sparsity_report(model)["global"] == pytest.approx(zeros / sizes)
    assert 0.2 < zeros / sizes < 0.8


def test_vd_without_a_penalty_schedule_is_rejected_with_an_example():
    with pytest.raises(ValueError, match="VariationalDropout needs a penalty-weight schedule.*LinearPenalty"):
        sos.sparsify(cnn(), "variational_dropout")


def test_sparsity_map_is_rejected_for_vd():
    with pytest.raises(ValueError, match="`sparsity_map` applies to.*Received: technique='l0_regularization'"):
        sos.sparsify(cnn(), "l0_regularization", sos.ConstantPenalty(1e-3), sparsity_map={"fc": 0.5})


def test_projections_inside_multi_head_attention_are_reported_not_silently_kept_dense():
    inputs = keras.Input((4, 8))
    attended = keras.layers.MultiHeadAttention(2, 4, name="mha")(inputs, inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(attended))
    with pytest.warns(UserWarning, match=r"keeps \['mha/query', 'mha/key', 'mha/value', 'mha/attention_output'\] dense"):
        pruned = sos.sparsify(model, "magnitude_pruning")
    assert sparse_names(pruned) == ["out"]
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"patterns \['\^query\$'\] match no"):
        sos.sparsify(model, "magnitude_pruning", sparsity_map={"^query$": 0.9})


def test_duplicate_sparse_layer_names_in_nested_models_are_rejected():
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, name="fc")], name="inner")
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(inner(inputs)))
    pruned = sos.sparsify(model, "random_pruning")
    with pytest.raises(ValueError, match=r"unique names; these repeat: \['fc'\]"):
        sos.sparsity_report(pruned)
