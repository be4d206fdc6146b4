"""Global sparsity of a checkpoint, counted as the original `checkpoint_sparsity.py`."""

import collections
import contextlib
import math
import numbers
import os
import re
import sys
import zipfile

import h5py
import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from tensorflow.core.protobuf import trackable_object_graph_pb2

from state_of_sparsity import sparsity_rules

TECHNIQUES = (
    "magnitude_pruning",
    "random_pruning",
    "variational_dropout",
    "l0_regularization",
)
MODELS = ("transformer", "rn50")

# Weight beside `log_sigma2` in the original's TF1 checkpoints (sos_spec 4.1).
_ORIGINAL_THETA = {"transformer": "kernel", "rn50": "weights"}
# Names of that weight in this package's own formats (Keras attribute names).
_KERAS_THETA = ("kernel", "embeddings")
_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_KERAS_WEIGHTS_FILE = "model.weights.h5"
_PROG = "checkpoint_sparsity"

_CHECKPOINT = flags.DEFINE_string(
    "checkpoint",
    None,
    "Checkpoint to measure: a TF checkpoint prefix (model.ckpt-N), its .index "
    "file or its directory, a .keras file or a .weights.h5 file.",
)
_TECHNIQUE = flags.DEFINE_enum(
    "sparsity_technique",
    "magnitude_pruning",
    TECHNIQUES,
    "Technique the checkpoint was trained with.",
)
_MODEL = flags.DEFINE_enum(
    "model",
    "transformer",
    MODELS,
    "Model of a TF1 checkpoint of the original code; picks the name of the "
    "weight beside `log_sigma2` (transformer: kernel, rn50: weights).",
)
_THRESHOLD = flags.DEFINE_float(
    "log_alpha_threshold",
    sparsity_rules.DEFAULT_LOG_ALPHA_THRESHOLD,
    "Variational dropout keeps a weight when log alpha is below this.",
)


class _Tensors:
    """The tensors of one checkpoint by normalised name, read one at a time.

    Only names are listed up front, so memory is bounded by the largest tensor
    (two for variational dropout) however big the checkpoint is.
    """

    def __init__(self, path, keys, read, original_names):
        self.path = path
        self.names = sorted(keys)
        self._keys = keys
        self._read = read
        # The original's TF1 names depend on --model; ours are Keras attribute names.
        self._original_names = original_names

    def read(self, name):
        """One tensor as a NumPy array; a damaged file is a user error, not a crash."""
        try:
            return np.asarray(self._read(self._keys[name]))
        # TF reports a truncated data file as IndexError ("Read less bytes ...").
        except (tf.errors.OpError, OSError, IndexError) as error:
            message = getattr(error, "message", str(error))
            raise ValueError(
                f"Cannot read tensor {name!r} of {self.path!r}: {message}. The file "
                f"may be truncated or damaged. Received: checkpoint={self.path!r}"
            ) from None

    def theta_name(self, log_sigma2_name, model):
        """Name of the weight paired with a variational dropout `log_sigma2` tensor."""
        if log_sigma2_name.endswith("_aux"):
            candidates = [log_sigma2_name[: -len("_aux")]]
        else:
            stem = log_sigma2_name[: -len("log_sigma2")]
            if self._original_names:
                candidates = [stem + _ORIGINAL_THETA[model]]
            else:
                candidates = [stem + theta for theta in _KERAS_THETA]
        for candidate in candidates:
            if candidate in self._keys:
                return candidate
        hint = ""
        if self._original_names:
            other = next(m for m in MODELS if m != model)
            hint = f" If this is a {other} checkpoint, pass --model={other}."
        raise ValueError(
            f"Variational dropout tensor {log_sigma2_name!r} in {self.path!r} has no "
            f"weight beside it. Expected one of {candidates}.{hint} "
            f"Received: model={model!r}"
        )


