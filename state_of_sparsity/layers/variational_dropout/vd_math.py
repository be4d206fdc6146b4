"""Variational dropout maths of Molchanov et al. (2017) as backend-neutral ops (sos_spec 1.2-1.5)."""

from keras import ops

EPSILON = 1e-8
# Constants of the KL approximation, Molchanov et al. (2017), eq. 14.
K1, K2, K3 = 0.63576, 1.8732, 1.48695


def log_alpha(theta, log_sigma2, limit=None):
    """log(sigma^2 / theta^2), clipped to [-limit, limit] when `limit` is given."""
    value = log_sigma2 - ops.log(ops.square(theta) + EPSILON)
    return value if limit is None else ops.clip(value, -limit, limit)


def clipped_log_sigma2(theta, log_sigma2, clip_alpha):
    """log_sigma2 with alpha clamped to [e^-c, e^c] (the training-time pre-step)."""
    if not clip_alpha:
        return log_sigma2
    return log_alpha(theta, log_sigma2, clip_alpha) + ops.log(ops.square(theta) + EPSILON)


def kl_divergence(theta, log_sigma2, limit=None):
    """Approximate KL(q || log-uniform prior), summed over all weights (positive).

    -KL(a) ~= k1 * sigmoid(k2 + k3 * a) - 0.5 * log1p(exp(-a)) - k1 with
    a = log alpha; log1p(exp(-a)) is written as softplus(-a) so that very
    negative alphas cannot overflow.
    """
    a = log_alpha(theta, log_sigma2, limit)
    negative_kl = K1 * ops.sigmoid(K2 + K3 * a) - 0.5 * ops.softplus(-a) - K1
    return -ops.sum(negative_kl)


def keep_mask(theta, log_sigma2, threshold):
    """1 where log alpha (unclipped) < threshold: the weights kept at evaluation."""
    return ops.cast(ops.less(log_alpha(theta, log_sigma2), threshold), "float32")
