"""Translation input (sos_spec 5.2, 5.4): parallel text or tfds WMT14 on disk, token ids, packed or bucketed batches."""

import glob
import os

import numpy as np
import tensorflow as tf

from state_of_sparsity.sparse_transformer import packing

PAD_ID = 0
EOS_ID = 1
WMT14_NAME = "wmt14_translate"
WMT14_CONFIG = "de-en"
# Length buckets for unpacked batches, as T2T's batching scheme: boundaries
# 8, 9, ..., each ~10% above the previous one, up to max_length.
MIN_BUCKET_LENGTH = 8
LENGTH_BUCKET_STEP = 1.1
SHUFFLE_BUFFER = 100_000


def read_parallel_text(source_path, target_path):
    """[(source, target)] sentence pairs from two UTF-8 files with one sentence per line.

    Lines are split on "\\n" only (Unicode line separators inside a sentence
    stay) and stripped of surrounding whitespace, as T2T's text readers do.
    """
    sides = []
    for name, path in (("source_path", source_path), ("target_path", target_path)):
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"`{name}` must be a text file with one sentence per line. Received: {name}={path!r} (not found)"
            )
        with open(path, encoding="utf-8", newline="\n") as f:
            try:
                sides.append([line.strip() for line in f])
            except UnicodeDecodeError as error:
                raise ValueError(f"`{name}` must be UTF-8 text. Received: {name}={path!r} ({error})") from None
    sources, targets = sides
    if len(sources) != len(targets):
        raise ValueError(
            "`source_path` and `target_path` must have the same number of lines (line i of one translates "
            f"line i of the other). Received: source_path={source_path!r} with {len(sources)} lines, "
            f"target_path={target_path!r} with {len(targets)} lines"
        )
    return list(zip(sources, targets))


def _prepared_versions(data_dir, name, config):
    """Directories of a tfds dataset config prepared under `data_dir`, newest version last."""
    if not data_dir:
        return []
    infos = glob.glob(os.path.join(data_dir, name, config, "*", "dataset_info.json"))
    versions = [os.path.dirname(path) for path in infos]

    def version_key(directory):
        return tuple(int(part) for part in os.path.basename(directory).split(".") if part.isdigit())

    return sorted(versions, key=version_key)


def read_tfds_wmt14(data_dir, split, source_language="en", target_language="de"):
    """Iterator of (source, target) sentence pairs of tfds `wmt14_translate/de-en` already prepared on disk.

    The paper translates English to German, hence the default languages.
    Splits: "train" (~4.5M pairs), "validation" (newstest2013), "test"
    (newstest2014), or tfds slices such as "train[:1%]". Nothing is
    downloaded: a dataset that is not under `data_dir` is an error, raised
    here rather than on first iteration.
    """
    versions = _prepared_versions(data_dir, WMT14_NAME, WMT14_CONFIG)
    if not versions:
        expected = os.path.join(data_dir or "<data_dir>", WMT14_NAME, WMT14_CONFIG, "<version>", "dataset_info.json")
        raise FileNotFoundError(
            f"tfds dataset {WMT14_NAME}/{WMT14_CONFIG} is not prepared under data_dir={data_dir!r}: "
            f"expected {expected}. Build it on a machine with network access with `tfds build "
            f"{WMT14_NAME}/{WMT14_CONFIG} --data_dir=DIR`, copy DIR here and pass data_dir=DIR "
            "(nothing is downloaded here)."
        )
    import tensorflow_datasets as tfds  # imported lazily: heavy, and only this reader needs it

    builder = tfds.builder_from_directory(versions[-1])
    splits = sorted(builder.info.splits)
    if split.split("[")[0] not in splits:
        raise ValueError(f"`split` must be one of {splits} (or a tfds slice of one). Received: split={split!r}")
    languages = tuple(builder.info.features.languages)
    for name, language in (("source_language", source_language), ("target_language", target_language)):
        if language not in languages:
            raise ValueError(f"`{name}` must be one of {languages}. Received: {name}={language!r}")
    dataset = builder.as_dataset(split=split, shuffle_files=False)

    def pairs():
        for example in dataset.as_numpy_iterator():
            yield example[source_language].decode("utf-8"), example[target_language].decode("utf-8")

    return pairs()


def _encode(encoder, text, side, index):
    ids = [int(i) for i in encoder.encode(text)]
    if ids and min(ids) <= PAD_ID:
        raise ValueError(
            f"{side}_encoder.encode must return ids >= 1 ({PAD_ID} is padding). "
            f"Received: ids {ids[:20]} for pair {index} ({text[:60]!r})"
        )
    return ids + [EOS_ID]


def encode_pairs(pairs, source_encoder, target_encoder, max_length=None):
    """[{"inputs": ids, "targets": ids}] from (source, target) text pairs, EOS appended to both sides.

    `source_encoder` and `target_encoder` are any objects with
    `.encode(text) -> list[int]` (pass the same one twice for a shared
    vocabulary, as the paper does). Pairs whose inputs or targets are longer
    than `max_length` tokens (EOS included) are dropped, as T2T's length
    filter does; None keeps every pair.
    """
    for name, encoder in (("source_encoder", source_encoder), ("target_encoder", target_encoder)):
        # A str has `.encode` too: a vocabulary path passed by mistake must not pass.
        if isinstance(encoder, (str, bytes)) or not callable(getattr(encoder, "encode", None)):
            raise TypeError(
                f"`{name}` must have an `encode(text) -> list[int]` method (e.g. a subword encoder). "
                f"Received: {name}={encoder!r}"
            )
    if max_length is not None and max_length < 1:
        raise ValueError(f"`max_length` must be a positive integer or None. Received: max_length={max_length}")
    examples = []
    for index, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(s, str) for s in pair)):
            raise ValueError(f"`pairs` must hold (source, target) string pairs. Received: pairs[{index}]={pair!r:.200}")
        inputs = _encode(source_encoder, pair[0], "source", index)
        targets = _encode(target_encoder, pair[1], "target", index)
        if max_length is None or max(len(inputs), len(targets)) <= max_length:
            examples.append({"inputs": inputs, "targets": targets})
    return examples


