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

The completed rows differ by component, so they are laid out as one block
of lanes per component, ``(n_components, n_features, n_rows)``, and each
component's lanes go through the compiled complete-data functions of
:mod:`.mixture` (``_full_log_density``, ``_diag_log_density``, ``_moments``:
private names, called from compiled loops here so that a chunk costs one
call and one set of scratch arrays).
"""

from typing import NamedTuple

import numpy as np

from ._jit import jit, specialized
from .mixture import _diag_log_density, _full_log_density, _moments

__all__ = [
    "row_patterns",
    "gather_rows",
    "PatternRuns",
    "pattern_runs",
    "ComponentLanes",
    "component_lanes",
    "complete_full",
    "complete_diag",
    "completed_log_density",
    "completed_moments",
    "conditional_covariance_full",
]

_LOG_2PI = float(np.log(2.0 * np.pi))
_FIXED_SIZES = range(1, 9)  # component counts compiled with constant loop bounds (unrolled loops)


@jit(inline=True)
def _missing_of(row, missing, n_features):
    """Fill ``missing`` with the row's missing coordinates; return how many there are."""
    n_missing = 0
    for d in range(n_features):
        if np.isnan(row[d]):
            missing[n_missing] = d
            n_missing += 1
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


class PatternRuns(NamedTuple):
    """Runs of consecutive rows with one missing pattern (see :func:`pattern_runs`).

    Attributes
    ----------
    starts : ndarray of shape (n_runs + 1,), int
        Run ``r`` is rows ``starts[r]:starts[r + 1]``.
    offsets : ndarray of shape (n_runs + 1,), int
        Run ``r``'s conditional covariances (``c_r x c_r`` for ``c_r`` missing
        coordinates) are rows ``offsets[r]:offsets[r + 1]`` of the
        ``inverses`` table of :func:`complete_full`.
    """

    starts: np.ndarray
    offsets: np.ndarray


@jit
def _pattern_runs(data, starts, offsets, missing):
    n_rows, n_features = data.shape
    n_runs = 0
    n_missing = -1
    for i in range(n_rows):
        row = data[i]
        if n_missing < 0 or not _same_pattern(row, missing, n_missing, n_features):
            n_missing = _missing_of(row, missing, n_features)
            starts[n_runs] = i
            offsets[n_runs + 1] = offsets[n_runs] + n_missing * n_missing
            n_runs += 1
    starts[n_runs] = n_rows
    return n_runs


@jit
def _runs_from_keys(keys, counts, starts, offsets):
    n_runs = 0
    for i in range(keys.shape[0]):
        if i == 0 or keys[i] != keys[i - 1]:
            starts[n_runs] = i
            offsets[n_runs + 1] = offsets[n_runs] + counts[i] * counts[i]
            n_runs += 1
    starts[n_runs] = keys.shape[0]
    return n_runs


def pattern_runs(data, keys=None, counts=None):
    """Split a block of rows into runs of consecutive rows with the same missing pattern.

    Parameters
    ----------
    data : ndarray of shape (n_rows, n_features), float64, C-contiguous
        NaN marks a missing entry.
    keys, counts : ndarray of shape (n_rows,), optional
        The rows' pattern keys and missing counts (:func:`row_patterns`),
        when known: the runs are then read from them instead of the data.

    Returns
    -------
    PatternRuns
    """
    n_rows, n_features = data.shape
    starts = np.zeros(n_rows + 1, dtype=np.intp)
    offsets = np.zeros(n_rows + 1, dtype=np.intp)
    if keys is None:
        n_runs = _pattern_runs(data, starts, offsets, np.empty(n_features, dtype=np.intp))
    else:
        n_runs = _runs_from_keys(keys, counts, starts, offsets)
    return PatternRuns(starts[: n_runs + 1], offsets[: n_runs + 1])


