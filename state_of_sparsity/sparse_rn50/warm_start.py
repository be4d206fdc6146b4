"""Scratch and lottery-ticket runs: masks and initial values from another run's checkpoint (sos_spec 3.5)."""

import math

import numpy as np
import tensorflow as tf

from state_of_sparsity.layers import sparse_layers
from state_of_sparsity.layers import walk

# Scope of the original's TF1 ResNet-50 checkpoints (sos_spec 4.3).
TF1_SCOPE = "resnet_model"
TF1_WEIGHT_NAMES = {"kernel": "weights", "bias": "biases"}


def load_checkpoint_values(model_factory, checkpoint_dir):
    """{layer name: {variable name: array}} of the latest checkpoint in `checkpoint_dir`.

    Reads this package's TF2 checkpoints by restoring them into a model built
    by `model_factory` (same architecture), and the original's TF1
    checkpoints by name (`resnet_model/<layer>/{weights,mask,...}`).
    """
    path = tf.train.latest_checkpoint(checkpoint_dir)
    if path is None:
        raise ValueError(
            f"No checkpoint found in {checkpoint_dir!r} (--load_mask_dir / "
            "--initial_value_checkpoint): point it at a training output_dir."
        )
    keys = dict(tf.train.list_variables(path))
    if any(key.startswith(TF1_SCOPE + "/") for key in keys):
        return _tf1_values(tf.train.load_checkpoint(path), keys), path
    source = model_factory()
    tf.train.Checkpoint(model=source).restore(path).assert_existing_objects_matched().expect_partial()
    values = {}
    for layer in source._flatten_layers(include_self=False, recursive=True):
        own = sparse_layers.own_variables(layer)
        if own:
            values[layer.name] = {v.name: v.numpy() for v in own}
    return values, path


def _tf1_values(reader, keys):
    values = {}
    for key in keys:
        parts = key.split("/")
        if len(parts) != 3 or parts[0] != TF1_SCOPE:
            continue
        name = {tf1: ours for ours, tf1 in TF1_WEIGHT_NAMES.items()}.get(parts[2], parts[2])
        values.setdefault(parts[1], {})[name] = reader.get_tensor(key)
    return values


def copy_values(model, values, select):
    """Assigns `values[layer][variable]` for each variable where `select(name)`; returns the count."""
    copied = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for variable in sparse_layers.own_variables(layer):
            value = values.get(layer.name, {}).get(variable.name)
            if value is not None and select(variable.name):
                if tuple(value.shape) != tuple(variable.shape):
                    raise ValueError(
                        f"Checkpoint variable {layer.name}/{variable.name} has shape "
                        f"{tuple(value.shape)}, the model expects {tuple(variable.shape)}: "
                        "was it trained with the same --model and --width?"
                    )
                variable.assign(value)
                copied += 1
    return copied


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
