"""Kalman filter and Rauch-Tung-Striebel smoother for linear-Gaussian state-space models.

The model, for each sequence and rows ``t`` of it::

    x_0     ~ N(mu_0, P_0)
    x_{t+1} = A_t x_t + b_t + w_t,     w_t ~ N(0, Q_t)
    y_t     = H_t x_t + d_t + v_t,     v_t ~ N(0, R_t)

Conventions (plain arrays only; float64, C-contiguous):

- ``X`` has shape (T, n_dim_obs) and holds all sequences one after the other;
  sequence ``i`` is rows ``offsets[i]:offsets[i + 1]``. NaN entries are
  unobserved: each step uses only the observed rows of ``H_t`` and ``d_t`` and
  the observed rows and columns of ``R_t`` (a wholly missing row skips the
  update).
- Every parameter carries a leading time axis of length 1 (time-invariant) or
  T (one entry per row of ``X``). ``A[t]``, ``b[t]``, ``Q[t]`` map row ``t`` to
  row ``t + 1`` (the entry at a sequence's last row is unused).
- Linear algebra goes through Cholesky factors (no inverses); the filter's
  covariance update is in Joseph form and the smoother's in the equivalent
  sum-of-positive-terms form, so covariances stay symmetric and positive
  definite on long series.
- With time-invariant parameters the covariance recursion does not depend on
  the data: once the predicted covariance stops changing (relative change below
  ``STEADY_RTOL``) on fully observed rows, the filter reuses the steady-state
  gain and covariances until a row with missing entries comes; and every
  complete sequence copies the recursion (up to its steady state) from the
  first one, so it is computed once whatever the number of sequences.

The public functions are small Python wrappers that fix dtypes, check shapes
once and return NamedTuples; the compiled functions hold only loops.

Small inputs (at most ``_NUMPY_MAX_ROWS`` rows in all) run the same
recursions written with numpy, a few vector operations per time step, and
never touch the compiler, so that a first fit on a small data set does not
wait seconds for a compilation. The threshold is low because the numpy
path costs about a hundred times more per row than the compiled one (a
200-row series: ~40 ms against ~0.1 ms per filter + smoother call), and a fit
repeats the call up to ``max_iter`` times. They take no steady-state shortcut
(``steady`` is all False). Which implementation runs depends on the input's
size alone; both agree to round-off (tests compare both with the dense joint
Gaussian and with each other).
"""

from typing import NamedTuple

import numpy as np

from ._jit import jit

__all__ = ["FilterResult", "SmootherResult", "kalman_filter", "kalman_smoother", "STEADY_RTOL"]

STEADY_RTOL = 1e-14
_LOG_2PI = np.log(2.0 * np.pi)
_NUMPY_MAX_ROWS = 50  # calls with at most this many rows run in numpy (~0.1-0.2 ms per row: see the module docstring)


class FilterResult(NamedTuple):
    """Output of :func:`kalman_filter`.

    Attributes
    ----------
    log_likelihood : float
        Total log-likelihood ``sum_t log p(y_t | y_<t)`` over all sequences.
    step_log_likelihoods : ndarray of shape (T,)
        Predictive log-density of each row's observed entries (0 for a wholly
        missing row).
    predicted_means, predicted_covariances : ndarray of shape (T, n), (T, n, n)
        Moments of ``p(x_t | y_<t)``.
    filtered_means, filtered_covariances : ndarray of shape (T, n), (T, n, n)
        Moments of ``p(x_t | y_<=t)``.
    steady : ndarray of bool of shape (T,)
        True where the step reused the steady-state gain.
    """

    log_likelihood: float
    step_log_likelihoods: np.ndarray
    predicted_means: np.ndarray
    predicted_covariances: np.ndarray
    filtered_means: np.ndarray
    filtered_covariances: np.ndarray
    steady: np.ndarray


