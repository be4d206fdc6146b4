"""Finds the sparse layers of a model, including those inside nested models and layers."""

import collections

from state_of_sparsity.layers import sparse_layers as sparse_layers_lib


def sparse_layers(model):
    """Every built sparse layer under `model` (itself included), each once, in creation order.

    Names must be unique: reports are keyed by them and random pruning seeds
    its masks with them.
    """
    layers = [
        layer
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, sparse_layers_lib.SparseLayerMixin) and layer.built
    ]
    counts = collections.Counter(layer.name for layer in layers)
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    if duplicates:
        raise ValueError(
            f"Sparse layers of model '{model.name}' must have unique names; these repeat: "
            f"{duplicates}. Give the layers (or nested models' layers) distinct `name=`s."
        )
    return layers

