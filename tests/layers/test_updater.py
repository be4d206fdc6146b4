"""Tests of `update_masks`: schedule-driven mask updates for uniform, global and random pruning."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from state_of_sparsity import layers as sparse
from state_of_sparsity.layers.pruning import ConstantSparsity
from state_of_sparsity.layers.pruning import MagnitudePruning
from state_of_sparsity.layers.pruning import PolynomialDecay
from state_of_sparsity.layers.pruning import RandomPruning
from state_of_sparsity.layers import update_masks


def two_layer_model(technique_a, technique_b=None, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((20,))
    hidden = sparse.SparseDense(30, technique=technique_a, name="a")(inputs)
    outputs = sparse.SparseDense(10, technique=technique_b or technique_a, name="b")(hidden)
    return keras.Model(inputs, outputs)


def np_top_k_mask(w, sparsity):
    k = int(np.floor(w.size * (1 - np.float64(np.float32(sparsity))) + 0.5))
    keep = np.zeros(w.size, np.float32)
    keep[np.argsort(-np.abs(w).ravel(), kind="stable")[:k]] = 1
    return keep.reshape(w.shape)


def test_magnitude_update_follows_the_schedule_per_layer():
    schedule = PolynomialDecay(0.8, begin_step=2, end_step=6, frequency=2)
    model = two_layer_model(MagnitudePruning(schedule))
    a = model.get_layer("a")
    assert not bool(update_masks(model, 1))  # before begin_step
    assert np.all(a.mask.numpy() == 1)
    for step in range(2, 8):
        changed = bool(update_masks(model, step))
        assert changed == (step in (2, 4, 6))
        if changed:
            expected_sparsity = float(schedule(step))
            for layer in (a, model.get_layer("b")):
                np.testing.assert_array_equal(
                    layer.mask.numpy(), np_top_k_mask(layer.sparse_weight.numpy(), expected_sparsity))
                assert int(layer.last_mask_update_step.numpy()) == step
    assert a.mask.numpy().mean() == pytest.approx(0.2, abs=1e-9)
    assert float(a.threshold.numpy()) == np.abs(a.sparse_weight.numpy())[a.mask.numpy() == 1].min()


def test_global_magnitude_pruning_reaches_the_total_target_not_per_layer():
    technique = MagnitudePruning(ConstantSparsity(0.7, frequency=1), granularity="global")
    model = two_layer_model(technique)
    model.get_layer("b").sparse_weight.assign(0.001 * model.get_layer("b").sparse_weight.numpy())
    update_masks(model, 0)
    a_mask, b_mask = model.get_layer("a").mask.numpy(), model.get_layer("b").mask.numpy()
    assert a_mask.sum() + b_mask.sum() == round(0.3 * (600 + 300))
    assert b_mask.sum() == 0  # the tiny layer is pruned first
    assert model.get_layer("a").threshold.numpy() == model.get_layer("b").threshold.numpy()


def test_global_pruning_with_different_schedules_is_rejected():
    model = two_layer_model(
        MagnitudePruning(ConstantSparsity(0.5), granularity="global"),
        MagnitudePruning(ConstantSparsity(0.6), granularity="global"),
    )
    with pytest.raises(ValueError, match="one schedule for all its layers.*Layer 'a'.*layer 'b'"):
        update_masks(model, 0)


def test_random_pruning_reproducible_from_seed_and_independent_of_weights():
    schedule = PolynomialDecay(0.9, begin_step=0, end_step=4, frequency=1)
    first = two_layer_model(RandomPruning(schedule, seed=5), seed=0)
    second = two_layer_model(RandomPruning(schedule, seed=5), seed=99)  # other weights
    other = two_layer_model(RandomPruning(schedule, seed=6), seed=0)
    for step in range(5):
        for model in (first, second, other):
            update_masks(model, step)
    for name in ("a", "b"):
        np.testing.assert_array_equal(first.get_layer(name).mask.numpy(), second.get_layer(name).mask.numpy())
        assert not np.array_equal(first.get_layer(name).mask.numpy(), other.get_layer(name).mask.numpy())
        assert first.get_layer(name).mask.numpy().mean() == pytest.approx(0.1, abs=0.002)
    # Layers of one model draw different masks.
    assert not np.array_equal(first.get_layer("a").mask.numpy()[:10, :10], first.get_layer("b").mask.numpy()[:10, :10])


def test_random_masks_are_nested_over_the_schedule():
    model = two_layer_model(RandomPruning(PolynomialDecay(0.95, 0, 10, 1), seed=1))
    layer, previous = model.get_layer("a"), np.ones((20, 30))
    for step in range(11):
        update_masks(model, step)
        assert np.all(layer.mask.numpy() <= previous)
        previous = layer.mask.numpy()


def test_update_masks_works_inside_tf_function_for_custom_loops():
    model = two_layer_model(MagnitudePruning(PolynomialDecay(0.5, 0, 4, 1)))
    optimizer = keras.optimizers.SGD(0.1)
    x, y = tf.random.normal([16, 20]), tf.random.normal([16, 10])

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        update_masks(model, optimizer.iterations)
        return loss

    for _ in range(5):
        train_step()
    for name in ("a", "b"):
        assert model.get_layer(name).mask.numpy().mean() == pytest.approx(0.5, abs=1e-9)


def test_models_without_pruned_layers_are_a_no_op():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    assert not bool(update_masks(model, 10))


def test_custom_loop_resumed_from_checkpoint_manager_ends_with_identical_masks(tmp_path):
    x, y = tf.random.normal([16, 20], seed=1), tf.random.normal([16, 10], seed=2)

    def setup(seed):
        model = two_layer_model(RandomPruning(PolynomialDecay(0.8, 1, 12, 3), seed=2), seed=seed)
        optimizer = keras.optimizers.Adam(0.01)
        optimizer.build(model.trainable_variables)
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
        manager = tf.train.CheckpointManager(checkpoint, str(tmp_path / f"ckpt{seed}"), max_to_keep=2)
        return model, optimizer, manager

    def train(model, optimizer, until, manager=None):
        while int(optimizer.iterations.numpy()) < until:
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
            optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
            update_masks(model, optimizer.iterations)
            if manager is not None and int(optimizer.iterations.numpy()) == 7:
                manager.save()

    reference, reference_optimizer, _ = setup(seed=0)
    train(reference, reference_optimizer, until=15)

    killed, killed_optimizer, manager = setup(seed=0)
    train(killed, killed_optimizer, until=9, manager=manager)  # checkpoint at 7, killed at 9
    resumed, resumed_optimizer, _ = setup(seed=5)
    tf.train.Checkpoint(model=resumed, optimizer=resumed_optimizer).restore(
        manager.latest_checkpoint).assert_consumed()
    assert int(resumed_optimizer.iterations.numpy()) == 7
    train(resumed, resumed_optimizer, until=15)
    for name in ("a", "b"):
        np.testing.assert_array_equal(resumed.get_layer(name).mask.numpy(), reference.get_layer(name).mask.numpy())
        np.testing.assert_allclose(resumed.get_layer(name).sparse_weight.numpy(),
                                   reference.get_layer(name).sparse_weight.numpy(), rtol=1e-6)
