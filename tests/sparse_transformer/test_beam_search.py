"""Beam search against brute force; greedy and beam decoding of a tiny Transformer trained to copy."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from state_of_sparsity.sparse_transformer import beam_search
from state_of_sparsity.sparse_transformer import hparams as hparams_lib
from state_of_sparsity.sparse_transformer import losses
from state_of_sparsity.sparse_transformer import model as model_lib

VOCAB, EOS = 4, 1
# Seed chosen so the optima differ across the alphas tested, and beams of 2 and 3
# miss the optimum in different ways (the narrow-beam test pins T2T's pruning rules).
RNG = np.random.default_rng(107)
TRANSITION = RNG.normal(size=(VOCAB, VOCAB)).astype(np.float32) * 2
PER_STEP = RNG.normal(size=(8, VOCAB)).astype(np.float32)
HISTORY = RNG.normal(size=(VOCAB,)).astype(np.float32)


def toy_step(ids, step, states):
    """Logits that depend on the last id, the step and (through a state) the whole history."""
    history = states["history"]
    logits = (tf.gather(TRANSITION, ids) + tf.gather(PER_STEP, step)
              + history[:, None] * HISTORY)
    return logits, {"history": 0.5 * history + tf.cast(ids, tf.float32)}


def brute_force(history, decode_length, alpha):
    """Best (ids, score) over every sequence that ends in EOS within decode_length ids."""
    best = (None, -np.inf)
    for length in range(1, decode_length + 1):
        for body in itertools.product([i for i in range(VOCAB) if i != EOS], repeat=length - 1):
            ids, previous, state, log_prob = list(body) + [EOS], 0, history, 0.0
            for step, token in enumerate(ids):
                logits = (TRANSITION[previous] + PER_STEP[step] + state * HISTORY).astype(np.float64)
                log_prob += logits[token] - np.log(np.exp(logits).sum())
                state, previous = 0.5 * state + previous, token
            score = log_prob / ((5.0 + length) / 6.0) ** alpha
            if score > best[1]:
                best = (ids, score)
    return best


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_wide_beam_finds_the_brute_force_optimum(alpha):
    # 64 beams keep every one of the 27 unfinished prefixes of 3 ids, so the search is exact.
    histories = np.array([0.3, -1.2], np.float32)
    sequences, scores = beam_search.beam_search(
        toy_step, tf.zeros([2], tf.int32), beam_size=64, decode_length=4, alpha=alpha,
        states={"history": tf.constant(histories)},
    )
    assert tuple(sequences.shape) == (2, 64, 5)
    for example, history in enumerate(histories):
        ids, score = brute_force(float(history), 4, alpha)
        got = list(np.asarray(sequences)[example, 0])
        assert got[0] == 0 and got[1:len(ids) + 1] == ids and not any(got[len(ids) + 1:])
        assert float(scores[example, 0]) == pytest.approx(score, rel=1e-4)
        assert np.all(np.diff(np.asarray(scores)[example]) <= 1e-6)  # best first


def numpy_beam_search(history, beam_size, decode_length, alpha):
    """T2T's beam search for one example, transcribed in plain Python: (best ids, score)."""
    def penalty(length):
        return ((5.0 + length) / 6.0) ** alpha

    alive = [([0], 0.0 if b == 0 else -1e7, history) for b in range(beam_size)]
    finished = []  # (score, ids)
    for step in range(decode_length):
        if finished and max(f[0] for f in finished) > alive[0][1] / penalty(decode_length):
            break
        candidates = []
        for ids, log_prob, state in alive:
            logits = (TRANSITION[ids[-1]] + PER_STEP[step] + state * HISTORY).astype(np.float64)
            log_probs = logits - np.log(np.exp(logits).sum())
            for token in range(VOCAB):
                total = log_prob + log_probs[token]
                candidates.append((total / penalty(step + 1), total, ids + [token],
                                   0.5 * state + ids[-1]))
        candidates = sorted(candidates, key=lambda c: -c[0])[:2 * beam_size]
        alive = [(ids, total, state) for _, total, ids, state in candidates
                 if ids[-1] != EOS][:beam_size]
        finished = sorted(finished + [(score, ids) for score, _, ids, _ in candidates
                                      if ids[-1] == EOS], key=lambda f: -f[0])[:beam_size]
    return finished[0][1][1:], finished[0][0]


@pytest.mark.parametrize("beam_size", [2, 3])
def test_narrow_beam_matches_a_plain_transcription_of_t2t(beam_size):
    histories = np.array([0.3, -1.2, 2.0], np.float32)
    sequences, scores = beam_search.beam_search(
        toy_step, tf.zeros([3], tf.int32), beam_size=beam_size, decode_length=6, alpha=0.6,
        states={"history": tf.constant(histories)},
    )
    for example, history in enumerate(histories):
        ids, score = numpy_beam_search(float(history), beam_size, 6, 0.6)
        got = list(np.asarray(sequences)[example, 0, 1:])
        assert got[:len(ids)] == ids and not any(got[len(ids):])
        assert float(scores[example, 0]) == pytest.approx(score, rel=1e-4)


