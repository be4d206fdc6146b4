"""Scratch and lottery-ticket runs: masks and initial values from another run's checkpoint (sos_spec 3.5)."""

import math

import numpy as np
import tensorflow as tf

from state_of_sparsity import checkpoint_values
from state_of_sparsity.layers import walk

# Scope of the original's TF1 ResNet-50 checkpoints (sos_spec 4.3).
TF1_SCOPE = "resnet_model"
TF1_WEIGHT_NAMES = {"kernel": "weights", "bias": "biases"}


def load_checkpoint_values(model_factory, checkpoint_dir):
    """({layer name: {variable name: array}}, path) of the latest checkpoint in `checkpoint_dir`.

    Reads this package's TF2 checkpoints by restoring them into a model built
    by `model_factory` (same architecture), and the original's TF1
    checkpoints by name (`resnet_model/<layer>/{weights,mask,...}`).
    """
    path = checkpoint_values.latest_checkpoint(
        checkpoint_dir, "--load_mask_dir / --initial_value_checkpoint")
    keys = dict(tf.train.list_variables(path))
    if any(key.startswith(TF1_SCOPE + "/") for key in keys):
        return _tf1_values(tf.train.load_checkpoint(path), keys), path
    return checkpoint_values.model_values(model_factory, path), path


def _tf1_values(reader, keys):
    values = {}
    for key in keys:
        parts = key.split("/")
        if len(parts) != 3 or parts[0] != TF1_SCOPE:
            continue
        name = {tf1: ours for ours, tf1 in TF1_WEIGHT_NAMES.items()}.get(parts[2], parts[2])
        values.setdefault(parts[1], {})[name] = reader.get_tensor(key)
    return values


def sparse_initialize(model, seed=0):
    """The original's --init_method=sparse for a model with fixed masks.

    Conv kernels ~ N(0, sqrt(2 / n)) with n = nnz / C_in; Dense kernels ~
    U(+-sqrt(6 / (nnz / fan_out + nnz / fan_in))), nnz = kept weights of the
    layer's mask, so each unit's variance matches a dense layer's fan.
    """
    rng = np.random.default_rng(seed)
    for layer in walk.sparse_layers(model):
        kernel = layer.sparse_weight
        shape = tuple(kernel.shape)
        nnz = max(1, int(np.count_nonzero(layer.mask.numpy())))
        if len(shape) == 4:
            stddev = math.sqrt(2.0 / (nnz / shape[2]))
            value = rng.normal(0.0, stddev, shape)
        else:
            limit = math.sqrt(6.0 / (nnz / shape[1] + nnz / shape[0]))
            value = rng.uniform(-limit, limit, shape)
        kernel.assign(value.astype(np.float32))
