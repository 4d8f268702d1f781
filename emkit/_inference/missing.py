r"""Compiled kernels for Gaussian components with missing coordinates (NaN).

For a row with observed coordinates ``o`` and missing ones ``m`` and a
component with mean ``mu`` and precision ``P = Sigma^-1``, the conditional
distribution of the missing block given the observed one is

.. math::

    x_m \mid x_o \sim N\big(\mu_m - P_{mm}^{-1} P_{mo} (x_o - \mu_o),\; P_{mm}^{-1}\big),

and the marginal density of the observed block follows from the same
factor: ``det Sigma_oo = det Sigma det P_mm`` and, with the *completed*
centred row ``dhat`` (``x_o - mu_o`` on ``o``, the conditional mean minus
``mu_m`` on ``m``), ``(x_o - mu_o)^T Sigma_oo^-1 (x_o - mu_o) = |U^T dhat|^2``
(``U U^T = P``). The kernels here complete the rows; the quadratic forms and
the statistics are then the ordinary full-covariance lane kernels of
:mod:`emkit._inference.mixture` applied to the completed rows, so they sum
squares (nothing cancels) and centre every row on its component first.

Only ``P_mm`` (as many rows as there are missing coordinates, usually few)
is factorised, once per run of rows with the same missing pattern: a caller
that sorts its rows by pattern factorises once per pattern, a caller that
does not factorises once per row. Both give the same numbers.
"""

import numpy as np

from ._jit import jit

__all__ = ["complete_full", "complete_diag", "conditional_covariance_full"]

_LOG_2PI = float(np.log(2.0 * np.pi))


@jit(inline=True)
def _pattern(row, missing, observed, n_features):
    """Fill the index lists of the row's missing and observed coordinates; return how many are missing."""
    n_missing = 0
    n_observed = 0
    for d in range(n_features):
        if np.isnan(row[d]):
            missing[n_missing] = d
            n_missing += 1
        else:
            observed[n_observed] = d
            n_observed += 1
    return n_missing


@jit(inline=True)
def _same_pattern(row, missing, n_missing, n_features):
    """True when the row's missing coordinates are exactly ``missing[:n_missing]``."""
    j = 0
    for d in range(n_features):
        if np.isnan(row[d]):
            if j >= n_missing or missing[j] != d:
                return False
            j += 1
    return j == n_missing


@jit(inline=True)
def _factor_block(precision, missing, n_missing, low):
    """Lower Cholesky factor of ``P[m, m]`` into ``low[:c, :c]``; returns ``log det P[m, m] / 2``.

    A pivot that is not positive (a precision that is not positive definite
    in the first place) gives NaN, which the caller's densities then carry.
    """
    half_log_det = 0.0
    for a in range(n_missing):
        for b in range(a + 1):
            s = precision[missing[a], missing[b]]
            for j in range(b):
                s -= low[a, j] * low[b, j]
            if a == b:
                pivot = np.sqrt(s) if s > 0.0 else np.nan
                low[a, a] = pivot
                half_log_det += np.log(pivot)
            else:
                low[a, b] = s / low[b, b]
    return half_log_det


@jit(inline=True)
def _regression(precision, missing, n_missing, observed, n_observed, low, coef):
    """``coef[:c, :o] = -P_mm^-1 P_mo``: the conditional mean is ``mu_m + coef (x_o - mu_o)``."""
    for j in range(n_observed):
        col = observed[j]
        # forward: low y = -P[m, col]
        for a in range(n_missing):
            s = -precision[missing[a], col]
            for b in range(a):
                s -= low[a, b] * coef[b, j]
            coef[a, j] = s / low[a, a]
        # backward: low^T z = y
        for a in range(n_missing - 1, -1, -1):
            s = coef[a, j]
            for b in range(a + 1, n_missing):
                s -= low[b, a] * coef[b, j]
            coef[a, j] = s / low[a, a]


@jit
def _complete_full(data, means, precision, centred, extra, low, coef, half_log_det, missing, observed, diff):
    n_rows, n_features = data.shape
    n_components = means.shape[0]
    n_factors = precision.shape[0]  # 1: tied (one precision for every component)
    n_missing = -1
    n_observed = 0
    for i in range(n_rows):
        row = data[i]
        if n_missing < 0 or not _same_pattern(row, missing, n_missing, n_features):
            n_missing = _pattern(row, missing, observed, n_features)
            n_observed = n_features - n_missing
            for f in range(n_factors):
                half_log_det[f] = _factor_block(precision[f], missing, n_missing, low[f])
                _regression(precision[f], missing, n_missing, observed, n_observed, low[f], coef[f])
        for k in range(n_components):
            f = 0 if n_factors == 1 else k
            mu = means[k]
            out = centred[k]
            for j in range(n_observed):
                d = observed[j]
                v = row[d] - mu[d]
                diff[j] = v
                out[d, i] = v
            cf = coef[f]
            for a in range(n_missing):
                s = 0.0
                for j in range(n_observed):
                    s += cf[a, j] * diff[j]
                out[missing[a], i] = s
            extra[k, i] = 0.5 * n_missing * _LOG_2PI - half_log_det[f]