class SmootherResult(NamedTuple):
    """Output of :func:`kalman_smoother`: the filter's fields plus the smoothed moments.

    Attributes
    ----------
    smoothed_means, smoothed_covariances : ndarray of shape (T, n), (T, n, n)
        Moments of ``p(x_t | y_1..T)`` within each sequence.
    pairwise_covariances : ndarray of shape (T, n, n)
        ``Cov(x_t, x_{t-1} | y_1..T)`` (lag-one cross-covariance); zero at the
        first row of each sequence.
    """

    log_likelihood: float
    step_log_likelihoods: np.ndarray
    predicted_means: np.ndarray
    predicted_covariances: np.ndarray
    filtered_means: np.ndarray
    filtered_covariances: np.ndarray
    steady: np.ndarray
    smoothed_means: np.ndarray
    smoothed_covariances: np.ndarray
    pairwise_covariances: np.ndarray


# --------------------------------------------------------------------------- small compiled helpers
@jit
def _cholesky_inplace(a, k):
    """Lower Cholesky factor of ``a[:k, :k]`` in place; returns False if not positive definite."""
    for j in range(k):
        s = a[j, j]
        for p in range(j):
            s -= a[j, p] * a[j, p]
        if not s > 0.0:
            return False
        root = np.sqrt(s)
        a[j, j] = root
        for i in range(j + 1, k):
            s = a[i, j]
            for p in range(j):
                s -= a[i, p] * a[j, p]
            a[i, j] = s / root
        for i in range(j):
            a[i, j] = 0.0
    return True


@jit
def _cho_solve_columns(chol, k, b, ncol):
    """Solve ``(L L^T) z = b[:k, :ncol]`` in place, for the lower factor ``L = chol[:k, :k]``."""
    for c in range(ncol):
        for i in range(k):
            s = b[i, c]
            for p in range(i):
                s -= chol[i, p] * b[p, c]
            b[i, c] = s / chol[i, i]
        for i in range(k - 1, -1, -1):
            s = b[i, c]
            for p in range(i + 1, k):
                s -= chol[p, i] * b[p, c]
            b[i, c] = s / chol[i, i]


@jit
def _matmul(a, b, out, n, m, p):
    """``out[:n, :p] = a[:n, :m] @ b[:m, :p]``."""
    for i in range(n):
        for j in range(p):
            s = 0.0
            for q in range(m):
                s += a[i, q] * b[q, j]
            out[i, j] = s


@jit
def _matmul_bt(a, b, out, n, m, p):
    """``out[:n, :p] = a[:n, :m] @ b[:p, :m].T``."""
    for i in range(n):
        for j in range(p):
            s = 0.0
            for q in range(m):
                s += a[i, q] * b[j, q]
            out[i, j] = s


@jit
def _symmetrize_inplace(a, n):
    for i in range(n):
        for j in range(i + 1, n):
            v = 0.5 * (a[i, j] + a[j, i])
            a[i, j] = v
            a[j, i] = v


# --------------------------------------------------------------------------- filter steps (inlined)
@jit(inline=True)
def _copy_matrix(src, dst, rows, cols):
    """``dst[:rows, :cols] = src[:rows, :cols]``."""
    for i in range(rows):
        for j in range(cols):
            dst[i, j] = src[i, j]


@jit(inline=True)
def _predict_mean(A_t, b_t, filt_mean, pred_mean, n):
    """``x_pred[t] = A x_f[t-1] + b``."""
    for i in range(n):
        acc = b_t[i]
        for j in range(n):
            acc += A_t[i, j] * filt_mean[j]
        pred_mean[i] = acc


@jit(inline=True)
def _predict_covariance(A_t, Q_t, filt_cov, pred_cov, AP, tmp, n):
    """``P_pred[t] = A P_f[t-1] A^T + Q``, symmetrised."""
    _matmul(A_t, filt_cov, AP, n, n, n)
    _matmul_bt(AP, A_t, tmp, n, n, n)
    for i in range(n):
        for j in range(n):
            pred_cov[i, j] = tmp[i, j] + Q_t[i, j]
    _symmetrize_inplace(pred_cov, n)


