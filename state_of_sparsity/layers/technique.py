"""The technique interface: the state and rule that turn one dense weight into a sparse one."""

import keras
from keras import ops

from state_of_sparsity.layers import serializable

_REGISTRY = {}


def register_technique(name):
    """Registers a technique class under its `sparsify` name and as Keras-serializable."""

    def decorator(cls):
        cls.technique_name = name
        _REGISTRY[name] = cls
        return keras.saving.register_keras_serializable(package="state_of_sparsity")(cls)

    return decorator


class Technique(serializable.Serializable):
    """Owns the extra variables of a sparse layer and decides its effective weight.

    A technique is stateless configuration: its variables live on the layer it
    builds (so they are tracked, checkpointed and named like the original:
    `mask`, `threshold`, `log_sigma2`, `log_alpha`). One technique instance may
    be shared by many layers.

    Subclasses implement `build`, `effective_weight`, `nonzeros` and
    `get_config`; a technique that needs to change the op itself (the local
    reparameterisation trick of variational dropout) overrides `apply`.
    """

    technique_name = None

    def build(self, layer, weight):
        """Creates the technique's variables on `layer` for `weight` (called from `layer.build`)."""
        raise NotImplementedError(f"{self.__class__.__name__} must implement `build`.")

    def effective_weight(self, layer, weight, training):
        """The weight the op uses in this forward pass."""
        raise NotImplementedError(
            f"{self.__class__.__name__} must implement `effective_weight`."
        )

    def apply(self, layer, op, inputs, weight, training):
        """Runs `op(inputs, weight)` with the sparse weight; override to change the op."""
        return op(inputs, self.effective_weight(layer, weight, training))

    def stripped_weight(self, layer, weight):
        """The evaluation-time weight with its zeros baked in, for `strip`."""
        return self.effective_weight(layer, weight, training=False)

    def nonzeros(self, layer):
        """Number of weights kept at evaluation, by the shared rules of `sparsity_rules`."""
        raise NotImplementedError(f"{self.__class__.__name__} must implement `nonzeros`.")


def add_step_variable(layer, name):
    """Adds a non-trainable int64 step counter to `layer`, -1 until the first update."""
    return layer.add_weight(
        name=name,
        shape=(),
        initializer=lambda shape, dtype: ops.full(shape, -1, dtype=dtype),
        dtype="int64",
        trainable=False,
    )


def names():
    """The technique names `sparsify` accepts."""
    return sorted(_REGISTRY)


def get_class(name):
    """The technique class registered under `name`."""
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown sparsity technique. Expected one of {names()}. "
            f"Received: technique={name!r}"
        )
    return _REGISTRY[name]


def get(identifier):
    """A technique from an instance, a registered name (default arguments), or a serialized dict."""
    if isinstance(identifier, Technique):
        return identifier
    if isinstance(identifier, str):
        return get_class(identifier)()
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    raise ValueError(
        f"`technique` must be one of {names()}, a Technique instance, or its "
        f"serialized dict. Received: technique={identifier!r}"
    )
