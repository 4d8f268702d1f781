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
    "ComponentLanes",
    "PatternRuns",
    "complete_diag",
    "complete_full",
    "completed_log_density",
    "completed_moments",
    "component_lanes",
    "conditional_covariance_full",
    "factor_runs",
    "gather_rows",
    "pattern_runs",
    "row_patterns",
]

_LOG_2PI = float(np.log(2.0 * np.pi))
_FIXED_SIZES = range(1, 9)  # component counts compiled with constant loop bounds (unrolled loops)
_FACTOR_ELEMENTS = 1 << 16  # scratch elements of one batch of factorisations (c * c * lanes)


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


# The factorisations: every run's P_mm, for every component, is a small Cholesky factorisation and
# inversion. Done one at a time they cost a dependent chain of divisions and square roots and a few
# loops of variable length each; here all runs with the same number c of missing coordinates are done
# together, one *lane* per (run, component), so every innermost loop runs over many independent lanes
# and vectorises. Arrays are indexed in full inside the loops (a view taken in a loop costs numba two
# atomic reference-count updates).
@jit
def _run_missing(data, starts, run_missing, run_count):
    """Each run's missing coordinates (``run_missing[r, :run_count[r]]``), read from its first row."""
    n_features = data.shape[1]
    for r in range(starts.shape[0] - 1):
        i = starts[r]
        count = 0
        for d in range(n_features):
            if np.isnan(data[i, d]):
                run_missing[r, count] = d
                count += 1
        run_count[r] = count


@jit(inline=True)
def _factor_group(runs, n_missing, run_missing, offsets, precision, inverses, product, log_part, low, reciprocal,
                  inverse_low, acc, folded, n_components):
    """Factorise and invert ``P_k[m, m]`` for runs that all have ``n_missing`` missing coordinates.

    Lane ``l = q * n_components + k`` is run ``runs[q]`` and component ``k``. Writes the inverses
    into ``inverses`` (each run's block of rows, see :class:`PatternRuns`), and the pivots'
    product into ``product[r, k]`` and ``log_part[r, k]`` (``log det P_k[m, m] / 2 =
    log_part + log(product)``; the product is folded into ``log_part`` whenever it leaves
    [1e-150, 1e150]).
    """
    c = n_missing
    n_lanes = runs.shape[0] * n_components
    for q in range(runs.shape[0]):
        r = runs[q]
        for a in range(c):
            ma = run_missing[r, a]
            for b in range(a + 1):
                mb = run_missing[r, b]
                for k in range(n_components):
                    low[a, b, q * n_components + k] = precision[ma, mb, k]
    for lane in range(n_lanes):
        acc[lane] = 1.0  # the product of the pivots, lane by lane
        folded[lane] = 0.0  # the log folded out of it
    # Cholesky, lower: low[a, b] for b < a; low[a, a] keeps the pivot's square, reciprocal[a] 1 / pivot
    for a in range(c):
        for b in range(a + 1):
            for j in range(b):
                for lane in range(n_lanes):
                    low[a, b, lane] -= low[a, j, lane] * low[b, j, lane]
            if a == b:
                for lane in range(n_lanes):
                    s = low[a, a, lane]
                    pivot = np.sqrt(s) if s > 0.0 else np.nan  # not positive definite: NaN everywhere after
                    reciprocal[a, lane] = 1.0 / pivot
                    acc[lane] *= pivot
            else:
                for lane in range(n_lanes):
                    low[a, b, lane] *= reciprocal[b, lane]
        for lane in range(n_lanes):
            p = acc[lane]
            if not 1e-150 < p < 1e150:  # rare: fold into the log before the product leaves the range
                folded[lane] += np.log(p)
                acc[lane] = 1.0
    for q in range(runs.shape[0]):
        for k in range(n_components):
            product[runs[q], k] = acc[q * n_components + k]
            log_part[runs[q], k] = folded[q * n_components + k]
    # L^-1, lower
    for b in range(c):
        for lane in range(n_lanes):
            inverse_low[b, b, lane] = reciprocal[b, lane]
        for a in range(b + 1, c):
            for lane in range(n_lanes):
                inverse_low[a, b, lane] = 0.0
            for j in range(b, a):
                for lane in range(n_lanes):
                    inverse_low[a, b, lane] += low[a, j, lane] * inverse_low[j, b, lane]
            for lane in range(n_lanes):
                inverse_low[a, b, lane] *= -reciprocal[a, lane]
    # P_mm^-1 = L^-T L^-1: entry (a, b) = sum_j L^-1[j, a] L^-1[j, b] over j >= max(a, b)
    for a in range(c):
        for b in range(a + 1):
            for lane in range(n_lanes):
                acc[lane] = 0.0
            for j in range(a, c):
                for lane in range(n_lanes):
                    acc[lane] += inverse_low[j, a, lane] * inverse_low[j, b, lane]
            for q in range(runs.shape[0]):
                base = offsets[runs[q]]
                for k in range(n_components):
                    value = acc[q * n_components + k]
                    inverses[base + a * c + b, k] = value
                    inverses[base + b * c + a, k] = value


