"""Argument checks with Keras-style messages, shared by schedules and techniques."""

import math
import numbers


def check_number(name, value, minimum=None, positive=False):
    """A finite real number (not a bool), >= `minimum` or > 0 when asked."""
    valid = (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and math.isfinite(value)
        and (minimum is None or value >= minimum)
        and (not positive or value > 0)
    )
    if not valid:
        bound = " > 0" if positive else "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"`{name}` must be a finite number{bound}. Received: {name}={value!r}")


def check_int(name, value, minimum):
    """An integer (not a bool) >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")


def check_unit_interval(name, value, meaning="a number"):
    """A real number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be {meaning} in [0, 1). Received: {name}={value!r}")


def check_sparsity(name, value):
    """A fraction of zeros in [0, 1)."""
    check_unit_interval(name, value, "a fraction of zeros")