# Everything below works on *component lanes*: the innermost loop runs over the components (means as
# (D, K), precisions as (D, D, K)), so the small factorisations and solves of one pattern are done for
# all components at once, several per vector instruction, instead of one dependent chain at a time.
# Arrays are indexed in full inside the loops (a view taken in a loop costs numba two atomic
# reference-count updates).
@jit(inline=True)
def _factor_lanes(precision, missing, n_missing, low, reciprocal, half_log_det, product, n_lanes):
    """Lower Cholesky factors of every component's ``P[m, m]`` into ``low[:c, :c, :]``.

    Also ``reciprocal[a, k]`` (one over each pivot) and ``half_log_det[k] = log det P_k[m, m] / 2``;
    ``low[a, a]`` keeps the pivot's square (only the reciprocals are read later). A pivot that is
    not positive (a precision that was not positive definite) gives NaN, which the results then carry.
    """
    for k in range(n_lanes):
        half_log_det[k] = 0.0
        product[k] = 1.0
    for a in range(n_missing):
        ma = missing[a]
        for b in range(a + 1):
            mb = missing[b]
            for k in range(n_lanes):
                low[a, b, k] = precision[ma, mb, k]
            for j in range(b):
                for k in range(n_lanes):
                    low[a, b, k] -= low[a, j, k] * low[b, j, k]
            if a == b:
                for k in range(n_lanes):
                    s = low[a, a, k]
                    pivot = np.sqrt(s) if s > 0.0 else np.nan
                    reciprocal[a, k] = 1.0 / pivot
                    product[k] *= pivot
            else:
                for k in range(n_lanes):
                    low[a, b, k] *= reciprocal[b, k]
        if a % 8 == 7 or a == n_missing - 1:  # the log of eight pivots at a time: no overflow
            for k in range(n_lanes):
                half_log_det[k] += np.log(product[k])
                product[k] = 1.0


@jit(inline=True)
def _inverse_lanes(low, reciprocal, n, inverse_low, out, offset, n_lanes):
    """``out[offset + a * n + b, k] = (P_k[m, m]^-1)[a, b]`` from the factors, through ``L^-1`` (lower)."""
    for b in range(n):
        for k in range(n_lanes):
            inverse_low[b, b, k] = reciprocal[b, k]
        for a in range(b + 1, n):
            for k in range(n_lanes):
                inverse_low[a, b, k] = 0.0
            for j in range(b, a):
                for k in range(n_lanes):
                    inverse_low[a, b, k] += low[a, j, k] * inverse_low[j, b, k]
            for k in range(n_lanes):
                inverse_low[a, b, k] *= -reciprocal[a, k]
    for a in range(n):
        for b in range(a + 1):
            ab = offset + a * n + b
            ba = offset + b * n + a
            for k in range(n_lanes):
                out[ab, k] = 0.0
            for j in range(a, n):  # (L^-T L^-1)[a, b] = sum_j L^-1[j, a] L^-1[j, b], j >= max(a, b)
                for k in range(n_lanes):
                    out[ab, k] += inverse_low[j, a, k] * inverse_low[j, b, k]
            for k in range(n_lanes):
                out[ba, k] = out[ab, k]


@jit(inline=True)
def _centre_lanes(lanes, means, centred, n_components):
    """``centred[k, d, i] = lanes[d, i] - means[d, k]`` (NaN stays NaN), along the rows."""
    n_features, n_rows = lanes.shape
    for k in range(n_components):
        for d in range(n_features):
            m = means[d, k]
            for i in range(n_rows):
                centred[k, d, i] = lanes[d, i] - m


@jit
def _complete_full(data, lanes, starts, offsets, means, precision, centred, extra, inverses,
                   low, reciprocal, inverse_low, half_log_det, product, missing, diff, rhs, n_components):
    n_features = data.shape[1]
    _centre_lanes(lanes, means, centred, n_components)  # the observed coordinates, along the rows
    for r in range(starts.shape[0] - 1):
        n_missing = _missing_of(data[starts[r]], missing, n_features)
        _factor_lanes(precision, missing, n_missing, low, reciprocal, half_log_det, product, n_components)
        base = offsets[r]
        _inverse_lanes(low, reciprocal, n_missing, inverse_low, inverses, base, n_components)
        for i in range(starts[r], starts[r + 1]):
            # the row centred on every component, 0 where missing
            for d in range(n_features):
                v = data[i, d]
                if np.isnan(v):
                    for k in range(n_components):
                        diff[d, k] = 0.0
                else:
                    for k in range(n_components):
                        diff[d, k] = v - means[d, k]
            # rhs = P[m, :] (x - mu) over the observed coordinates, then E[x_m | x_o] - mu_m = -P_mm^-1 rhs
            for a in range(n_missing):
                ma = missing[a]
                for k in range(n_components):
                    rhs[a, k] = 0.0
                for d in range(n_features):
                    for k in range(n_components):
                        rhs[a, k] += precision[ma, d, k] * diff[d, k]
            for a in range(n_missing):
                ma = missing[a]
                for k in range(n_components):
                    diff[ma, k] = 0.0
                for b in range(n_missing):
                    ab = base + a * n_missing + b
                    for k in range(n_components):
                        diff[ma, k] -= inverses[ab, k] * rhs[b, k]
                for k in range(n_components):
                    centred[k, ma, i] = diff[ma, k]
            for k in range(n_components):
                extra[k, i] = 0.5 * n_missing * _LOG_2PI - half_log_det[k]


