"""Hard-concrete gates and the expected-L0 penalty of Louizos et al. (2018) (sos_spec 2.1-2.3)."""

import math

from keras import ops

BETA = 2.0 / 3.0
GAMMA = -0.1
ZETA = 1.1
EPSILON = 1e-8


def sample_gate(log_alpha, uniform, beta=BETA, gamma=GAMMA, zeta=ZETA):
    """Hard-concrete sample clip(sigmoid((log u - log(1-u) + log_alpha) / beta) * (zeta - gamma) + gamma, 0, 1)."""
    logits = (ops.log(uniform + EPSILON) - ops.log(1.0 - uniform) + log_alpha) / beta
    return ops.clip(ops.sigmoid(logits) * (zeta - gamma) + gamma, 0.0, 1.0)


def deterministic_gate(log_alpha, gamma=GAMMA, zeta=ZETA):
    """Evaluation gate clip(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1)."""
    return ops.clip(ops.sigmoid(log_alpha) * (zeta - gamma) + gamma, 0.0, 1.0)


def l0_penalty(log_alpha, beta=BETA, gamma=GAMMA, zeta=ZETA):
    """Expected number of non-zero gates, sum of sigmoid(log_alpha - beta * log(-gamma / zeta))."""
    return ops.sum(ops.sigmoid(log_alpha - beta * math.log(-gamma / zeta)))