@jit(inline=True)
def _observed_entries(x, idx):
    """Write the indices of the observed (non-NaN) entries of ``x`` to ``idx``; return how many."""
    k = 0
    for j in range(x.shape[0]):
        if not np.isnan(x[j]):
            idx[k] = j
            k += 1
    return k


@jit(inline=True)
def _has_converged(pred_cov, previous, n):
    """True when the predicted covariance repeats its previous value to ``STEADY_RTOL``."""
    diff = 0.0
    scale = 0.0
    for i in range(n):
        for j in range(n):
            diff = max(diff, abs(pred_cov[i, j] - previous[i, j]))
            scale = max(scale, abs(pred_cov[i, j]))
    return diff <= STEADY_RTOL * scale


@jit(inline=True)
def _innovation(x, idx, k, H_t, d_t, pred_mean, v, n):
    """``v = y_o - H_o x_pred - d_o`` over the observed entries ``idx[:k]``."""
    for a in range(k):
        r = idx[a]
        acc = x[r] - d_t[r]
        for j in range(n):
            acc -= H_t[r, j] * pred_mean[j]
        v[a] = acc


@jit(inline=True)
def _gain(pred_cov, H_t, R_t, idx, k, Ho, Ro, PHt, S, Kt, n):
    """Innovation covariance and gain for the observed entries ``idx[:k]``.

    Writes ``Ho``, ``Ro`` (the observed rows of H and block of R), the lower
    Cholesky factor of ``S = H_o P H_o^T + R_o`` into ``S`` and
    ``K^T = S^{-1} H_o P`` into ``Kt``. Returns ``log|S|``, or NaN if ``S``
    is not positive definite.
    """
    for a in range(k):
        r = idx[a]
        for j in range(n):
            Ho[a, j] = H_t[r, j]
        for c in range(k):
            Ro[a, c] = R_t[r, idx[c]]
    _matmul_bt(pred_cov, Ho, PHt, n, n, k)  # P H_o^T  (n, k)
    _matmul(Ho, PHt, S, k, n, k)  # H_o P H_o^T
    for a in range(k):
        for c in range(k):
            S[a, c] += Ro[a, c]
    _symmetrize_inplace(S, k)
    if not _cholesky_inplace(S, k):
        return np.nan
    logdet = 0.0
    for a in range(k):
        logdet += 2.0 * np.log(S[a, a])
    for a in range(k):
        for j in range(n):
            Kt[a, j] = PHt[j, a]
    _cho_solve_columns(S, k, Kt, n)
    return logdet


@jit(inline=True)
def _joseph_update(pred_cov, Kt, Ho, Ro, k, filt_cov, IKH, tmp, tmp2, KR, n):
    """Joseph form ``P_f = (I - K H_o) P (I - K H_o)^T + K R_o K^T``, symmetrised."""
    for i in range(n):
        for j in range(n):
            acc = 1.0 if i == j else 0.0
            for a in range(k):
                acc -= Kt[a, i] * Ho[a, j]
            IKH[i, j] = acc
    _matmul(IKH, pred_cov, tmp, n, n, n)
    _matmul_bt(tmp, IKH, tmp2, n, n, n)
    for i in range(n):
        for c in range(k):
            acc = 0.0
            for a in range(k):
                acc += Kt[a, i] * Ro[a, c]
            KR[i, c] = acc
    for i in range(n):
        for j in range(n):
            acc = tmp2[i, j]
            for c in range(k):
                acc += KR[i, c] * Kt[c, j]
            filt_cov[i, j] = acc
    _symmetrize_inplace(filt_cov, n)


@jit(inline=True)
def _log_likelihood_term(S, v, w, k, logdet):
    """``log N(v; 0, S)`` from the Cholesky factor in ``S`` (``w`` is scratch)."""
    maha = 0.0
    for a in range(k):  # forward solve L z = v, maha = |z|^2
        acc = v[a]
        for c in range(a):
            acc -= S[a, c] * w[c]
        w[a] = acc / S[a, a]
        maha += w[a] * w[a]
    return -0.5 * (k * _LOG_2PI + logdet + maha)


