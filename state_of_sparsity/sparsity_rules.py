"""Counting rules shared by `sparsity_report`, TensorBoard summaries and `checkpoint_sparsity`.

Each rule takes the stored arrays of one sparse tensor and returns how many weights
are non-zero at evaluation time, so a live model and a checkpoint of it always agree.
Constants and formulas follow the original `checkpoint_sparsity.py` (sos_spec 4.1).
"""

import numpy as np

EPSILON = 1e-8
# Hard-concrete stretch interval of Louizos et al. (2017).
GAMMA = -0.1
ZETA = 1.1
DEFAULT_LOG_ALPHA_THRESHOLD = 3.0


def pruning_nonzeros(mask):
    """Number of kept weights of a pruning mask (entries that are not 0)."""
    return int(np.count_nonzero(np.asarray(mask)))


def l0_gate(log_alpha, gamma=GAMMA, zeta=ZETA):
    """Deterministic hard-concrete gate clip(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1)."""
    log_alpha = np.asarray(log_alpha, dtype=np.float64)
    sigmoid = 0.5 * (1.0 + np.tanh(0.5 * log_alpha))  # overflow-free sigmoid
    return np.clip(sigmoid * (zeta - gamma) + gamma, 0.0, 1.0)


def l0_nonzeros(log_alpha, gamma=GAMMA, zeta=ZETA):
    """Number of weights whose evaluation-time L0 gate is not exactly 0."""
    return int(np.count_nonzero(l0_gate(log_alpha, gamma, zeta)))


def vd_log_alpha(log_sigma2, theta):
    """log(sigma^2 / theta^2) of variational dropout, unclipped as in the original."""
    theta = np.asarray(theta, dtype=np.float64)
    return np.asarray(log_sigma2, dtype=np.float64) - np.log(np.square(theta) + EPSILON)


def vd_nonzeros(log_sigma2, theta, threshold=DEFAULT_LOG_ALPHA_THRESHOLD):
    """Number of weights kept by variational dropout: log_alpha < threshold."""
    return int(np.count_nonzero(vd_log_alpha(log_sigma2, theta) < threshold))


def global_sparsity(nonzeros, total):
    """Fraction of zeros, 1 - nonzeros / total, as a float in [0, 1]."""
    if total <= 0:
        raise ValueError(f"Expected a positive number of weights. Received: total={total}")
    return 1.0 - nonzeros / total
