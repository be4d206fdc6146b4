"""Variational dropout (Molchanov et al. 2017) as a technique for any sparse layer."""

import keras
import tensorflow as tf
from keras import ops

from state_of_sparsity import sparsity_rules
from state_of_sparsity.layers import penalized
from state_of_sparsity.layers import technique as technique_lib
from state_of_sparsity.layers import validation
from state_of_sparsity.layers import walk
from state_of_sparsity.layers.variational_dropout import vd_math


@technique_lib.register_technique("variational_dropout")
class VariationalDropout(penalized.PenalizedTechnique):
    """Sparse variational dropout: learn a noise level per weight, drop the noisy ones.

    The layer gets a trainable `log_sigma2` beside its weight (theta) and a
    non-trainable `log_alpha_threshold`. Training uses the local
    reparameterisation trick, `mu = op(x, theta)`,
    `std = sqrt(op(x^2, sigma^2) + 1e-8)`, `out = mu + std * eps`, with eps per
    output element (shared over sequence positions for rank-3 Dense/EinsumDense,
    per lookup for Embedding), and adds `penalty_weight * KL` as a layer loss.
    Evaluation uses `theta * (log_alpha < threshold)`.

    Paper: https://arxiv.org/abs/1701.05369

    Args:
      schedule: `PenaltySchedule` of the KL weight (e.g.
        `LinearPenalty(1 / num_train_examples, 0, 10_000)`).
      threshold: log alpha above which a weight is dropped at evaluation
        (3.0; change it after training with `set_log_alpha_threshold`).
      clip_alpha: clip log alpha to [-clip_alpha, clip_alpha] in training and
        in the KL (8.0; None or 0 disables).
      log_sigma2_initializer: initial log sigma^2 (-10; ResNet-50 used -15).
    """

    def __init__(self, schedule=None, threshold=sparsity_rules.DEFAULT_LOG_ALPHA_THRESHOLD,
                 clip_alpha=8.0, log_sigma2_initializer=-10.0):
        super().__init__(schedule)
        validation.check_number("threshold", threshold)
        if clip_alpha is not None:
            validation.check_number("clip_alpha", clip_alpha, minimum=0.0)
        validation.check_number("log_sigma2_initializer", log_sigma2_initializer)
        self.threshold = float(threshold)
        # 0 means "no clipping", as in the original's truthiness test.
        self.clip_alpha = float(clip_alpha) if clip_alpha else None
        self.log_sigma2_initializer = float(log_sigma2_initializer)

    def build(self, layer, weight):
        super().build(layer, weight)
        layer.log_sigma2 = layer.add_weight(
            name="log_sigma2",
            shape=weight.shape,
            initializer=keras.initializers.Constant(self.log_sigma2_initializer),
            autocast=False,
        )
        layer.log_alpha_threshold = layer.add_weight(
            name="log_alpha_threshold",
            shape=(),
            initializer=keras.initializers.Constant(self.threshold),
            trainable=False,
            autocast=False,
        )

    def effective_weight(self, layer, weight, training):
        mask = vd_math.keep_mask(
            penalized.float32(weight), layer.log_sigma2, layer.log_alpha_threshold
        )
        return weight * ops.cast(mask, weight.dtype)

    def penalty(self, layer, weight):
        return vd_math.kl_divergence(penalized.float32(weight), layer.log_sigma2, self.clip_alpha)

    def training_forward(self, layer, op, inputs, weight):
        log_sigma2 = vd_math.clipped_log_sigma2(
            penalized.float32(weight), layer.log_sigma2, self.clip_alpha
        )
        mean = op(inputs, weight)
        variance = layer._variance_op(inputs, ops.exp(log_sigma2))
        std = ops.sqrt(variance + vd_math.EPSILON)
        noise = tf.random.stateless_normal(
            layer._noise_shape(mean), seed=_replica_seed(layer.sparsity_seed_generator)
        )
        return mean + ops.cast(std * noise, mean.dtype)

    def nonzeros(self, layer):
        return sparsity_rules.vd_nonzeros(
            ops.convert_to_numpy(layer.log_sigma2),
            ops.convert_to_numpy(layer.sparse_weight),
            float(ops.convert_to_numpy(layer.log_alpha_threshold)),
        )

    def get_config(self):
        return {
            **super().get_config(),
            "threshold": self.threshold,
            "clip_alpha": self.clip_alpha,
            "log_sigma2_initializer": self.log_sigma2_initializer,
        }


def _replica_seed(seed_generator):
    """The generator's next seed, offset by the replica id so replicas draw independent noise.

    The seed state is mirrored, so without the offset every replica would
    repeat replica 0's noise and correlate the LRT estimates across replicas.
    """
    seed = tf.cast(seed_generator.next(), tf.int64)
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        replica = tf.cast(context.replica_id_in_sync_group, tf.int64)
        seed = seed + tf.stack([tf.constant(0, tf.int64), replica])
    return seed


def set_log_alpha_threshold(model, threshold):
    """Sets the evaluation threshold of every variational dropout layer of `model`.

    Works on a trained (and compiled) model without rebuilding it: the
    threshold is a variable, so the next `predict`/`evaluate` uses it.
    """
    validation.check_number("threshold", threshold)
    layers = [
        layer for layer in walk.sparse_layers(model)
        if isinstance(layer.technique, VariationalDropout)
    ]
    if not layers:
        raise ValueError(
            f"Model '{model.name}' has no variational dropout layer. Convert it with "
            "`sparsify(model, 'variational_dropout', schedule)` first."
        )
    for layer in layers:
        layer.log_alpha_threshold.assign(float(threshold))

