"""Small, careful numerical helpers shared by every model.

Nothing here knows about estimators: plain numpy arrays in, plain arrays out.
"""

import numpy as np
from scipy.special import logsumexp

__all__ = [
    "fill_missing",
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


def fill_missing(X):
    """X with each NaN replaced by its column's mean over the observed entries (0 for a column never observed).

    For starting values only (k-means cannot take NaN); EM itself marginalises missing entries exactly.
    Returns X itself when it has no NaN.
    """
    missing = np.isnan(X)
    if not missing.any():
        return X
    observed = (~missing).sum(axis=0)
    sums = np.where(missing, 0.0, X).sum(axis=0)
    means = np.divide(sums, observed, out=np.zeros_like(sums, dtype=np.float64), where=observed > 0)
    return np.where(missing, means.astype(X.dtype), X)
