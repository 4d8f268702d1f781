r"""Gaussian components with missing values (NaN), marginalised exactly.

A NaN in a row means that coordinate was not observed. Each row's density
uses its observed coordinates ``o`` only, and the M-step uses the expected
statistics of the complete data given the observed part (Ghahramani and
Jordan, 1994), so that :func:`emkit._densities.gaussian.m_step` on them is
the exact EM update.

For component ``k`` (mean ``mu``, covariance ``Sigma``, precision
``P = Sigma^-1 = U U^T``) and a row with missing coordinates ``m``:

.. math::

    \log p(x_o \mid k) = \log N(x_o \mid \mu_o, \Sigma_{oo})

    E[x_m \mid x_o, k] = \mu_m + \Sigma_{mo}\Sigma_{oo}^{-1}(x_o - \mu_o)
                       = \mu_m - P_{mm}^{-1} P_{mo} (x_o - \mu_o)

    \operatorname{Cov}[x_m \mid x_o, k] = \Sigma_{mm} - \Sigma_{mo}\Sigma_{oo}^{-1}\Sigma_{om} = P_{mm}^{-1}

Everything is computed on the precision side, which factorises only the
(usually small) missing block ``P_mm`` and never subtracts one covariance
from another. With ``xhat`` the row completed by its conditional mean,
``log det Sigma_oo = log det Sigma + log det P_mm`` and the Mahalanobis
distance of the observed part is ``|U^T (xhat - mu)|^2``, a sum of squares
evaluated by the complete-data lane kernels on the completed rows, each
centred on its component first: exact at any offset and separation, as
:mod:`emkit._densities.gaussian` is. For diag and spherical covariances the
coordinates are independent: the conditional mean of a missing coordinate is
its mean, its conditional variance its variance.

The statistics (:class:`~emkit._densities.gaussian.GaussianStats`, about a
centre ``c_k``) of a row with missing coordinates are those of the completed
row plus the conditional covariance:

.. math::

    E[(x - c)(x - c)^T \mid x_o, k] = (\hat x - c)(\hat x - c)^T
        + \begin{pmatrix} 0 & 0 \\ 0 & P_{mm}^{-1} \end{pmatrix}

(its diagonal for diag and spherical; tied shares one ``P``). They depend on
the current means *and* covariances, not only on the responsibilities: an
E-step must use the parameters whose objective it reports.

A row with nothing observed has density 1 under every component (log 0):
it carries no information about any parameter, so it contributes nothing to
the statistics (not even to ``post``). A mixture then falls back on its
weights for that row's posterior and an HMM on its transitions; means,
covariances and mixing weights are updated exactly as if the row were not
there, which is exact EM for the observed data (the row is marginalised,
not imputed; imputing it as well would only drag every update towards the
current parameters).

Complete rows go through :mod:`emkit._densities.gaussian` unchanged.
Incomplete rows are processed in chunks, optionally sorted by missing
pattern so that each pattern's ``P_mm`` is factorised once (see
:func:`group_by_pattern`).

A call with at most ``NUMPY_MAX_ROWS`` incomplete rows (the threshold of
:mod:`emkit._inference.mixture`) completes them with numpy instead, grouped
by their number of missing coordinates (batched ``np.linalg`` on the
``P_mm`` blocks), and reads the patterns of up to ``_NUMPY_PATTERN_ROWS``
rows with numpy too: a first fit on a small data set with gaps then does not
wait seconds for the compilation of the kernels below. Both paths compute
the same quantities the same way (centred rows, the precision side, the
scatter about each component's weighted mean) and agree to round-off.

An HMM needs a block's densities (for the forward-backward pass) before its
statistics, under the same parameters: :func:`log_likelihood` with
``keep=True`` returns the completed chunks as a :class:`Completion`, and
:func:`accumulate` takes it back instead of sorting, gathering, factorising
and completing the rows a second time (a mixture's :func:`mixture_block`
does both in one pass and needs none of this).
"""

from typing import NamedTuple

import numpy as np

from .._inference import missing as missing_kernels
from .._inference import mixture as kernels
from . import gaussian

__all__ = [
    "Completion",
    "Layout",
    "MissingPatterns",
    "accumulate",
    "conditional_mean",
    "group_by_pattern",
    "layout",
    "log_likelihood",
    "missing_patterns",
    "mixture_block",
    "pattern_order",
]

_LOG_2PI = np.log(2.0 * np.pi)
# Elements of the completed rows of one chunk, (n_components, n_features, rows) (~512 kB of float64).
_CHUNK_ELEMENTS = 1 << 16
_MIN_CHUNK_ROWS = 64
_MAX_CHUNK_ROWS = 4096
_NUMPY_PATTERN_ROWS = 10_000  # blocks of at most this many rows read their patterns with numpy
_KEEP_BYTES = 1 << 28  # a Completion larger than this is not kept (accumulate then completes the rows again)
_INFINITE = "X contains infinity; only NaN (a missing value) is allowed besides finite values."


