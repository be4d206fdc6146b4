"""Schedules of the weight that multiplies the variational dropout KL or the L0 penalty."""

import keras
from keras import ops

from state_of_sparsity.layers import serializable
from state_of_sparsity.layers import validation

_PACKAGE = "state_of_sparsity"


class PenaltySchedule(serializable.Serializable):
    """Base class: the penalty weight after a training step.

    `next_weight(step, previous_weight)` returns the weight to use from `step`
    on; stateful schedules (the cubic EMA) read the previous weight, which the
    layer keeps in its non-trainable `penalty_weight` variable so a resumed run
    continues exactly.
    """

    def next_weight(self, step, previous_weight):
        raise NotImplementedError(
            f"{self.__class__.__name__} must implement `next_weight(step, previous_weight)`."
        )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConstantPenalty(PenaltySchedule):
    """`w(step) = weight`: the penalty at full strength from the start.

    Args:
      weight: penalty coefficient (>= 0). For the ELBO of a model trained on
        a per-example mean loss, use 1 / number of training examples.
    """

    def __init__(self, weight):
        validation.check_number("weight", weight, minimum=0.0)
        self.weight = float(weight)

    def next_weight(self, step, previous_weight):
        del step, previous_weight
        return ops.convert_to_tensor(self.weight, "float32")

    def get_config(self):
        return {"weight": self.weight}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LinearPenalty(PenaltySchedule):
    """Linear warm-up of the penalty weight (sos_spec 5.5 "linear" and the ResNet-50 warm-up of 6.4).

    ```
    w(step) = weight * min(max(step - begin_step, 0) / (end_step - begin_step), 1)
    ```
    The Transformer's `*_weight_start` / `*_weight_diff` hparams map to
    `begin_step=start, end_step=start + diff`; ResNet-50's `is_warm_up` maps
    to `begin_step=sparsity_begin_step, end_step=sparsity_end_step`.

    Args:
      weight: final penalty coefficient (>= 0).
      begin_step: step where the ramp starts (>= 0).
      end_step: step where it reaches `weight` (> begin_step).
    """

    def __init__(self, weight, begin_step, end_step):
        validation.check_number("weight", weight, minimum=0.0)
        _check_steps(begin_step, end_step)
        self.weight = float(weight)
        self.begin_step = int(begin_step)
        self.end_step = int(end_step)

    def next_weight(self, step, previous_weight):
        del previous_weight
        progress = ops.maximum(ops.cast(step, "float32") - self.begin_step, 0.0) / (
            self.end_step - self.begin_step
        )
        return self.weight * ops.minimum(progress, 1.0)

    def get_config(self):
        return {"weight": self.weight, "begin_step": self.begin_step, "end_step": self.end_step}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CubicEMAPenalty(PenaltySchedule):
    """Cubic ramp smoothed by an exponential moving average (sos_spec 5.5 "cubic").

    ```
    x = max(step - begin_step, 0) / (end_step - begin_step)
    c(step) = weight * min(1 - (1 - x)^3, 1)
    w(step) = (1 - decay) * c(step) + decay * w(previous step)
    ```
    As in the original, `w` starts at 0 and is updated once per training step,
    so it lags the ramp by about 1 / (1 - decay) steps.

    Args:
      weight: final penalty coefficient (>= 0).
      begin_step: step where the ramp starts (>= 0).
      end_step: step where the ramp reaches `weight` (> begin_step).
      decay: EMA decay in [0, 1); the original uses 0.9.
    """

    def __init__(self, weight, begin_step, end_step, decay=0.9):
        validation.check_number("weight", weight, minimum=0.0)
        _check_steps(begin_step, end_step)
        validation.check_unit_interval("decay", decay)
        self.weight = float(weight)
        self.begin_step = int(begin_step)
        self.end_step = int(end_step)
        self.decay = float(decay)

    def next_weight(self, step, previous_weight):
        x = ops.maximum(ops.cast(step, "float32") - self.begin_step, 0.0) / (
            self.end_step - self.begin_step
        )
        target = self.weight * ops.minimum(1.0 - ops.power(1.0 - x, 3.0), 1.0)
        return (1.0 - self.decay) * target + self.decay * ops.cast(previous_weight, "float32")

    def get_config(self):
        return {
            "weight": self.weight,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "decay": self.decay,
        }


def get(identifier, technique_name):
    """A penalty schedule from an instance or its serialized dict; None is an error."""
    if isinstance(identifier, PenaltySchedule):
        return identifier
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    raise ValueError(
        f"{technique_name} needs a penalty-weight schedule, e.g. "
        "`LinearPenalty(weight=1 / num_train_examples, begin_step=0, end_step=10_000)` "
        f"(ConstantPenalty, LinearPenalty or CubicEMAPenalty). Received: schedule={identifier!r}"
    )


def _check_steps(begin_step, end_step):
    validation.check_int("begin_step", begin_step, minimum=0)
    validation.check_int("end_step", end_step, minimum=0)
    if end_step <= begin_step:
        raise ValueError(
            "`end_step` must be greater than `begin_step`. "
            f"Received: begin_step={begin_step}, end_step={end_step}"
        )
