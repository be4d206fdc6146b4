"""When the op layers must fall back to dense math: a non-TensorFlow backend or a GPU."""

import warnings

import keras

_warned = set()


def op_unavailable_reason():
    """Why the CPU op cannot run here, or None if it can."""
    if keras.config.backend() != "tensorflow":
        return f"the Keras backend is {keras.config.backend()!r}, not 'tensorflow'"
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        return "a GPU is visible and the op has a CPU kernel only"
    return None


def warn_once(layer_class, reason):
    if (layer_class, reason) not in _warned:
        _warned.add((layer_class, reason))
        warnings.warn(
            f"{layer_class}: {reason}; using masked dense math instead of the sparse op "
            "(same results, no sparse speed-up).",
            stacklevel=3,
        )
