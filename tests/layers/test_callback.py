"""Tests of `PruningCallback` in `model.fit`: schedule, logs, TensorBoard, resume, errors."""

import os

import keras
import numpy as np
import pytest

import state_of_sparsity as sos

X = np.random.default_rng(0).normal(size=(64, 12)).astype(np.float32)
Y = np.random.default_rng(1).integers(0, 3, size=(64,))


SCHEDULES = {
    "magnitude_pruning": sos.PolynomialDecay(0.9, begin_step=2, end_step=30, frequency=4),
    "random_pruning": sos.PolynomialDecay(0.9, begin_step=2, end_step=30, frequency=4),
    "variational_dropout": sos.CubicEMAPenalty(1e-2, begin_step=2, end_step=30),
    "l0_regularization": sos.CubicEMAPenalty(1e-2, begin_step=2, end_step=30),
}


def pruned_model(technique="magnitude_pruning", seed=0, **options):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((12,)),
        keras.layers.Dense(32, activation="relu", name="hidden"),
        keras.layers.Dense(3, name="logits"),
    ])
    model = sos.sparsify(model, technique, SCHEDULES[technique], **options)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def masks(model):
    return {layer.name: layer.mask.numpy() for layer in model.layers}


@pytest.mark.parametrize("technique", ["magnitude_pruning", "random_pruning"])
def test_fit_reaches_target_sparsity_and_logs_it(technique, tmp_path):
    model = pruned_model(technique)
    history = model.fit(X, Y, batch_size=8, epochs=4, shuffle=False, verbose=0,
                        callbacks=[sos.PruningCallback(log_dir=str(tmp_path / "tb"))])
    report = sos.sparsity_report(model)
    assert report["global"] == pytest.approx(0.9, abs=2e-3)
    assert set(report["layers"]) == {"hidden", "logits"}
    sparsities = history.history["sparsity"]
    assert sparsities == sorted(sparsities) and sparsities[-1] == report["global"]
    events = [f for _, _, files in os.walk(tmp_path / "tb") for f in files if "tfevents" in f]
    assert events


@pytest.mark.parametrize("technique", ["magnitude_pruning", "variational_dropout"])
def test_tensorboard_summaries_hold_global_and_layer_sparsity(technique, tmp_path):
    import tensorflow as tf

    model = pruned_model(technique)
    model.fit(X, Y, batch_size=8, epochs=1, verbose=0,
              callbacks=[sos.PruningCallback(log_dir=str(tmp_path))])
    tags = set()
    for root, _, files in os.walk(tmp_path):
        for name in files:
            for event in tf.compat.v1.train.summary_iterator(os.path.join(root, name)):
                tags.update(value.tag for value in event.summary.value)
    assert {"sparsity/global", "sparsity/hidden", "sparsity/logits"} <= tags
    assert ("penalty/weighted_total" in tags) == (technique == "variational_dropout")


class _Interrupt(keras.callbacks.Callback):
    """Simulates a killed job: raises in the middle of an epoch."""

    def __init__(self, at_step):
        super().__init__()
        self.at_step = at_step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.at_step:
            raise KeyboardInterrupt("simulated kill")


@pytest.mark.parametrize("technique", sorted(SCHEDULES))
def test_resumed_run_ends_with_the_state_of_an_uninterrupted_run(technique, tmp_path):
    fit = dict(x=X, y=Y, batch_size=8, epochs=5, shuffle=False, verbose=0)
    reference = pruned_model(technique)
    reference.fit(**fit, callbacks=[sos.PruningCallback()])

    backup = str(tmp_path / "backup")
    interrupted = pruned_model(technique)
    with pytest.raises(KeyboardInterrupt):
        # Killed mid-schedule, in epoch 3, after the epoch-2 backup.
        interrupted.fit(**fit, callbacks=[sos.PruningCallback(), _Interrupt(at_step=20),
                                          keras.callbacks.BackupAndRestore(backup)])
    # A new process would rebuild the model from scratch: other initial weights.
    resumed = pruned_model(technique, seed=42)
    resumed.fit(**fit, callbacks=[sos.PruningCallback(), keras.callbacks.BackupAndRestore(backup)])

    if "pruning" in technique:
        for name, mask in masks(reference).items():
            np.testing.assert_array_equal(masks(resumed)[name], mask)
    else:  # the penalty EMA (and the noise draws) continue exactly
        penalty = reference.get_layer("hidden").penalty_weight.numpy()
        assert penalty > 0 and resumed.get_layer("hidden").penalty_weight.numpy() == penalty
    assert sos.sparsity_report(resumed) == sos.sparsity_report(reference)
    for got, want in zip(resumed.weights, reference.weights, strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, err_msg=got.path)


def test_callback_without_compiled_model_names_the_missing_step():
    model = sos.sparsify(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]), "magnitude_pruning")
    callback = sos.PruningCallback()
    callback.set_model(model)
    with pytest.raises(ValueError, match=r"call `model.compile\(...\)`"):
        callback.on_train_begin()


def test_callback_on_a_model_without_pruned_layers_says_how_to_convert():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="found no sparse layer.*sparsify"):
        model.fit(np.ones((4, 2)), np.ones((4, 2)), verbose=0, callbacks=[sos.PruningCallback()])


def test_log_dir_without_tensorboard_fails_at_construction(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real_find_spec(name, *a))
    with pytest.raises(ValueError, match="needs the `tensorboard` package.*Received: log_dir='logs'"):
        sos.PruningCallback(log_dir="logs")


def test_update_false_only_logs_and_keeps_fixed_masks(tmp_path):
    model = pruned_model()
    for layer in model.layers:
        layer.mask.assign(np.zeros(layer.mask.shape))
    history = model.fit(X, Y, batch_size=8, epochs=2, verbose=0,
                        callbacks=[sos.PruningCallback(log_dir=str(tmp_path), update=False)])
    assert history.history["sparsity"] == [1.0, 1.0]
    assert all(int(layer.last_mask_update_step.numpy()) == -1 for layer in model.layers)