@jit
def _factor_runs(order, run_count, run_missing, offsets, precision, inverses, product, log_part, scratch,
                 n_components):
    """All runs' factorisations, the runs taken in ``order`` (by number of missing coordinates) in
    batches of one count and at most ``scratch.shape[0]`` elements of ``c x c`` lane blocks."""
    size = scratch.shape[1]
    start = 0
    while start < order.shape[0]:
        c = run_count[order[start]]
        per_run = max(1, c * c * n_components)
        n_batch = max(1, size // per_run)
        stop = start
        while stop < order.shape[0] and stop - start < n_batch and run_count[order[stop]] == c:
            stop += 1
        if c > 0:
            runs = order[start:stop]
            n_lanes = runs.shape[0] * n_components
            low = scratch[0, : c * c * n_lanes].reshape((c, c, n_lanes))
            inverse_low = scratch[1, : c * c * n_lanes].reshape((c, c, n_lanes))
            reciprocal = scratch[2, : c * n_lanes].reshape((c, n_lanes))
            _factor_group(runs, c, run_missing, offsets, precision, inverses, product, log_part, low, reciprocal,
                          inverse_low, scratch[3, :n_lanes], scratch[4, :n_lanes], n_components)
        start = stop


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
def _complete_full(data, lanes, starts, offsets, means, precision, centred, extra, inverses, half_log_det,
                   run_missing, run_count, diff, rhs, n_components):
    n_features = data.shape[1]
    _centre_lanes(lanes, means, centred, n_components)  # the observed coordinates, along the rows
    for r in range(starts.shape[0] - 1):
        n_missing = run_count[r]
        base = offsets[r]
        for i in range(starts[r], starts[r + 1]):
            # the row centred on every component, 0 where missing
            for d in range(n_features):  # without a branch on the (unpredictable) missing entries
                v = data[i, d]
                seen = not np.isnan(v)
                weight = 1.0 if seen else 0.0
                v = v if seen else 0.0
                for k in range(n_components):
                    diff[d, k] = (v - means[d, k]) * weight
            # rhs = P[m, :] (x - mu) over the observed coordinates, then E[x_m | x_o] - mu_m = -P_mm^-1 rhs
            for a in range(n_missing):
                ma = run_missing[r, a]
                for k in range(n_components):
                    rhs[a, k] = 0.0
                for d in range(n_features):
                    for k in range(n_components):
                        rhs[a, k] += precision[ma, d, k] * diff[d, k]
            for a in range(n_missing):
                ma = run_missing[r, a]
                for k in range(n_components):
                    diff[ma, k] = 0.0
                for b in range(n_missing):
                    ab = base + a * n_missing + b
                    for k in range(n_components):
                        diff[ma, k] -= inverses[ab, k] * rhs[b, k]
                for k in range(n_components):
                    centred[k, ma, i] = diff[ma, k]
            for k in range(n_components):
                extra[k, i] = 0.5 * n_missing * _LOG_2PI - half_log_det[r, k]


def factor_runs(runs, precision, run_missing, run_count, inverses):
    """Every run's ``P_k,mm^-1`` (into ``inverses``) and ``log det P_k,mm / 2``, one compiled call.

    Parameters
    ----------
    runs : PatternRuns
    precision : ndarray of shape (n_features, n_features, n_components)
        Component lanes (:func:`component_lanes`).
    run_missing, run_count : ndarray of shape (n_runs, n_features), (n_runs,)
    inverses : ndarray of shape (runs.offsets[-1], n_components)
        Receives the inverses.

    Returns
    -------
    half_log_det : ndarray of shape (n_runs, n_components)
    """
    n_components = precision.shape[2]
    n_runs = run_count.shape[0]
    order = np.argsort(run_count.astype(np.uint8) if precision.shape[0] < 256 else run_count, kind="stable")
    product, log_part = np.ones((n_runs, n_components)), np.zeros((n_runs, n_components))
    scratch = np.empty((5, max(_FACTOR_ELEMENTS, int(run_count.max(initial=0)) ** 2 * n_components)))
    args = (order, run_count, run_missing, runs.offsets, precision, inverses, product, log_part, scratch, n_components)
    specialized(_factor_runs, args, constant=n_components in _FIXED_SIZES)(*args)
    return log_part + np.log(product)


class ComponentLanes(NamedTuple):
    """Component parameters with the components on the last axis (see :func:`component_lanes`)."""

    means: np.ndarray  # (n_features, n_components)
    precision: np.ndarray  # (n_features, n_features, n_components)
    shared: bool = False  # one precision for every component (tied): each run is factorised once, not K times


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
        lanes.shape[2] == 1 and n_components > 1,
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

    Returns
    -------
    run_missing : ndarray of shape (n_runs, n_features), int
        Run ``r``'s missing coordinates are ``run_missing[r, :run_count[r]]``.
    run_count : ndarray of shape (n_runs,), int
    """
    n_features, n_components = components.means.shape
    n_runs = runs.starts.shape[0] - 1
    run_missing = np.empty((n_runs, n_features), dtype=np.intp)
    run_count = np.empty(n_runs, dtype=np.intp)
    _run_missing(data, runs.starts, run_missing, run_count)
    if components.shared:  # tied: the same P_mm^-1 for every component, factorised once (the same arithmetic)
        single = np.empty((inverses.shape[0], 1))
        precision = np.ascontiguousarray(components.precision[:, :, :1])
        half_log_det = np.repeat(factor_runs(runs, precision, run_missing, run_count, single), n_components, axis=1)
        inverses[...] = single
    else:
        half_log_det = factor_runs(runs, components.precision, run_missing, run_count, inverses)
    args = (
        data, lanes, runs.starts, runs.offsets, components.means, components.precision, centred, extra, inverses,
        half_log_det, run_missing, run_count, np.empty((n_features, n_components)),
        np.empty((n_features, n_components)), n_components,
    )
    specialized(_complete_full, args, constant=n_components in _FIXED_SIZES)(*args)
    return run_missing, run_count


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
def _conditional_covariance_full(starts, offsets, run_missing, run_count, inverses, resp, out, mass, n_components):
    for r in range(starts.shape[0] - 1):
        n_missing = run_count[r]
        if n_missing == 0:
            continue
        for k in range(n_components):
            total = 0.0
            for i in range(starts[r], starts[r + 1]):
                total += resp[k, i]
            mass[k] = total
        base = offsets[r]
        for a in range(n_missing):
            ma = run_missing[r, a]
            for b in range(n_missing):
                mb = run_missing[r, b]
                ab = base + a * n_missing + b
                for k in range(n_components):
                    out[k, ma, mb] += mass[k] * inverses[ab, k]


def conditional_covariance_full(runs, run_missing, run_count, inverses, resp, out):
    """Add ``sum_i r_ik Cov[x_m | x_o, k]`` (on each row's missing block) to ``out`` (full or tied).

    ``Cov[x_m | x_o, k] = P_k,mm^-1`` does not depend on the observed values:
    the weights of a run are summed, then multiply the run's inverse.

    Parameters
    ----------
    runs : PatternRuns
    run_missing, run_count : ndarray of shape (n_runs, n_features), (n_runs,)
        Each run's missing coordinates and their number, as returned by
        :func:`complete_full`.
    inverses : ndarray of shape (runs.offsets[-1], n_components)
        From :func:`complete_full` on the same rows.
    resp : ndarray of shape (n_components, n_rows), float64, C-contiguous
        Weights ``r_ik``.
    out : ndarray of shape (n_components, n_features, n_features), float64
        Updated in place (both triangles).
    """
    n_components = resp.shape[0]
    args = (
        runs.starts, runs.offsets, run_missing, run_count, inverses, resp, out, np.zeros(n_components), n_components,
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
        for d in range(n_features):  # without branches (infinity: v - v != 0 for a v that is not NaN)
            v = X[i, d]
            nan = np.int64(np.isnan(v))
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
    n_features, n_rows = centred.shape[1:]
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
    n_features, n_rows = centred.shape[1:]
    if second.ndim == 3:
        diff, weighted = np.zeros((n_features + 3, n_rows)), np.zeros((n_features + 1, n_rows))
    else:
        diff = weighted = np.empty((0, 0))
    scratch = (np.empty(n_features) for _ in range(3))
    _completed_moments(centred, resp, shift, post, first, second, diff, weighted, *scratch)