class ComponentLanes(NamedTuple):
    """Component parameters with the components on the last axis (see :func:`component_lanes`)."""

    means: np.ndarray  # (n_features, n_components)
    precision: np.ndarray  # (n_features, n_features, n_components)


def component_lanes(means, precision):
    """The means and precisions laid out for :func:`complete_full` (once per set of parameters).

    Parameters
    ----------
    means : ndarray of shape (n_components, n_features)
    precision : ndarray of shape (n_components, n_features, n_features) or (1, n_features, n_features)
        ``P_k = Sigma_k^-1`` (one shared matrix for tied, repeated for every component).

    Returns
    -------
    ComponentLanes
    """
    n_components = means.shape[0]
    lanes = np.moveaxis(np.asarray(precision, dtype=np.float64), 0, -1)
    return ComponentLanes(
        np.ascontiguousarray(np.asarray(means, dtype=np.float64).T),
        np.ascontiguousarray(np.broadcast_to(lanes, lanes.shape[:2] + (n_components,))),
    )


def complete_full(data, lanes, runs, components, centred, extra, inverses):
    """Complete a block of rows with each component's conditional means (full or tied covariances).

    Parameters
    ----------
    data : ndarray of shape (n_rows, n_features), float64, C-contiguous
        Rows with NaN at their missing coordinates.
    lanes : ndarray of shape (n_features, n_rows), float64, C-contiguous
        The same rows transposed.
    runs : PatternRuns
        From :func:`pattern_runs` on ``data``: each run's ``P_mm`` is
        factorised once (sort the rows by pattern to factorise once per
        pattern).
    components : ComponentLanes
        The means ``mu_k`` and precisions ``P_k = Sigma_k^-1``
        (:func:`component_lanes`).
    centred : ndarray of shape (n_components, n_features, n_rows), float64, C-contiguous
        Receives the completed rows centred on each component, as lanes:
        ``x_o - mu_ko`` on the observed coordinates,
        ``-P_k,mm^-1 P_k,mo (x_o - mu_ko)`` (``E[x_m | x_o, k] - mu_km``) on the
        missing ones.
    extra : ndarray of shape (n_components, n_rows), float64, C-contiguous
        Receives ``|m|/2 log(2 pi) - 1/2 log det P_k,mm``: added to the
        complete-row density of the completed row it gives the marginal
        density of the observed coordinates.
    inverses : ndarray of shape (runs.offsets[-1], n_components), float64, C-contiguous
        Receives each run's conditional covariances ``P_k,mm^-1``, for
        :func:`conditional_covariance_full`.
    """
    n_features, n_components = components.means.shape
    square = (n_features, n_features, n_components)
    args = (
        data, lanes, runs.starts, runs.offsets, components.means, components.precision, centred, extra, inverses,
        np.zeros(square), np.zeros((n_features, n_components)), np.zeros(square), np.zeros(n_components),
        np.zeros(n_components), np.empty(n_features, dtype=np.intp), np.empty((n_features, n_components)),
        np.empty((n_features, n_components)), n_components,
    )
    specialized(_complete_full, args, constant=n_components in _FIXED_SIZES)(*args)


@jit
def _complete_diag(lanes, means, centred):
    n_features, n_rows = lanes.shape
    for k in range(means.shape[0]):
        for d in range(n_features):
            m = means[k, d]
            for i in range(n_rows):
                v = lanes[d, i] - m
                centred[k, d, i] = 0.0 if np.isnan(v) else v


