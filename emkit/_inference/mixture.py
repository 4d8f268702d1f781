"""Row-wise kernels for mixture E-steps."""

import functools

import numpy as np

from ._jit import jit

__all__ = ["normalize_log_rows"]


_FLUSH_BELOW = -700.0


@jit
def _shift_rows(log_prob, peaks):
    """Subtract each row's maximum; gaps below -700 become -inf (their exponential is exactly 0)."""
    n_rows, n_cols = log_prob.shape
    for i in range(n_rows):
        row = log_prob[i]
        peak = row[0]
        for k in range(1, n_cols):
            if row[k] > peak:
                peak = row[k]
        peaks[i] = peak
        if not np.isfinite(peak):  # no component gives this row any density
            for k in range(n_cols):
                row[k] = -np.inf
            continue
        for k in range(n_cols):
            gap = row[k] - peak
            row[k] = gap if gap > _FLUSH_BELOW else -np.inf


@jit
def _normalize_rows(prob, peaks, log_norm):
    """Rows of exponentials -> probabilities; ``log_norm = peak + log(row sum)``."""
    n_rows, n_cols = prob.shape
    for i in range(n_rows):
        row = prob[i]
        total = 0.0
        for k in range(n_cols):
            total += row[k]
        if total > 0.0:
            inv = 1.0 / total
            for k in range(n_cols):
                row[k] *= inv
            log_norm[i] = peaks[i] + np.log(total)
        else:
            log_norm[i] = peaks[i]


def normalize_log_rows(log_prob):
    """Turn log joint densities into posteriors in place.

    Two compiled passes around numpy's vectorised ``exp``: shift each row by its
    maximum (flushing gaps below -700 to an exact 0, since a responsibility under
    ``exp(-700)`` changes no sum and subnormal numbers slow every later product
    tenfold), exponentiate, then normalise and accumulate the log normaliser.

    Parameters
    ----------
    log_prob : ndarray of shape (n_rows, n_components), C-contiguous
        ``log p(x_n, z_n = k)``; overwritten by ``p(z_n = k | x_n)`` (all zeros
        for a row with no density anywhere).

    Returns
    -------
    log_norm : ndarray of shape (n_rows,), float64
        ``log p(x_n) = logsumexp_k log_prob[n, k]`` (``-inf`` for a row with no
        density anywhere).
    """
    if not log_prob.flags.c_contiguous:
        raise ValueError("normalize_log_rows needs a C-contiguous array")
    peaks = np.empty(log_prob.shape[0], dtype=np.float64)
    log_norm = np.empty(log_prob.shape[0], dtype=np.float64)
    _shift_rows(log_prob, peaks)
    np.exp(log_prob, out=log_prob)
    _normalize_rows(log_prob, peaks, log_norm)
    return log_norm


@jit
def _pair_products(X, rows, cols, out):
    n_rows = X.shape[0]
    n_pairs = rows.shape[0]
    for r in range(n_rows):
        x = X[r]
        o = out[r]
        for t in range(n_pairs):
            o[t] = x[rows[t]] * x[cols[t]]


def pair_products(X, out=None):
    """Products of every pair of columns ``i <= j`` of each row (the upper triangle of ``x x^T``).

    With these features a quadratic form ``x^T A x`` is a matrix product, so the
    Mahalanobis terms and the second moments of all components come from one
    GEMM each (inner dimension ``D (D + 1) / 2``) instead of ``K`` whitening products.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features), float64, C-contiguous
    out : ndarray of shape (n_rows, n_features * (n_features + 1) // 2), optional

    Returns
    -------
    products : ndarray of shape (n_rows, n_features * (n_features + 1) // 2)
        Column ``t`` holds ``X[:, i_t] * X[:, j_t]`` for ``(i_t, j_t)`` in
        ``numpy.triu_indices(n_features)`` order.
    """
    rows, cols = _upper_triangle(X.shape[1])
    if out is None:
        out = np.empty((X.shape[0], rows.shape[0]), dtype=np.float64)
    _pair_products(np.ascontiguousarray(X, dtype=np.float64), rows, cols, out)
    return out


@functools.lru_cache(maxsize=32)
def _upper_triangle(n_features):
    rows, cols = np.triu_indices(n_features)
    return rows.astype(np.int64), cols.astype(np.int64)
