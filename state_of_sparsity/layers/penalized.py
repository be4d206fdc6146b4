"""Shared base of the techniques that learn sparsity through a scheduled penalty (VD, L0)."""

import keras
from keras import ops

from state_of_sparsity.layers import penalty_schedules
from state_of_sparsity.layers import technique as technique_lib


class PenalizedTechnique(technique_lib.Technique):
    """A technique with a trainable per-weight parameter and a scheduled penalty.

    In training the layer samples (`training_forward`) and adds
    `penalty_weight * penalty` as a layer loss; at evaluation it applies the
    deterministic sparse weight. `penalty_weight` (the original's
    `dkl_weight`) and `penalty_step` are non-trainable variables advanced once
    per optimizer step by `update_masks` / `PruningCallback`, so a resumed run
    continues the schedule exactly.

    Under mixed precision the technique's variables, the noise and the penalty
    stay in float32 (their variables are not autocast); theta is read inside
    `call` at the compute precision and cast back to float32, so tiny weights
    (|theta| below ~6e-8 in float16) count as 0 there. `sparsity_report` and
    `strip` use the float32 variables.
    """

    def __init__(self, schedule):
        self.schedule = penalty_schedules.get(schedule, type(self).__name__)

    def build(self, layer, weight):
        layer.penalty_weight = layer.add_weight(
            name="penalty_weight", shape=(), initializer="zeros", trainable=False,
            autocast=False,
        )
        layer.penalty_step = technique_lib.add_step_variable(layer, "penalty_step")
        layer.sparsity_seed_generator = keras.random.SeedGenerator()

    def apply(self, layer, op, inputs, weight, training):
        if not training:
            return op(inputs, self.effective_weight(layer, weight, training=False))
        layer.add_loss(layer.penalty_weight * self.penalty(layer, weight))
        return self.training_forward(layer, op, inputs, weight)

    def penalty(self, layer, weight):
        """The unweighted penalty summed over the layer's weights, in float32."""
        raise NotImplementedError(f"{self.__class__.__name__} must implement `penalty`.")

    def training_forward(self, layer, op, inputs, weight):
        """The stochastic training-time output of the layer's op."""
        raise NotImplementedError(
            f"{self.__class__.__name__} must implement `training_forward`."
        )

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(**config)


def float32(weight):
    """The weight as float32 (it is autocast to the compute dtype inside `call`)."""
    return ops.cast(weight, "float32")
