"""Greedy and beam-search decoding over the model's cached steps (T2T's fast_decode and beam_search, sos_spec 5.6)."""

import weakref

import tensorflow as tf

from state_of_sparsity.sparse_transformer import model as model_lib

EOS_ID = model_lib.EOS_ID
SOS_ID = model_lib.PAD_ID
# T2T's stand-in for infinity in the beam scores.
INF = 1.0e7

_COMPILED = weakref.WeakKeyDictionary()


def length_penalty(length, alpha):
    """GNMT length penalty ((5 + length) / 6)^alpha; scores are log-probabilities divided by it."""
    return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, alpha)


def _merge_beams(tensor):
    """[B, K, ...] -> [B * K, ...]."""
    shape = tf.shape(tensor)
    return tf.reshape(tensor, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))


def _split_beams(tensor, batch, beams):
    """[B * K, ...] -> [B, K, ...]."""
    return tf.reshape(tensor, tf.concat([[batch, beams], tf.shape(tensor)[1:]], 0))


def _tile_beams(tensor, beams):
    """[B, ...] -> [B, K, ...], every beam a copy."""
    tensor = tf.expand_dims(tensor, 1)
    multiples = tf.concat([[1, beams], tf.ones([tf.rank(tensor) - 2], tf.int32)], 0)
    return tf.tile(tensor, multiples)


def _gather_beams(structure, indices):
    """Picks beams `indices` [B, N] out of every [B, K, ...] tensor of `structure`."""
    return tf.nest.map_structure(lambda t: tf.gather(t, indices, axis=1, batch_dims=1), structure)


def _top_beams(scores, count, *structures):
    """The `count` highest-scoring beams of `scores` [B, N], gathered from each structure."""
    _, indices = tf.math.top_k(scores, k=count)
    return tuple(_gather_beams(structure, indices) for structure in structures)


