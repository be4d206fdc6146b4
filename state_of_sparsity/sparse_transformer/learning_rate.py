"""The Transformer's learning-rate schedules: T2T's product-of-factors string and the legacy noam.

`sparse_transformer_base` trains with "constant*linear_warmup*rsqrt_decay*rsqrt_hidden_size" at
constant 2.0 and 8000 warm-up steps (sos_spec 5.4):

    lr(step) = 2.0 * min(1, step / 8000) * max(step, 8000) ** -0.5 * 512 ** -0.5

which peaks at about 9.88e-4 on step 8000. The older sets (`sparse_transformer_base_v1/v2`) use
T2T's "legacy" noam schedule, lr * hidden**-0.5 * min((step + 1) * warmup**-1.5, (step + 1)**-0.5).
"""

import keras
from keras import ops

FACTORS = ("constant", "linear_warmup", "rsqrt_decay", "rsqrt_hidden_size")


def parse_factors(schedule):
    """The factor names of a T2T schedule string such as "constant*linear_warmup"."""
    factors = [f.strip() for f in schedule.split("*")]
    unknown = [f for f in factors if f not in FACTORS]
    if unknown or not schedule.strip():
        raise ValueError(
            f"learning_rate_schedule={schedule!r}: unknown factors {unknown}; use a '*'-separated "
            f"product of {list(FACTORS)} or 'legacy'."
        )
    return factors


@keras.saving.register_keras_serializable(package="state_of_sparsity")
class FactorSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """T2T's `learning_rate_schedule` hparam: a product of named factors of the step.

    Args:
      schedule: factors joined by "*", from `FACTORS`.
      constant: the value of the "constant" factor (`learning_rate_constant`).
      warmup_steps: `learning_rate_warmup_steps`.
      hidden_size: the model width, for "rsqrt_hidden_size".
    """

    def __init__(self, schedule, constant, warmup_steps, hidden_size):
        self.factors = parse_factors(schedule)
        if warmup_steps < 1 or hidden_size < 1 or not constant > 0:
            raise ValueError(
                "FactorSchedule needs constant > 0, warmup_steps >= 1 and hidden_size >= 1. Received: "
                f"constant={constant}, warmup_steps={warmup_steps}, hidden_size={hidden_size}"
            )
        self.schedule = schedule
        self.constant = float(constant)
        self.warmup_steps = int(warmup_steps)
        self.hidden_size = int(hidden_size)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = float(self.warmup_steps)
        value = ops.convert_to_tensor(1.0, "float32")
        for factor in self.factors:
            if factor == "constant":
                value = value * self.constant
            elif factor == "linear_warmup":
                value = value * ops.minimum(1.0, step / warmup)
            elif factor == "rsqrt_decay":
                value = value * ops.rsqrt(ops.maximum(step, warmup))
            else:  # rsqrt_hidden_size
                value = value * float(self.hidden_size) ** -0.5
        return value

    def get_config(self):
        return {"schedule": self.schedule, "constant": self.constant,
                "warmup_steps": self.warmup_steps, "hidden_size": self.hidden_size}


@keras.saving.register_keras_serializable(package="state_of_sparsity")
class LegacyNoam(keras.optimizers.schedules.LearningRateSchedule):
    """T2T's "legacy" noam schedule: lr * hidden**-0.5 * min((s+1) * warmup**-1.5, (s+1)**-0.5)."""

    def __init__(self, learning_rate, warmup_steps, hidden_size):
        if warmup_steps < 1 or hidden_size < 1 or not learning_rate > 0:
            raise ValueError(
                "LegacyNoam needs learning_rate > 0, warmup_steps >= 1 and hidden_size >= 1. Received: "
                f"learning_rate={learning_rate}, warmup_steps={warmup_steps}, hidden_size={hidden_size}"
            )
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.hidden_size = int(hidden_size)

    def __call__(self, step):
        step = ops.cast(step, "float32") + 1.0
        decay = ops.minimum(step * float(self.warmup_steps) ** -1.5, ops.rsqrt(step))
        return self.learning_rate * float(self.hidden_size) ** -0.5 * decay

    def get_config(self):
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps,
                "hidden_size": self.hidden_size}


def create(schedule, learning_rate, learning_rate_constant, warmup_steps, hidden_size):
    """The schedule an hparams set names ("legacy" or a factor string)."""
    if schedule == "legacy":
        return LegacyNoam(learning_rate, warmup_steps, hidden_size)
    return FactorSchedule(schedule, learning_rate_constant, warmup_steps, hidden_size)
