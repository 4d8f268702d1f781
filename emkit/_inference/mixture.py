"""Row-wise kernels for mixture E-steps."""

import numpy as np

from ._jit import jit

__all__ = ["normalize_log_rows"]


_FLUSH_BELOW = -700.0


@jit
def _normalize_log_rows(log_prob, log_norm):
    n_rows, n_cols = log_prob.shape
    for i in range(n_rows):
        row = log_prob[i]
        peak = row[0]
        for k in range(1, n_cols):
            if row[k] > peak:
                peak = row[k]
        if not np.isfinite(peak):  # no component gives this row any density
            log_norm[i] = peak
            for k in range(n_cols):
                row[k] = 0.0
            continue
        total = 0.0
        for k in range(n_cols):
            gap = row[k] - peak
            # below exp(-700) a responsibility cannot change any sum it enters, and letting it
            # underflow into subnormal numbers slows every later product by an order of magnitude
            value = np.exp(gap) if gap > _FLUSH_BELOW else 0.0
            row[k] = value
            total += value
        inv = 1.0 / total
        for k in range(n_cols):
            row[k] *= inv
        log_norm[i] = peak + np.log(total)


def normalize_log_rows(log_prob):
    """Turn log joint densities into posteriors in place, one fused pass per row.

    Parameters
    ----------
    log_prob : ndarray of shape (n_rows, n_components), C-contiguous
        ``log p(x_n, z_n = k)``; overwritten by ``p(z_n = k | x_n)``.

    Returns
    -------
    log_norm : ndarray of shape (n_rows,), float64
        ``log p(x_n) = logsumexp_k log_prob[n, k]`` (computed in float64
        whatever the input dtype).
    """
    if not log_prob.flags.c_contiguous:
        raise ValueError("normalize_log_rows needs a C-contiguous array")
    log_norm = np.empty(log_prob.shape[0], dtype=np.float64)
    _normalize_log_rows(log_prob, log_norm)
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
    n_features = X.shape[1]
    rows, cols = np.triu_indices(n_features)
    if out is None:
        out = np.empty((X.shape[0], rows.shape[0]), dtype=np.float64)
    _pair_products(np.ascontiguousarray(X, dtype=np.float64), rows.astype(np.int64), cols.astype(np.int64), out)
    return out