@jit(inline=True)
def _update_mean(pred_mean, Kt, v, k, filt_mean, n):
    """``x_f = x_pred + K v``."""
    for i in range(n):
        acc = pred_mean[i]
        for a in range(k):
            acc += Kt[a, i] * v[a]
        filt_mean[i] = acc


# --------------------------------------------------------------------------- compiled filter
@jit
def _filter(X, offsets, A, b, Q, H, d, R, mu0, P0):
    """Kalman filter over all sequences; returns arrays and the failing row + 1 (0 if none)."""
    T, m = X.shape
    n = mu0.shape[0]
    n_seq = offsets.shape[0] - 1
    pred_means = np.zeros((T, n))
    pred_covs = np.zeros((T, n, n))
    filt_means = np.zeros((T, n))
    filt_covs = np.zeros((T, n, n))
    step_ll = np.zeros(T)
    steady = np.zeros(T, dtype=np.bool_)
    time_invariant = A.shape[0] == 1 and b.shape[0] == 1 and Q.shape[0] == 1
    time_invariant = time_invariant and H.shape[0] == 1 and d.shape[0] == 1 and R.shape[0] == 1

    # Template of the covariance recursion at each step of a complete sequence (time-invariant
    # parameters): it is the same for every complete sequence, so it is computed once and copied.
    # Steps 0..tmpl_len-1 are stored; tmpl_steady >= 0 is the step after which it stays constant.
    max_len = 0
    if time_invariant and n_seq > 1:
        for s in range(n_seq):
            max_len = max(max_len, offsets[s + 1] - offsets[s])
    tmpl_pred = np.zeros((max_len, n, n))
    tmpl_filt = np.zeros((max_len, n, n))
    tmpl_gain = np.zeros((max_len, m, n))
    tmpl_chol = np.zeros((max_len, m, m))
    tmpl_logdet = np.zeros(max_len)
    tmpl_len = 0
    tmpl_steady = -1

    idx = np.zeros(m, dtype=np.int64)
    Ho = np.zeros((m, n))
    S = np.zeros((m, m))  # innovation covariance, then its lower Cholesky factor
    PHt = np.zeros((n, m))
    Kt = np.zeros((m, n))  # K^T, shape (k, n)
    v = np.zeros(m)
    w = np.zeros(m)
    IKH = np.zeros((n, n))
    tmp = np.zeros((n, n))
    tmp2 = np.zeros((n, n))
    KR = np.zeros((n, m))
    Ro = np.zeros((m, m))
    AP = np.zeros((n, n))
    logdet = 0.0

    for s in range(n_seq):
        t0 = offsets[s]
        t1 = offsets[s + 1]
        complete = max_len > 0
        if complete:
            for t in range(t0, t1):
                for j in range(m):
                    if np.isnan(X[t, j]):
                        complete = False
        is_steady = False
        have_prev = False  # previous step ran a full covariance update on a complete row
        for t in range(t0, t1):
            step = t - t0
            from_template = complete and step < tmpl_len
            # ---- predict: mean, then the covariance from the first source that has it
            if t == t0:
                for i in range(n):
                    pred_means[t, i] = mu0[i]
            else:
                _predict_mean(A[(t - 1) if A.shape[0] > 1 else 0], b[(t - 1) if b.shape[0] > 1 else 0],
                              filt_means[t - 1], pred_means[t], n)
            if from_template:
                _copy_matrix(tmpl_pred[step], pred_covs[t], n, n)
            elif t == t0:
                _copy_matrix(P0, pred_covs[t], n, n)
            elif is_steady:
                _copy_matrix(pred_covs[t - 1], pred_covs[t], n, n)
            else:
                _predict_covariance(A[(t - 1) if A.shape[0] > 1 else 0], Q[(t - 1) if Q.shape[0] > 1 else 0],
                                    filt_covs[t - 1], pred_covs[t], AP, tmp, n)

            # ---- observed entries of this row; a wholly missing row skips the update
            k = _observed_entries(X[t], idx)
            if k < m:
                is_steady = False
                have_prev = False
            if k == 0:
                for i in range(n):
                    filt_means[t, i] = pred_means[t, i]
                _copy_matrix(pred_covs[t], filt_covs[t], n, n)
                continue
            H_t = H[t if H.shape[0] > 1 else 0]
            _innovation(X[t], idx, k, H_t, d[t if d.shape[0] > 1 else 0], pred_means[t], v, n)

            # ---- gain and filtered covariance: from the template, the steady state, or computed
            if from_template:
                # gain, Cholesky factor and covariances of the same step of an earlier complete sequence
                steady[t] = False
                _copy_matrix(tmpl_filt[step], filt_covs[t], n, n)
                _copy_matrix(tmpl_gain[step], Kt, m, n)
                _copy_matrix(tmpl_chol[step], S, m, m)
                logdet = tmpl_logdet[step]
                have_prev = True
                if step == tmpl_steady:
                    is_steady = True
            elif is_steady:
                # gain K, covariances and log|S| are the previous step's
                steady[t] = True
                _copy_matrix(filt_covs[t - 1], filt_covs[t], n, n)
            else:
                if time_invariant and have_prev and t > t0 and _has_converged(pred_covs[t], pred_covs[t - 1], n):
                    is_steady = True
                logdet = _gain(pred_covs[t], H_t, R[t if R.shape[0] > 1 else 0], idx, k, Ho, Ro, PHt, S, Kt, n)
                if np.isnan(logdet):
                    return pred_means, pred_covs, filt_means, filt_covs, step_ll, steady, t + 1
                _joseph_update(pred_covs[t], Kt, Ho, Ro, k, filt_covs[t], IKH, tmp, tmp2, KR, n)
                have_prev = k == m
                if complete and step == tmpl_len and tmpl_steady < 0:  # extend the template by this step
                    _copy_matrix(pred_covs[t], tmpl_pred[step], n, n)
                    _copy_matrix(filt_covs[t], tmpl_filt[step], n, n)
                    _copy_matrix(Kt, tmpl_gain[step], m, n)
                    _copy_matrix(S, tmpl_chol[step], m, m)
                    tmpl_logdet[step] = logdet
                    tmpl_len += 1
                    if is_steady:
                        tmpl_steady = step

            # ---- mean update and log-likelihood
            step_ll[t] = _log_likelihood_term(S, v, w, k, logdet)
            _update_mean(pred_means[t], Kt, v, k, filt_means[t], n)
    return pred_means, pred_covs, filt_means, filt_covs, step_ll, steady, 0


