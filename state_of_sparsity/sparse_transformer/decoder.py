"""Translates a text file with a trained sparse Transformer, as the original decoder.py (T2T's --decode_from_file).

  python -m state_of_sparsity.sparse_transformer.decoder \\
      --hparams_set=sparse_transformer_magnitude_pruning_tpu --problem=translate_ende_wmt32k_packed \\
      --data_dir=decode/wmt_ende32k --output_dir=/runs/mp90 --decode_from_file=newstest2014.en \\
      --hparams=symbol_modality_num_shards=1

Flags are the trainer's (`config.Config`: --hparams_set, --hparams, --problem, --data_dir,
--output_dir, --checkpoint_path, ...) plus T2T's decoder flags --model (only
"sparse_transformer"), --decode_from_file, --decode_to_file and --decode_hparams. The
checkpoint is --checkpoint_path or the latest in --output_dir: one of ours, or an original
TF1 tensor2tensor checkpoint, which is imported by name (`checkpoint_importer`). The
vocabulary is the problem's, read from --data_dir and never rebuilt; it also sizes the
embedding, as in training. Variational dropout drops weights at the hparam
`log_alpha_threshold` (`--hparams=log_alpha_threshold=0.5`).

As T2T does, the inputs are sorted by word count (longest first), decoded in batches of
`batch_size` with beam search (T2T's defaults: beam 4, alpha 0.6, up to the batch's padded
input length + 100 ids), and written back in input order, one line each, to --decode_to_file or by default
`<input>.sparse_transformer.<hparams_set>.<problem>.beam<beam>.alpha<alpha>.decodes`.
"""

import dataclasses
import os
import time
import typing

import keras
import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

import state_of_sparsity as sos
from state_of_sparsity import config_flags
from state_of_sparsity.sparse_transformer import beam_search
from state_of_sparsity.sparse_transformer import checkpoint_importer
from state_of_sparsity.sparse_transformer import config as config_lib
from state_of_sparsity.sparse_transformer import problems
from state_of_sparsity.sparse_transformer import train
from state_of_sparsity.sparse_transformer import trainer

MODEL_NAME = "sparse_transformer"
# T2T's decode_from_file batch size when decode_hparams leaves it at 0.
DEFAULT_BATCH_SIZE = 32


class DecoderError(ValueError):
    """A flag, input file, vocabulary or checkpoint the decoder needs is missing or does not fit."""


@dataclasses.dataclass(frozen=True)
class DecodeHParams:
    """The T2T decode hparams this decoder honours (T2T's defaults).

    Attributes:
      beam_size: beams per sentence (1: greedy).
      alpha: length-penalty exponent, ((5 + length) / 6)^alpha.
      extra_length: the output may be up to input length + extra_length ids.
      batch_size: sentences per batch (0: T2T's 32).
      return_beams: write every beam, tab-separated, instead of the best one.
    """

    beam_size: int = 4
    alpha: float = 0.6
    extra_length: int = 100
    batch_size: int = DEFAULT_BATCH_SIZE
    return_beams: bool = False

    def __post_init__(self):
        for name, minimum in (("beam_size", 1), ("extra_length", 1), ("batch_size", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"--decode_hparams {name} must be an integer >= {minimum}. Received: {name}={value!r}")
        alpha_is_number = isinstance(self.alpha, (int, float)) and not isinstance(self.alpha, bool)
        if not alpha_is_number or not 0 <= self.alpha < float("inf"):
            raise ValueError(f"--decode_hparams alpha must be a number >= 0. Received: alpha={self.alpha!r}")
        if not isinstance(self.return_beams, bool):
            raise ValueError(f"--decode_hparams return_beams must be true or false. Received: {self.return_beams!r}")
        object.__setattr__(self, "alpha", float(self.alpha))
        if self.batch_size == 0:
            object.__setattr__(self, "batch_size", DEFAULT_BATCH_SIZE)


def parse_decode_hparams(text):
    """A `DecodeHParams` from T2T's "name=value,..." string, e.g. "beam_size=4,alpha=0.6"."""
    hints = typing.get_type_hints(DecodeHParams)
    values = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, separator, value = (part.strip() for part in item.partition("="))
        if not separator or name not in hints:
            raise ValueError(
                f"--decode_hparams takes name=value items with names in {sorted(hints)}. Received: {item.strip()!r}"
            )
        if name in values:
            raise ValueError(f"--decode_hparams sets {name} twice. Received: {text!r}")
        try:
            if hints[name] is bool:
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                values[name] = value.lower() in ("true", "1")
            else:
                values[name] = hints[name](value)
        except ValueError:
            raise ValueError(
                f"--decode_hparams {name} must be of type {hints[name].__name__}. Received: {name}={value!r}"
            ) from None
    return DecodeHParams(**values)


def decode_filename(input_path, hparams_set, problem, decode_hp):
    """T2T's default output name: `<input>.<model>.<hparams_set>.<problem>.beam<B>.alpha<A>.decodes`.

    An input whose name already ends in that beam/alpha suffix is written in place, as T2T does.
    """
    suffix = f"beam{decode_hp.beam_size}.alpha{decode_hp.alpha}.decodes"
    if suffix in input_path:
        return input_path
    return f"{input_path}.{MODEL_NAME}.{hparams_set}.{problem}.{suffix}"


def read_inputs(path):
    """The stripped lines of `path`, without the empty last line (T2T's _get_sorted_inputs)."""
    if not path:
        raise DecoderError("--decode_from_file is required: the decoder translates a text file, one sentence per line.")
    if not os.path.isfile(path):
        raise DecoderError(f"--decode_from_file={path!r} does not exist: pass a text file, one sentence per line.")
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f.read().split("\n")]
    if lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise DecoderError(f"--decode_from_file={path!r} is empty: there is nothing to translate.")
    return lines