def test_strip_eos_blanks_eos_and_everything_after():
    ids = tf.constant([[5, 6, 1, 7, 1], [5, 0, 0, 0, 0], [1, 4, 4, 4, 4]])
    np.testing.assert_array_equal(beam_search.strip_eos(ids),
                                  [[5, 6, 0, 0, 0], [5, 0, 0, 0, 0], [0, 0, 0, 0, 0]])


SOURCES = np.array([[3, 4, 5, 6, 1], [7, 8, 9, 1, 0], [10, 3, 7, 1, 0], [5, 11, 9, 4, 1]],
                   np.int32)
COPIES = np.array([[3, 4, 5, 6], [7, 8, 9, 0], [10, 3, 7, 0], [5, 11, 9, 4]])


@pytest.fixture(scope="module")
def copy_model():
    """A tiny Transformer trained for a few dozen steps to copy four sequences."""
    keras.utils.set_random_seed(1234)
    h = hparams_lib.parse_overrides(
        hparams_lib.get_hparams("sparse_transformer_micro"),
        "vocab_size=12,hidden_size=32,filter_size=64,num_heads=4,label_smoothing=0,"
        "layer_prepostprocess_dropout=0,attention_dropout=0,relu_dropout=0",
    )
    model = model_lib.SparseTransformer(h)
    model.build()
    optimizer = keras.optimizers.Adam(0.02)
    features = {"inputs": SOURCES, "targets": SOURCES}

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = losses.padded_cross_entropy(model(features, training=True), SOURCES)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    for _ in range(40):
        loss = train_step()
    assert float(loss) < 0.05
    return model


def test_beam_search_decodes_the_copy_with_default_settings(copy_model):
    ids, scores = beam_search.beam_search_decode(copy_model, SOURCES)  # beam 4, alpha 0.6, +100
    assert tuple(ids.shape) == (4, 5 + 100)
    np.testing.assert_array_equal(np.asarray(ids)[:, :4], COPIES)
    assert not np.any(np.asarray(ids)[:, 4:])
    assert np.all(np.asarray(scores) < 0) and np.all(np.asarray(scores) > -1.0)


def test_beam_of_one_equals_greedy(copy_model):
    greedy_ids, greedy_log_prob = beam_search.greedy_decode(copy_model, SOURCES, extra_length=100)
    np.testing.assert_array_equal(np.asarray(greedy_ids)[:, :4], COPIES)
    encoder_output, bias = copy_model.encode(SOURCES)
    cache = copy_model.initial_cache(encoder_output, bias, 105)
    sequences, scores = beam_search.beam_search(
        lambda ids, step, states: copy_model.decode_step(ids, states, step),
        tf.zeros([4], tf.int32), beam_size=1, decode_length=105, alpha=0.6, states=cache,
    )
    np.testing.assert_array_equal(beam_search.strip_eos(sequences[:, 0, 1:]), greedy_ids)
    lengths = (np.asarray(greedy_ids) != 0).sum(1) + 1  # + EOS
    penalty = ((5.0 + lengths) / 6.0) ** 0.6
    np.testing.assert_allclose(np.asarray(scores)[:, 0] * penalty, greedy_log_prob, rtol=1e-4)
    # T2T decodes greedily when asked for one beam.
    one_beam, _ = beam_search.beam_search_decode(copy_model, SOURCES, beam_size=1)
    np.testing.assert_array_equal(one_beam, greedy_ids)


@pytest.mark.parametrize("kwargs, message", [
    ({"beam_size": 0}, r"`beam_size` must be an integer >= 1. Received: beam_size=0"),
    ({"alpha": -1.0}, r"`alpha` must be a number >= 0"),
    ({"extra_length": 0}, r"`extra_length` must be an integer >= 1"),
    ({"inputs": np.array([3, 4, 1])}, r"`inputs` must be integer source ids of shape "
                                      r"\(batch, length\), 0-padded. Received: shape=\(3,\)"),
    ({"inputs": np.ones((1, 3), np.float32)}, r"`inputs` must be integer source ids"),
])
def test_bad_decoding_arguments_are_rejected(kwargs, message):
    model = model_lib.SparseTransformer(
        hparams_lib.parse_overrides(hparams_lib.get_hparams("sparse_transformer_micro"),
                                    "vocab_size=12"))
    kwargs = {"inputs": SOURCES, **kwargs}
    with pytest.raises(ValueError, match=message):
        beam_search.beam_search_decode(model, **kwargs)