def resolve_checkpoint(path):
    """The file or TF checkpoint prefix that `path` names.

    Accepts what users actually pass: the prefix `model.ckpt-N` the original
    wanted, its `.index`/`.data-*` file (GitHub issue #392), a checkpoint
    directory (via `tf.train.latest_checkpoint`), an unzipped `.keras`
    directory, or a `.keras` / `.weights.h5` file.
    """
    path = os.fspath(path)
    if tf.io.gfile.isdir(path):
        prefix = tf.train.latest_checkpoint(path)
        if prefix is not None and tf.io.gfile.exists(prefix + ".index"):
            return prefix
        weights = os.path.join(path, _KERAS_WEIGHTS_FILE)
        if tf.io.gfile.exists(weights):
            return weights
        raise FileNotFoundError(
            f"Directory {path!r} holds no checkpoint: it has no valid 'checkpoint' "
            f"state file and no {_KERAS_WEIGHTS_FILE}. Pass --checkpoint=<dir>/"
            "model.ckpt-N, a .keras or a .weights.h5 file. "
            f"Received: checkpoint={path!r}"
        )
    shard = re.fullmatch(r"(.+)\.(index|data-\d+-of-\d+)", path)
    if shard and tf.io.gfile.exists(shard.group(1) + ".index"):
        return shard.group(1)
    if tf.io.gfile.exists(path) or tf.io.gfile.exists(path + ".index"):
        return path
    raise FileNotFoundError(
        f"No checkpoint at {path!r}. Expected a checkpoint prefix such as "
        "'model.ckpt-1000' (with its .index file), a checkpoint directory, a .keras "
        f"or a .weights.h5 file. Received: checkpoint={path!r}"
    )


def checkpoint_nonzeros(
    path,
    technique,
    model="transformer",
    log_alpha_threshold=sparsity_rules.DEFAULT_LOG_ALPHA_THRESHOLD,
):
    """(kept weights, total weights) over the sparse tensors of a checkpoint.

    Counts exactly what the original counts (sos_spec 4.1), with the rules of
    `sparsity_rules` shared with `sparsity_report`, so a model and its
    checkpoint agree: pruning counts non-zero entries of tensors named `*mask`;
    L0 the non-zero gates of `*log_alpha`/`*_aux`; variational dropout the
    weights with log alpha below the threshold, for `*log_sigma2`/`*_aux`.

    Raises:
      FileNotFoundError: if there is no checkpoint at `path`.
      ValueError: for a bad argument, an unreadable file, or a checkpoint
        without the technique's tensors.
    """
    _check_arguments(technique, model, log_alpha_threshold)
    with _open(resolve_checkpoint(path)) as tensors:
        nonzeros, total, counted = 0, 0, 0
        for name in tensors.names:
            counts = _count_tensor(tensors, name, technique, model, log_alpha_threshold)
            if counts is not None:
                nonzeros += counts[0]
                total += counts[1]
                counted += 1
        if not counted or not total:
            raise ValueError(_no_sparse_tensors_message(tensors, technique))
    return nonzeros, total


def checkpoint_sparsity(
    path,
    technique,
    model="transformer",
    log_alpha_threshold=sparsity_rules.DEFAULT_LOG_ALPHA_THRESHOLD,
):
    """Global fraction of zeros, in [0, 1], of the sparse tensors of a checkpoint.

    See `checkpoint_nonzeros` for what is counted and what is raised.

    Example:
    ```python
    checkpoint_sparsity("/tmp/run/ckpt-4", "magnitude_pruning")
    ```
    """
    nonzeros, total = checkpoint_nonzeros(path, technique, model, log_alpha_threshold)
    return sparsity_rules.global_sparsity(nonzeros, total)


def _check_arguments(technique, model, log_alpha_threshold):
    """Rejects bad arguments before any file is opened, naming the flag to fix."""
    if technique not in TECHNIQUES:
        raise ValueError(
            f"--sparsity_technique must be one of {list(TECHNIQUES)}. "
            f"Received: sparsity_technique={technique!r}"
        )
    if model not in MODELS:
        raise ValueError(
            f"--model must be one of {list(MODELS)}. Received: model={model!r}"
        )
    if (
        isinstance(log_alpha_threshold, bool)
        or not isinstance(log_alpha_threshold, numbers.Real)
        or not math.isfinite(log_alpha_threshold)
    ):
        raise ValueError(
            "--log_alpha_threshold must be a finite number (the original uses 3.0). "
            f"Received: log_alpha_threshold={log_alpha_threshold!r}"
        )