def translate_lines(lines, translate_batch, batch_size):
    """`translate_batch` applied to `lines` in T2T's order; results returned in input order.

    Sentences are sorted by word count, longest first (ties keep input order), so each
    batch pads little; a progress line per batch reports sentences/s.
    """
    order = sorted(range(len(lines)), key=lambda index: -len(lines[index].split()))
    outputs = [None] * len(lines)
    start = time.perf_counter()
    for first in range(0, len(order), batch_size):
        indices = order[first:first + batch_size]
        results = translate_batch([lines[index] for index in indices])
        if len(results) != len(indices):
            raise RuntimeError(f"translate_batch returned {len(results)} results for {len(indices)} sentences.")
        for index, result in zip(indices, results):
            outputs[index] = result
        done = first + len(indices)
        elapsed = time.perf_counter() - start
        logging.info("Decoded %d/%d sentences (%.2f sentences/s).", done, len(lines), done / max(elapsed, 1e-9))
    return outputs


def _pad(id_lists):
    batch = np.zeros((len(id_lists), max(len(ids) for ids in id_lists)), np.int32)
    for row, ids in enumerate(id_lists):
        batch[row, :len(ids)] = ids
    return batch


def _all_beams_function(model, decode_hp):
    """A traced function: source ids [B, L] -> every beam [B, beam_size, L + extra_length], EOS stripped."""

    def all_beams(inputs):
        encoder_output, bias = model.encode(inputs, training=False)
        length = tf.shape(inputs)[1] + decode_hp.extra_length
        cache = model.initial_cache(encoder_output, bias, length)
        sequences, _ = beam_search.beam_search(
            lambda ids, step, states: model.decode_step(ids, states, step),
            tf.fill([tf.shape(inputs)[0]], beam_search.SOS_ID), decode_hp.beam_size, length, decode_hp.alpha,
            cache, stop_early=False,  # T2T stops early only when it returns the top beam alone
        )
        sequences = sequences[:, :, 1:]
        shape = tf.shape(sequences)
        flat = beam_search.strip_eos(tf.reshape(sequences, [-1, shape[2]]))
        return tf.reshape(flat, shape)

    return tf.function(all_beams, input_signature=[tf.TensorSpec([None, None], tf.int32)])


def make_translator(model, encoder, decode_hp):
    """`texts -> translations` with `model` and the subword `encoder` (EOS and padding stripped)."""
    all_beams = _all_beams_function(model, decode_hp) if decode_hp.return_beams else None

    def text(ids):
        return encoder.decode([int(i) for i in ids], strip_extraneous=True)

    def translate(texts):
        inputs = _pad([encoder.encode_with_eos(line) for line in texts])
        if all_beams is not None:
            return ["\t".join(text(beam) for beam in beams) for beams in all_beams(inputs).numpy()]
        ids, _ = beam_search.beam_search_decode(
            model, inputs, decode_hp.beam_size, decode_hp.alpha, decode_hp.extra_length
        )
        return [text(row) for row in ids.numpy()]

    return translate


