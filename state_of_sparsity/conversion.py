"""`sparsify` a Keras model into sparse layers, and `strip` it back to plain Keras layers."""

import re
import warnings

import keras
from keras.src.models.functional import Functional

from state_of_sparsity.layers import sparse_layers
from state_of_sparsity.layers import technique as technique_lib
from state_of_sparsity.layers import walk

_PRUNING = ("magnitude_pruning", "random_pruning")


def sparsify(
    model,
    technique,
    schedule=None,
    *,
    sparsity_map=None,
    exclude=(),
    prune_first_layer=True,
    prune_last_layer=True,
    **options,
):
    """Returns a copy of a Sequential or functional model with sparse layers.

    Every Dense, EinsumDense, Conv2D, DepthwiseConv2D and Embedding layer
    (nested models included) becomes its `Sparse*` twin with the same config
    and weights plus the technique's variables; other layers are copied
    unchanged. The copy is not compiled: compile it, then train it with
    `PruningCallback()` in `model.fit` (or `update_masks` in a custom loop).
    Subclassed models cannot be rebuilt: use the `Sparse*` layers in them
    directly.

    Args:
      model: a built or unbuilt `keras.Sequential` or functional `keras.Model`.
      technique: "magnitude_pruning", "random_pruning", "variational_dropout"
        or "l0_regularization" (see `technique_names()`), or a `Technique`
        instance used for every layer.
      schedule: for a technique given by name, its schedule: a
        `PruningSchedule` for pruning (default `ConstantSparsity(0.5)`), a
        `PenaltySchedule` for variational dropout and L0 (required).
      sparsity_map: `{regex: target_sparsity}`; a layer whose name matches a
        regex (`re.search`, first match wins) is pruned on its own with the
        schedule rescaled to that target (the original's
        `weight_sparsity_map`).
      exclude: regexes of layer names to keep dense.
      prune_first_layer: if False, keep the first supported layer dense.
      prune_last_layer: if False, keep the last supported layer dense.
      **options: technique arguments, e.g. `granularity="global"` for
        magnitude pruning, `seed=1` for random pruning, `threshold=0.5` for
        variational dropout.

    Returns:
      A new, uncompiled `keras.Model`.

    Example:
    ```python
    pruned = sparsify(model, "magnitude_pruning",
                      PolynomialDecay(0.9, begin_step=0, end_step=1000, frequency=100))
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(x, y, callbacks=[PruningCallback()])
    ```
    """
    _check_rebuildable(model, "sparsify")
    plan = _plan(
        model, technique, schedule, sparsity_map or {}, exclude,
        prune_first_layer, prune_last_layer, options,
    )

    def to_sparse(layer):
        if layer.name not in plan:
            return layer.__class__.from_config(layer.get_config())
        sparse_cls = sparse_layers.SPARSE_LAYER_FOR[type(layer)]
        return sparse_cls.from_config({**layer.get_config(), "technique": plan[layer.name]})

    clone = keras.models.clone_model(model, clone_function=to_sparse, recursive=True)
    for source, target in _layer_pairs(model, clone):
        _copy_variables(source, target, overrides={})
    return clone


def strip(model):
    """Returns a copy of `model` with plain Keras layers and the zeros baked into their weights.

    The stripped model computes the sparse model's inference-time output
    (`training=False`) with standard layers only, so it loads anywhere
    without this package.
    """
    _check_rebuildable(model, "strip")

    def to_dense(layer):
        if not isinstance(layer, sparse_layers.SparseLayerMixin):
            return layer.__class__.from_config(layer.get_config())
        dense_cls = sparse_layers.keras_base_class(type(layer))
        config = layer.get_config()
        config.pop("technique")
        return dense_cls.from_config(config)

    clone = keras.models.clone_model(model, clone_function=to_dense, recursive=True)
    for source, target in _layer_pairs(model, clone):
        overrides = {}
        if isinstance(source, sparse_layers.SparseLayerMixin) and source.built:
            weight = source.sparse_weight
            overrides[weight.name] = source.technique.stripped_weight(source, weight)
        _copy_variables(source, target, overrides)
    return clone


def technique_names():
    """Names accepted as `technique` by `sparsify`."""
    return technique_lib.names()