# --------------------------------------------------------------------------- compiled smoother
@jit
def _smooth(offsets, A, Q, pred_means, pred_covs, filt_means, filt_covs, steady):
    """RTS smoother with lag-one cross-covariances; returns arrays and failing row + 1 (0 if none)."""
    T, n = filt_means.shape
    sm_means = np.zeros((T, n))
    sm_covs = np.zeros((T, n, n))
    pair_covs = np.zeros((T, n, n))
    Lp = np.zeros((n, n))
    Jt = np.zeros((n, n))  # J^T
    IJA = np.zeros((n, n))
    base = np.zeros((n, n))  # (I - J A) P_f (I - J A)^T + J Q J^T
    tmp = np.zeros((n, n))
    tmp2 = np.zeros((n, n))
    diff = np.zeros(n)
    for s in range(offsets.shape[0] - 1):
        t0 = offsets[s]
        t1 = offsets[s + 1]
        last = t1 - 1
        for i in range(n):
            sm_means[last, i] = filt_means[last, i]
            for j in range(n):
                sm_covs[last, i, j] = filt_covs[last, i, j]
        for t in range(last - 1, t0 - 1, -1):
            ta = t if A.shape[0] > 1 else 0
            tq = t if Q.shape[0] > 1 else 0
            # a steady filter at t+1 and t+2 means P_f[t+1] == P_f[t] and P_pred[t+2] == P_pred[t+1]
            # (copied, time-invariant parameters), so J_t == J_{t+1}: keep J and base
            if not (t + 2 <= last and steady[t + 1] and steady[t + 2]):
                # J^T = P_pred[t+1]^{-1} A P_f[t]
                for i in range(n):
                    for j in range(n):
                        Lp[i, j] = pred_covs[t + 1, i, j]
                if not _cholesky_inplace(Lp, n):
                    return sm_means, sm_covs, pair_covs, t + 2
                _matmul(A[ta], filt_covs[t], Jt, n, n, n)
                _cho_solve_columns(Lp, n, Jt, n)
                # base = (I - J A) P_f (I - J A)^T + J Q J^T
                for i in range(n):
                    for j in range(n):
                        acc = 1.0 if i == j else 0.0
                        for q in range(n):
                            acc -= Jt[q, i] * A[ta, q, j]
                        IJA[i, j] = acc
                _matmul(IJA, filt_covs[t], tmp, n, n, n)
                _matmul_bt(tmp, IJA, base, n, n, n)
                for i in range(n):  # tmp = J Q
                    for j in range(n):
                        acc = 0.0
                        for q in range(n):
                            acc += Jt[q, i] * Q[tq, q, j]
                        tmp[i, j] = acc
                for i in range(n):
                    for j in range(n):
                        acc = 0.0
                        for q in range(n):
                            acc += tmp[i, q] * Jt[q, j]
                        base[i, j] += acc
            # means: x_s[t] = x_f[t] + J (x_s[t+1] - x_pred[t+1])
            for i in range(n):
                diff[i] = sm_means[t + 1, i] - pred_means[t + 1, i]
            for i in range(n):
                acc = filt_means[t, i]
                for q in range(n):
                    acc += Jt[q, i] * diff[q]
                sm_means[t, i] = acc
            # covariances: P_s[t] = base + J P_s[t+1] J^T; pair[t+1] = P_s[t+1] J^T
            _matmul(sm_covs[t + 1], Jt, tmp2, n, n, n)
            for i in range(n):
                for j in range(n):
                    pair_covs[t + 1, i, j] = tmp2[i, j]
            for i in range(n):
                for j in range(n):
                    acc = base[i, j]
                    for q in range(n):
                        acc += Jt[q, i] * tmp2[q, j]
                    sm_covs[t, i, j] = acc
            _symmetrize_inplace(sm_covs[t], n)
    return sm_means, sm_covs, pair_covs, 0


