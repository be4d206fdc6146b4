"""Variable values of another run's checkpoint, by layer and variable name (masks, initial weights)."""

import tensorflow as tf

from state_of_sparsity.layers import sparse_layers


def latest_checkpoint(checkpoint_dir, flag):
    """The latest checkpoint in `checkpoint_dir`; ValueError naming `flag` when there is none."""
    path = tf.train.latest_checkpoint(checkpoint_dir)
    if path is None:
        raise ValueError(
            f"No checkpoint found in {checkpoint_dir!r} ({flag}): point it at a training output_dir."
        )
    return path


def model_values(model_factory, path):
    """{layer name: {variable name: array}} of a TF2 checkpoint of a model `model_factory` builds."""
    source = model_factory()
    tf.train.Checkpoint(model=source).restore(path).assert_existing_objects_matched().expect_partial()
    values = {}
    for layer in source._flatten_layers(include_self=False, recursive=True):
        own = sparse_layers.own_variables(layer)
        if own:
            values[layer.name] = {v.name: v.numpy() for v in own}
    return values


def load(model_factory, checkpoint_dir, flag):
    """(values as `model_values` returns them, path) of the latest checkpoint in `checkpoint_dir`."""
    path = latest_checkpoint(checkpoint_dir, flag)
    return model_values(model_factory, path), path


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
                        "was it trained with the same architecture flags?"
                    )
                variable.assign(value)
                copied += 1
    return copied


# Variables of a run's own training state, not taken when loading initial values.
TRAINING_STATE = ("mask", "threshold", "last_mask_update_step")


def copy_masks(model, values, path, flag):
    """Copies the masks of `values` (read from `path`, named by `flag`) into `model`."""
    if not copy_values(model, values, lambda name: name == "mask"):
        raise ValueError(f"Checkpoint {path!r} ({flag}) holds no mask of this model.")


def copy_initial_values(model, values, path, flag):
    """Copies every variable but the training state (masks, thresholds) into `model`."""
    if not copy_values(model, values, lambda name: name not in TRAINING_STATE):
        raise ValueError(f"Checkpoint {path!r} ({flag}) holds no variable of this model.")
