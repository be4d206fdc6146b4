"""`PruningCallback`: drives mask and penalty-weight updates in `model.fit` and logs sparsity."""

import importlib.util

import keras
import tensorflow as tf

from state_of_sparsity import report
from state_of_sparsity.layers import updater


class PruningCallback(keras.callbacks.Callback):
    """Advances the sparse layers after each optimizer step of `model.fit`.

    Pruned layers update their masks on schedule; variational dropout and L0
    layers update their penalty weight (without it their penalty schedule
    does not advance).

    The step is the optimizer's iteration count, which is saved with the
    optimizer, so a run resumed from a checkpoint (e.g. with
    `keras.callbacks.BackupAndRestore`) continues the schedule exactly. At the
    end of each epoch the global sparsity is added to the logs as `sparsity`
    (so it shows in the progress bar of later epochs and in the History) and,
    with `log_dir`, written to TensorBoard with every layer's sparsity and, for
    variational dropout and L0, the penalty weight and the weighted penalty.

    Args:
      log_dir: optional TensorBoard directory for `sparsity/global` and
        `sparsity/<layer name>` scalars.
      update: False only logs, leaving masks and penalty weights as they are
        (scratch / lottery-ticket runs with fixed masks).

    Example:
    ```python
    model.fit(x, y, epochs=3, callbacks=[PruningCallback(log_dir="logs")])
    ```
    """

    def __init__(self, log_dir=None, update=True):
        super().__init__()
        if log_dir and importlib.util.find_spec("tensorboard") is None:
            # tf.summary would only fail at the first scalar, after a whole epoch.
            raise ValueError(
                "PruningCallback(log_dir=...) writes TensorBoard summaries, which needs "
                f"the `tensorboard` package: `pip install tensorboard`. Received: log_dir={log_dir!r}"
            )
        self.log_dir = log_dir
        self.update = update
        self._updater = None
        self._writer = None

    def on_train_begin(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            raise ValueError(
                "PruningCallback needs a compiled model: call `model.compile(...)` "
                "before `model.fit(...)`."
            )
        if getattr(self.model, "steps_per_execution", 1) > 1 and updater.penalized_layers(self.model):
            raise ValueError(
                "PruningCallback advances the VD/L0 penalty schedule once per optimizer step and "
                "sees only every steps_per_execution-th step: compile the model with "
                f"steps_per_execution=1. Received: steps_per_execution={self.model.steps_per_execution}"
            )
        self._updater = updater.MaskUpdater(self.model)
        if not self._updater.has_stateful_layers:
            raise ValueError(
                f"PruningCallback found no sparse layer in model '{self.model.name}'. "
                "Convert the model with `sparsify(model, 'magnitude_pruning', ...)` "
                "or build it from Sparse* layers."
            )
        # Masks due at the current step (e.g. begin_step=0) apply before the first batch.
        if self.update:
            self._updater(optimizer.iterations.value)
        if self.log_dir and self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_train_batch_end(self, batch, logs=None):
        if self.update:
            self._updater(self.model.optimizer.iterations.value)

    def on_epoch_end(self, epoch, logs=None):
        sparsity = report.sparsity_report(self.model)
        if logs is not None:
            logs["sparsity"] = sparsity["global"]
        if self._writer is not None:
            step = int(self.model.optimizer.iterations.numpy())
            with self._writer.as_default(step=step):
                tf.summary.scalar("sparsity/global", sparsity["global"])
                for name, value in sparsity["layers"].items():
                    tf.summary.scalar(f"sparsity/{name}", value)
                penalized = updater.penalized_layers(self.model)
                if penalized:  # the VD KL / L0 term the loss carries, and its weights
                    total = 0.0
                    for layer in penalized:
                        weight = float(layer.penalty_weight.numpy())
                        tf.summary.scalar(f"penalty/weight/{layer.name}", weight)
                        total += weight * float(layer.technique.penalty(layer, layer.sparse_weight.value))
                    tf.summary.scalar("penalty/weighted_total", total)
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