def bucket_boundaries(max_length, min_length=MIN_BUCKET_LENGTH, step=LENGTH_BUCKET_STEP):
    """T2T's length-bucket boundaries: min_length, then ~step times the previous one, below max_length."""
    boundaries = []
    length = min_length
    while length < max_length:
        boundaries.append(length)
        length = max(length + 1, int(length * step))
    return boundaries


def _check_dataset_args(examples, batch_size_tokens, max_length):
    if max_length < 1:
        raise ValueError(f"`max_length` must be a positive integer. Received: max_length={max_length}")
    if batch_size_tokens < max_length:
        raise ValueError(
            "`batch_size_tokens` must hold at least one sequence of `max_length` tokens. "
            f"Received: batch_size_tokens={batch_size_tokens}, max_length={max_length}"
        )
    if not examples:
        raise ValueError("`examples` is empty: nothing to batch (did encode_pairs drop every pair?).")
    for index, example in enumerate(examples):
        length = max(len(example["inputs"]), len(example["targets"]))
        if length > max_length:
            raise ValueError(
                f"examples[{index}] has {length} tokens, more than max_length={max_length}. "
                f"Filter with encode_pairs(..., max_length={max_length}) first."
            )


def _packed_rows(examples, max_length, shuffle, seed):
    if shuffle:
        # Packing works in input order: shuffle first so rows mix the corpus.
        order = np.random.default_rng(seed).permutation(len(examples))
        examples = [examples[i] for i in order]
    packed = packing.pack_examples(examples, max_length)
    return tf.data.Dataset.from_tensor_slices(packed), len(packed["inputs"])


def _unpacked_examples(examples):
    def ragged(side):
        lengths = np.array([len(example[side]) for example in examples], np.int64)
        values = np.fromiter((i for example in examples for i in example[side]), np.int32, int(lengths.sum()))
        return tf.RaggedTensor.from_row_lengths(values, lengths)

    def add_segments(example):
        features = {}
        for side in ("inputs", "targets"):
            ids = tf.convert_to_tensor(example[side])
            features[side] = ids
            features[f"{side}_segmentation"] = tf.ones_like(ids)
            features[f"{side}_position"] = tf.range(tf.size(ids), dtype=tf.int32)
        return features

    dataset = tf.data.Dataset.from_tensor_slices({"inputs": ragged("inputs"), "targets": ragged("targets")})
    return dataset.map(add_segments, num_parallel_calls=tf.data.AUTOTUNE)


def make_dataset(examples, batch_size_tokens, max_length, packed=True, shuffle=True, seed=0, repeat=True):
    """tf.data.Dataset of feature dicts (int32, [batch, length]) holding at most `batch_size_tokens` per side.

    Features use T2T's names (`packing.FEATURES`): `inputs`, `targets` (token
    ids, 0 = padding, each sentence ending in EOS = 1), `inputs_segmentation`,
    `targets_segmentation` (1, 2, ... numbering the examples in a row, 0 on
    padding) and `inputs_position`, `targets_position` (0-based position
    within each example). An example's inputs and targets are packed into the
    same row and share its segment id, which is how the model keeps
    self-attention and encoder-decoder attention inside one example.
    Unpacked batches carry the same features (one segment per row), so the
    model has one code path.

    packed: examples are packed into rows of `max_length` tokens
      (`packing.pack_examples`) and batched `batch_size_tokens // max_length`
      rows at a time.
    unpacked: examples are grouped into T2T's length buckets; a bucket whose
      sequences are shorter than boundary b is batched `batch_size_tokens // b`
      at a time and padded to its longest sequence, so rows x length stays
      within the budget.
    `shuffle` mixes the examples before packing and the rows (or examples)
    each epoch; `repeat` loops forever and drops the last partial batch so
    shapes stay static; evaluation uses neither (`make_eval_dataset`).
    """
    _check_dataset_args(examples, batch_size_tokens, max_length)
    if packed:
        dataset, size = _packed_rows(examples, max_length, shuffle, seed)
    else:
        dataset, size = _unpacked_examples(examples), len(examples)
    if shuffle:
        dataset = dataset.shuffle(min(size, SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    if packed:
        dataset = dataset.batch(batch_size_tokens // max_length, drop_remainder=repeat)
    else:
        boundaries = bucket_boundaries(max_length)
        dataset = dataset.bucket_by_sequence_length(
            lambda features: tf.maximum(tf.size(features["inputs"]), tf.size(features["targets"])),
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[batch_size_tokens // length for length in boundaries + [max_length]],
            drop_remainder=repeat,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def make_eval_dataset(examples, batch_size_tokens, max_length, packed=True):
    """Every example exactly once, in a fixed order, batched as `make_dataset` does."""
    return make_dataset(examples, batch_size_tokens, max_length, packed=packed, shuffle=False, repeat=False)
