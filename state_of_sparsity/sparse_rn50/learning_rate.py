"""The paper's ResNet-50 learning-rate schedule: linear warm-up, then steps at epochs 30/60/80 (sos_spec 6.3)."""

import keras
from keras import ops

WARMUP_EPOCHS = 5
# (start epoch, multiplier of the peak rate)
STEPS = ((30, 0.1), (60, 0.01), (80, 0.001))
# Epochs of a standard run (128k steps at batch 1024 are ~102 epochs; the last step is at 80).
SCHEDULE_EPOCHS = 90


@keras.saving.register_keras_serializable(package="state_of_sparsity")
class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = peak * min(epoch / 5, 1) * {1, 0.1, 0.01, 0.001} after epochs {0, 30, 60, 80}.

    `epoch = step / steps_per_epoch` and `peak = base_learning_rate * batch / 256`
    (0.4 for batch 1024).

    Args:
      peak_learning_rate: rate after warm-up.
      steps_per_epoch: optimizer steps per pass over the training set (> 0).
    """

    def __init__(self, peak_learning_rate, steps_per_epoch):
        if not peak_learning_rate > 0 or not steps_per_epoch > 0:
            raise ValueError(
                "`peak_learning_rate` and `steps_per_epoch` must be positive. Received: "
                f"peak_learning_rate={peak_learning_rate}, steps_per_epoch={steps_per_epoch}"
            )
        self.peak_learning_rate = float(peak_learning_rate)
        self.steps_per_epoch = float(steps_per_epoch)

    def __call__(self, step):
        epoch = ops.cast(step, "float32") / self.steps_per_epoch
        multiplier = ops.minimum(epoch / WARMUP_EPOCHS, 1.0)
        for start, factor in STEPS:
            multiplier = ops.where(epoch >= start, factor, multiplier)
        return self.peak_learning_rate * multiplier

    def get_config(self):
        return {"peak_learning_rate": self.peak_learning_rate, "steps_per_epoch": self.steps_per_epoch}
