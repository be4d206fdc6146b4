"""Loads the original's TF1 tensor2tensor checkpoints (sos_spec 4.2, 5.7) into a `SparseTransformer` by variable name.

The paper's released Transformer checkpoints are name-based TF1 checkpoints whose
variables live under the T2T model scope `sparse_transformer/`. Each of our layers
knows its original scope (`model.original_scope`); inside it the variable names follow
the technique:

- magnitude / random pruning: `<scope>/fully_connected/{weights,biases,mask,threshold}`
  (`tf.contrib` masked_fully_connected); split-head q/k/v shards `<scope>/{kernel,mask,threshold}`;
- variational dropout: `<scope>/{kernel,bias,log_sigma2}`; L0: `<scope>/{kernel,bias,log_alpha}`;
  dense layers: `<scope>/{kernel,bias}`;
- shared embedding/softmax `symbol_modality_<vocab>_<hidden>/shared/weights_<i>` (shards
  concatenated along the vocabulary), VD/L0 `weights_<i>_aux`, pruning `mask`/`threshold`
  made by `apply_mask` with an empty scope name, which TF1 writes as `shared//mask`
  (`shared/mask` is accepted too);
- layer norms `.../layer_prepostprocess/layer_norm/layer_norm_{scale,bias}` (post-norm
  models: `layer_postprocess`), the target-space embedding `body/target_space_embedding/kernel`.

Optimizer slots, `global_step` and the cubic schedule's `dkl_weight` are not model
weights and are skipped; our training-only counters (`last_mask_update_step`,
`penalty_weight`, `penalty_step`) and the VD `log_alpha_threshold` keep their built values.

Convert a released checkpoint to this package's TF2 format (then decode it with
`--output_dir=<output_dir>`, or pass the TF1 checkpoint to the decoder directly):

  python -m state_of_sparsity.sparse_transformer.checkpoint_importer \\
      --tf1_checkpoint=/ckpts/magnitude_pruning_90/model.ckpt-500000 \\
      --hparams_set=sparse_transformer_magnitude_pruning_tpu --output_dir=/runs/mp90_tf2
"""

import dataclasses
import os
import re
import typing

import keras
import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

from state_of_sparsity.layers import sparse_layers
from state_of_sparsity.layers.pruning import technique as pruning_technique
from state_of_sparsity.sparse_transformer import hparams as hparams_lib
from state_of_sparsity.sparse_transformer import model as model_lib
from state_of_sparsity.sparse_transformer import techniques
from state_of_sparsity.sparse_transformer import train

TF1_MODEL_SCOPE = "sparse_transformer"
# Our variables with no counterpart in the original's checkpoints: schedule state and the
# VD evaluation threshold (a hparam there; the decoder sets it from --hparams).
UNSAVED_VARIABLES = ("last_mask_update_step", "penalty_weight", "penalty_step", "log_alpha_threshold")
# Checkpoint entries that are not model weights: optimizer slots, step counters, the cubic
# penalty schedule's EMA (sos_spec 5.5).
_NOT_WEIGHTS = re.compile(
    r"(^|/)(global_step|dkl_weight)$|/(adam|lazyadam|adafactor|momentum|rmsprop|adagrad)(_\d+)?$",
    re.IGNORECASE,
)
_MODALITY = re.compile(rf"^{TF1_MODEL_SCOPE}/symbol_modality_(\d+)_(\d+)/")
_LAYER_NORM_NAMES = {"gamma": "layer_norm_scale", "beta": "layer_norm_bias"}
_PRUNED_NAMES = {"kernel": "weights", "bias": "biases"}  # inside `fully_connected/`
# How many names a one-line error lists before "... and N more".
_SHOWN = 6


@dataclasses.dataclass(frozen=True)
class ImportSummary:
    """What `import_tf1_checkpoint` did.

    Attributes:
      checkpoint: the checkpoint prefix read.
      assigned: {"<layer>/<variable>": TF1 names it was read from (several for shards)}.
      kept: our variables with no TF1 counterpart, left at their built values.
      ignored: checkpoint entries that are not model weights (optimizer slots, counters).
      global_step: the checkpoint's `global_step`, or None when it has none.
    """

    checkpoint: str
    assigned: typing.Mapping[str, typing.Tuple[str, ...]]
    kept: typing.Tuple[str, ...]
    ignored: typing.Tuple[str, ...]
    global_step: typing.Optional[int]

    def __str__(self):
        return (
            f"Imported {len(self.assigned)} variables from TF1 checkpoint {self.checkpoint} "
            f"(global_step {self.global_step}); {len(self.kept)} training-only variables kept, "
            f"{len(self.ignored)} non-weight entries (optimizer slots, counters) skipped."
        )