def complete_full(data, means, precision, centred, extra):
    """Complete a block of rows with each component's conditional means (full or tied covariances).

    Parameters
    ----------
    data : ndarray of shape (n_rows, n_features), float64, C-contiguous
        Rows with NaN at their missing coordinates. Rows with the same
        pattern in a run share one factorisation (sort them by pattern to
        factorise once per pattern).
    means : ndarray of shape (n_components, n_features), float64
    precision : ndarray of shape (n_components, n_features, n_features) or (1, n_features, n_features)
        The precision matrices ``P_k = Sigma_k^-1`` (one shared matrix for tied).
    centred : ndarray of shape (n_components, n_features, n_rows), float64, C-contiguous
        Receives the completed rows centred on each component, as lanes:
        ``x_o - mu_ko`` on the observed coordinates,
        ``-P_k,mm^-1 P_k,mo (x_o - mu_ko)`` (``E[x_m | x_o, k] - mu_km``) on the
        missing ones.
    extra : ndarray of shape (n_components, n_rows), float64, C-contiguous
        Receives ``|m|/2 log(2 pi) - 1/2 log det P_k,mm``: added to the
        complete-row density of the completed row it gives the marginal
        density of the observed coordinates.
    """
    n_features = data.shape[1]
    n_factors = precision.shape[0]
    low = np.zeros((n_factors, n_features, n_features))
    coef = np.zeros((n_factors, n_features, n_features))
    index = [np.empty(n_features, dtype=np.intp) for _ in range(2)]
    _complete_full(
        data, means, precision, centred, extra, low, coef, np.zeros(n_factors), *index, np.empty(n_features)
    )


@jit
def _complete_diag(data, means, centred):
    n_rows, n_features = data.shape
    for k in range(means.shape[0]):
        mu = means[k]
        out = centred[k]
        for d in range(n_features):
            m = mu[d]
            lane = out[d]
            for i in range(n_rows):
                v = data[i, d]
                lane[i] = 0.0 if np.isnan(v) else v - m


def complete_diag(data, means, centred):
    """Complete a block of rows for diagonal (or spherical) covariances.

    With independent coordinates the conditional mean of a missing one is
    its mean, so the centred completed row is ``x_d - mu_kd`` where observed
    and an exact 0 where missing.

    Parameters
    ----------
    data : ndarray of shape (n_rows, n_features), float64, C-contiguous
    means : ndarray of shape (n_components, n_features), float64
    centred : ndarray of shape (n_components, n_features, n_rows), float64, C-contiguous
        Receives the lanes of the centred completed rows.
    """
    _complete_diag(data, means, centred)


@jit
def _conditional_covariance_full(data, precision, resp, out, low, inverse, mass, missing, observed):
    n_rows, n_features = data.shape
    n_components = resp.shape[0]
    n_factors = precision.shape[0]
    n_missing = -1
    for i in range(n_rows + 1):
        row = data[min(i, n_rows - 1)]
        if i < n_rows and n_missing >= 0 and _same_pattern(row, missing, n_missing, n_features):
            for k in range(n_components):
                mass[k] += resp[k, i]
            continue
        # a run of one pattern ends: add its mass times P_mm^-1 for every component
        if n_missing > 0:
            for f in range(n_factors):
                _factor_block(precision[f], missing, n_missing, low[f])
                _inverse_from_factor(low[f], n_missing, inverse[f])
            for k in range(n_components):
                w = mass[k]
                if w == 0.0:
                    continue
                inv = inverse[0 if n_factors == 1 else k]
                target = out[k]
                for a in range(n_missing):
                    for b in range(n_missing):
                        target[missing[a], missing[b]] += w * inv[a, b]
        if i == n_rows:
            break
        n_missing = _pattern(row, missing, observed, n_features)
        for k in range(n_components):
            mass[k] = resp[k, i]


@jit(inline=True)
def _inverse_from_factor(low, n, inverse):
    """``inverse[:n, :n] = (low low^T)^-1`` from the lower factor, column by column."""
    for col in range(n):
        # forward: low y = e_col
        for a in range(n):
            s = 1.0 if a == col else 0.0
            for b in range(a):
                s -= low[a, b] * inverse[b, col]
            inverse[a, col] = s / low[a, a]
        # backward: low^T z = y
        for a in range(n - 1, -1, -1):
            s = inverse[a, col]
            for b in range(a + 1, n):
                s -= low[b, a] * inverse[b, col]
            inverse[a, col] = s / low[a, a]


def conditional_covariance_full(data, precision, resp, out):
    """Add ``sum_i r_ik Cov[x_m | x_o, k]`` (on each row's missing block) to ``out`` (full or tied).

    ``Cov[x_m | x_o, k] = P_k,mm^-1`` does not depend on the observed values:
    the weights of a run of rows with one pattern are summed first and the
    inverse is formed once per run.

    Parameters
    ----------
    data : ndarray of shape (n_rows, n_features), float64, C-contiguous
        Rows with NaN at their missing coordinates.
    precision : ndarray of shape (n_components or 1, n_features, n_features)
    resp : ndarray of shape (n_components, n_rows), float64, C-contiguous
        Weights ``r_ik``.
    out : ndarray of shape (n_components, n_features, n_features), float64
        Updated in place (both triangles).
    """
    n_features = data.shape[1]
    n_factors = precision.shape[0]
    if data.shape[0] == 0:
        return
    _conditional_covariance_full(
        data,
        precision,
        resp,
        out,
        np.zeros((n_factors, n_features, n_features)),
        np.zeros((n_factors, n_features, n_features)),
        np.zeros(resp.shape[0]),
        np.empty(n_features, dtype=np.intp),
        np.empty(n_features, dtype=np.intp),
    )

