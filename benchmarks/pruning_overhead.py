"""Training-step time of a magnitude-pruned ResNet-20 versus the same dense Keras model.

Both models train in the same process on the same synthetic CIFAR-size batches,
alternating in rounds so machine noise hits both alike; the pruned model runs
with `PruningCallback` and a live schedule (mask updates included). Prints the
median step times and their ratio (target: <= 1.05).

    python benchmarks/pruning_overhead.py --rounds=5 --steps=20
"""

import statistics
import time

import keras
import numpy as np
from absl import app
from absl import flags

import state_of_sparsity as sos

_ROUNDS = flags.DEFINE_integer("rounds", 5, "Alternating timing rounds per model.", lower_bound=1)
_STEPS = flags.DEFINE_integer("steps", 20, "Timed training steps per round.", lower_bound=2)
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.", lower_bound=1)
_FREQUENCY = flags.DEFINE_integer("frequency", 100, "Mask update frequency in steps.", lower_bound=1)


def resnet20(num_classes=10):
    """ResNet-20 for 32x32 inputs (He et al. 2016): 3 stages of 3 basic blocks, 16/32/64 filters."""

    def conv_bn(x, filters, strides=1, relu=True):
        x = keras.layers.Conv2D(filters, 3, strides, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        return keras.layers.ReLU()(x) if relu else x

    inputs = keras.Input((32, 32, 3))
    x = conv_bn(inputs, 16)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(3):
            strides = 2 if stage > 0 and block == 0 else 1
            shortcut = x
            y = conv_bn(x, filters, strides)
            y = conv_bn(y, filters, relu=False)
            if strides != 1:
                shortcut = keras.layers.Conv2D(filters, 1, strides, use_bias=False)(x)
                shortcut = keras.layers.BatchNormalization()(shortcut)
            x = keras.layers.ReLU()(keras.layers.Add()([shortcut, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))


class StepTimer(keras.callbacks.Callback):
    """Wall time between consecutive batch ends: the whole step, callbacks included."""

    def __init__(self):
        super().__init__()
        self.times, self._last = [], None

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self._last is not None:
            self.times.append(now - self._last)
        self._last = now

    def on_train_begin(self, logs=None):
        self._last = None


def compiled(model):
    model.compile(
        keras.optimizers.SGD(0.1, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(_BATCH.value * _STEPS.value, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, size=(len(x),))
    dense = compiled(resnet20())
    total_steps = _ROUNDS.value * _STEPS.value
    schedule = sos.PolynomialDecay(0.9, 0, max(total_steps, 1), _FREQUENCY.value)
    pruned = compiled(sos.sparsify(resnet20(), "magnitude_pruning", schedule))
    runs = {"dense": (dense, []), "pruned": (pruned, [sos.PruningCallback()])}
    times = {name: [] for name in runs}
    fit = dict(x=x, y=y, batch_size=_BATCH.value, epochs=1, verbose=0, shuffle=False)
    for name, (model, callbacks) in runs.items():  # warm-up: tracing and first-call costs
        model.fit(**{**fit, "x": x[: 2 * _BATCH.value], "y": y[: 2 * _BATCH.value]}, callbacks=callbacks)
    for round_index in range(_ROUNDS.value):
        order = list(runs) if round_index % 2 == 0 else list(runs)[::-1]
        for name in order:
            model, callbacks = runs[name]
            timer = StepTimer()
            model.fit(**fit, callbacks=callbacks + [timer])
            times[name].extend(timer.times)
        print(f"round {round_index + 1}/{_ROUNDS.value}: "
              + ", ".join(f"{n} {statistics.median(t) * 1e3:.1f} ms" for n, t in times.items()),
              flush=True)
    dense_ms = statistics.median(times["dense"]) * 1e3
    pruned_ms = statistics.median(times["pruned"]) * 1e3
    mean_ratio = statistics.mean(times["pruned"]) / statistics.mean(times["dense"])
    print(f"dense  median step: {dense_ms:.1f} ms over {len(times['dense'])} steps")
    print(f"pruned median step: {pruned_ms:.1f} ms over {len(times['pruned'])} steps "
          f"(global sparsity now {sos.sparsity_report(pruned)['global']:.3f})")
    print(f"pruning overhead ratio (median pruned / median dense): {pruned_ms / dense_ms:.3f} "
          f"(mean ratio {mean_ratio:.3f}; target <= 1.05)")


if __name__ == "__main__":
    app.run(main)