def resolve_checkpoint(path):
    """The checkpoint prefix `path` names: a prefix, its `.index`/`.data-*` file, or a directory (latest)."""
    path = os.fspath(path)
    if tf.io.gfile.isdir(path):
        prefix = tf.train.latest_checkpoint(path)
        if prefix is None:
            raise ValueError(
                f"Directory {path!r} has no checkpoint (no valid `checkpoint` state file): pass "
                "the prefix of one, e.g. <dir>/model.ckpt-500000."
            )
        return prefix
    shard = re.fullmatch(r"(.+)\.(index|meta|data-\d+-of-\d+)", path)
    if shard:
        path = shard.group(1)
    if not tf.io.gfile.exists(path + ".index"):
        raise ValueError(
            f"No checkpoint at {path!r}: pass a checkpoint prefix such as model.ckpt-500000 "
            "(the name before .index) or its directory."
        )
    return path


def is_tf1_checkpoint(path):
    """Whether `path` is one of the original's TF1 checkpoints (variables under `sparse_transformer/`)."""
    names = (name for name, _ in tf.train.list_variables(resolve_checkpoint(path)))
    return any(name.startswith(TF1_MODEL_SCOPE + "/") for name in names)


def modality_sizes(path):
    """[(vocab_size, hidden_size)] of the `symbol_modality_<vocab>_<hidden>` scopes in a TF1 checkpoint."""
    sizes = {
        (int(match.group(1)), int(match.group(2)))
        for match in (_MODALITY.match(name) for name, _ in tf.train.list_variables(resolve_checkpoint(path)))
        if match
    }
    return sorted(sizes)


def layer_scope(layer_name, hparams):
    """The full TF1 scope of one of our layers, `sparse_transformer/...`.

    Post-norm models (layer_preprocess "none") normalise in T2T's `layer_postprocess`,
    so their sub-block norms live there rather than in `layer_prepostprocess`.
    """
    scope = f"{TF1_MODEL_SCOPE}/{model_lib.original_scope(layer_name, hparams)}"
    if hparams.layer_preprocess_sequence == "none":
        scope = scope.replace("/layer_prepostprocess/", "/layer_postprocess/")
    return scope


def _shard_names(available, pattern):
    """`pattern.format(i)` for i = 0, 1, ... while present; just the first name when none is (to report it)."""
    names = []
    while pattern.format(len(names)) in available:
        names.append(pattern.format(len(names)))
    return names or [pattern.format(0)]


def tf1_sources(layer, variable_name, hparams, available):
    """The TF1 names whose values, concatenated along axis 0, make `layer`'s variable `variable_name`.

    Args:
      layer: a layer of a `SparseTransformer`.
      variable_name: the Keras name of one of its variables (`kernel`, `mask`, `embeddings`, ...).
      hparams: the model's `HParams` (vocab and hidden size name the modality scope).
      available: the checkpoint's variable names (decides shard counts and the mask spelling).
    """
    scope = layer_scope(layer.name, hparams)
    if isinstance(layer, keras.layers.LayerNormalization):
        return [f"{scope}/{_LAYER_NORM_NAMES.get(variable_name, variable_name)}"]
    if layer.name == techniques.EMBEDDING_NAME:
        if variable_name == "embeddings":
            return _shard_names(available, scope + "/weights_{}")
        if variable_name in ("log_sigma2", "log_alpha"):
            return _shard_names(available, scope + "/weights_{}_aux")
        # apply_mask(var) opens variable_scope(""), which TF1 spells as an empty path element.
        spellings = [f"{scope}//{variable_name}", f"{scope}/{variable_name}"]
        return [next((name for name in spellings if name in available), spellings[0])]
    if layer.name == "target_space_embedding":
        return [f"{scope}/kernel"]
    if isinstance(getattr(layer, "technique", None), pruning_technique.Pruning):
        if "_shard_" in layer.name:
            # Split-head q/k/v: a plain `kernel` masked by apply_mask in the shard's own scope.
            return [f"{scope}/{variable_name}"]
        return [f"{scope}/fully_connected/{_PRUNED_NAMES.get(variable_name, variable_name)}"]
    return [f"{scope}/{variable_name}"]


