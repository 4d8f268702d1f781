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

The public functions are small Python wrappers that fix dtypes, check shapes,
allocate every output and scratch array and return NamedTuples; the two
compiled functions hold only loops. They are written for a short first
compilation (it is what a new user waits for): each is one flat function (no
calls to other compiled helpers, which numba compiles one by one and LLVM
then inlines and optimises again at every call site), allocates nothing (each
``np.zeros`` signature is one more compilation) and selects a parameter's row
with an integer factor (``A[(t - 1) * ia]``, ``ia`` 0 or 1) rather than a
conditional view. This about halves the filter's cold compilation against a
version built from inlined helpers, with bit-for-bit the same results.

Small inputs run the same recursions written with numpy and never touch the
compiler, so that a first fit on a small data set does not wait seconds for a
compilation: inputs of at most ``_NUMPY_MAX_ROWS`` rows, as long as at most
``_NUMPY_MAX_FULL_STEPS`` of their rows need a full covariance update (more:
the numpy filter stops and the compiled kernels run instead). A full update
costs tens of microseconds in numpy (about a hundred times the compiled one);
the rows of a steady state cost well under a microsecond each, because the
numpy path takes the same steady-state shortcut and does those rows together:
the covariances copied, the means of every row at once by doubling
(:func:`_affine_scan`), and the smoother's covariance recursion stopped where
it repeats to ``STEADY_RTOL``. So a time-invariant model on complete data of
up to 1,000 rows costs 1.3 to 3.3 milliseconds per EM iteration (0.3 to 1.3
compiled; 1 to 4 state dimensions), and a fit of 100 iterations a few tenths
of a second.
The numpy path has no template across sequences. Which
implementation runs depends on the input alone; both agree to round-off
(tests compare both with the dense joint Gaussian and with each other).
"""

from typing import NamedTuple

import numpy as np

from ._jit import jit

__all__ = ["FilterResult", "SmootherResult", "kalman_filter", "kalman_smoother", "STEADY_RTOL"]

STEADY_RTOL = 1e-14
_LOG_2PI = np.log(2.0 * np.pi)
_NUMPY_MAX_ROWS = 1000  # calls with at most this many rows run in numpy (see the module docstring) ...
_NUMPY_MAX_FULL_STEPS = 50  # ... unless more of their rows than this need a full covariance update


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


# --------------------------------------------------------------------------- compiled filter
@jit
def _filter(X, offsets, A, b, Q, H, d, R, mu0, P0, pred_means, pred_covs, filt_means, filt_covs, step_ll, steady,
            tmpl_rows, tmpl_gain, tmpl_chol, tmpl_logdet, work, vectors, idx):
    """Kalman filter over all sequences into the given arrays; returns the failing row + 1 (0 if none).

    ``work`` (at least 7 matrices of at least max(n, m) squared), ``vectors``
    (2 of at least m) and ``idx`` (m) are scratch; ``tmpl_*`` hold the template
    of the covariance recursion (length 0 when there is none, see
    :func:`_allocate_filter`).
    """
    T, m = X.shape
    n = mu0.shape[0]
    # row of each parameter at time t: t * ia etc. (0 for a time-invariant parameter)
    ia = 1 if A.shape[0] > 1 else 0
    ib = 1 if b.shape[0] > 1 else 0
    iq = 1 if Q.shape[0] > 1 else 0
    ih = 1 if H.shape[0] > 1 else 0
    i_d = 1 if d.shape[0] > 1 else 0
    ir = 1 if R.shape[0] > 1 else 0
    time_invariant = ia + ib + iq + ih + i_d + ir == 0
    Ho = work[0]  # observed rows of H_t          (k, n)
    Ro = work[1]  # observed block of R_t         (k, k)
    PHt = work[2]  # P H_o^T, then K R_o          (n, k)
    IKH = work[3]  # A P, then I - K H_o          (n, n)
    tmp = work[4]  # (I - K H_o) P                (n, n)
    S_work = work[5]  # innovation covariance, then its lower Cholesky factor (k, k)
    Kt_work = work[6]  # K^T                      (k, n)
    v = vectors[0]  # innovation
    w = vectors[1]  # L^-1 v
    S = S_work
    Kt = Kt_work
    logdet = 0.0

    # Template of the covariance recursion at each step of a complete sequence (time-invariant
    # parameters): the same for every complete sequence, so computed once and copied. Step j's
    # covariances are those of row tmpl_rows[j] (the row that computed them), its gain and Cholesky
    # factor tmpl_gain[j], tmpl_chol[j]; tmpl_steady >= 0 is the step after which it stays constant.
    max_len = tmpl_rows.shape[0]
    tmpl_len = 0
    tmpl_steady = -1

    for s in range(offsets.shape[0] - 1):
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
            # ---- predict the mean: x_pred[t] = A x_f[t-1] + b
            if t == t0:
                for i in range(n):
                    pred_means[t, i] = mu0[i]
            else:
                for i in range(n):
                    acc = b[(t - 1) * ib, i]
                    for j in range(n):
                        acc += A[(t - 1) * ia, i, j] * filt_means[t - 1, j]
                    pred_means[t, i] = acc
            # ---- predict the covariance, or copy it from P_0, the template or the steady state
            if from_template or t == t0 or is_steady:
                source = P0 if t == t0 and not from_template else pred_covs[tmpl_rows[step] if from_template else t - 1]
                for i in range(n):
                    for j in range(n):
                        pred_covs[t, i, j] = source[i, j]
            else:  # P_pred[t] = A P_f[t-1] A^T + Q, symmetrised
                ta = (t - 1) * ia
                for i in range(n):
                    for j in range(n):
                        acc = 0.0
                        for q in range(n):
                            acc += A[ta, i, q] * filt_covs[t - 1, q, j]
                        IKH[i, j] = acc
                for i in range(n):
                    for j in range(n):
                        acc = 0.0
                        for q in range(n):
                            acc += IKH[i, q] * A[ta, j, q]
                        pred_covs[t, i, j] = acc + Q[(t - 1) * iq, i, j]
                for i in range(n):
                    for j in range(i + 1, n):
                        sym = 0.5 * (pred_covs[t, i, j] + pred_covs[t, j, i])
                        pred_covs[t, i, j] = sym
                        pred_covs[t, j, i] = sym

            # ---- observed entries of this row; a wholly missing row skips the update
            k = 0
            for j in range(m):
                if not np.isnan(X[t, j]):
                    idx[k] = j
                    k += 1
            if k < m:
                is_steady = False
                have_prev = False
            if k == 0:
                for i in range(n):
                    filt_means[t, i] = pred_means[t, i]
                    for j in range(n):
                        filt_covs[t, i, j] = pred_covs[t, i, j]
                continue
            th = t * ih
            for a in range(k):  # innovation v = y_o - H_o x_pred - d_o
                r = idx[a]
                acc = X[t, r] - d[t * i_d, r]
                for j in range(n):
                    acc -= H[th, r, j] * pred_means[t, j]
                v[a] = acc

            # ---- gain and filtered covariance: from the template, the steady state, or computed
            if from_template:
                # gain, Cholesky factor and covariances of the same step of an earlier complete sequence
                steady[t] = False
                source = filt_covs[tmpl_rows[step]]
                for i in range(n):
                    for j in range(n):
                        filt_covs[t, i, j] = source[i, j]
                Kt = tmpl_gain[step]
                S = tmpl_chol[step]
                logdet = tmpl_logdet[step]
                have_prev = True
                if step == tmpl_steady:
                    is_steady = True
            elif is_steady:
                # gain K, covariances and log|S| are the previous step's
                steady[t] = True
                for i in range(n):
                    for j in range(n):
                        filt_covs[t, i, j] = filt_covs[t - 1, i, j]
            else:
                if time_invariant and have_prev and t > t0:
                    # steady once the predicted covariance repeats its previous value to STEADY_RTOL
                    diff = 0.0
                    scale = 0.0
                    for i in range(n):
                        for j in range(n):
                            diff = max(diff, abs(pred_covs[t, i, j] - pred_covs[t - 1, i, j]))
                            scale = max(scale, abs(pred_covs[t, i, j]))
                    is_steady = diff <= STEADY_RTOL * scale
                # a complete row extends the template by this step: the gain is computed in place there
                extend = complete and step == tmpl_len and tmpl_steady < 0
                Kt = tmpl_gain[step] if extend else Kt_work
                S = tmpl_chol[step] if extend else S_work
                # S = H_o P H_o^T + R_o over the observed entries, symmetrised, then its Cholesky factor
                tr = t * ir
                for a in range(k):
                    r = idx[a]
                    for j in range(n):
                        Ho[a, j] = H[th, r, j]
                    for c in range(k):
                        Ro[a, c] = R[tr, r, idx[c]]
                for i in range(n):  # P H_o^T
                    for c in range(k):
                        acc = 0.0
                        for q in range(n):
                            acc += pred_covs[t, i, q] * Ho[c, q]
                        PHt[i, c] = acc
                for a in range(k):
                    for c in range(k):
                        acc = 0.0
                        for q in range(n):
                            acc += Ho[a, q] * PHt[q, c]
                        S[a, c] = acc + Ro[a, c]
                for a in range(k):
                    for c in range(a + 1, k):
                        sym = 0.5 * (S[a, c] + S[c, a])
                        S[a, c] = sym
                        S[c, a] = sym
                for j in range(k):  # lower Cholesky factor in place
                    acc = S[j, j]
                    for p in range(j):
                        acc -= S[j, p] * S[j, p]
                    if not acc > 0.0:
                        return t + 1
                    root = np.sqrt(acc)
                    S[j, j] = root
                    for i in range(j + 1, k):
                        acc = S[i, j]
                        for p in range(j):
                            acc -= S[i, p] * S[j, p]
                        S[i, j] = acc / root
                    for i in range(j):
                        S[i, j] = 0.0
                logdet = 0.0
                for a in range(k):
                    logdet += 2.0 * np.log(S[a, a])
                for c in range(n):  # K^T = S^-1 H_o P: forward then backward substitution, column by column
                    for i in range(k):
                        acc = PHt[c, i]
                        for p in range(i):
                            acc -= S[i, p] * Kt[p, c]
                        Kt[i, c] = acc / S[i, i]
                    for i in range(k - 1, -1, -1):
                        acc = Kt[i, c]
                        for p in range(i + 1, k):
                            acc -= S[p, i] * Kt[p, c]
                        Kt[i, c] = acc / S[i, i]
                # Joseph form P_f = (I - K H_o) P (I - K H_o)^T + K R_o K^T, symmetrised
                for i in range(n):
                    for j in range(n):
                        acc = 1.0 if i == j else 0.0
                        for a in range(k):
                            acc -= Kt[a, i] * Ho[a, j]
                        IKH[i, j] = acc
                for i in range(n):
                    for j in range(n):
                        acc = 0.0
                        for q in range(n):
                            acc += IKH[i, q] * pred_covs[t, q, j]
                        tmp[i, j] = acc
                for i in range(n):  # K R_o
                    for c in range(k):
                        acc = 0.0
                        for a in range(k):
                            acc += Kt[a, i] * Ro[a, c]
                        PHt[i, c] = acc
                for i in range(n):
                    for j in range(n):
                        acc = 0.0
                        for q in range(n):
                            acc += tmp[i, q] * IKH[j, q]
                        for c in range(k):
                            acc += PHt[i, c] * Kt[c, j]
                        filt_covs[t, i, j] = acc
                for i in range(n):
                    for j in range(i + 1, n):
                        sym = 0.5 * (filt_covs[t, i, j] + filt_covs[t, j, i])
                        filt_covs[t, i, j] = sym
                        filt_covs[t, j, i] = sym
                have_prev = k == m
                if extend:
                    tmpl_rows[step] = t
                    tmpl_logdet[step] = logdet
                    tmpl_len += 1
                    if is_steady:
                        tmpl_steady = step

            # ---- log-likelihood log N(v; 0, S) (forward solve L w = v) and mean update x_f = x_pred + K v
            maha = 0.0
            for a in range(k):
                acc = v[a]
                for c in range(a):
                    acc -= S[a, c] * w[c]
                w[a] = acc / S[a, a]
                maha += w[a] * w[a]
            step_ll[t] = -0.5 * (k * _LOG_2PI + logdet + maha)
            for i in range(n):
                acc = pred_means[t, i]
                for a in range(k):
                    acc += Kt[a, i] * v[a]
                filt_means[t, i] = acc
    return 0


# --------------------------------------------------------------------------- compiled smoother
@jit
def _smooth(offsets, A, Q, pred_means, pred_covs, filt_means, filt_covs, steady, sm_means, sm_covs, pair_covs,
            work, vectors):
    """RTS smoother with lag-one cross-covariances into the given arrays; returns the failing row + 1 (0 if none).

    ``work`` (at least 5 matrices of at least n squared) and ``vectors`` (1 of
    at least n) are scratch.
    """
    T, n = filt_means.shape
    ia = 1 if A.shape[0] > 1 else 0
    iq = 1 if Q.shape[0] > 1 else 0
    Lp = work[0]  # Cholesky factor of P_pred[t+1]
    Jt = work[1]  # J^T
    IJA = work[2]  # I - J A
    base = work[3]  # (I - J A) P_f (I - J A)^T + J Q J^T
    tmp = work[4]
    diff = vectors[0]
    for s in range(offsets.shape[0] - 1):
        t0 = offsets[s]
        last = offsets[s + 1] - 1
        for i in range(n):
            sm_means[last, i] = filt_means[last, i]
            for j in range(n):
                sm_covs[last, i, j] = filt_covs[last, i, j]
        for t in range(last - 1, t0 - 1, -1):
            ta = t * ia
            tq = t * iq
            # a steady filter at t+1 and t+2 means P_f[t+1] == P_f[t] and P_pred[t+2] == P_pred[t+1]
            # (copied, time-invariant parameters), so J_t == J_{t+1}: keep J and base
            if not (t + 2 <= last and steady[t + 1] and steady[t + 2]):
                # J^T = P_pred[t+1]^{-1} A P_f[t]: Cholesky factor of P_pred[t+1], then two substitutions
                for i in range(n):
                    for j in range(n):
                        Lp[i, j] = pred_covs[t + 1, i, j]
                for j in range(n):
                    acc = Lp[j, j]
                    for p in range(j):
                        acc -= Lp[j, p] * Lp[j, p]
                    if not acc > 0.0:
                        return t + 2
                    root = np.sqrt(acc)
                    Lp[j, j] = root
                    for i in range(j + 1, n):
                        acc = Lp[i, j]
                        for p in range(j):
                            acc -= Lp[i, p] * Lp[j, p]
                        Lp[i, j] = acc / root
                    for i in range(j):
                        Lp[i, j] = 0.0
                for i in range(n):
                    for j in range(n):
                        acc = 0.0
                        for q in range(n):
                            acc += A[ta, i, q] * filt_covs[t, q, j]
                        Jt[i, j] = acc
                for c in range(n):
                    for i in range(n):
                        acc = Jt[i, c]
                        for p in range(i):
                            acc -= Lp[i, p] * Jt[p, c]
                        Jt[i, c] = acc / Lp[i, i]
                    for i in range(n - 1, -1, -1):
                        acc = Jt[i, c]
                        for p in range(i + 1, n):
                            acc -= Lp[p, i] * Jt[p, c]
                        Jt[i, c] = acc / Lp[i, i]
                # base = (I - J A) P_f (I - J A)^T + J Q J^T
                for i in range(n):
                    for j in range(n):
                        acc = 1.0 if i == j else 0.0
                        for q in range(n):
                            acc -= Jt[q, i] * A[ta, q, j]
                        IJA[i, j] = acc
                for i in range(n):
                    for j in range(n):
                        acc = 0.0
                        for q in range(n):
                            acc += IJA[i, q] * filt_covs[t, q, j]
                        tmp[i, j] = acc
                for i in range(n):
                    for j in range(n):
                        acc = 0.0
                        for q in range(n):
                            acc += tmp[i, q] * IJA[j, q]
                        base[i, j] = acc
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
            # covariances: pair[t+1] = P_s[t+1] J^T; P_s[t] = base + J P_s[t+1] J^T, symmetrised
            for i in range(n):
                for j in range(n):
                    acc = 0.0
                    for q in range(n):
                        acc += sm_covs[t + 1, i, q] * Jt[q, j]
                    pair_covs[t + 1, i, j] = acc
            for i in range(n):
                for j in range(n):
                    acc = base[i, j]
                    for q in range(n):
                        acc += Jt[q, i] * pair_covs[t + 1, q, j]
                    sm_covs[t, i, j] = acc
            for i in range(n):
                for j in range(i + 1, n):
                    sym = 0.5 * (sm_covs[t, i, j] + sm_covs[t, j, i])
                    sm_covs[t, i, j] = sym
                    sm_covs[t, j, i] = sym
    return 0


# --------------------------------------------------------------------------- small inputs in numpy
class _NotPositiveDefinite(Exception):
    """Raised by the numpy path with the failing row + 1, as the compiled functions return it."""


class _TooManyFullSteps(Exception):
    """Raised by :func:`_numpy_filter` when its budget of full covariance updates runs out."""


def _inverse_cholesky(a, row):
    """``L^-1`` for the lower Cholesky factor ``L`` of ``a``, and ``log|a|``; :class:`_NotPositiveDefinite` if none."""
    try:
        L = np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        raise _NotPositiveDefinite(row + 1) from None
    return np.linalg.inv(L), 2.0 * np.log(L.diagonal()).sum()


def _affine_scan(F, g, x0):
    """``x[i] = F x[i-1] + g[i]`` for every row of ``g`` (``x[-1] = x0``), in log2(len(g)) vector rounds.

    The steady rows' mean recursions: ``x[i] = sum_j F^(i-j) g[j] + F^(i+1) x0``, every prefix at
    once by doubling (round ``r`` adds to each row the partial sum ``2^r`` rows up, through
    ``F^(2^r)``) instead of a Python loop of one matrix-vector product per row. Each row's terms are
    summed in another order than the step-by-step recursion, so the two agree to round-off.
    """
    x = np.array(g, dtype=np.float64)
    x[0] += F @ x0
    power, shift = F, 1
    while shift < x.shape[0]:
        x[shift:] += x[:-shift] @ power.T
        power, shift = power @ power, 2 * shift
    return x


def _numpy_filter(X, offsets, A, b, Q, H, d, R, mu0, P0, max_full_steps=None):
    """:func:`_filter` in numpy: small matrix products per row, the same steady-state rule.

    The steady state is detected as in :func:`_filter` (time-invariant
    parameters, complete rows, predicted covariance repeating to
    ``STEADY_RTOL``); its rows are then done together, the covariances copied
    and the means by the recursion ``x_f[t] = (I - K H) A x_f[t-1] + (I - K H) b
    + K (y_t - d)``, all rows at once (:func:`_affine_scan`). There is no template across
    sequences. Raises :class:`_TooManyFullSteps` once more than
    ``max_full_steps`` rows needed a full covariance update (``None``: no limit).
    """
    T, m = X.shape
    n = mu0.shape[0]
    pred_means, filt_means = np.zeros((T, n)), np.zeros((T, n))
    pred_covs, filt_covs = np.zeros((T, n, n)), np.zeros((T, n, n))
    step_ll = np.zeros(T)
    steady = np.zeros(T, dtype=bool)
    eye = np.eye(n)
    observed = ~np.isnan(X)
    complete = observed.all(axis=1)
    # end of the run of complete rows from each row on (T after the last)
    run_end = np.minimum.accumulate(np.where(complete, T, np.arange(T))[::-1])[::-1]
    time_invariant = all(p.shape[0] == 1 for p in (A, b, Q, H, d, R))
    ia, ib, iq, ih, i_d, ir = (int(p.shape[0] > 1) for p in (A, b, Q, H, d, R))
    full_steps = 0
    gain = L_inv = logdet = None  # of the last full step; the steady rows reuse them
    for t0, t1 in zip(offsets[:-1].tolist(), offsets[1:].tolist()):
        is_steady = have_prev = False
        t = t0
        while t < t1:
            if is_steady and complete[t]:  # steady rows up to the next incomplete row, together
                end = min(int(run_end[t]), t1)
                pred_covs[t:end], filt_covs[t:end], steady[t:end] = pred_covs[t - 1], filt_covs[t - 1], True
                A_0, H_0 = A[0], H[0]
                transition = A_0 - gain @ (H_0 @ A_0)
                drive = (X[t:end] - d[0]) @ gain.T + (b[0] - gain @ (H_0 @ b[0]))
                filt_means[t:end] = _affine_scan(transition, drive, filt_means[t - 1])
                pred_means[t:end] = filt_means[t - 1:end - 1] @ A_0.T + b[0]
                z = (X[t:end] - d[0] - pred_means[t:end] @ H_0.T) @ L_inv.T
                step_ll[t:end] = -0.5 * (m * _LOG_2PI + logdet + np.einsum("ij,ij->i", z, z))
                t = end
                continue
            if t == t0:
                pred_means[t], pred_covs[t] = mu0, P0
            else:
                A_t = A[(t - 1) * ia]
                pred_means[t] = A_t @ filt_means[t - 1] + b[(t - 1) * ib]
                if is_steady:
                    pred_covs[t] = pred_covs[t - 1]
                else:
                    P = A_t @ filt_covs[t - 1] @ A_t.T + Q[(t - 1) * iq]
                    pred_covs[t] = 0.5 * (P + P.T)
            if complete[t]:
                H_o, d_o, y, k = H[t * ih], d[t * i_d], X[t], m
            else:
                is_steady = have_prev = False
                rows = observed[t]
                k = int(rows.sum())
                if k == 0:
                    filt_means[t], filt_covs[t] = pred_means[t], pred_covs[t]
                    t += 1
                    continue
                H_o, d_o, y = H[t * ih][rows], d[t * i_d][rows], X[t, rows]
            if time_invariant and have_prev and t > t0:
                change = np.abs(pred_covs[t] - pred_covs[t - 1]).max()
                is_steady = change <= STEADY_RTOL * np.abs(pred_covs[t]).max()
            full_steps += 1
            if max_full_steps is not None and full_steps > max_full_steps:
                raise _TooManyFullSteps
            R_o = R[t * ir] if k == m else R[t * ir][np.ix_(rows, rows)]
            PHt = pred_covs[t] @ H_o.T
            S = H_o @ PHt + R_o
            L_inv, logdet = _inverse_cholesky(0.5 * (S + S.T), t)
            gain = PHt @ L_inv.T @ L_inv  # K = P H_o^T S^-1
            IKH = eye - gain @ H_o
            P = IKH @ pred_covs[t] @ IKH.T + gain @ R_o @ gain.T  # Joseph form
            filt_covs[t] = 0.5 * (P + P.T)
            have_prev = k == m
            v = y - d_o - H_o @ pred_means[t]
            filt_means[t] = pred_means[t] + gain @ v
            z = L_inv @ v
            step_ll[t] = -0.5 * (k * _LOG_2PI + logdet + z @ z)
            t += 1
    return pred_means, pred_covs, filt_means, filt_covs, step_ll, steady


def _numpy_smooth(offsets, A, Q, pred_means, pred_covs, filt_means, filt_covs, steady):
    """:func:`_smooth` in numpy: RTS smoother with lag-one cross-covariances, the same steady-state reuse.

    Rows whose gain ``J`` is the next row's (the filter steady at t+1 and
    t+2) are done together: the means by the recursion ``x_s[t] = J x_s[t+1]
    + x_f[t] - J x_pred[t+1]``, the covariances row by row until they repeat
    to ``STEADY_RTOL``, then copied.
    """
    T, n = filt_means.shape
    sm_means, sm_covs, pair_covs = filt_means.copy(), filt_covs.copy(), np.zeros((T, n, n))
    eye = np.eye(n)
    ia, iq = int(A.shape[0] > 1), int(Q.shape[0] > 1)
    # first row of the run of steady rows through each row
    index = np.arange(T)
    run_start = np.maximum.accumulate(np.where(steady, 0, index + 1))
    gain = base = None  # of the last row that computed them; the steady rows reuse them
    for t0, t1 in zip(offsets[:-1].tolist(), offsets[1:].tolist()):
        last = t1 - 1
        t = last - 1
        while t >= t0:
            if t + 2 <= last and steady[t + 1] and steady[t + 2]:  # J and base are those of t + 1, down to low
                low = max(int(run_start[t + 1]) - 1, t0)
                offset = filt_means[low:t + 1] - pred_means[low + 1:t + 2] @ gain.T
                sm_means[low:t + 1] = _affine_scan(gain, offset[::-1], sm_means[t + 1])[::-1]
                for u in range(t, low - 1, -1):
                    pair_covs[u + 1] = sm_covs[u + 1] @ gain.T
                    P = base + gain @ pair_covs[u + 1]
                    sm_covs[u] = 0.5 * (P + P.T)
                    if np.abs(sm_covs[u] - sm_covs[u + 1]).max() <= STEADY_RTOL * np.abs(sm_covs[u]).max():
                        # the recursion has converged: the rows below repeat P_s[u]
                        sm_covs[low:u] = sm_covs[u]
                        pair_covs[low + 1:u + 1] = sm_covs[u] @ gain.T
                        break
                t = low - 1
                continue
            A_t = A[t * ia]
            L_inv, _ = _inverse_cholesky(pred_covs[t + 1], t + 1)
            gain = (A_t @ filt_covs[t]).T @ L_inv.T @ L_inv  # J = P_f[t] A^T P_pred[t+1]^-1
            IJA = eye - gain @ A_t
            base = IJA @ filt_covs[t] @ IJA.T + gain @ Q[t * iq] @ gain.T
            sm_means[t] = filt_means[t] + gain @ (sm_means[t + 1] - pred_means[t + 1])
            pair_covs[t + 1] = sm_covs[t + 1] @ gain.T
            P = base + gain @ pair_covs[t + 1]
            sm_covs[t] = 0.5 * (P + P.T)
            t -= 1
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


def _compiled_filter(args, kernel=_filter):
    """Run the compiled filter (or, for tests, ``kernel=_filter.py_func``) on prepared arguments.

    Returns the six output arrays of :class:`FilterResult` after the
    log-likelihood, and the failing row + 1 (0 if none).
    """
    X, offsets, A, b, Q, H, d, R, mu0, P0 = args
    T, m = X.shape
    n = mu0.shape[0]
    out = (np.zeros((T, n)), np.zeros((T, n, n)), np.zeros((T, n)), np.zeros((T, n, n)), np.zeros(T),
           np.zeros(T, dtype=np.bool_))
    # the template of the covariance recursion serves several sequences with time-invariant parameters
    time_invariant = all(p.shape[0] == 1 for p in (A, b, Q, H, d, R))
    max_len = int(np.diff(offsets).max()) if time_invariant and offsets.shape[0] > 2 else 0
    template = (np.zeros(max_len, dtype=np.int64), np.zeros((max_len, m, n)), np.zeros((max_len, m, m)),
                np.zeros(max_len))
    p = max(n, m)
    failed = kernel(*args, *out, *template, np.zeros((7, p, p)), np.zeros((2, p)), np.zeros(m, dtype=np.int64))
    return out, failed


def _compiled_smoother(offsets, A, Q, pred_means, pred_covs, filt_means, filt_covs, steady, kernel=_smooth):
    """Run the compiled smoother (or ``kernel=_smooth.py_func``) on the filter's moments.

    Returns smoothed means, covariances, lag-one covariances and the failing
    row + 1 (0 if none).
    """
    T, n = filt_means.shape
    out = np.zeros((T, n)), np.zeros((T, n, n)), np.zeros((T, n, n))
    failed = kernel(offsets, A, Q, pred_means, pred_covs, filt_means, filt_covs, steady, *out, np.zeros((5, n, n)),
                    np.zeros((1, n)))
    return (*out, failed)


def _run_filter(args):
    """The filter's :class:`FilterResult`, and True if the compiled kernel computed it (False: numpy)."""
    out, failed = None, 0
    T = args[0].shape[0]
    # with time-varying parameters every row needs a full update: no need to try
    varying = any(p.shape[0] > 1 for p in args[2:8])
    if T <= _NUMPY_MAX_ROWS and not (varying and _NUMPY_MAX_FULL_STEPS is not None and T > _NUMPY_MAX_FULL_STEPS):
        try:
            out = _numpy_filter(*args, max_full_steps=_NUMPY_MAX_FULL_STEPS)
        except _NotPositiveDefinite as error:
            failed = error.args[0]
        except _TooManyFullSteps:  # a slow transient or missing entries
            pass
    compiled = out is None and not failed
    if compiled:
        out, failed = _compiled_filter(args)
    if failed:
        raise np.linalg.LinAlgError(
            f"the innovation covariance at row {failed - 1} is not positive definite "
            "(ill-conditioned or non-positive-definite covariances)"
        )
    pred_means, pred_covs, filt_means, filt_covs, step_ll, steady = out
    return FilterResult(float(step_ll.sum()), step_ll, pred_means, pred_covs, filt_means, filt_covs, steady), compiled


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
    return _run_filter(_prepare(X, offsets, A, b, Q, H, d, R, mu0, P0))[0]


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
    filtered, compiled = _run_filter(args)
    moments = (filtered.predicted_means, filtered.predicted_covariances, filtered.filtered_means,
               filtered.filtered_covariances, filtered.steady)
    if compiled:
        sm_means, sm_covs, pair_covs, failed = _compiled_smoother(args[1], args[2], args[4], *moments)
    else:
        try:
            (sm_means, sm_covs, pair_covs), failed = _numpy_smooth(args[1], args[2], args[4], *moments), 0
        except _NotPositiveDefinite as error:
            failed = error.args[0]
    if failed:
        raise np.linalg.LinAlgError(
            f"the predicted state covariance at row {failed - 1} is not positive definite "
            "(ill-conditioned or too small transition covariance)"
        )
    return SmootherResult(*filtered, sm_means, sm_covs, pair_covs)
