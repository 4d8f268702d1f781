"""Small, careful numerical helpers shared by every model.

Nothing here knows about estimators: plain numpy arrays in, plain arrays out.
"""

import numpy as np
from scipy.special import logsumexp

__all__ = [
    "log_normalize",
    "safe_log",
    "symmetrize",
    "logsumexp",
]


def log_normalize(a, axis=-1):
    """Normalise log-weights along ``axis``.

    Parameters
    ----------
    a : ndarray
        Log of unnormalised non-negative weights.
    axis : int, default=-1
        Axis to normalise over.

    Returns
    -------
    log_prob : ndarray
        ``a - logsumexp(a, axis)``, so that ``exp(log_prob)`` sums to one.
    log_norm : ndarray
        ``logsumexp(a, axis)``.
    """
    log_norm = logsumexp(a, axis=axis, keepdims=True)
    with np.errstate(invalid="ignore"):  # -inf - -inf on rows with no support
        log_prob = a - log_norm
    return log_prob, np.squeeze(log_norm, axis=axis)


def safe_log(a):
    """``log(a)`` that maps exact zeros to ``-inf`` without a warning."""
    with np.errstate(divide="ignore"):
        return np.log(a)


def symmetrize(a):
    """Return ``(a + a^T) / 2`` over the last two axes."""
    return 0.5 * (a + np.swapaxes(a, -1, -2))