def _listed(names):
    names = list(names)
    more = f" ... and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return f"{names[:_SHOWN]}{more}"


def _source_shape(shapes, names):
    first = tuple(shapes[names[0]])
    if len(names) == 1:
        return first
    return (sum(shapes[name][0] for name in names),) + first[1:]


def _plan(model, shapes):
    """[(label, variable, TF1 names)] for every weight, kept labels, and one-line problems."""
    plan, kept, missing, mismatched = [], [], [], []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for variable in sparse_layers.own_variables(layer):
            label = f"{layer.name}/{variable.name}"
            if variable.name in UNSAVED_VARIABLES:
                kept.append(label)
                continue
            names = tf1_sources(layer, variable.name, model.hparams, shapes)
            absent = [name for name in names if name not in shapes]
            if absent:
                missing.extend(absent)
                continue
            shape = _source_shape(shapes, names)
            if shape != tuple(variable.shape):
                mismatched.append(f"{'+'.join(names)} {shape} for {label} {tuple(variable.shape)}")
                continue
            plan.append((label, variable, names))
    return plan, kept, missing, mismatched


def _fit_hint(model, shapes):
    found = sorted({f"symbol_modality_{v}_{h}" for v, h in (
        (int(m.group(1)), int(m.group(2))) for m in map(_MODALITY.match, shapes) if m)})
    hparams = model.hparams
    return (
        f"Was it trained with sparsity_technique={hparams.sparsity_technique!r}, "
        f"hidden_size={hparams.hidden_size}, {hparams.encoder_layers}+{hparams.decoder_layers} layers "
        f"and a {hparams.vocab_size}-id vocabulary (this model's symbol_modality_{hparams.vocab_size}_"
        f"{hparams.hidden_size}; the checkpoint has {found})? Pass the matching --hparams_set/--hparams "
        "and the vocabulary the checkpoint was trained with."
    )


def import_tf1_checkpoint(model, path):
    """Assigns every weight of a built `SparseTransformer` from an original TF1 checkpoint.

    Nothing is assigned unless every weight is found with the right shape and no model
    weight of the checkpoint is left over (e.g. a deeper model): the error names the
    missing, mismatched or unused TF1 variables.

    Args:
      model: a built `SparseTransformer` (`train.build_model`) with the checkpoint's hparams
        (technique, sizes) and `vocab_size`.
      path: the checkpoint prefix (`model.ckpt-N`), one of its files, or its directory.

    Returns:
      An `ImportSummary`.
    """
    if not isinstance(model, model_lib.SparseTransformer) or not model.built:
        raise ValueError(
            "`model` must be a built SparseTransformer (use train.build_model(hparams)). "
            f"Received: model={model!r}"
        )
    path = resolve_checkpoint(path)
    reader = tf.train.load_checkpoint(path)
    shapes = reader.get_variable_to_shape_map()
    if not any(name.startswith(TF1_MODEL_SCOPE + "/") for name in shapes):
        raise ValueError(
            f"{path!r} is not an original TF1 sparse_transformer checkpoint: it has no variable under "
            f"'{TF1_MODEL_SCOPE}/'. This package's own checkpoints restore with tf.train.Checkpoint."
        )
    plan, kept, missing, mismatched = _plan(model, shapes)
    if missing or mismatched:
        problems = []
        if missing:
            problems.append(f"missing {len(missing)} variable(s) {_listed(missing)}")
        if mismatched:
            problems.append(f"shape mismatches {_listed(mismatched)}")
        raise ValueError(
            f"TF1 checkpoint {path!r} does not fit this model: {'; '.join(problems)}. "
            + _fit_hint(model, shapes)
        )
    used = {name for _, _, names in plan for name in names}
    ignored = sorted(name for name in shapes if name not in used and (
        _NOT_WEIGHTS.search(name) or not name.startswith(TF1_MODEL_SCOPE + "/")))
    unused = sorted(set(shapes) - used - set(ignored))
    if unused:
        raise ValueError(
            f"TF1 checkpoint {path!r} holds {len(unused)} model variable(s) this model has no place for: "
            f"{_listed(unused)}. " + _fit_hint(model, shapes)
        )
    for _, variable, names in plan:
        values = [reader.get_tensor(name) for name in names]
        value = values[0] if len(values) == 1 else np.concatenate(values, axis=0)
        variable.assign(np.asarray(value, dtype=variable.dtype))
    global_step = int(reader.get_tensor("global_step")) if "global_step" in shapes else None
    return ImportSummary(
        checkpoint=path,
        assigned={label: tuple(names) for label, _, names in plan},
        kept=tuple(kept),
        ignored=tuple(ignored),
        global_step=global_step,
    )


