"""The shared training callbacks: progress lines with throughput, checkpoints that stop on the last step."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import logging

from state_of_sparsity import training


class _SumOfWeights(keras.metrics.Sum):
    """A running count: the number of non-zero entries of y_true seen this epoch."""

    def update_state(self, y_true, y_pred, sample_weight=None):
        super().update_state(tf.math.count_nonzero(y_true, dtype="float32"))


def _fit(callbacks, steps, metrics=()):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), "mse", metrics=list(metrics))
    x = np.ones((4 * steps, 3), "float32")
    y = np.ones((4 * steps, 1), "float32")
    model.fit(x, y, batch_size=4, epochs=1, callbacks=callbacks, verbose=0, shuffle=False)
    return model


def test_progress_lines_report_items_per_second(monkeypatch):
    lines = []
    monkeypatch.setattr(logging, "info", lambda fmt, *args: lines.append(fmt % args))
    _fit([training.ProgressLogger(2, items_per_step=4, metric="loss")], steps=6)
    assert [line.split(":")[0] for line in lines] == ["step 2", "step 4", "step 6"]
    assert all(line.endswith("images/s") and "lr 0.01" in line for line in lines)


def test_progress_lines_can_count_a_running_metric(monkeypatch):
    lines = []
    monkeypatch.setattr(logging, "info", lambda fmt, *args: lines.append(fmt % args))
    monkeypatch.setattr(training.time, "perf_counter", iter(range(100)).__next__)
    logger = training.ProgressLogger(3, unit="tokens", metric="loss", count_metric="tokens")
    _fit([logger], steps=6, metrics=[_SumOfWeights(name="tokens")])
    # 4 tokens per step, 3 steps per line, one fake second between the first and last call.
    rates = [float(line.split(", ")[-1].split()[0]) for line in lines]
    assert len(rates) == 2 and all(line.endswith("tokens/s") for line in lines)
    assert rates[0] == pytest.approx(12 / 1) and rates[1] > 0


def test_progress_logger_needs_one_throughput_source():
    with pytest.raises(ValueError, match="exactly one"):
        training.ProgressLogger(5)
    with pytest.raises(ValueError, match="exactly one"):
        training.ProgressLogger(5, items_per_step=2, count_metric="tokens")


def test_checkpoint_callback_saves_each_epoch_and_stops_at_the_last_step(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model, optimizer=model.optimizer), str(tmp_path), max_to_keep=None,
        checkpoint_name="model.ckpt")
    x, y = np.ones((40, 3), "float32"), np.ones((40, 1), "float32")
    model.fit(x, y, batch_size=4, epochs=3, steps_per_epoch=3, verbose=0,
              callbacks=[training.CheckpointCallback(manager, last_step=5)])
    assert int(model.optimizer.iterations.numpy()) == 5
    assert [p.rsplit("-", 1)[1] for p in manager.checkpoints] == ["3", "5"]