class MissingPatterns(NamedTuple):
    """The missing patterns of a block of rows (see :func:`missing_patterns`).

    Attributes
    ----------
    missing : ndarray of shape (n_samples, n_features), bool
        ``isnan(X)``.
    patterns : ndarray of shape (n_patterns, n_features), bool
        The distinct rows of ``missing``, in a fixed order (sorted by their
        bits).
    inverse : ndarray of shape (n_samples,), int
        ``patterns[inverse[n]]`` is row ``n``'s pattern.
    """

    missing: np.ndarray
    patterns: np.ndarray
    inverse: np.ndarray


def _pattern_keys(missing):
    """One integer per row such that two rows have the same key iff they have the same pattern."""
    n_features = missing.shape[1]
    if n_features <= 63:
        bits = np.left_shift(np.int64(1), np.arange(n_features, dtype=np.int64))
        return missing.astype(np.int64) @ bits
    packed = np.packbits(missing, axis=1)
    return np.unique(packed, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)


def missing_patterns(X):
    """Group the rows of a block by missing pattern.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        NaN marks a missing entry.

    Returns
    -------
    MissingPatterns
        ``(missing, patterns, inverse)``: the NaN mask, its distinct rows and
        each row's index into them.
    """
    missing = np.isnan(np.asarray(X))
    keys = _pattern_keys(missing)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return MissingPatterns(missing, missing[first], inverse.reshape(-1))


def pattern_order(X):
    """A permutation of the rows that sorts them by missing pattern (complete rows first).

    A mixture's rows are exchangeable: a caller that permutes its data once
    (at validation) with this order gives every block long runs of one
    pattern, so each pattern's ``P_mm`` is factorised once per block instead
    of once per short run. Sequences must not be reordered.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        NaN marks a missing entry.

    Returns
    -------
    order : ndarray of shape (n_samples,), int
        Stable: rows with one pattern keep their relative order.
    """
    X = np.asarray(X)
    return np.argsort(_sortable_keys(X), kind="stable")


def _row_patterns(X):
    """``(counts, keys, infinite)`` of :func:`emkit._inference.missing.row_patterns`; numpy for small blocks."""
    if X.shape[0] <= _NUMPY_PATTERN_ROWS:
        missing = np.isnan(X)
        return missing.sum(axis=1), _pattern_keys(missing), bool(np.isinf(X).any())
    return missing_kernels.row_patterns(X)


def _sortable_keys(X):
    """Pattern keys of the rows of ``X``, as 16-bit integers when they fit (numpy then sorts by radix)."""
    if X.shape[1] > 62:
        return _pattern_keys(np.isnan(X))
    keys = _row_patterns(X)[1]
    return keys.astype(np.uint16) if X.shape[1] <= 16 else keys


def group_by_pattern(covariance_type):
    """Whether the incomplete rows of a block are sorted by missing pattern before they are processed.

    The kernels factorise each component's ``P_mm`` (and invert it) once per
    run of consecutive rows with one pattern; sorting makes each pattern of
    a block one run, at the price of a sort (a radix sort up to 16 features)
    and a gather of the rows. Measured (``benchmarks/bench_missing.py``, 20%
    of entries missing at random, n = 100,000, K = 3 and 8), the sort pays
    for full and tied covariances at every D measured (2, 8, 16): at D = 8
    an EM iteration takes 2.4-2.8x the complete-data one sorted, 4-5x
    unsorted; at D = 16, where most rows of a block have a pattern of their
    own, it is about even. Diagonal and spherical covariances factorise
    nothing and are never sorted.

    Parameters
    ----------
    covariance_type : {"full", "tied", "diag", "spherical"}

    Returns
    -------
    bool
    """
    return covariance_type in ("full", "tied")


# --------------------------------------------------------------------------- checks and setup
def _check_block(X, means, prec_chol, covariance_type):
    X = np.asarray(X)
    means = np.asarray(means)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}.")
    if means.ndim != 2 or means.shape[1] != X.shape[1]:
        raise ValueError(f"means must have shape (n_components, {X.shape[1]}), got {means.shape}.")
    if covariance_type not in gaussian.COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {gaussian.COVARIANCE_TYPES}, got {covariance_type!r}.")
    expected = gaussian.parameter_shapes("precisions", covariance_type, *means.shape)[0]
    if np.shape(prec_chol) != expected:
        raise ValueError(
            f"prec_chol for covariance_type={covariance_type!r} must have shape {expected}, got {np.shape(prec_chol)}."
        )
    return X, means