def load_encoder(config):
    """The problem's subword vocabulary from --data_dir (the training one; never built here)."""
    problem = problems.get_problem(config.problem)
    sources = config.data_sources
    path = problem.vocab_path(sources)
    if not os.path.exists(path):
        raise DecoderError(
            f"--problem={config.problem} decodes with the vocabulary it was trained with, {path}, which does not "
            "exist: pass the training run's --data_dir (and --vocab_size)."
        )
    return problem.encoder(sources)


def load_model(config, hparams):
    """(a built model holding the checkpoint's weights, checkpoint path); TF1 checkpoints are imported."""
    path = checkpoint_importer.resolve_checkpoint(train.latest_checkpoint(config))
    model = train.build_model(hparams, config.seed)
    if checkpoint_importer.is_tf1_checkpoint(path):
        logging.info("%s", checkpoint_importer.import_tf1_checkpoint(model, path))
    else:
        train.restore(model, path, f"--hparams_set={config.hparams_set}")
        logging.info("Restored %s.", path)
    if hparams.sparsity_technique == "variational_dropout":
        sos.set_log_alpha_threshold(model, hparams.log_alpha_threshold)
    return model, path


def decode_from_file(config, decode_hp, input_path, output_path=""):
    """Translates `input_path` line by line into `output_path` (default: T2T's name); returns the output path.

    Raises `DecoderError` (one line) when the input, vocabulary or checkpoint is missing or
    does not fit the flags, before any decoding starts.
    """
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.precision)
    try:
        try:
            lines = read_inputs(input_path)
            encoder = load_encoder(config)
            # As in training (and T2T), the vocabulary sizes the shared embedding/softmax.
            hparams = dataclasses.replace(config.resolved_hparams(), vocab_size=encoder.vocab_size)
            model, checkpoint = load_model(config, hparams)
        except (ValueError, FileNotFoundError) as error:
            raise DecoderError(str(error)) from error
        output_path = output_path or decode_filename(input_path, config.hparams_set, config.problem, decode_hp)
        logging.info("Decoding %d sentences of %s with %s: %s.", len(lines), input_path, checkpoint, decode_hp)
        outputs = translate_lines(lines, make_translator(model, encoder, decode_hp), decode_hp.batch_size)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    if os.path.dirname(output_path):
        os.makedirs(os.path.dirname(output_path), exist_ok=True)
    problems.write_lines(output_path, outputs)
    logging.info("Wrote %d decodes to %s.", len(outputs), output_path)
    return output_path


def define_flags(flag_values=flags.FLAGS):
    """The trainer's flags plus T2T's decoder flags."""
    config_flags.define_flags(config_lib.Config, trainer.CHOICES, flag_values)
    flags.DEFINE_enum("model", MODEL_NAME, [MODEL_NAME], "T2T model name (accepted for compatibility).",
                      flag_values=flag_values)
    flags.DEFINE_string("decode_from_file", "", "Text file to translate, one sentence per line.",
                        flag_values=flag_values)
    flags.DEFINE_string("decode_to_file", "", "Output file (default: T2T's name beside the input).",
                        flag_values=flag_values)
    flags.DEFINE_string("decode_hparams", "", "T2T decode hparams, e.g. beam_size=4,alpha=0.6,extra_length=100,"
                        "batch_size=32,return_beams=false.", flag_values=flag_values)


def run(flag_values=flags.FLAGS):
    """Decodes as the parsed flags say; returns the output path (bad flags or files: `app.UsageError`)."""
    config = config_flags.config_from_flags(config_lib.Config, flag_values)
    try:
        decode_hp = parse_decode_hparams(flag_values.decode_hparams)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    try:
        return decode_from_file(config, decode_hp, flag_values.decode_from_file, flag_values.decode_to_file)
    except DecoderError as error:
        raise app.UsageError(str(error)) from None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    run(flags.FLAGS)


if __name__ == "__main__":
    define_flags()
    app.run(main)