def export_tf1_checkpoint(model, prefix, global_step=0):
    """Writes a model's weights under the original's TF1 names (one embedding shard), the inverse of the import.

    For tools that read the original's names (e.g. `checkpoint_sparsity --model=transformer`)
    and for round-trip tests. Writes `<prefix>.index`/`.data-*` and the directory's
    `checkpoint` state file; returns the prefix.
    """
    prefix = os.fspath(prefix)
    names, tensors = [], []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for variable in sparse_layers.own_variables(layer):
            if variable.name in UNSAVED_VARIABLES:
                continue
            # An empty `available` picks shard 0 and the TF1 spelling of the embedding mask.
            (name,) = tf1_sources(layer, variable.name, model.hparams, available=())
            names.append(name)
            tensors.append(tf.convert_to_tensor(variable))
    names.append("global_step")
    tensors.append(tf.constant(global_step, tf.int64))
    directory = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(directory, exist_ok=True)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names), tensors=tensors)
    tf.compat.v1.train.update_checkpoint_state(directory, os.path.abspath(prefix))
    return prefix


def convert(tf1_checkpoint, hparams, output_dir):
    """Imports a TF1 checkpoint into a model of `hparams` and saves it as this package's `model.ckpt-<step>`.

    `hparams.vocab_size` is taken from the checkpoint's modality scope when it has one of
    the model's hidden size. The saved checkpoint is restored into a fresh model and
    compared, so a weight the TF2 checkpoint fails to hold raises rather than being lost.
    Returns (saved path, `ImportSummary`).
    """
    sizes = [vocab for vocab, hidden in modality_sizes(tf1_checkpoint) if hidden == hparams.hidden_size]
    if len(sizes) == 1:
        hparams = dataclasses.replace(hparams, vocab_size=sizes[0])
    model = train.build_model(hparams)
    summary = import_tf1_checkpoint(model, tf1_checkpoint)
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model), output_dir, max_to_keep=None, checkpoint_name=train.CHECKPOINT_NAME
    )
    path = manager.save(checkpoint_number=summary.global_step or 0)
    check = train.build_model(hparams, seed=1)
    train.restore(check, path, "the converted model")
    lost = [saved.path for saved, restored in zip(model.weights, check.weights)
            if not np.array_equal(saved.numpy(), restored.numpy())]
    if lost:
        raise RuntimeError(
            f"{path} does not hold {len(lost)} of the model's weights (e.g. {lost[0]}): tf.train.Checkpoint "
            "cannot reach them. Decode the TF1 checkpoint directly (--checkpoint_path) instead."
        )
    return path, summary


def _define_flags(flag_values):
    flags.DEFINE_string("tf1_checkpoint", "", "The original's TF1 checkpoint (prefix or directory).",
                        flag_values=flag_values)
    flags.DEFINE_enum("hparams_set", "sparse_transformer_magnitude_pruning_tpu",
                      sorted(hparams_lib.HPARAMS_SETS), "Hparams set the checkpoint was trained with.",
                      flag_values=flag_values)
    flags.DEFINE_string("hparams", "", "T2T-style overrides, name=value,...", flag_values=flag_values)
    flags.DEFINE_string("output_dir", "", "Where to write the converted TF2 checkpoint.", flag_values=flag_values)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    values = flags.FLAGS
    if not values.tf1_checkpoint or not values.output_dir:
        raise app.UsageError("Pass both --tf1_checkpoint=<prefix or dir> and --output_dir=<dir>.")
    try:
        hparams = hparams_lib.parse_overrides(hparams_lib.get_hparams(values.hparams_set), values.hparams)
        path, summary = convert(values.tf1_checkpoint, hparams, values.output_dir)
    except (ValueError, RuntimeError) as error:
        raise app.UsageError(str(error)) from None
    logging.info("%s", summary)
    print(f"Wrote {path}")


if __name__ == "__main__":
    _define_flags(flags.FLAGS)
    app.run(main)