class _Prepared(NamedTuple):
    """Per-call constants (see :func:`_prepare`)."""

    full: bool  # full or tied (else diag or spherical)
    means: np.ndarray  # (K, D) float64
    factor: np.ndarray  # (K or 1, D, D) upper U with U U^T = P (full, tied); (K, D) 1/sigma (diag, spherical)
    precision: np.ndarray  # (K or 1, D, D) U U^T (full, tied)
    const: np.ndarray  # (K,) log det U - D/2 log(2 pi) (full, tied)
    log_scales: np.ndarray  # (K, D) log(1/sigma_kd) - 1/2 log(2 pi) (diag, spherical)
    variances: np.ndarray  # (K, D) (diag, spherical)
    lanes: missing_kernels.ComponentLanes  # means and precisions, components last (full, tied)
    grouped: bool  # sort incomplete rows by pattern
    rows: int  # rows per chunk


def _grouped(covariance_type, group=None):
    """Whether incomplete rows are sorted by pattern (the caller's ``group``, else by type)."""
    return covariance_type in ("full", "tied") and (group_by_pattern(covariance_type) if group is None else bool(group))


def _prepare(means, prec_chol, covariance_type, group=None):
    means64 = np.ascontiguousarray(means, dtype=np.float64)
    n_components, n_features = means64.shape
    prec_chol = np.asarray(prec_chol, dtype=np.float64)
    full = covariance_type in ("full", "tied")
    factor = precision = const = log_scales = variances = lanes = None
    if full:
        factor = np.ascontiguousarray(np.triu(prec_chol[np.newaxis] if covariance_type == "tied" else prec_chol))
        precision = np.ascontiguousarray(np.matmul(factor, np.swapaxes(factor, 1, 2)))
        const = np.sum(np.log(np.diagonal(factor, axis1=1, axis2=2)), axis=1) - 0.5 * n_features * _LOG_2PI
        const = np.ascontiguousarray(np.broadcast_to(const, (n_components,)))
        lanes = missing_kernels.component_lanes(means64, precision)
    else:
        scales = prec_chol if covariance_type == "diag" else np.repeat(prec_chol[:, np.newaxis], n_features, axis=1)
        factor = np.ascontiguousarray(scales)
        log_scales = np.log(factor) - 0.5 * _LOG_2PI
        variances = 1.0 / factor**2
    return _Prepared(full, means64, factor, precision, const, log_scales, variances, lanes,
                     _grouped(covariance_type, group), _chunk_rows(n_components, n_features))


def _chunk_rows(n_components, n_features):
    """Incomplete rows per chunk: its K completed copies take about ``_CHUNK_ELEMENTS`` floats."""
    rows = _CHUNK_ELEMENTS // (n_components * (n_features + 2))
    return int(min(_MAX_CHUNK_ROWS, max(_MIN_CHUNK_ROWS, rows)))


class _Rows(NamedTuple):
    """A block's rows by kind (see :func:`_split`)."""

    complete: np.ndarray  # (n,) bool
    partial: np.ndarray  # indices of rows with something missing and something observed, in processing order
    empty: np.ndarray  # indices of rows with nothing observed
    keys: np.ndarray  # pattern keys of the partial rows (in their order), or None
    counts: np.ndarray  # missing counts of the partial rows, or None


def _split(X, grouped, with_empty=False):
    """The rows of a block by kind (``with_empty``: rows with nothing observed count as partial); a
    ValueError if some entry is infinite."""
    n_samples, n_features = X.shape
    if np.isfinite(X).all():  # one vectorised pass settles the usual case: no NaN
        nothing = np.empty(0, dtype=np.intp)
        return _Rows(np.ones(n_samples, dtype=bool), nothing, nothing, nothing, nothing)
    if n_features <= 62:
        counts, keys, infinite = _row_patterns(X)
    else:
        counts, keys, infinite = np.isnan(X).sum(axis=1), None, bool(np.isinf(X).any())
    if infinite:
        raise ValueError(_INFINITE)
    partial = np.flatnonzero((counts > 0) & ((counts < n_features) | with_empty))
    if keys is not None:
        keys = keys[partial]
        if grouped and partial.size > 1:
            # by pattern, the patterns by number of missing coordinates (runs of one length follow each
            # other: the loops over them repeat their lengths); stable radix sorts up to 16 features
            order = np.argsort(keys.astype(np.uint16) if n_features <= 16 else keys, kind="stable")
            order = order[np.argsort(counts[partial[order]].astype(np.uint8), kind="stable")]
            partial, keys = partial[order], keys[order]
    elif grouped and partial.size > 1:
        partial = partial[np.argsort(_pattern_keys(np.isnan(X[partial])), kind="stable")]
    return _Rows(counts == 0, partial, np.flatnonzero(counts == n_features), keys,
                 None if keys is None else counts[partial])


# --------------------------------------------------------------------------- one chunk of incomplete rows
class _Chunk(NamedTuple):
    """A chunk of a block's incomplete rows (see :func:`_chunks`)."""

    index: np.ndarray  # the rows' indices in the block
    rows: np.ndarray  # (n, D) float64
    lanes: np.ndarray  # (D, n) float64: the rows transposed
    keys: np.ndarray  # pattern keys, or None
    counts: np.ndarray  # missing counts, or None


