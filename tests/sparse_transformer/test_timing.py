"""The sinusoidal timing signal against a NumPy transcription of T2T's formula."""

import math

import keras
import numpy as np
import pytest

from state_of_sparsity.sparse_transformer import timing


def numpy_timing(positions, channels):
    half = channels // 2
    increment = math.log(1e4) / max(half - 1, 1)
    inv = np.exp(np.arange(half) * -increment)
    scaled = np.asarray(positions, np.float64)[..., None] * inv
    signal = np.concatenate([np.sin(scaled), np.cos(scaled)], -1)
    if channels % 2:
        signal = np.concatenate([signal, np.zeros(signal.shape[:-1] + (1,))], -1)
    return signal


@pytest.mark.parametrize("channels", [8, 7, 2])
def test_signal_matches_numpy(channels):
    positions = np.array([[0, 1, 2, 5, 0, 1], [3, 4, 0, 0, 1, 2]])
    got = timing.timing_signal(positions, channels)
    assert tuple(got.shape) == (2, 6, channels) and keras.backend.standardize_dtype(got.dtype) == "float32"
    np.testing.assert_allclose(got, numpy_timing(positions, channels), atol=2e-6)


def test_position_zero_is_sin0_cos0_and_segments_restart():
    signal = np.asarray(timing.timing_signal(np.array([[0, 1, 0, 1]]), 6))
    np.testing.assert_array_equal(signal[0, 0], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(signal[0, 0], signal[0, 2])
    np.testing.assert_array_equal(signal[0, 1], signal[0, 3])