# --------------------------------------------------------------------------- small inputs in numpy
class _NotPositiveDefinite(Exception):
    """Raised by the numpy path with the failing row + 1, as the compiled functions return it."""


def _triangular_solve(L, B):
    """``L^-1 B`` for a triangular factor ``L`` (numpy has no triangular solver; the sizes are small)."""
    return np.linalg.solve(L, B)


def _cholesky(a, row):
    try:
        return np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        raise _NotPositiveDefinite(row + 1) from None


def _numpy_filter(X, offsets, A, b, Q, H, d, R, mu0, P0):
    """:func:`_filter` in numpy, a few vector operations per time step (no steady-state shortcut)."""
    T, m = X.shape
    n = mu0.shape[0]
    pred_means, filt_means = np.zeros((T, n)), np.zeros((T, n))
    pred_covs, filt_covs = np.zeros((T, n, n)), np.zeros((T, n, n))
    step_ll = np.zeros(T)
    eye = np.eye(n)

    def at(a, t):
        return a[t if a.shape[0] > 1 else 0]

    for t0, t1 in zip(offsets[:-1], offsets[1:]):
        for t in range(t0, t1):
            if t == t0:
                pred_means[t], pred_covs[t] = mu0, P0
            else:
                A_t = at(A, t - 1)
                pred_means[t] = A_t @ filt_means[t - 1] + at(b, t - 1)
                P = A_t @ filt_covs[t - 1] @ A_t.T + at(Q, t - 1)
                pred_covs[t] = 0.5 * (P + P.T)
            observed = ~np.isnan(X[t])
            k = int(observed.sum())
            if k == 0:
                filt_means[t], filt_covs[t] = pred_means[t], pred_covs[t]
                continue
            H_o = at(H, t)[observed]
            R_o = at(R, t)[np.ix_(observed, observed)]
            v = X[t, observed] - at(d, t)[observed] - H_o @ pred_means[t]
            PHt = pred_covs[t] @ H_o.T
            S = H_o @ PHt + R_o
            L = _cholesky(0.5 * (S + S.T), t)
            gain_t = _triangular_solve(L.T, _triangular_solve(L, PHt.T))  # K^T = S^-1 H_o P
            IKH = eye - gain_t.T @ H_o
            P = IKH @ pred_covs[t] @ IKH.T + gain_t.T @ R_o @ gain_t  # Joseph form
            filt_covs[t] = 0.5 * (P + P.T)
            filt_means[t] = pred_means[t] + gain_t.T @ v
            z = _triangular_solve(L, v)
            step_ll[t] = -0.5 * (k * _LOG_2PI + 2.0 * np.log(np.diag(L)).sum() + z @ z)
    return pred_means, pred_covs, filt_means, filt_covs, step_ll, np.zeros(T, dtype=bool)