def _chunks(X, split, rows):
    """The incomplete rows of a block (``split`` from :func:`_split`), ``rows`` at a time."""
    index = split.partial
    for start in range(0, index.size, rows):
        part = slice(start, start + rows)
        keys = None if split.keys is None else split.keys[part]
        counts = None if split.counts is None else split.counts[part]
        yield _Chunk(index[part], *missing_kernels.gather_rows(X, index[part]), keys, counts)


class _Completed(NamedTuple):
    """A chunk of incomplete rows completed by each component (see :func:`_complete_chunk`)."""

    centred: np.ndarray  # (K, D, rows): E[x | x_o, k] - mu_k, as lanes
    extra: np.ndarray  # (K, rows): log N(x_o | ...) minus the complete-row density of the completed row
    runs: missing_kernels.PatternRuns  # full and tied: runs of one pattern
    run_missing: np.ndarray  # full and tied: each run's missing coordinates (n_runs, D) ...
    run_count: np.ndarray  # ... and their number (n_runs,)
    inverses: np.ndarray  # full and tied: each run's P_k,mm^-1
    holes: np.ndarray  # diag and spherical: (D, rows), 1.0 where missing


def _complete_chunk(prep, chunk):
    n_components, n_features = prep.means.shape
    n_rows = chunk.index.size
    centred = np.empty((n_components, n_features, n_rows))
    if prep.full:
        runs = missing_kernels.pattern_runs(chunk.rows, chunk.keys, chunk.counts)
        extra = np.empty((n_components, n_rows))
        inverses = np.empty((runs.offsets[-1], n_components))
        run_missing, run_count = missing_kernels.complete_full(
            chunk.rows, chunk.lanes, runs, prep.lanes, centred, extra, inverses
        )
        return _Completed(centred, extra, runs, run_missing, run_count, inverses, None)
    missing_kernels.complete_diag(chunk.lanes, prep.means, centred)
    holes = np.isnan(chunk.lanes).astype(np.float64)  # (D, rows): 1 where missing
    extra = prep.log_scales @ (1.0 - holes)  # sums over the observed coordinates
    return _Completed(centred, extra, None, None, None, None, holes)


def _chunk_log_density(prep, chunk, out):
    """``log N(x_o | mu_ko, Sigma_k,oo)`` of a chunk into ``out`` (K, rows); returns the completed rows."""
    completed = _complete_chunk(prep, chunk)
    missing_kernels.completed_log_density(completed.centred, prep.factor, prep.const, completed.extra, out)
    return completed


class _Running(NamedTuple):
    """Running statistics of incomplete rows (updated in place)."""

    post: np.ndarray
    first: np.ndarray
    second: np.ndarray  # scatter of the completed rows (upper triangle for full and tied)
    conditional: np.ndarray  # summed conditional covariances


def _empty_running(prep):
    n_components, n_features = prep.means.shape
    shape = (n_components, n_features, n_features) if prep.full else (n_components, n_features)
    return _Running(np.zeros(n_components), np.zeros((n_components, n_features)), np.zeros(shape), np.zeros(shape))


def _chunk_moments(prep, completed, resp, shift, running):
    """Merge a chunk's completed-row moments and conditional covariances into ``running``.

    ``shift`` (K, D) is ``c_k - mu_k``: the centred rows minus it are the rows minus the centre.
    """
    missing_kernels.completed_moments(completed.centred, resp, shift, running.post, running.first, running.second)
    if prep.full:
        missing_kernels.conditional_covariance_full(
            completed.runs, completed.run_missing, completed.run_count, completed.inverses, resp, running.conditional
        )
    else:
        running.conditional[...] += (resp @ completed.holes.T) * prep.variances


def _finish(prep, running):
    second = running.second
    if prep.full:  # mirror the upper triangles
        rows, cols = np.triu_indices(second.shape[1], 1)
        second[:, cols, rows] = second[:, rows, cols]
    return gaussian.GaussianStats(running.post, running.first, second + running.conditional)


# --------------------------------------------------------------------------- few incomplete rows: numpy
def _numpy_path(split):
    """Whether a call's incomplete rows are few enough for :func:`_numpy_complete` (no compiled kernels)."""
    return split.partial.size <= kernels.NUMPY_MAX_ROWS


class _NumpyCompleted(NamedTuple):
    """Incomplete rows completed in numpy (see :func:`_numpy_complete`)."""

    centred: np.ndarray  # (K, n, D): x_o - mu_ko on o, E[x_m | x_o, k] - mu_km on m
    extra: np.ndarray  # (K, n): as _Completed.extra
    groups: list  # full and tied: (rows, missing coordinates (n_g, c), P_k,mm^-1 (K, n_g, c, c)) per count c
    holes: np.ndarray  # (n, D) bool: the missing coordinates