def _count_tensor(tensors, name, technique, model, log_alpha_threshold):
    """(nonzeros, size) of one tensor by the technique's rule; None if not counted."""
    if "pruning" in technique:
        if not name.endswith("mask"):
            return None
        mask = tensors.read(name)
        return sparsity_rules.pruning_nonzeros(mask), mask.size
    if technique == "l0_regularization":
        if not name.endswith(("log_alpha", "_aux")):
            return None
        log_alpha = tensors.read(name)
        return sparsity_rules.l0_nonzeros(log_alpha), log_alpha.size
    if not name.endswith(("log_sigma2", "_aux")):
        return None
    log_sigma2 = tensors.read(name)
    theta_name = tensors.theta_name(name, model)
    theta = tensors.read(theta_name)
    if theta.shape != log_sigma2.shape:
        raise ValueError(
            f"Variational dropout tensors of {tensors.path!r} must have the shape of "
            f"their weight. Received: {name}.shape={log_sigma2.shape}, "
            f"{theta_name}.shape={theta.shape}"
        )
    nonzeros = sparsity_rules.vd_nonzeros(log_sigma2, theta, log_alpha_threshold)
    return nonzeros, log_sigma2.size


def _no_sparse_tensors_message(tensors, technique):
    """Why nothing was counted, and the technique the names suggest (the usual slip)."""
    suffixes = {
        "magnitude_pruning or random_pruning": "mask",
        "variational_dropout": "log_sigma2",
        "l0_regularization": "log_alpha",
    }
    found = [
        t for t, s in suffixes.items() if any(n.endswith(s) for n in tensors.names)
    ]
    hint = (
        f" Its tensor names suggest --sparsity_technique={' or '.join(found)}."
        if found
        else " It looks dense (no mask, log_sigma2 or log_alpha tensor)."
    )
    return (
        f"Checkpoint {tensors.path!r} has no sparse tensor for "
        f"--sparsity_technique={technique} ({len(tensors.names)} tensors checked)."
        f"{hint} Received: sparsity_technique={technique!r}"
    )


@contextlib.contextmanager
def _open(path):
    """Yields the `_Tensors` of a resolved checkpoint, picking the reader by content."""
    if tf.io.gfile.exists(path + ".index"):
        yield _tf_checkpoint_tensors(path)
    elif os.path.isfile(path) and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if _KERAS_WEIGHTS_FILE not in archive.namelist():
                raise ValueError(
                    f"{path!r} is a zip archive without {_KERAS_WEIGHTS_FILE}, so "
                    "not a Keras 3 .keras file. Pass --checkpoint as a .keras file "
                    f"saved with `model.save(...)`. Received: checkpoint={path!r}"
                )
            # Keras stores the member uncompressed, so h5py seeks in it directly.
            with (
                archive.open(_KERAS_WEIGHTS_FILE) as member,
                _open_hdf5(member, path) as h5_file,
            ):
                yield _hdf5_tensors(h5_file, path)
    elif os.path.isfile(path) and h5py.is_hdf5(path):
        with _open_hdf5(path, path) as h5_file:
            yield _hdf5_tensors(h5_file, path)
    else:
        raise ValueError(
            f"Cannot read {path!r}: it is neither a TensorFlow checkpoint (a prefix "
            "with a .index file), a .keras archive nor an HDF5 .weights.h5 file. "
            f"Received: checkpoint={path!r}"
        )


