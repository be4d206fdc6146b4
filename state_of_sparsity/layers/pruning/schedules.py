"""Pruning schedules: target sparsity as a function of the training step, and when to update masks."""

import keras
from keras import ops

from state_of_sparsity.layers import serializable
from state_of_sparsity.layers import validation

_PACKAGE = "state_of_sparsity"


class PruningSchedule(serializable.Serializable):
    """Base class of pruning schedules.

    A schedule answers two questions for a training step (the optimizer's
    iteration count after the update): which sparsity (fraction of zeros, in
    [0, 1)) the masks should have, via `__call__(step)`, and whether masks are
    due for an update, via `is_update_step(step, last_update_step)`.

    Masks are updated at the first step >= `begin_step`, then every
    `frequency` steps. Once `end_step` (if >= 0) is reached, one last update is
    made at or after it so the final target sparsity is always reached (the
    original only updated while step <= end_step, which misses the target when
    end_step is not on the frequency grid), and no update happens after that.
    """

    def __init__(self, begin_step, end_step, frequency):
        validation.check_int("begin_step", begin_step, minimum=0)
        validation.check_int("end_step", end_step, minimum=-1)
        validation.check_int("frequency", frequency, minimum=1)
        if 0 <= end_step < begin_step:
            raise ValueError(
                "`end_step` must be -1 (never stop) or >= `begin_step`. "
                f"Received: begin_step={begin_step}, end_step={end_step}"
            )
        self.begin_step = int(begin_step)
        self.end_step = int(end_step)
        self.frequency = int(frequency)

    def __call__(self, step):
        raise NotImplementedError(
            f"{self.__class__.__name__} must implement `__call__(step)`."
        )

    def with_target(self, target_sparsity):
        """The same ramp rescaled to another target (the original's weight_sparsity_map)."""
        raise NotImplementedError(
            f"{self.__class__.__name__} must implement `with_target(target_sparsity)`."
        )

    def _target_and_steps(self):
        """The config entries every schedule has, for subclasses' flat `get_config`."""
        return {
            "target_sparsity": self.target_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }

    def is_update_step(self, step, last_update_step):
        """Boolean tensor: whether masks must be recomputed at `step`.

        Args:
          step: integer step, the optimizer iterations after the update.
          last_update_step: step of the last mask update, or -1 if none yet.
        """
        step = ops.cast(step, "int64")
        last = ops.cast(last_update_step, "int64")
        started = ops.greater_equal(step, self.begin_step)
        never_updated = ops.less(last, 0)
        if self.end_step < 0:
            periodic = ops.greater_equal(step - last, self.frequency)
            return ops.logical_and(started, ops.logical_or(never_updated, periodic))
        before_end = ops.less(last, self.end_step)
        periodic = ops.logical_and(
            ops.greater_equal(step - last, self.frequency), before_end
        )
        final = ops.logical_and(ops.greater_equal(step, self.end_step), before_end)
        return ops.logical_and(
            started, ops.logical_or(never_updated, ops.logical_or(periodic, final))
        )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PolynomialDecay(PruningSchedule):
    """Gradual pruning of Zhu & Gupta (2017), the schedule of the paper.

    ```
    p = clip((step - begin_step) / (end_step - begin_step), 0, 1)
    sparsity(step) = target_sparsity
                     + (initial_sparsity - target_sparsity) * (1 - p) ** exponent
    ```
    With the defaults (initial 0, exponent 3) this is the cubic ramp
    `target * (1 - (1 - p)^3)` used for both ResNet-50 and the Transformer.

    Paper: https://arxiv.org/abs/1710.01878

    Args:
      target_sparsity: final fraction of zeros, in [0, 1).
      begin_step: step of the first mask update (>= 0).
      end_step: step at which `target_sparsity` is reached (> begin_step).
      frequency: steps between mask updates (>= 1).
      initial_sparsity: fraction of zeros at `begin_step`, in [0, 1).
      exponent: power of the ramp (> 0); 3 is the cubic schedule.
    """

    def __init__(
        self,
        target_sparsity,
        begin_step,
        end_step,
        frequency,
        initial_sparsity=0.0,
        exponent=3.0,
    ):
        validation.check_sparsity("target_sparsity", target_sparsity)
        validation.check_sparsity("initial_sparsity", initial_sparsity)
        validation.check_int("end_step", end_step, minimum=0)
        super().__init__(begin_step, end_step, frequency)
        if end_step == begin_step:
            raise ValueError(
                "`end_step` must be greater than `begin_step` for a ramp. "
                f"Received: begin_step={begin_step}, end_step={end_step}"
            )
        validation.check_number("exponent", exponent, positive=True)
        self.target_sparsity = float(target_sparsity)
        self.initial_sparsity = float(initial_sparsity)
        self.exponent = float(exponent)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        progress = ops.clip(
            (step - self.begin_step) / (self.end_step - self.begin_step), 0.0, 1.0
        )
        return self.target_sparsity + (
            self.initial_sparsity - self.target_sparsity
        ) * ops.power(1.0 - progress, self.exponent)

    def with_target(self, target_sparsity):
        validation.check_sparsity("target_sparsity", target_sparsity)
        initial = self.initial_sparsity
        if self.target_sparsity > 0:
            initial = self.initial_sparsity * target_sparsity / self.target_sparsity
        config = self.get_config()
        config.update(target_sparsity=target_sparsity, initial_sparsity=initial)
        return PolynomialDecay(**config)

    def get_config(self):
        return {
            **self._target_and_steps(),
            "initial_sparsity": self.initial_sparsity,
            "exponent": self.exponent,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConstantSparsity(PruningSchedule):
    """One fixed sparsity, applied from `begin_step` and refreshed every `frequency` steps.

    `sparsity(step) = target_sparsity`. With `end_step=-1` masks keep being
    recomputed every `frequency` steps until training ends.

    Args:
      target_sparsity: fraction of zeros, in [0, 1).
      begin_step: step of the first mask update (>= 0).
      end_step: last step at which masks may change, or -1 for never stop.
      frequency: steps between mask updates (>= 1).
    """

    def __init__(self, target_sparsity, begin_step=0, end_step=-1, frequency=100):
        validation.check_sparsity("target_sparsity", target_sparsity)
        super().__init__(begin_step, end_step, frequency)
        self.target_sparsity = float(target_sparsity)

    def __call__(self, step):
        del step  # constant
        return ops.convert_to_tensor(self.target_sparsity, "float32")

    def with_target(self, target_sparsity):
        config = self.get_config()
        config["target_sparsity"] = target_sparsity
        return ConstantSparsity(**config)

    def get_config(self):
        return self._target_and_steps()


def get(identifier):
    """A schedule from an instance, a config dict, or None (the default `ConstantSparsity(0.5)`)."""
    if identifier is None:
        return ConstantSparsity(0.5)
    if isinstance(identifier, PruningSchedule):
        return identifier
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    raise ValueError(
        "`schedule` must be a PruningSchedule (e.g. PolynomialDecay(...)), its "
        f"serialized dict, or None. Received: schedule={identifier!r}"
    )