def _numpy_complete(prep, rows):
    """:func:`_complete_chunk` in numpy for ``rows`` (n, D), float64, each with something missing and observed."""
    n_components = prep.means.shape[0]
    holes = np.isnan(rows)
    centred = rows[np.newaxis] - prep.means[:, np.newaxis]
    centred[:, holes] = 0.0
    if not prep.full:
        return _NumpyCompleted(centred, prep.log_scales @ (~holes).T, None, holes)
    n_features = rows.shape[1]
    precision = np.broadcast_to(prep.precision, (n_components, n_features, n_features))
    counts = holes.sum(axis=1)
    extra = np.empty((n_components, rows.shape[0]))
    groups = []
    for count in np.unique(counts):
        index = np.flatnonzero(counts == count)
        missing = np.nonzero(holes[index])[1].reshape(index.size, count)  # each row's, in increasing order
        p_mm = precision[:, missing[:, :, np.newaxis], missing[:, np.newaxis, :]]  # (K, n_g, c, c)
        # rhs = P_k[m, :] (x - mu_k) with 0 at the missing coordinates; E[x_m | x_o] - mu_m = -P_mm^-1 rhs
        rhs = np.einsum("kgad,kgd->kga", precision[:, missing, :], centred[:, index])
        low = np.linalg.cholesky(p_mm)
        inverse = np.linalg.inv(p_mm)
        centred[:, index[:, np.newaxis], missing] = -np.einsum("kgab,kgb->kga", inverse, rhs)
        half_log_det = np.sum(np.log(np.diagonal(low, axis1=2, axis2=3)), axis=2)
        extra[:, index] = 0.5 * count * _LOG_2PI - half_log_det
        groups.append((index, missing, inverse))
    return _NumpyCompleted(centred, extra, groups, holes)


def _numpy_log_density(prep, completed):
    """``log N(x_o | mu_ko, Sigma_k,oo)`` (K, n) of rows completed by :func:`_numpy_complete`."""
    if prep.full:
        factor = np.broadcast_to(prep.factor, (prep.means.shape[0],) + prep.factor.shape[1:])
        white = np.einsum("kij,kni->knj", factor, completed.centred)  # U^T (xhat - mu): |.|^2 = the quadratic form
        return prep.const[:, np.newaxis] + completed.extra - 0.5 * np.sum(white**2, axis=2)
    return completed.extra - 0.5 * np.sum((completed.centred * prep.factor[:, np.newaxis]) ** 2, axis=2)


def _numpy_moments(prep, completed, resp, shift):
    """GaussianStats of rows completed by :func:`_numpy_complete`, weighted by ``resp`` (n, K).

    About ``c_k = mu_k + shift_k``: the completed rows' weighted mean, the scatter about it (two passes),
    plus the summed conditional covariances of the missing coordinates.
    """
    centred = completed.centred
    post = np.sum(resp, axis=0)
    weighted = np.einsum("nk,knd->kd", resp, centred)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(post[:, np.newaxis] > 0.0, weighted / post[:, np.newaxis], 0.0)
    deviation = centred - mean[:, np.newaxis]
    first = weighted - post[:, np.newaxis] * shift
    if prep.full:
        second = np.einsum("nk,kni,knj->kij", resp, deviation, deviation)
        for index, missing, inverse in completed.groups:
            values = resp[index].T[:, :, np.newaxis, np.newaxis] * inverse  # (K, n_g, c, c)
            component = np.arange(resp.shape[1])[:, np.newaxis, np.newaxis, np.newaxis]
            np.add.at(second, (component, missing[np.newaxis, :, :, np.newaxis], missing[np.newaxis, :, np.newaxis, :]),
                      values)
    else:
        second = np.einsum("nk,knd->kd", resp, deviation**2) + (resp.T @ completed.holes) * prep.variances
    return gaussian.GaussianStats(post, first, second)


class Completion(NamedTuple):
    """A block's incomplete rows completed under one set of parameters (``log_likelihood(..., keep=True)``).

    :func:`accumulate` takes it back for the same rows and parameters, and
    skips the work :func:`log_likelihood` did: the sort by pattern, the
    gathers, the factorisations of ``P_mm`` and the conditional means.
    """

    split: _Rows
    prep: _Prepared
    chunks: list  # of (row indices, _Completed), in processing order


class Layout(NamedTuple):
    """Where a block's entries are missing, and its incomplete rows gathered (see :func:`layout`)."""

    n_samples: int
    grouped: bool
    split: _Rows
    rows: int  # the chunk size of ``chunks``
    chunks: tuple  # of _Chunk: the incomplete rows gathered chunk by chunk; None on the numpy path or beyond
    # _KEEP_BYTES (they are then gathered at every call)