def _numpy_smooth(offsets, A, Q, pred_means, pred_covs, filt_means, filt_covs):
    """:func:`_smooth` in numpy: RTS smoother with lag-one cross-covariances."""
    T, n = filt_means.shape
    sm_means, sm_covs, pair_covs = filt_means.copy(), filt_covs.copy(), np.zeros((T, n, n))
    eye = np.eye(n)
    for t0, t1 in zip(offsets[:-1], offsets[1:]):
        for t in range(t1 - 2, t0 - 1, -1):
            A_t, Q_t = A[t if A.shape[0] > 1 else 0], Q[t if Q.shape[0] > 1 else 0]
            L = _cholesky(pred_covs[t + 1], t + 1)
            gain_t = _triangular_solve(L.T, _triangular_solve(L, A_t @ filt_covs[t]))  # J^T = P_pred[t+1]^-1 A P_f[t]
            IJA = eye - gain_t.T @ A_t
            base = IJA @ filt_covs[t] @ IJA.T + gain_t.T @ Q_t @ gain_t
            sm_means[t] = filt_means[t] + gain_t.T @ (sm_means[t + 1] - pred_means[t + 1])
            pair_covs[t + 1] = sm_covs[t + 1] @ gain_t
            P = base + gain_t.T @ pair_covs[t + 1]
            sm_covs[t] = 0.5 * (P + P.T)
    return sm_means, sm_covs, pair_covs


# --------------------------------------------------------------------------- public wrappers
def _time_axis(value, name, T, tail):
    array = np.ascontiguousarray(value, dtype=np.float64)
    if array.ndim != len(tail) + 1 or array.shape[1:] != tail or array.shape[0] not in (1, T):
        raise ValueError(
            f"{name} must have shape (1 or {T}, {', '.join(map(str, tail))}), got {array.shape}."
        )
    return array


def _prepare(X, offsets, A, b, Q, H, d, R, mu0, P0):
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_timesteps, n_dim_obs), got shape {X.shape}.")
    T, m = X.shape
    mu0 = np.ascontiguousarray(mu0, dtype=np.float64)
    if mu0.ndim != 1:
        raise ValueError(f"initial_state_mean must be 1-D, got shape {mu0.shape}.")
    n = mu0.shape[0]
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or offsets.shape[0] < 2 or offsets[0] != 0 or offsets[-1] != T:
        raise ValueError("offsets must start at 0 and end at the number of rows of X.")
    if np.any(np.diff(offsets) <= 0):
        raise ValueError("offsets must be strictly increasing (no empty sequence).")
    P0 = np.ascontiguousarray(P0, dtype=np.float64)
    if P0.shape != (n, n):
        raise ValueError(f"initial_state_covariance must have shape ({n}, {n}), got {P0.shape}.")
    return (
        X,
        offsets,
        _time_axis(A, "transition_matrices", T, (n, n)),
        _time_axis(b, "transition_offsets", T, (n,)),
        _time_axis(Q, "transition_covariance", T, (n, n)),
        _time_axis(H, "observation_matrices", T, (m, n)),
        _time_axis(d, "observation_offsets", T, (m,)),
        _time_axis(R, "observation_covariance", T, (m, m)),
        mu0,
        P0,
    )