def _plan(model, technique, schedule, sparsity_map, exclude, first, last, options):
    """Maps each layer name to convert to the technique instance it gets."""
    if isinstance(exclude, str):
        exclude = (exclude,)
    base = _make_technique(technique, schedule, options)
    reachable = _rebuilt_layers(model)
    candidates = [layer for layer in reachable if type(layer) in sparse_layers.SPARSE_LAYER_FOR]
    hidden = [
        f"{owner.name}/{layer.name}"
        for owner in reachable if not isinstance(owner, keras.Model)
        for layer in owner._flatten_layers(include_self=False, recursive=True)
        if type(layer) in sparse_layers.SPARSE_LAYER_FOR
    ]
    if hidden:
        warnings.warn(
            f"sparsify keeps {hidden} dense: they live inside other layers (e.g. "
            "MultiHeadAttention), which cannot be rebuilt. Build such layers from "
            "SparseEinsumDense / SparseDense to sparsify them.",
            stacklevel=3,
        )
    if not candidates:
        existing = walk.sparse_layers(model)
        if existing:
            raise ValueError(
                f"Model '{model.name}' already has {len(existing)} sparse layers and no "
                "dense layer left to convert: train it as it is, or `strip` it first."
            )
        raise ValueError(
            f"Model '{model.name}' has no layer that can be made sparse. Supported "
            f"layers: {[cls.__name__ for cls in sparse_layers.SPARSE_LAYER_FOR]}."
        )
    skipped = set()
    if not first:
        skipped.add(candidates[0].name)
    if not last:
        skipped.add(candidates[-1].name)
    plan = {}
    for layer in candidates:
        if layer.name in skipped or any(re.search(p, layer.name) for p in exclude):
            continue
        target = next((t for p, t in sparsity_map.items() if re.search(p, layer.name)), None)
        plan[layer.name] = base if target is None else _override(base, target, layer.name)
    unused = [p for p in sparsity_map if not any(re.search(p, name) for name in plan)]
    if unused:
        raise ValueError(
            f"`sparsity_map` patterns {unused} match no sparsified layer. "
            f"Layers: {sorted(plan)}."
        )
    return plan


def _make_technique(technique, schedule, options):
    if isinstance(technique, technique_lib.Technique):
        if schedule is not None or options:
            raise ValueError(
                "Pass `schedule` and technique options only with a technique name; "
                f"the instance {technique!r} already holds them."
            )
        return technique
    technique_cls = technique_lib.get_class(technique)
    kwargs = dict(options)
    if schedule is not None:
        kwargs["schedule"] = schedule
    try:
        return technique_cls(**kwargs)
    except TypeError as error:
        raise ValueError(
            f"Invalid options for technique {technique!r}: {error}. "
            f"Received: {sorted(kwargs)}"
        ) from None


def _override(base, target, layer_name):
    schedule = getattr(base, "schedule", None)
    if base.technique_name not in _PRUNING or schedule is None:
        raise ValueError(
            f"`sparsity_map` applies to {_PRUNING} only. Received: technique="
            f"{base.technique_name!r} with an entry for layer '{layer_name}'."
        )
    config = base.get_config()
    config["schedule"] = schedule.with_target(target)
    if "granularity" in config:
        config["granularity"] = "layer"
    return type(base)(**config)


def _rebuilt_layers(model):
    """The layers `clone_model` rebuilds: those of the model and of nested Sequential/functional models."""
    layers = []
    for layer in model.layers:
        layers.append(layer)
        if isinstance(layer, (keras.Sequential, Functional)):
            layers.extend(_rebuilt_layers(layer))
    return layers


def _check_rebuildable(model, verb):
    if not isinstance(model, (keras.Sequential, Functional)):
        raise ValueError(
            f"`{verb}` rebuilds Sequential and functional models only. For a "
            f"subclassed model use the Sparse* layers (SparseDense, SparseConv2D, ...) "
            f"in its code directly. Received: model of type {type(model).__name__}"
        )


def _layer_pairs(source_model, target_model):
    sources = source_model._flatten_layers(include_self=False, recursive=True)
    targets = target_model._flatten_layers(include_self=False, recursive=True)
    return zip(sources, targets, strict=True)


def _copy_variables(source, target, overrides):
    """Copies `source`'s variables into `target`'s by name; `overrides` replaces values."""
    if not source.built:
        return
    target_vars = {v.name: v for v in sparse_layers.own_variables(target)}
    for variable in sparse_layers.own_variables(source):
        if variable.name in target_vars:
            target_vars[variable.name].assign(overrides.get(variable.name, variable))

