"""Per-step state updates of every sparse layer (pruning masks, penalty weights): the one call a training loop makes."""

import tensorflow as tf

from state_of_sparsity.layers import penalized
from state_of_sparsity.layers import walk
from state_of_sparsity.layers.pruning import technique as pruning_technique


def pruning_groups(model):
    """Groups of pruned layers whose masks are computed together.

    A layer with granularity "layer" is its own group; all layers with
    granularity "global" form one group, which must share one schedule.
    """
    groups, global_group = [], []
    for layer in walk.sparse_layers(model):
        technique = layer.technique
        if not isinstance(technique, pruning_technique.Pruning):
            continue
        if technique.granularity == "global":
            global_group.append(layer)
        else:
            groups.append([layer])
    if global_group:
        reference = global_group[0].technique
        for layer in global_group[1:]:
            if layer.technique.schedule != reference.schedule or type(
                layer.technique
            ) is not type(reference):
                raise ValueError(
                    "Global magnitude pruning needs one schedule for all its layers. "
                    f"Layer '{global_group[0].name}' has {reference.schedule} but "
                    f"layer '{layer.name}' has {layer.technique.schedule}. Give them "
                    "the same schedule or use granularity='layer'."
                )
        groups.append(global_group)
    return groups


def _update_group(layers, step):
    technique = layers[0].technique
    schedule = technique.schedule
    due = schedule.is_update_step(step, layers[0].last_mask_update_step.value)

    def update():
        masks, thresholds = technique.new_masks(layers, schedule(step), step)
        for layer, mask, threshold in zip(layers, masks, thresholds):
            layer.mask.assign(mask)
            layer.threshold.assign(threshold)
            layer.last_mask_update_step.assign(step)
        return tf.constant(True)

    return tf.cond(due, update, lambda: tf.constant(False))


def penalized_layers(model):
    """Layers whose technique has a scheduled penalty weight (variational dropout, L0)."""
    return [
        layer for layer in walk.sparse_layers(model)
        if isinstance(layer.technique, penalized.PenalizedTechnique)
    ]


def _update_penalty(layer, step):
    # Once per step: the cubic EMA must not advance twice when a resumed run
    # (or a second call) sees the same step again.
    due = tf.greater(step, layer.penalty_step.value)

    def update():
        schedule = layer.technique.schedule
        layer.penalty_weight.assign(schedule.next_weight(step, layer.penalty_weight.value))
        layer.penalty_step.assign(step)
        return tf.constant(True)

    return tf.cond(due, update, lambda: tf.constant(False))


def update_masks(model, step):
    """Advances every sparse layer of `model` to `step`; call it after each optimizer step.

    Pruned layers recompute their masks when the schedule says so;
    variational dropout and L0 layers update their penalty weight. This is the
    hook for custom training loops (`PruningCallback` calls it in `model.fit`).
    Call it outside the gradient tape, with the optimizer's iteration count
    after the update, e.g. `update_masks(model, optimizer.iterations)`. It
    works eagerly and inside a `tf.function`, and it is idempotent at one step.

    Returns:
      A boolean tensor: whether any mask or penalty weight changed.
    """
    step = tf.cast(tf.convert_to_tensor(step), tf.int64)
    updated = [_update_group(layers, step) for layers in pruning_groups(model)]
    updated += [_update_penalty(layer, step) for layer in penalized_layers(model)]
    if not updated:
        return tf.constant(False)
    return tf.reduce_any(tf.stack(updated))


class MaskUpdater:
    """A compiled `update_masks` bound to one model (traced once, cheap per step)."""

    def __init__(self, model):
        self.model = model
        self.has_stateful_layers = bool(pruning_groups(model) or penalized_layers(model))
        self._update = tf.function(lambda step: update_masks(model, step))

    def __call__(self, step):
        if not self.has_stateful_layers:
            return False
        return bool(self._update(tf.cast(step, tf.int64)))