def layout(X, n_components, covariance_type, *, group=None):
    """What :func:`log_likelihood` and :func:`accumulate` find out about a block before any arithmetic.

    Which rows are complete, which incomplete (sorted by pattern where that is
    the rule) and those rows gathered: none of it depends on the parameters, so
    a fit makes it once per block and hands it to every E-step (``layout=``)
    instead of finding it again (a fifth to a third of an HMM E-step on data
    with gaps at 8 to 16 features).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    n_components : int
    covariance_type : {"full", "tied", "diag", "spherical"}
    group : bool, optional
        As for :func:`log_likelihood` (the calls that take the layout must
        pass the same).

    Returns
    -------
    Layout
    """
    X = np.asarray(X)
    grouped = _grouped(covariance_type, group)
    split = _split(X, grouped)
    rows = _chunk_rows(n_components, X.shape[1])
    chunks = None
    gathered_bytes = 2 * 8 * split.partial.size * X.shape[1]  # the rows and their lanes
    if split.partial.size and not _numpy_path(split) and gathered_bytes <= _KEEP_BYTES:
        chunks = tuple(_chunks(X, split, rows))
    return Layout(X.shape[0], grouped, split, rows, chunks)


def _split_and_chunks(X, n_components, covariance_type, group, layout):
    """The block's split and a function giving its chunks of incomplete rows: from ``layout`` if given.

    Needs no parameters (the chunk size depends on the shapes alone), so a complete block returns before
    anything is prepared.
    """
    grouped = _grouped(covariance_type, group)
    rows = _chunk_rows(n_components, X.shape[1])
    if layout is None:
        split = _split(X, grouped)
        return split, lambda: _chunks(X, split, rows)
    if layout.n_samples != X.shape[0] or layout.grouped != grouped:
        raise ValueError("layout was made for other rows or another grouping of them")
    if layout.chunks is not None and layout.rows == rows:
        return layout.split, lambda: layout.chunks
    return layout.split, lambda: _chunks(X, layout.split, rows)


def _kept_bytes(prep, split):
    """Memory a Completion of ``split``'s incomplete rows holds (mostly the K completed rows)."""
    n_components, n_features = prep.means.shape
    return 8 * split.partial.size * n_features * n_components


# --------------------------------------------------------------------------- public functions
def log_likelihood(X, means, prec_chol, covariance_type, out=None, *, group=None, keep=False, layout=None):
    """Log-density of the observed coordinates of every row under every component.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        NaN marks a missing entry (infinity is a ValueError).
    means : ndarray of shape (n_components, n_features)
    prec_chol : ndarray
        Precision Cholesky factors, compact shape for ``covariance_type``
        (see :func:`emkit._densities.gaussian.precisions_cholesky`).
    covariance_type : {"full", "tied", "diag", "spherical"}
    out : ndarray of shape (n_samples, n_components), optional
        Where to write the result.
    group : bool, optional
        Sort the incomplete rows by missing pattern before processing them
        (one factorisation per pattern rather than per run of consecutive
        rows); None chooses by shape (:func:`group_by_pattern`). The results
        agree to round-off either way. Full and tied only (diag and
        spherical factorise nothing and never sort).
    keep : bool, default=False
        Also return the completed rows, for :func:`accumulate` on the same
        rows and parameters.
    layout : Layout, optional
        :func:`layout` of these rows (made once, reused by every call).

    Returns
    -------
    log_prob : ndarray of shape (n_samples, n_components)
        ``log N(x_o | mu_ko, Sigma_k,oo)`` over each row's observed
        coordinates ``o``; exactly 0 for a row with nothing observed. Rows
        without NaN get :func:`emkit._densities.gaussian.log_likelihood`'s
        values. Rows with fewer observed coordinates are densities on fewer
        dimensions (another scale).
    completion : Completion or None
        Only with ``keep=True``: the completed incomplete rows, or None when
        there are none or they would take more than 256 MB.
    """
    X, means = _check_block(X, means, prec_chol, covariance_type)
    n_samples, n_components = X.shape[0], means.shape[0]
    if out is None:
        out = np.empty((n_samples, n_components), dtype=np.result_type(X.dtype, means.dtype))
    split, chunks = _split_and_chunks(X, n_components, covariance_type, group, layout)
    if split.complete.all():
        out = gaussian.log_likelihood(X, means, prec_chol, covariance_type, out=out)
        return (out, None) if keep else out
    prep = _prepare(means, prec_chol, covariance_type, group)
    out[split.empty] = 0.0
    if split.complete.any():
        out[split.complete] = gaussian.log_likelihood(X[split.complete], means, prec_chol, covariance_type)
    if _numpy_path(split):
        out[split.partial] = _numpy_log_density(prep, _numpy_complete(prep, _gather(X, split))).T
        return (out, None) if keep else out
    kept = [] if keep and _kept_bytes(prep, split) <= _KEEP_BYTES else None
    for chunk in chunks():
        dens = np.empty((n_components, chunk.index.size))
        completed = _chunk_log_density(prep, chunk, dens)
        out[chunk.index] = dens.T
        if kept is not None:
            kept.append((chunk.index, completed))
    if not keep:
        return out
    return out, (None if kept is None else Completion(split, prep, kept))