def beam_search(step_fn, initial_ids, beam_size, decode_length, alpha, states, eos_id=EOS_ID,
                stop_early=True):
    """T2T's beam search: keep `beam_size` alive and `beam_size` finished hypotheses per example.

    Each step extends the alive beams by every vocabulary id, keeps the
    2 * beam_size best by length-normalised score, moves those ending in EOS
    to the finished set (best beam_size kept) and the rest to the alive set.
    It stops after `decode_length` steps or, with `stop_early`, once no alive
    beam can still beat the best finished one even at the maximum length
    penalty. An example with no finished beam returns its alive beams.

    Args:
      step_fn: `(ids [N], step, states) -> (logits [N, vocab], states)`, where
        `ids` are the last ids of N = batch * beam_size hypotheses and every
        state tensor has N as its first axis.
      initial_ids: [B] int32 start ids.
      beam_size: int >= 1.
      decode_length: int scalar (tensor) >= 1, the maximum number of new ids.
      alpha: length-penalty exponent.
      states: structure of [B, ...] tensors (e.g. the model's cache).
      eos_id: the end-of-sequence id.
      stop_early: stop once the best finished beam cannot be beaten (T2T's top_beams == 1).

    Returns:
      (sequences [B, beam_size, decode_length + 1] int32 starting with
      `initial_ids`, zeros after EOS; scores [B, beam_size]), best first.
    """
    batch = tf.shape(initial_ids)[0]
    positions = tf.range(decode_length + 1)
    first_position = tf.cast(tf.equal(positions, 0), tf.int32)
    alive_seq = _tile_beams(first_position[tf.newaxis, :] * initial_ids[:, tf.newaxis], beam_size)
    alive_log_probs = tf.tile(
        tf.constant([[0.0] + [-INF] * (beam_size - 1)]), [batch, 1]
    )
    states = tf.nest.map_structure(lambda t: _tile_beams(t, beam_size), states)
    finished_seq = tf.zeros_like(alive_seq)
    finished_scores = tf.fill([batch, beam_size], -INF)
    finished_flags = tf.zeros([batch, beam_size], tf.bool)

    def grow_topk(step, alive_seq, alive_log_probs, states):
        flat_ids = tf.reshape(alive_seq[:, :, step], [-1])
        flat_states = tf.nest.map_structure(_merge_beams, states)
        flat_logits, flat_states = step_fn(flat_ids, step, flat_states)
        states = tf.nest.map_structure(
            lambda t: _split_beams(t, batch, beam_size), flat_states
        )
        logits = _split_beams(tf.cast(flat_logits, tf.float32), batch, beam_size)
        vocab_size = tf.shape(logits)[-1]
        log_probs = tf.nn.log_softmax(logits) + tf.expand_dims(alive_log_probs, 2)
        penalty = length_penalty(step + 1, alpha)
        flat_scores = tf.reshape(log_probs / penalty, [batch, -1])
        topk_scores, topk_flat_ids = tf.math.top_k(flat_scores, k=2 * beam_size)
        topk_log_probs = topk_scores * penalty
        topk_beams = topk_flat_ids // vocab_size
        topk_ids = topk_flat_ids % vocab_size
        topk_seq, states = _gather_beams((alive_seq, states), topk_beams)
        write = tf.equal(positions, step + 1)[tf.newaxis, tf.newaxis, :]
        topk_seq = tf.where(write, topk_ids[:, :, tf.newaxis], topk_seq)
        topk_finished = tf.equal(topk_ids, eos_id)
        return topk_seq, topk_log_probs, topk_scores, topk_finished, states

    def body(step, alive_seq, alive_log_probs, finished_seq, finished_scores, finished_flags,
             states):
        topk_seq, topk_log_probs, topk_scores, topk_finished, states = grow_topk(
            step, alive_seq, alive_log_probs, states
        )
        finished_as_float = tf.cast(topk_finished, tf.float32)
        # Alive: the best unfinished candidates (finished ones pushed to -INF).
        alive_seq, alive_log_probs, states = _top_beams(
            topk_scores - INF * finished_as_float, beam_size, topk_seq, topk_log_probs, states
        )
        # Finished: the best of the old finished set and the newly finished candidates.
        candidate_scores = tf.concat(
            [finished_scores, topk_scores - INF * (1.0 - finished_as_float)], 1
        )
        finished_seq, finished_scores, finished_flags = _top_beams(
            candidate_scores, beam_size, tf.concat([finished_seq, topk_seq], 1),
            candidate_scores, tf.concat([finished_flags, topk_finished], 1),
        )
        return (step + 1, alive_seq, alive_log_probs, finished_seq, finished_scores,
                finished_flags, states)

    def not_done(step, alive_seq, alive_log_probs, finished_seq, finished_scores,
                 finished_flags, states):
        del alive_seq, finished_seq, finished_flags, states
        best_alive = alive_log_probs[:, 0] / length_penalty(decode_length, alpha)
        if stop_early:
            best_finished = tf.reduce_max(finished_scores, axis=1)
        else:
            best_finished = tf.reduce_min(finished_scores)
        bound_is_met = tf.reduce_all(tf.greater(best_finished, best_alive))
        return tf.logical_and(tf.less(step, decode_length), tf.logical_not(bound_is_met))

    _, alive_seq, alive_log_probs, finished_seq, finished_scores, finished_flags, _ = (
        tf.while_loop(
            not_done, body,
            (tf.constant(0), alive_seq, alive_log_probs, finished_seq, finished_scores,
             finished_flags, states),
        )
    )
    any_finished = tf.reduce_any(finished_flags, axis=1)
    sequences = tf.where(any_finished[:, tf.newaxis, tf.newaxis], finished_seq, alive_seq)
    scores = tf.where(any_finished[:, tf.newaxis], finished_scores, alive_log_probs)
    return sequences, scores


def strip_eos(ids, eos_id=EOS_ID):
    """`ids` [B, L] with the first EOS and everything after it set to 0 (padding)."""
    after_eos = tf.cumsum(tf.cast(tf.equal(ids, eos_id), tf.int32), axis=1) > 0
    return tf.where(after_eos, tf.zeros_like(ids), ids)


def _check_inputs(inputs):
    inputs = tf.convert_to_tensor(inputs)
    if inputs.shape.rank != 2 or not inputs.dtype.is_integer:
        raise ValueError(
            "`inputs` must be integer source ids of shape (batch, length), 0-padded. "
            f"Received: shape={tuple(inputs.shape)}, dtype={inputs.dtype.name}"
        )
    return tf.cast(inputs, tf.int32)


def _check_decode_args(beam_size, alpha, extra_length):
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"`beam_size` must be an integer >= 1. Received: beam_size={beam_size!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha < 0:
        raise ValueError(f"`alpha` must be a number >= 0. Received: alpha={alpha!r}")
    if isinstance(extra_length, bool) or not isinstance(extra_length, int) or extra_length < 1:
        raise ValueError(
            f"`extra_length` must be an integer >= 1. Received: extra_length={extra_length!r}"
        )


