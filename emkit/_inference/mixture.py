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
