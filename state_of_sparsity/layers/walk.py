"""Finds the sparse layers of a model, including those inside nested models and layers."""

from state_of_sparsity.layers import sparse_layers as sparse_layers_lib


def sparse_layers(model):
    """Every built sparse layer under `model` (itself included), each once, in creation order."""
    return [
        layer
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, sparse_layers_lib.SparseLayerMixin) and layer.built
    ]

