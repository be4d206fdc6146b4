"""Measured sparsity of a live model: per layer and global, over the sparsified weights."""

from state_of_sparsity import sparsity_rules
from state_of_sparsity.layers import walk


def sparsity_report(model):
    """Fractions of zeros of every sparsified weight at evaluation time.

    Uses the same counting rules as `checkpoint_sparsity` (pruning: zeros of
    `mask`), so a model and its checkpoint report the same numbers. Dense
    layers, biases and normalisation parameters are not counted.

    Returns:
      `{"global": float, "layers": {layer_name: float}}`.

    Raises:
      ValueError: if the model has no built sparse layer.
    """
    layers, total_nonzeros, total_size = {}, 0, 0
    for layer in walk.sparse_layers(model):
        nonzeros, size = layer.nonzeros_and_size()
        layers[layer.name] = sparsity_rules.global_sparsity(nonzeros, size)
        total_nonzeros += nonzeros
        total_size += size
    if not layers:
        raise ValueError(
            f"Model '{model.name}' has no built sparse layer to report on. "
            "Convert it with `sparsify(model, technique)` (and build it) first."
        )
    return {
        "global": sparsity_rules.global_sparsity(total_nonzeros, total_size),
        "layers": layers,
    }