def complete_diag(lanes, means, centred):
    """Complete a block of rows for diagonal (or spherical) covariances.

    With independent coordinates the conditional mean of a missing one is
    its mean, so the centred completed row is ``x_d - mu_kd`` where observed
    and an exact 0 where missing.

    Parameters
    ----------
    lanes : ndarray of shape (n_features, n_rows), float64, C-contiguous
        The rows transposed, NaN at their missing coordinates.
    means : ndarray of shape (n_components, n_features), float64
    centred : ndarray of shape (n_components, n_features, n_rows), float64, C-contiguous
        Receives the lanes of the centred completed rows.
    """
    _complete_diag(lanes, means, centred)


@jit
def _conditional_covariance_full(data, starts, offsets, inverses, resp, out, missing, mass, n_components):
    n_features = data.shape[1]
    for r in range(starts.shape[0] - 1):
        n_missing = _missing_of(data[starts[r]], missing, n_features)
        if n_missing == 0:
            continue
        for k in range(n_components):
            total = 0.0
            for i in range(starts[r], starts[r + 1]):
                total += resp[k, i]
            mass[k] = total
        base = offsets[r]
        for a in range(n_missing):
            for b in range(n_missing):
                ab = base + a * n_missing + b
                for k in range(n_components):
                    out[k, missing[a], missing[b]] += mass[k] * inverses[ab, k]


def conditional_covariance_full(data, runs, inverses, resp, out):
    """Add ``sum_i r_ik Cov[x_m | x_o, k]`` (on each row's missing block) to ``out`` (full or tied).

    ``Cov[x_m | x_o, k] = P_k,mm^-1`` does not depend on the observed values:
    the weights of a run are summed, then multiply the run's inverse.

    Parameters
    ----------
    data : ndarray of shape (n_rows, n_features), float64, C-contiguous
        Rows with NaN at their missing coordinates.
    runs : PatternRuns
    inverses : ndarray of shape (runs.offsets[-1], n_components)
        From :func:`complete_full` on the same rows.
    resp : ndarray of shape (n_components, n_rows), float64, C-contiguous
        Weights ``r_ik``.
    out : ndarray of shape (n_components, n_features, n_features), float64
        Updated in place (both triangles).
    """
    n_components = resp.shape[0]
    args = (
        data, runs.starts, runs.offsets, inverses, resp, out, np.empty(data.shape[1], dtype=np.intp),
        np.zeros(n_components), n_components,
    )
    specialized(_conditional_covariance_full, args, constant=n_components in _FIXED_SIZES)(*args)


# --------------------------------------------------------------------------- one pass over a block
@jit
def _row_patterns(X, counts, keys):
    n_rows, n_features = X.shape
    n_infinite = 0
    for i in range(n_rows):
        count = 0
        key = 0
        for d in range(n_features):  # without branches: NaN is v != v; infinity, v - v != 0 for a non-NaN v
            v = X[i, d]
            nan = np.int64(v != v)
            count += nan
            key |= nan << d
            n_infinite += np.int64(v - v != 0.0) - nan
        counts[i] = count
        keys[i] = key
    return n_infinite > 0


def row_patterns(X):
    """Missing count and pattern key of every row, in one pass.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features), float32 or float64, at most 62 features

    Returns
    -------
    counts : ndarray of shape (n_rows,), int
        Missing entries per row.
    keys : ndarray of shape (n_rows,), int64
        ``sum_d 2^d [x_d missing]``: equal keys, equal patterns.
    infinite : bool
        Whether some entry is infinite.
    """
    if X.shape[1] > 62:
        raise ValueError("row_patterns packs a pattern into 62 bits")
    counts = np.empty(X.shape[0], dtype=np.intp)
    keys = np.empty(X.shape[0], dtype=np.int64)
    infinite = _row_patterns(X, counts, keys)
    return counts, keys, bool(infinite)


@jit
def _gather_rows(X, index, rows, lanes):
    for j in range(index.shape[0]):
        i = index[j]
        for d in range(X.shape[1]):
            v = X[i, d]
            rows[j, d] = v
            lanes[d, j] = v


