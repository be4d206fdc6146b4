"""The sinusoidal timing signal of T2T's `get_timing_signal_1d` (sos_spec 9), at given positions."""

import math

from keras import ops

MIN_TIMESCALE = 1.0
MAX_TIMESCALE = 1.0e4


def timing_signal(positions, channels):
    """Sinusoids of `positions` ([..., length], any numeric dtype) -> [..., length, channels] float32.

    The first `channels // 2` channels are sin(position / timescale), the next
    `channels // 2` the cosines, with timescales geometrically spaced from 1 to
    1e4; an odd channel count gets a zero last channel (as T2T pads).
    Positions are explicit so packed examples restart at 0 in every segment.
    """
    num_timescales = channels // 2
    log_increment = math.log(MAX_TIMESCALE / MIN_TIMESCALE) / max(num_timescales - 1, 1)
    inv_timescales = MIN_TIMESCALE * ops.exp(
        ops.arange(num_timescales, dtype="float32") * -log_increment
    )
    scaled_time = ops.expand_dims(ops.cast(positions, "float32"), -1) * inv_timescales
    signal = ops.concatenate([ops.sin(scaled_time), ops.cos(scaled_time)], axis=-1)
    if channels % 2:
        signal = ops.pad(signal, [(0, 0)] * (len(signal.shape) - 1) + [(0, 1)])
    return signal
