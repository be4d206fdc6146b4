"""L0 regularisation with hard-concrete gates (Louizos et al. 2018) as a sparse-layer technique."""

import keras
from keras import ops

from state_of_sparsity import sparsity_rules
from state_of_sparsity.layers import penalized
from state_of_sparsity.layers import technique as technique_lib
from state_of_sparsity.layers import validation
from state_of_sparsity.layers.l0_regularization import l0_math


@technique_lib.register_technique("l0_regularization")
class L0Regularization(penalized.PenalizedTechnique):
    """Learn a stochastic gate per weight and penalise the expected number of open gates.

    The layer gets a trainable `log_alpha` beside its weight (theta). Training
    multiplies theta by a hard-concrete sample z (one gate per weight, fresh
    every step and shared by the batch; per lookup for Embedding) and adds
    `penalty_weight * sum(P(z != 0))` as a layer loss. Evaluation uses the
    deterministic gate `clip(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1)`,
    which is exactly 0 for log_alpha <= ln(1/11).

    Paper: https://arxiv.org/abs/1712.01312

    Args:
      schedule: `PenaltySchedule` of the L0 weight.
      beta: temperature of the hard-concrete distribution (2/3).
      gamma, zeta: stretch interval (-0.1, 1.1).
      log_alpha_mean, log_alpha_stddev: normal initializer of log_alpha
        (2.197, 0.01: sigmoid(log_alpha) = 0.9 at the start, and about 2% of the
        training gates are exactly 0).
    """

    def __init__(self, schedule=None, beta=l0_math.BETA, gamma=l0_math.GAMMA,
                 zeta=l0_math.ZETA, log_alpha_mean=2.197, log_alpha_stddev=0.01):
        super().__init__(schedule)
        for name, value in (("beta", beta), ("log_alpha_stddev", log_alpha_stddev)):
            validation.check_number(name, value, positive=True)
        validation.check_number("log_alpha_mean", log_alpha_mean)
        if not gamma < 0 < 1 < zeta:
            raise ValueError(
                "The stretch interval needs gamma < 0 and zeta > 1. "
                f"Received: gamma={gamma!r}, zeta={zeta!r}"
            )
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.zeta = float(zeta)
        self.log_alpha_mean = float(log_alpha_mean)
        self.log_alpha_stddev = float(log_alpha_stddev)

    def build(self, layer, weight):
        super().build(layer, weight)
        layer.log_alpha = layer.add_weight(
            name="log_alpha",
            shape=weight.shape,
            initializer=keras.initializers.RandomNormal(
                self.log_alpha_mean, self.log_alpha_stddev
            ),
            autocast=False,
        )

    def effective_weight(self, layer, weight, training):
        gate = l0_math.deterministic_gate(layer.log_alpha, self.gamma, self.zeta)
        return weight * ops.cast(gate, weight.dtype)

    def penalty(self, layer, weight):
        return l0_math.l0_penalty(layer.log_alpha, self.beta, self.gamma, self.zeta)

    def training_forward(self, layer, op, inputs, weight):
        if layer.is_lookup:
            # One gate per looked-up element: gather log_alpha rows like theta rows.
            values, log_alpha = op(inputs, weight), op(inputs, layer.log_alpha)
            return values * ops.cast(self._sample(layer, log_alpha), values.dtype)
        gate = self._sample(layer, layer.log_alpha)
        return op(inputs, weight * ops.cast(gate, weight.dtype))

    def _sample(self, layer, log_alpha):
        uniform = keras.random.uniform(
            ops.shape(log_alpha), dtype="float32", seed=layer.sparsity_seed_generator
        )
        return l0_math.sample_gate(log_alpha, uniform, self.beta, self.gamma, self.zeta)

    def nonzeros(self, layer):
        return sparsity_rules.l0_nonzeros(
            ops.convert_to_numpy(layer.log_alpha), self.gamma, self.zeta
        )

    def get_config(self):
        return {
            **super().get_config(),
            "beta": self.beta,
            "gamma": self.gamma,
            "zeta": self.zeta,
            "log_alpha_mean": self.log_alpha_mean,
            "log_alpha_stddev": self.log_alpha_stddev,
        }