def gather_rows(X, index):
    """``X[index]`` as float64 rows and as lanes (transposed), in one pass.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    index : ndarray of shape (n_rows,), int

    Returns
    -------
    rows : ndarray of shape (n_rows, n_features), float64, C-contiguous
    lanes : ndarray of shape (n_features, n_rows), float64, C-contiguous
    """
    rows = np.empty((index.shape[0], X.shape[1]))
    lanes = np.empty((X.shape[1], index.shape[0]))
    _gather_rows(X, np.ascontiguousarray(index, dtype=np.intp), rows, lanes)
    return rows, lanes


# --------------------------------------------------------------------------- the complete-data kernels, per component
# The completed rows differ by component, so each component's lanes go through the complete-data
# kernels of :mod:`.mixture` on their own, with one set of scratch arrays for the whole chunk.
@jit
def _completed_full_log_density(centred, factors, const, extra, out, zeros, diff, whitened):
    shared = factors.shape[0] == 1
    for k in range(centred.shape[0]):
        f = 0 if shared else k
        _full_log_density(centred[k], zeros, factors[f : f + 1], const[k : k + 1], out[k : k + 1], diff, whitened)
        for i in range(out.shape[1]):
            out[k, i] += extra[k, i]


@jit
def _completed_diag_log_density(centred, scales, extra, out, zeros, zero):
    for k in range(centred.shape[0]):
        _diag_log_density(centred[k], zeros, scales[k : k + 1], zero, out[k : k + 1])
        for i in range(out.shape[1]):
            out[k, i] += extra[k, i]


def completed_log_density(centred, factors, const, extra, out):
    """Log-densities of completed rows: each component's complete-data density of its own completion.

    Parameters
    ----------
    centred : ndarray of shape (n_components, n_features, n_rows), float64, C-contiguous
        From :func:`complete_full` or :func:`complete_diag`.
    factors : ndarray
        ``(K or 1, D, D)`` upper-triangular precision factors (full, tied) or
        ``(K, D)`` scales ``1 / sigma_kd`` (diag, spherical).
    const : ndarray of shape (n_components,)
        ``log det U_k - D/2 log(2 pi)`` (full, tied); not read for diag.
    extra : ndarray of shape (n_components, n_rows)
        The per-row correction to a marginal density (see :func:`complete_full`).
    out : ndarray of shape (n_components, n_rows), float64, C-contiguous
        Receives ``const_k - 1/2 |U_k^T dhat_k|^2 + extra``.
    """
    n_components, n_features, n_rows = centred.shape
    zeros = np.zeros((1, n_features))
    if factors.ndim == 3:
        diff = np.zeros((n_features + 3, n_rows))
        _completed_full_log_density(centred, factors, const, extra, out, zeros, diff, np.empty((4, n_rows)))
    else:
        _completed_diag_log_density(centred, factors, extra, out, zeros, np.zeros(1))


@jit
def _completed_moments(centred, resp, shift, post, first, second, diff, weighted, offset, mean, gap):
    for k in range(centred.shape[0]):
        sl = slice(k, k + 1)
        _moments(centred[k], resp[sl], shift[sl], post[sl], first[sl], second[sl], diff, weighted, offset, mean, gap)


def completed_moments(centred, resp, shift, post, first, second):
    """Merge each component's completed rows' statistics into running ones (see :mod:`.mixture`).

    Parameters
    ----------
    centred : ndarray of shape (n_components, n_features, n_rows), float64, C-contiguous
        Completed rows centred on each component's mean ``mu_k``.
    resp : ndarray of shape (n_components, n_rows), float64, C-contiguous
    shift : ndarray of shape (n_components, n_features), float64
        ``c_k - mu_k``: the statistics are taken about the centre ``c_k``.
    post, first : ndarray of shape (n_components,), (n_components, n_features)
    second : ndarray of shape (n_components, n_features, n_features) or (n_components, n_features)
        Upper triangles of the scatter (full, tied) or its diagonal (diag, spherical).
    """
    n_components, n_features, n_rows = centred.shape
    if second.ndim == 3:
        diff, weighted = np.zeros((n_features + 3, n_rows)), np.zeros((n_features + 1, n_rows))
    else:
        diff = weighted = np.empty((0, 0))
    scratch = (np.empty(n_features) for _ in range(3))
    _completed_moments(centred, resp, shift, post, first, second, diff, weighted, *scratch)