def _tf_checkpoint_tensors(prefix):
    """Tensors of a TF checkpoint: original names for TF1, layer paths for TF2 ones."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = list(reader.get_variable_to_dtype_map())
        if _OBJECT_GRAPH_KEY in names:
            graph = trackable_object_graph_pb2.TrackableObjectGraph()
            graph.ParseFromString(reader.get_tensor(_OBJECT_GRAPH_KEY))
            keys = _object_graph_keys(graph)
            return _Tensors(prefix, keys, reader.get_tensor, original_names=False)
    except (tf.errors.OpError, ValueError) as error:
        message = getattr(error, "message", str(error))
        raise ValueError(
            f"Cannot read TensorFlow checkpoint {prefix!r}: {message}. "
            f"Received: checkpoint={prefix!r}"
        ) from None
    keys = {name: name for name in names}
    return _Tensors(prefix, keys, reader.get_tensor, original_names=True)


def _object_graph_keys(graph):
    """Maps `layer/path/variable` to the key of each variable of a TF2 checkpoint.

    A TF2 checkpoint stores each variable once, under its shortest path in the
    object graph. With the optimizer saved, that is a numbered slot such as
    `optimizer/_trainable_variables/0` for trainable weights (kernel,
    log_sigma2, log_alpha), so the key alone loses the layer. The graph still
    has every edge: name each variable by the first path (breadth-first) that
    ends in an attribute name, e.g. `model/_operations/1/kernel` (leading `_`
    of Keras' private attributes dropped), so siblings share a prefix.
    Optimizer slots are never attribute children, so they are skipped.
    """
    paths = {0: ""}
    best = {}  # variable node id -> (name, key, named)
    queue = collections.deque([0])
    while queue:
        node_id = queue.popleft()
        for child in graph.nodes[node_id].children:
            child_path = f"{paths[node_id]}/{child.local_name}".lstrip("/")
            for attribute in graph.nodes[child.node_id].attributes:
                if attribute.name != "VARIABLE_VALUE":
                    continue
                named = not child.local_name.isdigit()
                known = best.get(child.node_id)
                if known is None or (named and not known[2]):
                    parent = paths[node_id]
                    name = f"{parent}/{child.local_name.lstrip('_')}".lstrip("/")
                    best[child.node_id] = (name, attribute.checkpoint_key, named)
            if child.node_id not in paths:
                paths[child.node_id] = child_path
                queue.append(child.node_id)
    keys = {}
    for name, key, _ in best.values():
        keys.setdefault(name, key)
    return keys


@contextlib.contextmanager
def _open_hdf5(file, path):
    """Opens an HDF5 file or file object; h5py's OSError becomes a clear message."""
    try:
        h5_file = h5py.File(file, "r")
    except OSError as error:
        raise ValueError(
            f"Cannot read HDF5 weights of {path!r}: {error}. "
            f"Received: checkpoint={path!r}"
        ) from None
    with h5_file:
        yield h5_file


def _hdf5_tensors(h5_file, path):
    """Tensors of a `.keras`/`.weights.h5` file, e.g. `layers/sparse_dense/vars/mask`.

    Sparse* layers save their variables by name
    (`SparseLayerMixin.save_own_variables`), so the name rules work on the
    dataset paths; optimizer state is skipped.
    """
    keys = {}

    def visit(name, item):
        if isinstance(item, h5py.Dataset) and not name.startswith("optimizer/"):
            keys[name.removesuffix(":0")] = name  # legacy Keras h5 names end in ":0"

    h5_file.visititems(visit)
    return _Tensors(path, keys, lambda key: h5_file[key][()], original_names=False)


def _parse_flags(argv):
    """absl's flag parsing, but a bad flag is one line on stderr and exit code 2."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        _fail(str(error))


def _fail(message):
    """Ends the CLI like argparse: one line on stderr and exit code 2, no traceback."""
    print(f"{_PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


def main(argv):
    """Prints `<checkpoint> global sparsity = <pct>%`, the original's output line."""
    if len(argv) > 1:
        _fail(
            "Unexpected positional arguments; pass every option as --flag=value. "
            f"Received: {argv[1:]}"
        )
    if _CHECKPOINT.value is None:
        _fail("--checkpoint is required. Received: checkpoint=None")
    try:
        _check_arguments(_TECHNIQUE.value, _MODEL.value, _THRESHOLD.value)
        path = resolve_checkpoint(_CHECKPOINT.value)
        sparsity = checkpoint_sparsity(
            path, _TECHNIQUE.value, _MODEL.value, _THRESHOLD.value
        )
    except (FileNotFoundError, ValueError) as error:
        _fail(error)
    print(f"{path} global sparsity = {100 * sparsity}%")


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