def accumulate(X, posteriors, means, prec_chol, covariance_type, center=None, *, group=None, completion=None,
               layout=None):
    """Expected sufficient statistics of the complete data given the observed part, exact at any scale.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        NaN marks a missing entry.
    posteriors : ndarray of shape (n_samples, n_components)
        Responsibilities ``r_nk`` (already multiplied by any sample weights).
    means : ndarray of shape (n_components, n_features)
    prec_chol : ndarray
        Precision Cholesky factors: with ``means``, the *current* parameters,
        which the conditional expectations of the missing coordinates
        depend on.
    covariance_type : {"full", "tied", "diag", "spherical"}
    center : ndarray of shape (n_components, n_features), optional
        ``c_k``, the centre of the first moments; default ``means``.
    group : bool, optional
        Sort the incomplete rows by missing pattern before processing them
        (one factorisation per pattern rather than per run of consecutive
        rows); None chooses by shape (:func:`group_by_pattern`). The results
        agree to round-off either way. Full and tied only (diag and
        spherical factorise nothing and never sort).
    completion : Completion, optional
        What ``log_likelihood(X, means, prec_chol, covariance_type,
        keep=True)`` returned for these rows and parameters: the rows are not
        completed again (same numbers). None completes them here.
    layout : Layout, optional
        :func:`layout` of these rows (made once, reused by every call).

    Returns
    -------
    GaussianStats
        ``post = sum_n r_nk``, ``first = sum_n r_nk (E[x_n | x_no, k] - c_k)``
        and ``second`` the expected scatter about the weighted mean
        ``m_k = c_k + first_k / N_k``:
        ``sum_n r_nk E[(x_n - m_k)(x_n - m_k)^T | x_no, k]`` (the diagonal for
        diag and spherical), summed over rows with at least one observed
        coordinate (rows with nothing observed contribute nothing). Float64.
    """
    X, means = _check_block(X, means, prec_chol, covariance_type)
    posteriors = np.asarray(posteriors)
    if posteriors.shape != (X.shape[0], means.shape[0]):
        raise ValueError(f"posteriors must have shape {(X.shape[0], means.shape[0])}, got {posteriors.shape}.")
    center = means if center is None else center
    if completion is None:
        split, chunks = _split_and_chunks(X, means.shape[0], covariance_type, group, layout)
        if split.complete.all():
            return gaussian.accumulate(X, posteriors, center, covariance_type)
        prep = _prepare(means, prec_chol, covariance_type, group)
    else:  # kept by log_likelihood, which keeps none on the numpy path
        split, prep, kept = completion
    shift = np.asarray(center, dtype=np.float64) - prep.means
    if completion is None and _numpy_path(split):
        resp = np.asarray(posteriors[split.partial], dtype=np.float64)
        stats = _numpy_moments(prep, _numpy_complete(prep, _gather(X, split)), resp, shift)
    else:
        if completion is None:
            kept = ((chunk.index, _complete_chunk(prep, chunk)) for chunk in chunks())
        running = _empty_running(prep)
        for index, completed in kept:
            resp = np.ascontiguousarray(posteriors[index].T, dtype=np.float64)
            _chunk_moments(prep, completed, resp, shift, running)
        stats = _finish(prep, running)
    return _with_complete_rows(X, posteriors, center, covariance_type, split, stats)


def _responsibilities(resp, log_weights, sample_weight, index, numpy):
    """Log-densities ``resp`` (K, rows) of rows ``index`` into weighted responsibilities, in place; returns their
    weighted log-likelihood ``sum_n w_n log p(x_no)``."""
    resp += log_weights[:, np.newaxis]
    weight = None if sample_weight is None else sample_weight[index]
    log_norm = kernels.responsibilities(resp, weight, numpy=numpy)
    return float(np.sum(log_norm)) if weight is None else float(np.dot(weight, log_norm))


def _gather(X, split):
    """The incomplete rows of a block, float64."""
    return np.asarray(X[split.partial], dtype=np.float64)


def _with_complete_rows(X, posteriors, center, covariance_type, split, stats):
    """``stats`` of the incomplete rows merged with those of the block's complete rows."""
    if split.complete.any():
        complete = split.complete
        stats = gaussian.accumulate(X[complete], posteriors[complete], center, covariance_type).add(stats)
    return stats