def _run_filter(args):
    if args[0].shape[0] <= _NUMPY_MAX_ROWS:
        try:
            out, failed = _numpy_filter(*args), 0
        except _NotPositiveDefinite as error:
            failed = error.args[0]
    else:
        *out, failed = _filter(*args)
    if failed:
        raise np.linalg.LinAlgError(
            f"the innovation covariance at row {failed - 1} is not positive definite "
            "(ill-conditioned or non-positive-definite covariances)"
        )
    pred_means, pred_covs, filt_means, filt_covs, step_ll, steady = out
    return FilterResult(float(step_ll.sum()), step_ll, pred_means, pred_covs, filt_means, filt_covs, steady)


def kalman_filter(X, offsets, A, b, Q, H, d, R, mu0, P0):
    """Kalman filter over one or many sequences, NaN-aware.

    Parameters
    ----------
    X : array-like of shape (T, n_dim_obs)
        Observations of all sequences stacked; NaN marks a missing entry.
    offsets : array-like of int of shape (n_sequences + 1,)
        Sequence ``i`` is rows ``offsets[i]:offsets[i + 1]``.
    A : array-like of shape (1 or T, n, n)
        Transition matrices (``A[t]`` maps row t to row t + 1).
    b : array-like of shape (1 or T, n)
        Transition offsets.
    Q : array-like of shape (1 or T, n, n)
        Transition covariances.
    H : array-like of shape (1 or T, n_dim_obs, n)
        Observation matrices.
    d : array-like of shape (1 or T, n_dim_obs)
        Observation offsets.
    R : array-like of shape (1 or T, n_dim_obs, n_dim_obs)
        Observation covariances.
    mu0 : array-like of shape (n,)
        Mean of the first state of every sequence.
    P0 : array-like of shape (n, n)
        Covariance of the first state of every sequence.

    Returns
    -------
    result : FilterResult

    Raises
    ------
    numpy.linalg.LinAlgError
        If an innovation covariance is not positive definite.
    """
    return _run_filter(_prepare(X, offsets, A, b, Q, H, d, R, mu0, P0))


def kalman_smoother(X, offsets, A, b, Q, H, d, R, mu0, P0):
    """Kalman filter then RTS smoother with lag-one cross-covariances.

    Parameters are those of :func:`kalman_filter`.

    Returns
    -------
    result : SmootherResult

    Raises
    ------
    numpy.linalg.LinAlgError
        If an innovation or a predicted state covariance is not positive definite.
    """
    args = _prepare(X, offsets, A, b, Q, H, d, R, mu0, P0)
    filtered = _run_filter(args)
    moments = (filtered.predicted_means, filtered.predicted_covariances, filtered.filtered_means,
               filtered.filtered_covariances)
    if args[0].shape[0] <= _NUMPY_MAX_ROWS:
        try:
            (sm_means, sm_covs, pair_covs), failed = _numpy_smooth(args[1], args[2], args[4], *moments), 0
        except _NotPositiveDefinite as error:
            failed = error.args[0]
    else:
        sm_means, sm_covs, pair_covs, failed = _smooth(args[1], args[2], args[4], *moments, filtered.steady)
    if failed:
        raise np.linalg.LinAlgError(
            f"the predicted state covariance at row {failed - 1} is not positive definite "
            "(ill-conditioned or too small transition covariance)"
        )
    return SmootherResult(*filtered, sm_means, sm_covs, pair_covs)