def _start(model, inputs, extra_length):
    """Encodes once and allocates the cache for input length + extra_length steps."""
    encoder_output, encdec_bias = model.encode(inputs, training=False)
    decode_length = tf.shape(inputs)[1] + extra_length
    cache = model.initial_cache(encoder_output, encdec_bias, decode_length)
    return cache, decode_length


def _greedy(model, inputs, extra_length):
    cache, decode_length = _start(model, inputs, extra_length)
    batch = tf.shape(inputs)[0]
    positions = tf.range(decode_length)

    def body(step, previous_ids, decoded, finished, log_prob, cache):
        logits, cache = model.decode_step(previous_ids, cache, step)
        next_ids = tf.argmax(logits, axis=-1, output_type=tf.int32)
        next_log_prob = tf.gather(tf.nn.log_softmax(logits), next_ids, axis=1, batch_dims=1)
        log_prob += tf.where(finished, 0.0, next_log_prob)
        decoded = tf.where(tf.equal(positions, step)[tf.newaxis, :], next_ids[:, tf.newaxis],
                           decoded)
        finished = tf.logical_or(finished, tf.equal(next_ids, EOS_ID))
        return step + 1, next_ids, decoded, finished, log_prob, cache

    def not_done(step, previous_ids, decoded, finished, log_prob, cache):
        del previous_ids, decoded, log_prob, cache
        return tf.logical_and(tf.less(step, decode_length),
                              tf.logical_not(tf.reduce_all(finished)))

    _, _, decoded, _, log_prob, _ = tf.while_loop(
        not_done, body,
        (tf.constant(0), tf.fill([batch], SOS_ID), tf.zeros([batch, decode_length], tf.int32),
         tf.zeros([batch], tf.bool), tf.zeros([batch], tf.float32), cache),
    )
    return strip_eos(decoded), log_prob


def _beam(model, inputs, beam_size, alpha, extra_length):
    cache, decode_length = _start(model, inputs, extra_length)
    sequences, scores = beam_search(
        lambda ids, step, states: model.decode_step(ids, states, step),
        tf.fill([tf.shape(inputs)[0]], SOS_ID), beam_size, decode_length, float(alpha), cache,
    )
    return strip_eos(sequences[:, 0, 1:]), scores[:, 0]


def _compiled(model, key, function):
    """One traced `tf.function` per (model, decoding settings), reused across batches.

    Sequences and key/value caches are allocated for `input length +
    extra_length` positions up front and written in place, so the loop keeps
    fixed shapes and one trace serves every batch shape.
    """
    per_model = _COMPILED.setdefault(model, {})
    if key not in per_model:
        per_model[key] = tf.function(
            function, input_signature=[tf.TensorSpec([None, None], tf.int32)]
        )
    return per_model[key]


def greedy_decode(model, inputs, extra_length=100):
    """Greedy decoding of a batch of source ids (T2T's fast_decode with beam_size 1).

    Args:
      model: a built `SparseTransformer`.
      inputs: [B, L] integer source ids, 0-padded (end each with EOS = 1, as in training).
      extra_length: the output may be up to L + extra_length ids long.

    Returns:
      (ids [B, L + extra_length] int32 without EOS, 0 after the end;
       log-probabilities [B] of the decoded ids including EOS).
    """
    _check_decode_args(1, 0.0, extra_length)
    inputs = _check_inputs(inputs)
    function = _compiled(model, ("greedy", extra_length),
                         lambda ids: _greedy(model, ids, extra_length))
    return function(inputs)


def beam_search_decode(model, inputs, beam_size=4, alpha=0.6, extra_length=100):
    """Beam-search decoding of a batch of source ids, the paper's BLEU setting by default.

    T2T's defaults (sos_spec 5.6): beam 4, length penalty ((5 + len) / 6)^0.6,
    at most input length + 100 ids, top beam only. `beam_size=1` decodes
    greedily, as T2T does.

    Args:
      model: a built `SparseTransformer`.
      inputs: [B, L] integer source ids, 0-padded (end each with EOS = 1).
      beam_size: beams per example.
      alpha: length-penalty exponent.
      extra_length: the output may be up to L + extra_length ids long.

    Returns:
      (ids [B, L + extra_length] int32 of the best beam, without EOS and 0
       after the end; its score: log-probability / length penalty, [B]).
    """
    _check_decode_args(beam_size, alpha, extra_length)
    if beam_size == 1:
        return greedy_decode(model, inputs, extra_length)
    inputs = _check_inputs(inputs)
    function = _compiled(model, ("beam", beam_size, float(alpha), extra_length),
                         lambda ids: _beam(model, ids, beam_size, alpha, extra_length))
    return function(inputs)