def mixture_block(X, sample_weight, log_weights, means, prec_chol, covariance_type, *, group=None, layout=None):
    """One block of a Gaussian mixture's E-step with missing values: statistics and log-likelihood.

    The drop-in for :func:`emkit._densities.gaussian.mixture_block` (same
    arguments and results), which it calls on the block's complete rows.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features)
        NaN marks a missing entry.
    sample_weight : ndarray of shape (n_rows,) or None
    log_weights : ndarray of shape (n_components,)
        Log mixing weights.
    means : ndarray of shape (n_components, n_features)
    prec_chol : ndarray
        Precision Cholesky factors.
    covariance_type : {"full", "tied", "diag", "spherical"}
    group : bool, optional
        Sort the incomplete rows by missing pattern before processing them
        (one factorisation per pattern rather than per run of consecutive
        rows); None chooses by shape (:func:`group_by_pattern`). The results
        agree to round-off either way. Full and tied only (diag and
        spherical factorise nothing and never sort).
    layout : Layout, optional
        :func:`layout` of these rows (made once, reused by every call).

    Returns
    -------
    stats : GaussianStats
        Centred on ``means``, as :func:`accumulate` (rows with nothing
        observed contribute nothing).
    log_likelihood : float
        ``sum_n w_n log p(x_no)``, where ``log p(x_no) = logsumexp_k (log pi_k
        + log N(x_no | mu_ko, Sigma_k,oo))``; a row with nothing observed
        adds ``w_n logsumexp_k log pi_k`` (0 for normalised weights).
    """
    X, means = _check_block(X, means, prec_chol, covariance_type)
    n_components = means.shape[0]
    log_weights = np.asarray(log_weights, dtype=np.float64)
    split, chunks = _split_and_chunks(X, n_components, covariance_type, group, layout)
    if split.complete.all():
        return gaussian.mixture_block(X, sample_weight, log_weights, means, prec_chol, covariance_type)
    prep = _prepare(means, prec_chol, covariance_type, group)
    peak = np.max(log_weights)
    with np.errstate(divide="ignore"):  # all weights 0 gives -inf, as a complete row would
        log_total = peak + np.log(np.sum(np.exp(log_weights - peak))) if np.isfinite(peak) else peak
    empty_mass = split.empty.size if sample_weight is None else np.sum(sample_weight[split.empty])
    total = float(log_total * empty_mass) if empty_mass else 0.0
    no_shift = np.zeros_like(prep.means)  # the centre is the means
    if _numpy_path(split):
        completed = _numpy_complete(prep, _gather(X, split))
        resp = _numpy_log_density(prep, completed)
        total += _responsibilities(resp, log_weights, sample_weight, split.partial, numpy=True)
        stats = _numpy_moments(prep, completed, resp.T, no_shift)
    else:
        running = _empty_running(prep)
        for chunk in chunks():
            resp = np.empty((n_components, chunk.index.size))
            completed = _chunk_log_density(prep, chunk, resp)
            total += _responsibilities(resp, log_weights, sample_weight, chunk.index, numpy=False)
            _chunk_moments(prep, completed, resp, no_shift, running)
        stats = _finish(prep, running)
    if split.complete.any():
        complete = split.complete
        weight = None if sample_weight is None else sample_weight[complete]
        complete_stats, complete_total = gaussian.mixture_block(
            X[complete], weight, log_weights, means, prec_chol, covariance_type
        )
        stats = complete_stats.add(stats)
        total = complete_total + total
    return stats, total


def conditional_mean(X, posteriors, means, prec_chol, covariance_type):
    """Rows with their missing entries replaced by their conditional expectation under the mixture.

    .. math::

        \\hat x_{nm} = \\sum_k r_{nk} E[x_m \\mid x_o, k]
                   = \\sum_k r_{nk} \\big(\\mu_{km} - P_{k,mm}^{-1} P_{k,mo} (x_o - \\mu_{ko})\\big)

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        NaN marks a missing entry.
    posteriors : ndarray of shape (n_samples, n_components)
        ``r_nk = p(z_n = k | x_no)`` (for a row with nothing observed, the
        mixing weights: its result is then ``sum_k pi_k mu_k``).
    means : ndarray of shape (n_components, n_features)
    prec_chol : ndarray
        Precision Cholesky factors.
    covariance_type : {"full", "tied", "diag", "spherical"}

    Returns
    -------
    X_filled : ndarray of shape (n_samples, n_features), float64
        A new array: observed entries as given, missing ones filled.
    """
    X, means = _check_block(X, means, prec_chol, covariance_type)
    posteriors = np.asarray(posteriors, dtype=np.float64)
    if posteriors.shape != (X.shape[0], means.shape[0]):
        raise ValueError(f"posteriors must have shape {(X.shape[0], means.shape[0])}, got {posteriors.shape}.")
    prep = _prepare(means, prec_chol, covariance_type)
    filled = np.array(X, dtype=np.float64)
    split = _split(X, prep.grouped, with_empty=True)
    for chunk in _chunks(X, split, prep.rows):
        centred = _complete_chunk(prep, chunk).centred
        resp = posteriors[chunk.index]  # (rows, K)
        expected = resp @ prep.means + np.einsum("kdi,ik->id", centred, resp)
        holes = np.isnan(chunk.rows)
        block = chunk.rows
        block[holes] = expected[holes]
        filled[chunk.index] = block
    return filled
