"""Model-agnostic pieces of the training scripts: tf.distribute set-up, checkpoints, progress lines."""

import os
import time

import keras
import tensorflow as tf
from absl import logging


def create_strategy(name):
    """The tf.distribute strategy named by --distribution_strategy."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy):
    """Whether this process writes checkpoints, summaries and results (always, unless multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (
        not has_chief and resolver.task_type == "worker" and resolver.task_id == 0
    )


def worker_dir(directory, strategy):
    """`directory` on the chief; a per-worker scratch directory elsewhere (the multi-worker recipe)."""
    if is_chief(strategy):
        return directory
    resolver = strategy.cluster_resolver
    return os.path.join(directory, f"workertemp_{resolver.task_type}_{resolver.task_id}")


class CheckpointCallback(keras.callbacks.Callback):
    """Saves `model.ckpt-<step>` (model + optimizer) through a CheckpointManager, stops at `last_step`.

    Keras epochs here are checkpoint intervals; the last one may be cut short
    so training ends exactly at `last_step`.
    """

    def __init__(self, manager, last_step):
        super().__init__()
        self.manager, self.last_step = manager, last_step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.last_step:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.manager.save(checkpoint_number=int(self.model.optimizer.iterations.numpy()))


class ProgressLogger(keras.callbacks.Callback):
    """One log line every `every` steps: step, loss, a metric, learning rate, throughput.

    Throughput is `items_per_step` (e.g. images in a batch) per second, or, when
    `count_metric` names a running-sum metric in the logs (e.g. non-pad tokens seen
    this epoch), the growth of that metric per second.
    """

    def __init__(self, every, items_per_step=None, unit="images", metric="top_1_accuracy",
                 count_metric=None):
        super().__init__()
        if (items_per_step is None) == (count_metric is None):
            raise ValueError("ProgressLogger needs exactly one of items_per_step and count_metric.")
        self.every, self.items_per_step, self.unit = every, items_per_step, unit
        self.metric, self.count_metric = metric, count_metric
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._count = 0.0  # running-sum metrics restart every epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self._start is None:
            self._start, self._start_step, self._count = time.perf_counter(), self._step(), 0.0

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        if step % self.every:
            return
        logs = logs or {}
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        if self.count_metric is None:
            items = (step - self._start_step) * self.items_per_step
        else:
            count = float(logs.get(self.count_metric, 0.0))
            items, self._count = count - self._count, count
        logging.info(
            "step %d: loss %.4f, %s %.4f, lr %.3g, %.1f %s/s", step,
            float(logs.get("loss", float("nan"))), self.metric,
            float(logs.get(self.metric, float("nan"))),
            float(self.model.optimizer.learning_rate), items / elapsed, self.unit,
        )
        self._start, self._start_step = time.perf_counter(), step

    def _step(self):
        return int(self.model.optimizer.iterations.numpy())
