"""Magnitude and random pruning: a non-trainable 0/1 mask multiplies the weight."""

import zlib

import keras
import tensorflow as tf
from keras import ops

from state_of_sparsity import sparsity_rules
from state_of_sparsity.layers import technique as technique_lib
from state_of_sparsity.layers import validation
from state_of_sparsity.layers.pruning import mask_math
from state_of_sparsity.layers.pruning import schedules

GRANULARITIES = ("layer", "global")


class Pruning(technique_lib.Technique):
    """Shared state and forward pass of the pruning techniques.

    The layer gets the original's non-trainable variables `mask` (ones, shape
    of the weight) and `threshold` (scalar), plus `last_mask_update_step`
    (-1 until the first update) so the schedule resumes exactly from a
    checkpoint. The forward pass uses `weight * mask`, so pruned weights are
    exactly zero in every output and get zero gradient; the raw weight is kept
    (as in the original) and a later mask update may revive it.

    Masks change only in `update_masks` (driven by `PruningCallback` or called
    from a custom loop), never inside the gradient tape.
    """

    def __init__(self, schedule=None):
        self.schedule = schedules.get(schedule)

    def build(self, layer, weight):
        layer.mask = layer.add_weight(
            name="mask", shape=weight.shape, initializer="ones", trainable=False
        )
        layer.threshold = layer.add_weight(
            name="threshold", shape=(), initializer="zeros", trainable=False
        )
        layer.last_mask_update_step = technique_lib.add_step_variable(
            layer, "last_mask_update_step"
        )

    def effective_weight(self, layer, weight, training):
        del training  # the mask is applied the same way in training and inference
        return ops.multiply(weight, layer.mask)

    def nonzeros(self, layer):
        return sparsity_rules.pruning_nonzeros(ops.convert_to_numpy(layer.mask))

    def new_masks(self, layers, sparsity, step):
        """New masks (and thresholds) for `layers` at `sparsity`, as TF tensors."""
        raise NotImplementedError(f"{self.__class__.__name__} must implement `new_masks`.")

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedule"] = schedules.get(config.get("schedule"))
        return cls(**config)


@technique_lib.register_technique("magnitude_pruning")
class MagnitudePruning(Pruning):
    """Keep the largest-magnitude weights (Zhu & Gupta 2017; sos_spec 3.1).

    Each update keeps exactly round(n * (1 - s)) weights with the largest |w|
    (ties go to the lower flat index, so the count is exact, unlike the
    original's `|w| >= threshold`). `threshold` records the smallest kept |w|.

    Args:
      schedule: a `PruningSchedule`; default `ConstantSparsity(0.5)`.
      granularity: "layer" prunes every tensor to the scheduled sparsity on
        its own (the paper's uniform rule); "global" ranks the weights of all
        layers with granularity="global" and the same schedule together, so
        the total fraction of zeros is the scheduled one.
    """

    def __init__(self, schedule=None, granularity="layer"):
        super().__init__(schedule)
        if granularity not in GRANULARITIES:
            raise ValueError(
                f"`granularity` must be one of {GRANULARITIES}. "
                f"Received: granularity={granularity!r}"
            )
        self.granularity = granularity

    def new_masks(self, layers, sparsity, step):
        del step  # deterministic
        weights = [layer.sparse_weight.value for layer in layers]
        masks, threshold = mask_math.magnitude_masks(weights, sparsity)
        return masks, [threshold] * len(layers)

    def get_config(self):
        return {**super().get_config(), "granularity": self.granularity}


@technique_lib.register_technique("random_pruning")
class RandomPruning(Pruning):
    """Keep a uniformly random subset of weights, nested across updates (sos_spec 3.4).

    Each update keeps exactly round(n * (1 - s)) weights; while the sparsity
    grows, the kept set shrinks to a random subset of the previously kept one.
    Randomness comes from a stateless RNG keyed by (seed, layer name, step), so
    a run is reproducible from its seed, identical on every replica, and
    exact after resuming from a checkpoint.

    Args:
      schedule: a `PruningSchedule`; default `ConstantSparsity(0.5)`.
      seed: integer in [0, 2**31) that picks the random masks.
    """

    granularity = "layer"

    def __init__(self, schedule=None, seed=0):
        super().__init__(schedule)
        validation.check_int("seed", seed, minimum=0)
        if seed >= 2**31:
            raise ValueError(f"`seed` must be below 2**31. Received: seed={seed!r}")
        self.seed = seed

    def new_masks(self, layers, sparsity, step):
        masks = []
        for layer in layers:
            salt = (self.seed << 32) | zlib.crc32(layer.name.encode("utf-8"))
            seed = tf.stack([tf.constant(salt, tf.int64), tf.cast(step, tf.int64)])
            masks.append(
                mask_math.random_cumulative_mask(layer.mask.value, sparsity, seed)
            )
        return masks, [tf.zeros([], tf.float32)] * len(layers)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}

