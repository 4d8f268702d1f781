"""Multivariate Gaussian components, written once for GaussianMixture and GaussianHMM.

Covariances are stored compactly per ``covariance_type`` (scikit-learn's and
hmmlearn's shapes), with ``K`` components and ``D`` features:

=============  =================  ========================================
type           covariances        precisions_cholesky
=============  =================  ========================================
``full``       (K, D, D)          (K, D, D), upper triangular, U U^T = P
``tied``       (D, D)             (D, D)
``diag``       (K, D)             (K, D), 1 / sqrt(variance)
``spherical``  (K,)               (K,)
=============  =================  ========================================

Exact at any scale: every density and every statistic of component ``k`` is
computed from rows centred on that component (``x - mu_k``, or ``x - c_k``)
before anything is multiplied or squared. Nothing is expanded about a shared
point, so the results are as accurate as a direct two-pass computation
however far the data lie from the origin and the components from each other.

Statistics (:class:`GaussianStats`) hold each component's mass, its first
moment about a *centre* ``c_k`` (the current means) and its scatter about its
own weighted mean, taken in two passes over each chunk of rows (the mean, then
the scatter about it) and merged across chunks, blocks and sequences with
Chan, Golub and LeVeque's exact update (:func:`add_stats`). The M-step then
adds only non-negative terms, so a mean that moves by many standard
deviations in one step loses nothing either.

Rows are processed in chunks whose size depends on the shape of the problem
alone, so temporaries stay small (never n x K x D at once) and results do not
depend on how the caller splits its work. Which kernel runs is chosen per
shape (:func:`kernel_for`): compiled loops over lanes of rows for diagonal
covariances and for full ones with few features, BLAS products for full
covariances with many features.
"""

import functools
from typing import NamedTuple

import numpy as np
from scipy import linalg

from .._inference import mixture as kernels
from .._math import symmetrize
from .._stats import scale_fields
from .base import Density

__all__ = [
    "Gaussian",
    "COVARIANCE_TYPES",
    "BLAS_MIN_FEATURES",
    "GaussianStats",
    "precisions_cholesky",
    "precisions_from_cholesky",
    "covariances_from_precisions",
    "kernel_for",
    "log_likelihood",
    "accumulate",
    "mixture_block",
    "add_stats",
    "recenter",
    "m_step",
    "log_prior",
    "n_parameters",
    "prior_count",
    "parameter_shapes",
    "check_parameter",
    "sample",
    "block_size",
]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

#: Full and tied covariances with at least this many features whiten their
#: rows with BLAS products (one per component); below it, compiled lane loops
#: are faster (measured on one and on two cores; see kernel_for).
BLAS_MIN_FEATURES = 128

_LOG_2PI = np.log(2.0 * np.pi)
# Elements of the temporaries one chunk of rows may hold (~512 kB of float64; ~1 MB per temporary for
# the BLAS kernel, whose products want longer chunks), and bounds on its rows.
_CHUNK_ELEMENTS = 1 << 16
_BLAS_CHUNK_ELEMENTS = 1 << 17
_MIN_CHUNK_ROWS = 128
_MAX_CHUNK_ROWS = 4096
# Chunks per block of rows handed out by block_size (per-block setup then costs little).
_CHUNKS_PER_BLOCK = 8
# Inputs of more than this many chunks run their chunk loop in one compiled call (log_density_rows,
# moments_rows): it saves a few compiled calls per chunk, which only adds up over many chunks (a long HMM
# sequence), while compiling the loop costs 1-2 s on first use; fewer chunks loop in Python.
_COMPILED_LOOP_CHUNKS = 32


class GaussianStats(NamedTuple):
    """Expected sufficient statistics of Gaussian components, exact at any scale.

    Attributes
    ----------
    post : ndarray of shape (K,)
        ``N_k = sum_n r_nk``.
    first : ndarray of shape (K, D)
        ``sum_n r_nk (x_n - c_k)``, about the centre ``c_k`` the E-step used
        (the current means); the weighted mean is ``m_k = c_k + first_k / N_k``.
    second : ndarray of shape (K, D, D) or (K, D)
        The scatter about that weighted mean, ``sum_n r_nk (x_n - m_k)(x_n - m_k)^T``
        for full and tied, its diagonal for diag and spherical.

    Notes
    -----
    Keeping the scatter about the statistics' own mean (not about ``c_k``)
    means the M-step never subtracts ``N_k (m_k - c_k)^2`` from a sum that
    contains it: a component whose mean moves by many standard deviations
    in one step keeps every digit. Two blocks' statistics (about the same
    centres) merge exactly with :func:`add_stats` (Chan, Golub and
    LeVeque's update), not by adding the scatters.
    """

    post: np.ndarray
    first: np.ndarray
    second: np.ndarray

    def add(self, other):
        """The statistics of both blocks together (see :func:`add_stats`)."""
        return add_stats(self, other)

    scale = scale_fields  # rows weighted by a factor: every field scales with it


def _check_type(covariance_type):
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}.")


# --------------------------------------------------------------------------- parameters
def precisions_cholesky(covariances, covariance_type):
    """Cholesky factors of the precision matrices (scikit-learn's convention).

    Parameters
    ----------
    covariances : ndarray
        Compact covariances for ``covariance_type`` (see module docstring).
    covariance_type : {"full", "tied", "diag", "spherical"}

    Returns
    -------
    prec_chol : ndarray
        Same compact shape: upper-triangular ``U`` with ``U U^T = Sigma^-1``
        for full and tied, ``1 / sqrt(variance)`` for diag and spherical.

    Raises
    ------
    numpy.linalg.LinAlgError
        If a covariance is not (numerically) positive definite.
    """
    _check_type(covariance_type)
    covariances = np.asarray(covariances)
    if covariance_type in ("diag", "spherical"):
        if np.any(covariances <= 0.0) or not np.all(np.isfinite(covariances)):
            raise np.linalg.LinAlgError("a variance is not positive")
        return 1.0 / np.sqrt(covariances)
    mats = covariances[np.newaxis] if covariance_type == "tied" else covariances
    if not np.all(np.isfinite(mats)):
        raise np.linalg.LinAlgError("a covariance is not finite")
    # one batched LAPACK call each (a per-matrix scipy loop costs milliseconds per tiny matrix)
    lower = np.linalg.cholesky(mats)  # raises LinAlgError when one is not positive definite
    eye = np.broadcast_to(np.eye(mats.shape[-1], dtype=mats.dtype), mats.shape)
    out = np.swapaxes(np.linalg.solve(lower, eye), -1, -2)
    out = np.triu(out)  # exact zeros below the diagonal, as a triangular solve gives
    return out[0] if covariance_type == "tied" else out


def precisions_from_cholesky(prec_chol, covariance_type):
    """Precision matrices ``U U^T`` (or ``U**2``) from their Cholesky factors."""
    if covariance_type == "full":
        return np.matmul(prec_chol, np.swapaxes(prec_chol, -1, -2))
    if covariance_type == "tied":
        return prec_chol @ prec_chol.T
    return prec_chol**2


def covariances_from_precisions(precisions, covariance_type):
    """Covariances from precisions (for ``precisions_init``).

    Raises
    ------
    numpy.linalg.LinAlgError
        If a precision matrix is not positive definite.
    """
    _check_type(covariance_type)
    precisions = np.asarray(precisions)
    if covariance_type in ("diag", "spherical"):
        if np.any(precisions <= 0.0):
            raise np.linalg.LinAlgError("a precision is not positive")
        return 1.0 / precisions
    mats = precisions[np.newaxis] if covariance_type == "tied" else precisions
    out = np.empty_like(mats)
    eye = np.eye(mats.shape[-1], dtype=mats.dtype)
    for k, prec in enumerate(mats):
        try:
            factor = linalg.cho_factor(prec, lower=True, check_finite=True)
        except (linalg.LinAlgError, ValueError) as exc:
            raise np.linalg.LinAlgError(f"precision {k} is not positive definite") from exc
        out[k] = symmetrize(linalg.cho_solve(factor, eye, check_finite=False))
    return out[0] if covariance_type == "tied" else out


def _log_det_chol(prec_chol, covariance_type, n_components, n_features):
    """``log det U_k`` for each component: half the log-determinant of the precision."""
    if covariance_type == "full":
        return np.sum(np.log(np.diagonal(prec_chol, axis1=1, axis2=2)), axis=1)
    if covariance_type == "tied":
        return np.full(n_components, np.sum(np.log(np.diag(prec_chol))))
    if covariance_type == "diag":
        return np.sum(np.log(prec_chol), axis=1)
    return n_features * np.log(prec_chol)


# --------------------------------------------------------------------------- E-step pieces
class _Prepared(NamedTuple):
    """Per-call constants of the density kernels (see :func:`_prepare`)."""

    kind: str  # "diag" (also spherical), "full" (also tied) or "blas" (full/tied through BLAS products)
    means: np.ndarray  # (K, D) float64
    const: np.ndarray  # (K,) float64: log det U_k - D/2 log(2 pi) (+ log weights for a mixture block)
    scales: np.ndarray  # (K, D) float64, diag and spherical
    factor: np.ndarray  # (K or 1, D, D): float64 for "full", the data's dtype for "blas"
    blas_means: np.ndarray  # (K, D) in the data's dtype, "blas" only
    rows: int  # rows per chunk


def kernel_for(n_components, n_features, covariance_type):
    """Which kernel computes the densities of this shape.

    ``"diag"`` (diag and spherical) and ``"full"`` (full and tied) are
    compiled loops over lanes of rows (:mod:`emkit._inference.mixture`);
    ``"blas"`` (full and tied with at least :data:`BLAS_MIN_FEATURES`
    features) whitens each component's centred rows with one BLAS product
    instead. The statistics always come from the lane loops. Every kernel
    centres each row on each component first, so they differ in speed, not
    in accuracy. Measured per row, one core: the lane loops are faster up to
    about 100 features (at D=64, K=8: 2.5 us against 5.1 us for the
    densities), BLAS beyond (D=256: 5.3 us against 8.5 us).

    Parameters
    ----------
    n_components, n_features : int
    covariance_type : {"full", "tied", "diag", "spherical"}

    Returns
    -------
    kind : {"diag", "full", "blas"}
    """
    _check_type(covariance_type)
    if covariance_type in ("diag", "spherical"):
        return "diag"
    return "blas" if n_features >= BLAS_MIN_FEATURES else "full"


def _chunk_rows(kind, n_components, n_features):
    if kind == "blas":  # (K, rows, D) temporaries: centred and whitened rows
        rows = _BLAS_CHUNK_ELEMENTS // (n_components * n_features)
    elif kind == "full":  # lanes of the rows, their centred and weighted copies, densities
        rows = _CHUNK_ELEMENTS // (3 * n_features + n_components + 8)
    else:
        rows = _CHUNK_ELEMENTS // (n_features + n_components + 4)
    return int(min(_MAX_CHUNK_ROWS, max(_MIN_CHUNK_ROWS, rows)))


def block_size(n_components, n_features, covariance_type="diag", dtype=np.float64):
    """Rows per block of an E-step (a few chunks of rows, see :func:`mixture_block`).

    The size depends on the shape alone (never on the data), so results do
    not depend on how a caller splits its rows into blocks of this size.

    Parameters
    ----------
    n_components, n_features : int
    covariance_type : {"full", "tied", "diag", "spherical"}, default="diag"
    dtype : dtype, default=float64
        Not used (every kernel computes in float64); kept for callers.

    Returns
    -------
    rows : int
    """
    kind = kernel_for(n_components, n_features, covariance_type)
    return _CHUNKS_PER_BLOCK * _chunk_rows(kind, n_components, n_features)


def _prepare(means, prec_chol, covariance_type, dtype, log_weights=None):
    means = np.asarray(means)
    n_components, n_features = means.shape
    kind = kernel_for(n_components, n_features, covariance_type)
    prec_chol = np.asarray(prec_chol)
    const = _log_det_chol(prec_chol.astype(np.float64), covariance_type, n_components, n_features)
    const = const - 0.5 * n_features * _LOG_2PI
    if log_weights is not None:
        const = const + np.asarray(log_weights, dtype=np.float64)
    means64 = np.ascontiguousarray(means, dtype=np.float64)
    scales = factor = blas_means = None
    if kind == "diag":
        scales = prec_chol.astype(np.float64)
        if covariance_type == "spherical":
            scales = np.repeat(scales[:, np.newaxis], n_features, axis=1)
        scales = np.ascontiguousarray(scales)
    else:
        stacked = prec_chol[np.newaxis] if covariance_type == "tied" else prec_chol
        if kind == "full":
            factor = np.ascontiguousarray(stacked, dtype=np.float64)
        else:
            factor = np.ascontiguousarray(np.triu(stacked), dtype=dtype)
            blas_means = np.ascontiguousarray(means, dtype=dtype)
    rows = _chunk_rows(kind, n_components, n_features)
    return _Prepared(kind, means64, np.ascontiguousarray(const), scales, factor, blas_means, rows)


def _lanes(block, numpy, scratch, name="lanes"):
    """The block transposed to (n_features, n_rows), float64 (exact for float32 data), in ``scratch``."""
    lanes = scratch.empty(name, (block.shape[1], block.shape[0]))
    kernels.transpose_into(block, lanes, numpy=numpy)
    return lanes


def _numpy_path(n_samples):
    """Whether a call on ``n_samples`` rows runs the kernels' numpy path (decided once per call, not per chunk)."""
    return n_samples <= kernels.NUMPY_MAX_ROWS


def _chunk_log_density(prep, block, out, numpy, scratch):
    """Log-densities (plus ``prep.const``) of a chunk of rows into ``out`` (K, rows).

    Returns the chunk's lanes when they were made (the statistics reuse them).
    """
    if prep.kind == "blas":
        centred = block[np.newaxis, :, :] - prep.blas_means[:, np.newaxis, :]
        factor = prep.factor[0] if prep.factor.shape[0] == 1 else prep.factor
        kernels.square_norms(np.matmul(centred, factor), prep.const, out, numpy=numpy)
        return None
    lanes = _lanes(block, numpy, scratch)
    if prep.kind == "diag":
        kernels.diag_log_density(lanes, prep.means, prep.scales, prep.const, out, numpy=numpy)
    else:
        kernels.full_log_density(lanes, prep.means, prep.factor, prep.const, out, numpy=numpy, scratch=scratch)
    return lanes


def _chunk_moments(kind, block, lanes, resp, center, post, first, second, numpy, scratch):
    """Merge a chunk's statistics (responsibilities ``resp`` in lanes, (K, rows)) into running ones."""
    lanes = _lanes(block, numpy, scratch) if lanes is None else lanes
    if kind == "diag":
        kernels.diag_moments(lanes, resp, center, post, first, second, numpy=numpy)
    else:
        kernels.full_moments(lanes, resp, center, post, first, second, numpy=numpy, scratch=scratch)


def _empty_stats(kind, n_components, n_features):
    post = np.zeros(n_components)
    first = np.zeros((n_components, n_features))
    shape = (n_components, n_features) if kind == "diag" else (n_components, n_features, n_features)
    return post, first, np.zeros(shape)


def _finish_stats(kind, post, first, second):
    if kind != "diag":  # only the upper triangles were accumulated: mirror them
        rows, cols = _strict_upper(first.shape[1])
        second[:, cols, rows] = second[:, rows, cols]
    return GaussianStats(post, first, second)


@functools.lru_cache(maxsize=32)
def _strict_upper(n_features):
    rows, cols = np.triu_indices(n_features, 1)
    rows.setflags(write=False)
    cols.setflags(write=False)
    return rows, cols


def log_likelihood(X, means, prec_chol, covariance_type, out=None):
    """Log-density of every row under every component.

    Each row is centred on each component (``x - mu_k``) before it is
    whitened, so the result is as accurate as a direct computation wherever
    the data lie.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    means : ndarray of shape (n_components, n_features)
    prec_chol : ndarray
        Precision Cholesky factors, see :func:`precisions_cholesky`.
    covariance_type : {"full", "tied", "diag", "spherical"}
    out : ndarray of shape (n_samples, n_components), optional
        Where to write the result.

    Returns
    -------
    log_prob : ndarray of shape (n_samples, n_components)
        ``log N(x_n | mu_k, Sigma_k)``, in the dtype of ``X`` and ``means``.
    """
    X = np.asarray(X)
    n_samples = X.shape[0]
    n_components = np.shape(means)[0]
    if out is None:
        out = np.empty((n_samples, n_components), dtype=np.result_type(X.dtype, np.asarray(means).dtype))
    prep = _prepare(means, prec_chol, covariance_type, X.dtype)
    step = prep.rows
    numpy = _numpy_path(n_samples)
    if not numpy and prep.kind != "blas" and n_samples > _COMPILED_LOOP_CHUNKS * step:  # the loop below, compiled
        factor = prep.scales if prep.kind == "diag" else prep.factor
        kernels.log_density_rows(X, prep.means, factor, prep.const, out, step)
        return out
    scratch = kernels.Scratch()
    for start in range(0, n_samples, step):
        block = X[start : start + step]
        dens = scratch.empty("densities", (n_components, block.shape[0]))
        _chunk_log_density(prep, block, dens, numpy, scratch)
        kernels.transpose_into(dens, out[start : start + step], numpy=numpy)
    return out


def log_likelihood_shifted(X, means, prec_chol, covariance_type, scratch=None):
    """:func:`log_likelihood`, and where one compiled pass gives them too, each row's maximum and the row minus it.

    That pass (:func:`emkit._inference.mixture.log_density_shifted_rows`)
    serves diagonal and spherical covariances of few features and components
    on inputs that take the compiled kernels (more than
    ``kernels.NUMPY_MAX_ROWS`` rows); it gives the same log-densities as
    :func:`log_likelihood`, bit for bit.

    Parameters
    ----------
    X, means, prec_chol, covariance_type : see :func:`log_likelihood`
    scratch : emkit._inference.mixture.Scratch, optional
        Where the outputs are written (kept by the caller from one call to
        the next: fresh arrays of tens of megabytes cost their page faults at
        every call); None for fresh arrays.

    Returns
    -------
    log_prob : ndarray of shape (n_samples, n_components)
    shifted : tuple of (ndarray of shape (n_samples, n_components), ndarray of shape (n_samples,)) or None
        ``(log_prob - shifts[:, None], shifts)`` with ``shifts`` the row
        maxima (0 for a row of ``-inf``); None where this function did not
        compute them.
    """
    X = np.asarray(X)
    if X.dtype != np.float64 or np.asarray(means).dtype != np.float64:
        return log_likelihood(X, means, prec_chol, covariance_type), None
    n_samples, n_features = X.shape
    n_components = np.shape(means)[0]
    scratch = kernels.Scratch() if scratch is None else scratch
    out = scratch.empty("log_prob", (n_samples, n_components))
    fused = (
        kernel_for(n_components, n_features, covariance_type) == "diag"
        and n_features <= kernels.SHIFTED_MAX_FEATURES
        and n_components <= kernels.SHIFTED_MAX_COMPONENTS
        and not _numpy_path(n_samples)
    )
    if not fused:
        return log_likelihood(X, means, prec_chol, covariance_type, out=out), None
    prep = _prepare(means, prec_chol, covariance_type, X.dtype)
    shifted, shifts = scratch.empty("shifted", (n_samples, n_components)), scratch.empty("shifts", (n_samples,))
    kernels.log_density_shifted_rows(X, prep.means, prep.scales, prep.const, out, shifted, shifts)
    return out, (shifted, shifts)


def accumulate(X, posteriors, center, covariance_type):
    """Weighted sufficient statistics for all components, exact at any scale.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    posteriors : ndarray of shape (n_samples, n_components)
        Responsibilities (already multiplied by any sample weights).
    center : ndarray of shape (n_components, n_features)
        ``c_k``, the centre of the first moments (the current means). Every
        row is centred on it, and the scatter on each chunk's own weighted
        mean, before anything is multiplied (see :class:`GaussianStats`).
    covariance_type : {"full", "tied", "diag", "spherical"}

    Returns
    -------
    GaussianStats
        Float64 statistics (accumulated in float64 across chunks even for
        float32 input).
    """
    X = np.asarray(X)
    n_samples, n_features = X.shape
    n_components = np.shape(center)[0]
    kind = kernel_for(n_components, n_features, covariance_type)
    center64 = np.ascontiguousarray(center, dtype=np.float64)
    post, first, second = _empty_stats(kind, n_components, n_features)
    step = _chunk_rows(kind, n_components, n_features)
    numpy = _numpy_path(n_samples)
    if not numpy and n_samples > _COMPILED_LOOP_CHUNKS * step:  # the chunk loop below, compiled
        kernels.moments_rows(X, posteriors, center64, post, first, second, step)
        return _finish_stats(kind, post, first, second)
    scratch = kernels.Scratch()
    for start in range(0, n_samples, step):
        resp = _lanes(posteriors[start : start + step], numpy, scratch, "responsibilities")
        _chunk_moments(kind, X[start : start + step], None, resp, center64, post, first, second, numpy, scratch)
    return _finish_stats(kind, post, first, second)


def mixture_block(X, sample_weight, log_weights, means, prec_chol, covariance_type):
    """One block of a Gaussian mixture's E-step: statistics and log-likelihood, responsibilities kept inside.

    For each chunk of rows: log-densities plus log weights, responsibilities
    (normalised rows, times the sample weights), then the weighted statistics
    centred on the current means, all from rows centred on each component.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features)
        A block of rows, float64 or float32.
    sample_weight : ndarray of shape (n_rows,) or None
    log_weights : ndarray of shape (n_components,)
        Log mixing weights (``-inf`` allowed).
    means : ndarray of shape (n_components, n_features)
    prec_chol : ndarray
        Precision Cholesky factors, see :func:`precisions_cholesky`.
    covariance_type : {"full", "tied", "diag", "spherical"}

    Returns
    -------
    stats : GaussianStats
        Centred on ``means`` (float64), additive across blocks.
    log_likelihood : float
        ``sum_n w_n log p(x_n)`` over the block.
    """
    X = np.asarray(X)
    n_samples, n_features = X.shape
    n_components = np.shape(means)[0]
    prep = _prepare(means, prec_chol, covariance_type, X.dtype, log_weights)
    post, first, second = _empty_stats(prep.kind, n_components, n_features)
    total = 0.0
    numpy = _numpy_path(n_samples)
    scratch = kernels.Scratch()
    for start in range(0, n_samples, prep.rows):
        block = X[start : start + prep.rows]
        resp = scratch.empty("responsibilities", (n_components, block.shape[0]))
        lanes = _chunk_log_density(prep, block, resp, numpy, scratch)
        weight = None if sample_weight is None else sample_weight[start : start + prep.rows]
        log_norm = kernels.responsibilities(resp, weight, numpy=numpy)  # resp now holds w_n p(z_n = k | x_n)
        total += float(np.sum(log_norm)) if weight is None else float(np.dot(weight, log_norm))
        _chunk_moments(prep.kind, block, lanes, resp, prep.means, post, first, second, numpy, scratch)
    return _finish_stats(prep.kind, post, first, second), total


def add_stats(a, b):
    r"""The statistics of two blocks together (both taken about the same centres).

    Masses and first moments add; the scatters merge exactly (Chan, Golub and
    LeVeque): with ``u_k = first^a_k / N^a_k - first^b_k / N^b_k``,

    .. math::

        S_k = S^a_k + S^b_k + \frac{N^a_k N^b_k}{N^a_k + N^b_k} u_k u_k^T

    (its diagonal for diag and spherical).
    """
    post = a.post + b.post
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.where(a.post[:, np.newaxis] > 0, a.first / a.post[:, np.newaxis], 0.0) - np.where(
            b.post[:, np.newaxis] > 0, b.first / b.post[:, np.newaxis], 0.0
        )
        weight = np.where(post > 0, a.post * b.post / post, 0.0)
    if a.second.ndim == 3:
        between = weight[:, np.newaxis, np.newaxis] * gap[:, :, np.newaxis] * gap[:, np.newaxis, :]
    else:
        between = weight[:, np.newaxis] * gap**2
    return GaussianStats(post, a.first + b.first, a.second + b.second + between)


# --------------------------------------------------------------------------- M-step
def m_step(
    stats,
    center,
    covariance_type,
    *,
    means=None,
    covariances=None,
    learn_means=True,
    learn_covars=True,
    reg_covar=0.0,
    means_prior=0.0,
    means_weight=0.0,
    covars_prior=0.0,
    covars_weight=None,
):
    r"""Closed-form (MAP) update of means and covariances from exact statistics.

    With ``N_k`` the summed posteriors, ``xbar_k`` the weighted data means,
    ``S_k = sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T`` about the new means
    (the statistics' scatter about ``xbar_k`` plus ``N_k (xbar_k - mu_k)(xbar_k - mu_k)^T``),
    ``m0, kappa`` = ``means_prior, means_weight``, ``Psi, nu`` =
    ``covars_prior, covars_weight`` and ``d_k = mu_k - m0``:

    .. math::

        \mu_k = \frac{\kappa m_0 + N_k \bar x_k}{\kappa + N_k}

        \Sigma_k = \frac{\Psi + \kappa d_k d_k^T + S_k}{\max(\nu - D, 0) + N_k}
        \quad\text{(full)}, \qquad
        \sigma^2_{kd} = \frac{\psi_d + \kappa d_{kd}^2 + S_{kdd}}{\max(\nu - 1, 0) + N_k}
        \quad\text{(diag)}

    tied pools numerators and denominators over components, spherical
    averages the diagonal over features (hmmlearn's conventions). With
    ``covars_weight=None`` the denominator is ``N_k``: maximum likelihood.
    ``reg_covar`` is then added to every variance (scikit-learn's).

    Parameters
    ----------
    stats : GaussianStats
        From :func:`accumulate` or :func:`mixture_block` with centre ``center``.
    center : ndarray of shape (n_components, n_features)
    covariance_type : {"full", "tied", "diag", "spherical"}
    means, covariances : ndarray, optional
        Current values, kept when ``learn_means`` / ``learn_covars`` is False.
    reg_covar : float
        Added to the diagonal of every covariance.
    means_prior, means_weight, covars_prior, covars_weight
        Prior hyperparameters (see above); the defaults switch priors off.

    Returns
    -------
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray, compact shape for ``covariance_type``
    """
    n_components, n_features = stats.first.shape
    post = stats.post
    eps = 10.0 * np.finfo(np.float64).eps  # keeps empty components finite
    denom = post + eps
    mw = np.broadcast_to(np.asarray(means_weight, dtype=np.float64), (n_components,))
    m0 = np.broadcast_to(np.asarray(means_prior, dtype=np.float64), (n_components, n_features))
    if learn_means:
        # xbar_k - c_k = first_k / N_k; with the mean prior pulled towards m0
        shift_k = stats.first / denom[:, np.newaxis]
        if np.any(mw > 0):
            new_means = (mw[:, None] * m0 + post[:, None] * (center + shift_k)) / (mw + denom)[:, None]
        else:
            new_means = center + shift_k
    else:
        new_means = np.asarray(means, dtype=np.float64)
    if not learn_covars:
        return new_means, covariances

    # scatter about the new means: the statistics' own scatter (about their weighted means m_k) plus
    # N_k (m_k - mu_k)(m_k - mu_k)^T, which is zero for maximum likelihood and never cancels anything
    gap = stats.first / denom[:, np.newaxis] - (new_means - center)  # m_k - mu_k
    prior_diff = new_means - m0
    if covariance_type in ("full", "tied"):
        scatter = stats.second + post[:, None, None] * np.einsum("ki,kj->kij", gap, gap)
        numer = scatter + mw[:, None, None] * np.einsum("ki,kj->kij", prior_diff, prior_diff)
        extra = prior_count(covariance_type, n_features, covars_weight)
        psi = _prior_matrix(covars_prior, n_features)
        if covariance_type == "full":
            cov = (psi + numer) / (extra + denom)[:, None, None]
            cov = symmetrize(cov)
            idx = np.arange(n_features)
            cov[:, idx, idx] += reg_covar
        else:
            cov = (psi + numer.sum(axis=0)) / (extra + post.sum() + eps)
            cov = symmetrize(cov)
            cov.flat[:: n_features + 1] += reg_covar
        return new_means, cov
    numer = np.maximum(stats.second, 0.0) + post[:, None] * gap**2 + mw[:, None] * prior_diff**2
    extra = prior_count(covariance_type, n_features, covars_weight)
    psi = np.broadcast_to(np.asarray(covars_prior, dtype=np.float64), (n_components, n_features))
    var = (psi + numer) / (extra + denom)[:, None]
    if covariance_type == "spherical":
        var = var.mean(axis=1)
    return new_means, var + reg_covar


def prior_count(covariance_type, n_features, covars_weight):
    """Pseudo-count the covariance prior adds to each update's denominator (hmmlearn's convention).

    ``max(nu - D, 0)`` for full and tied, ``max(nu - 1, 0)`` for diag and
    spherical, and 0 when ``covars_weight`` (``nu``) is None.
    """
    if covars_weight is None:
        return 0.0
    return max(covars_weight - (n_features if covariance_type in ("full", "tied") else 1), 0.0)


def _prior_matrix(covars_prior, n_features):
    prior = np.asarray(covars_prior, dtype=np.float64)
    if prior.ndim == 0:
        return prior * np.eye(n_features)
    return prior


def log_prior(
    means, covariances, covariance_type, *, means_prior=0.0, means_weight=0.0, covars_prior=0.0, covars_weight=None
):
    r"""Log-density (up to a constant) of the priors whose MAP :func:`m_step` computes.

    For full covariances, with ``a = max(nu - D, 0)``,

    .. math::

        \log p(\mu_k, \Sigma_k) = -\tfrac{a}{2}\log|\Sigma_k|
            - \tfrac12 \operatorname{tr}\big((\Psi + \kappa d_k d_k^T)\Sigma_k^{-1}\big)

    and the analogous per-variance form for diag (``a = max(nu - 1, 0)``),
    ``D`` times it for spherical, and one shared matrix for tied. Adding it
    to the log-likelihood gives the quantity MAP-EM never decreases. Returns
    0.0 when priors are off.
    """
    n_components, n_features = means.shape
    mw = np.broadcast_to(np.asarray(means_weight, dtype=np.float64), (n_components,))
    psi_is_zero = not np.any(np.asarray(covars_prior))
    if psi_is_zero and covars_weight is None and not np.any(mw > 0):
        return 0.0
    m0 = np.broadcast_to(np.asarray(means_prior, dtype=np.float64), (n_components, n_features))
    diff = np.asarray(means, dtype=np.float64) - m0
    covariances = np.asarray(covariances, dtype=np.float64)
    if covariance_type in ("full", "tied"):
        a = prior_count(covariance_type, n_features, covars_weight)
        psi = _prior_matrix(covars_prior, n_features)
        mats = covariances if covariance_type == "full" else covariances[np.newaxis]
        total = 0.0
        for k, cov in enumerate(mats):
            factor = linalg.cho_factor(cov, lower=True, check_finite=False)
            logdet = 2.0 * np.sum(np.log(np.diag(factor[0])))
            psi_k = psi[k] if psi.ndim == 3 else psi  # full: one scale matrix per component is allowed
            if covariance_type == "full":
                numer = psi_k + mw[k] * np.outer(diff[k], diff[k])
            else:
                numer = psi_k + np.einsum("k,ki,kj->ij", mw, diff, diff)
            total += -0.5 * a * logdet - 0.5 * np.trace(linalg.cho_solve(factor, numer, check_finite=False))
        return float(total)
    a = prior_count(covariance_type, n_features, covars_weight)
    psi = np.broadcast_to(np.asarray(covars_prior, dtype=np.float64), (n_components, n_features))
    var = covariances if covariance_type == "diag" else np.repeat(covariances[:, None], n_features, axis=1)
    numer = psi + mw[:, None] * diff**2
    return float(np.sum(-0.5 * a * np.log(var) - 0.5 * numer / var))


def regularization_slack(covariances, covariance_type, reg_covar, counts, n_features):
    r"""Upper bound on the objective lost by adding ``reg_covar`` after the exact M-step.

    The exact update maximises ``-n_k/2 log|Sigma| - 1/2 tr(A Sigma^-1)`` at
    ``Sigma* = A / n_k``; the regularised ``Sigma* + eps I`` falls short by

    .. math::

        rac{n_k}{2}\sum_i \Big[\logig(1 + 	frac{\epsilon}{\lambda_i}ig)
        - 	frac{\epsilon}{\lambda_i + \epsilon}\Big] \;\ge 0,

    with ``lambda_i`` the eigenvalues of ``Sigma*``. EM with the regularised
    step can lower the objective by at most this much (``inf`` where
    ``Sigma*`` is singular, i.e. the regulariser is what keeps it finite).

    Parameters
    ----------
    covariances : ndarray
        The *regularised* covariances (compact shape).
    covariance_type : {"full", "tied", "diag", "spherical"}
    reg_covar : float
    counts : ndarray of shape (n_components,)
        The effective counts ``n_k`` of each covariance's update (for tied,
        their sum is used).
    n_features : int
        Dimension (a spherical variance stands for ``n_features`` of them).

    Returns
    -------
    slack : float
    """
    if reg_covar <= 0:
        return 0.0
    counts = np.asarray(counts, dtype=np.float64)
    if covariance_type == "full":
        eig = np.linalg.eigvalsh(covariances.astype(np.float64))  # (K, D)
        weight = counts[:, np.newaxis]
    elif covariance_type == "tied":
        eig = np.linalg.eigvalsh(covariances.astype(np.float64))[np.newaxis]
        weight = np.array([[counts.sum()]])
    elif covariance_type == "diag":
        eig = covariances.astype(np.float64)
        weight = counts[:, np.newaxis]
    else:  # spherical: one variance standing for n_features of them
        eig = covariances.astype(np.float64)[:, np.newaxis]
        weight = n_features * counts[:, np.newaxis]
    exact = eig - reg_covar
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = reg_covar / exact
        loss = np.where(exact > 0, np.log1p(ratio) - ratio / (1.0 + ratio), np.inf)
    return float(0.5 * np.sum(weight * loss))


# --------------------------------------------------------------------------- accepted shapes
def parameter_shapes(name, covariance_type, n_components, n_features):
    """Shapes accepted for a starting value or prior of Gaussian components.

    One table for GaussianMixture and GaussianHMM, so both accept (and refuse)
    the same shapes:

    ================  ==============================================================
    name              shapes (K components, D features)
    ================  ==============================================================
    ``means``         (K, D)
    ``covariances``   full (K, D, D), tied (D, D), diag (K, D), spherical (K,)
    ``precisions``    as ``covariances``
    ``means_prior``   (), (D,), (K, D)
    ``means_weight``  (), (K,)
    ``covars_prior``  full (), (D, D), (K, D, D); tied (), (D, D);
                      diag (), (D,), (K, D); spherical (), (K,)
    ================  ==============================================================

    Parameters
    ----------
    name : {"means", "covariances", "precisions", "means_prior", "means_weight", "covars_prior"}
    covariance_type : {"full", "tied", "diag", "spherical"}
    n_components, n_features : int

    Returns
    -------
    shapes : tuple of tuple of int
    """
    _check_type(covariance_type)
    K, D = n_components, n_features
    compact = {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}[covariance_type]
    table = {
        "means": ((K, D),),
        "covariances": (compact,),
        "precisions": (compact,),
        "means_prior": ((), (D,), (K, D)),
        "means_weight": ((), (K,)),
        "covars_prior": {
            "full": ((), (D, D), (K, D, D)),
            "tied": ((), (D, D)),
            "diag": ((), (D,), (K, D)),
            "spherical": ((), (K,)),
        }[covariance_type],
    }
    if name not in table:
        raise ValueError(f"unknown Gaussian parameter {name!r}; expected one of {sorted(table)}.")
    return table[name]


def check_parameter(value, name, covariance_type, n_components, n_features, label=None):
    """Validate a user-given starting value or prior against :func:`parameter_shapes`.

    Besides the shape: every entry finite; ``means_weight`` non-negative;
    ``covariances`` and ``precisions`` symmetric positive definite;
    ``covars_prior`` non-negative, its matrices symmetric positive
    semi-definite.

    Parameters
    ----------
    value : array-like
    name : str
        A row of the table in :func:`parameter_shapes`.
    covariance_type : {"full", "tied", "diag", "spherical"}
    n_components, n_features : int
    label : str, optional
        The user's name for the parameter in error messages
        (``"precisions_init"``); defaults to ``name``.

    Returns
    -------
    array : ndarray of float64 (a copy)

    Raises
    ------
    ValueError
        Naming ``label``, the accepted shapes and what is wrong.
    """
    label = name if label is None else label
    allowed = parameter_shapes(name, covariance_type, n_components, n_features)
    array = np.array(value, dtype=np.float64, copy=True)
    if array.shape not in allowed:
        if len(allowed) == 1:
            raise ValueError(f"{label} must have shape {allowed[0]}, got {array.shape}.")
        raise ValueError(
            f"{label} for covariance_type={covariance_type!r} must have a shape in {allowed}, got {array.shape}."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{label} must be finite (found NaN or inf).")
    matrices = name != "means" and array.ndim >= 2 and array.shape[-2:] == (n_features, n_features)
    if covariance_type in ("diag", "spherical"):
        matrices = False  # (K, D) with K == D is a table of variances, not a matrix
    if name in ("covariances", "precisions"):
        if matrices:
            mats = array.reshape(-1, n_features, n_features)
            if not np.allclose(mats, np.swapaxes(mats, 1, 2), rtol=0, atol=1e-10 * max(1.0, np.abs(mats).max())):
                raise ValueError(f"{label} must be symmetric.")
            try:
                np.linalg.cholesky(mats)
            except np.linalg.LinAlgError:
                raise ValueError(f"{label} must be positive definite.") from None
        elif np.any(array <= 0):
            raise ValueError(f"{label} must be positive definite (every entry > 0).")
    elif name == "covars_prior" and matrices:
        mats = array.reshape(-1, n_features, n_features)
        scale = max(1.0, np.abs(mats).max())
        if not np.allclose(mats, np.swapaxes(mats, 1, 2), rtol=0, atol=1e-10 * scale) or np.any(
            np.linalg.eigvalsh(mats) < -1e-12 * scale
        ):
            raise ValueError(f"{label} matrices must be symmetric positive semi-definite.")
    elif name in ("covars_prior", "means_weight") and np.any(array < 0):
        raise ValueError(f"{label} must be non-negative.")
    return array


# --------------------------------------------------------------------------- counting and sampling
def n_parameters(n_components, n_features, covariance_type):
    """Free parameters of the means and covariances (mixing/transition weights not included)."""
    _check_type(covariance_type)
    if covariance_type == "full":
        cov = n_components * n_features * (n_features + 1) / 2.0
    elif covariance_type == "diag":
        cov = n_components * n_features
    elif covariance_type == "tied":
        cov = n_features * (n_features + 1) / 2.0
    else:
        cov = n_components
    return int(cov + n_components * n_features)


def sample(means, covariances, covariance_type, labels, random_state):
    """Draw one row per entry of ``labels`` from the labelled component.

    Parameters
    ----------
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray, compact shape for ``covariance_type``
    labels : ndarray of int of shape (n_samples,)
    random_state : numpy.random.RandomState

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    """
    labels = np.asarray(labels)
    n_features = means.shape[1]
    X = np.empty((labels.shape[0], n_features), dtype=means.dtype)
    for k in np.unique(labels):
        rows = labels == k
        count = int(rows.sum())
        if covariance_type == "full":
            draw = random_state.multivariate_normal(means[k], covariances[k], count)
        elif covariance_type == "tied":
            draw = random_state.multivariate_normal(means[k], covariances, count)
        else:  # diag (a variance per feature) or spherical (one variance, broadcast)
            draw = means[k] + random_state.standard_normal((count, n_features)) * np.sqrt(covariances[k])
        X[rows] = draw
    return X


def recenter(stats, old_center, new_center, covariance_type):
    """Statistics taken about ``old_center`` moved, exactly, to ``new_center`` (running averages of online EM).

    Only the first moment depends on the centre: ``first' = first - N_k (new_k - old_k)``; the scatter
    (about the statistics' own mean) stays as it is.

    Parameters
    ----------
    stats : GaussianStats
    old_center, new_center : ndarray of shape (n_components, n_features)
    covariance_type : {"full", "tied", "diag", "spherical"}
        Not needed (kept so every density's recenter has one signature).

    Returns
    -------
    GaussianStats
    """
    delta = np.asarray(new_center, dtype=np.float64) - np.asarray(old_center, dtype=np.float64)
    return GaussianStats(stats.post, stats.first - stats.post[:, np.newaxis] * delta, stats.second)


# --------------------------------------------------------------------------- the density object
def prior_arrays(covariance_type, n_components, n_features, means_prior=None, means_weight=None, covars_prior=None,
                 covars_weight=None):
    """The prior hyperparameters as :func:`m_step` and :func:`log_prior` take them (None: off).

    ``means_prior`` of shape (D,) is broadcast to (K, D); a spherical
    ``covars_prior`` of shape (K,) becomes (K, D); ``covars_weight`` stays
    None (no extra count) or becomes a float.
    """
    means_prior = 0.0 if means_prior is None else np.asarray(means_prior, dtype=np.float64)
    if np.ndim(means_prior):
        means_prior = np.broadcast_to(means_prior, (n_components, n_features))
    covars_prior = 0.0 if covars_prior is None else np.asarray(covars_prior, dtype=np.float64)
    if covariance_type == "spherical" and np.ndim(covars_prior) == 1:
        covars_prior = np.repeat(covars_prior[:, np.newaxis], n_features, axis=1)
    return {
        "means_prior": means_prior,
        "means_weight": 0.0 if means_weight is None else np.asarray(means_weight, dtype=np.float64),
        "covars_prior": covars_prior,
        "covars_weight": None if covars_weight is None else float(covars_weight),
    }


def _has_missing(X):
    """Whether a block has a NaN (missing entry): one pass, the NaN propagating through a sum."""
    return X.dtype.kind == "f" and bool(np.isnan(np.add.reduce(X, axis=None)))


class _Complete:
    """The layout (:meth:`Gaussian.layout`) of a block without missing entries: its E-steps skip the NaN check.
    One object, also in worker processes."""

    def __reduce__(self):
        return "COMPLETE"

    def __repr__(self):
        return "COMPLETE"


COMPLETE = _Complete()


def _missing(X, layout):
    """Whether rows go to ``gaussian_missing``: a layout of missing entries, or, with none given, a NaN in X."""
    if layout is COMPLETE:
        return False
    return layout is not None or _has_missing(X)


class Gaussian(Density):
    """Gaussian components as an object: the functions of this module with their hyperparameters bound.

    Parameters
    ----------
    covariance_type : {"full", "tied", "diag", "spherical"}
    n_components, n_features : int
    means_name, covariances_name : str, default="means_", "covariances_"
        The attribute names of the parameters (GaussianHMM: ``covars_``).
    precisions_name : str, optional
        Also keep the precision Cholesky factors in the parameters under this
        name (GaussianMixture's ``precisions_cholesky_``); each E-step then
        reuses them. None: computed once per E-step (:meth:`context`).
    dtype : dtype, default=float64
        Of the packed parameters (GaussianMixture keeps float32 in float32).
    reg_covar : float, default=0.0
        Added to every variance after the exact update (the slack it may
        cost is :meth:`slack`).
    means_prior, means_weight, covars_prior, covars_weight : optional
        The conjugate priors (see :func:`m_step`); None switches one off.
    learn_means, learn_covars : bool, default=True
        What the M-step updates (the HMMs' ``params`` letters).
    keep_empty : bool, default=False
        A component with no posterior mass keeps its means and covariances
        (the HMMs' policy: the expected complete log-likelihood cannot
        decrease); False keeps scikit-learn's update (a tiny count keeps it
        finite, ``reg_covar`` keeps it positive definite).

    Notes
    -----
    Rows with missing values (NaN) enter here: :meth:`log_likelihood`,
    :meth:`accumulate` and :meth:`mixture_block` are the only places that
    read rows, so the marginal densities and conditional expectations of
    incomplete rows (``gaussian_missing``) plug in at these three methods,
    for the mixtures and the HMMs at once.
    """

    def __init__(self, covariance_type, n_components, n_features, *, means_name="means_",
                 covariances_name="covariances_", precisions_name=None, dtype=np.float64, reg_covar=0.0,
                 means_prior=None, means_weight=None, covars_prior=None, covars_weight=None, learn_means=True,
                 learn_covars=True, keep_empty=False):
        _check_type(covariance_type)
        self.covariance_type = covariance_type
        self.n_components = int(n_components)
        self.n_features = int(n_features)
        self.names = {"means": means_name, "covariances": covariances_name}
        self.precisions_name = precisions_name
        self.dtype = np.dtype(dtype)
        self.reg_covar = float(reg_covar)
        self.priors = prior_arrays(covariance_type, n_components, n_features, means_prior, means_weight,
                                   covars_prior, covars_weight)
        self.learn_means = bool(learn_means)
        self.learn_covars = bool(learn_covars)
        self.keep_empty = bool(keep_empty)

    def param_names(self):
        """Attribute names in the parameter dict (with the precision factors when kept)."""
        names = (self.names["means"], self.names["covariances"])
        return names + ((self.precisions_name,) if self.precisions_name else ())

    # ------------------------------------------------------------ E-step
    def context(self, params):
        """The precision Cholesky factors (kept in ``params`` or computed here)."""
        if self.precisions_name:
            return params[self.precisions_name]
        return precisions_cholesky(params[self.names["covariances"]], self.covariance_type)

    # Rows with NaN (missing entries) go to emkit._densities.gaussian_missing, which marginalises them exactly;
    # complete blocks never leave the fast paths of this module (one NaN check per block).
    def log_likelihood(self, X, params, context):
        if _has_missing(X):
            from . import gaussian_missing

            return gaussian_missing.log_likelihood(X, params[self.names["means"]], context, self.covariance_type)
        return log_likelihood(X, params[self.names["means"]], context, self.covariance_type)

    def layout(self, X):
        """With missing values, where they are and the incomplete rows gathered (gaussian_missing.layout);
        :data:`COMPLETE` without (later E-steps then skip their check for NaN)."""
        if not _has_missing(X):
            return COMPLETE
        from . import gaussian_missing

        return gaussian_missing.layout(X, self.n_components, self.covariance_type)

    def frames(self, X, params, context, layout=None, work=None):
        """Log densities for the HMM kernels (with the rows' maxima where one pass gives them,
        :func:`log_likelihood_shifted`); with missing values the cache keeps the completed rows."""
        if _missing(X, layout):
            from . import gaussian_missing

            log_frameprob, completion = gaussian_missing.log_likelihood(
                X, params[self.names["means"]], context, self.covariance_type, keep=True, layout=layout
            )
            return {"log_frameprob": log_frameprob}, completion
        scratch = None if work is None else work.setdefault("densities", kernels.Scratch())
        log_prob, shifted = log_likelihood_shifted(X, params[self.names["means"]], context, self.covariance_type,
                                                   scratch)
        return {"log_frameprob": log_prob, "shifted": shifted}, None

    def accumulate(self, X, resp, params, context, cache=None, layout=None):
        if _missing(X, layout):
            from . import gaussian_missing

            if context is None:  # a start's statistics need the current parameters: not for missing values
                raise ValueError("the starting statistics take complete rows (impute them for the start)")
            return gaussian_missing.accumulate(X, resp, params[self.names["means"]], context, self.covariance_type,
                                               completion=cache, layout=layout)
        return accumulate(X, resp, params[self.names["means"]], self.covariance_type)

    def mixture_block(self, X, sample_weight, log_weights, params, context, layout=None):
        # densities, responsibilities and statistics of the block's rows in one pass (chunked inside, so a
        # large block -- a Dask chunk -- keeps its temporaries small)
        if _missing(X, layout):
            from . import gaussian_missing

            return gaussian_missing.mixture_block(X, sample_weight, log_weights, params[self.names["means"]],
                                                  context, self.covariance_type, layout=layout)
        return mixture_block(X, sample_weight, log_weights, params[self.names["means"]], context,
                             self.covariance_type)

    def initial_centre(self, X, sample_weight):
        """Moments of a start are centred on the data's mean: the start is then as accurate as later steps."""
        centre = np.tile(np.average(X, axis=0, weights=sample_weight), (self.n_components, 1))
        return {self.names["means"]: centre}

    # ------------------------------------------------------------ M-step
    def m_step(self, stats, params):
        """:func:`m_step` with the bound hyperparameters; empty components kept when ``keep_empty``."""
        means_name, covariances_name = self.names["means"], self.names["covariances"]
        centre = np.asarray(params[means_name], dtype=np.float64)
        covariances = params.get(covariances_name)
        means, covariances_new = m_step(
            stats, centre, self.covariance_type, means=centre, covariances=covariances,
            learn_means=self.learn_means, learn_covars=self.learn_covars, reg_covar=self.reg_covar, **self.priors,
        )
        if self.keep_empty:
            # a component with no posterior mass keeps its parameters (generalised EM: Q does not decrease)
            empty = stats.post <= 1e-10
            if np.any(empty):
                means = np.where(empty[:, np.newaxis], centre, means)
                if self.learn_covars and self.covariance_type != "tied":
                    covariances_new = covariances_new.copy()
                    covariances_new[empty] = covariances[empty]
        return {means_name: means, covariances_name: covariances_new}

    def pack(self, params):
        """Parameters in the model's dtype, precision factors added when kept.

        Raises
        ------
        numpy.linalg.LinAlgError
            When a covariance is not positive definite (the caller names the
            hyperparameter that helps).
        """
        means_name, covariances_name = self.names["means"], self.names["covariances"]
        prec_chol = precisions_cholesky(params[covariances_name], self.covariance_type)
        out = {means_name: params[means_name].astype(self.dtype),
               covariances_name: params[covariances_name].astype(self.dtype)}
        if self.precisions_name:
            out[self.precisions_name] = prec_chol.astype(self.dtype)
        return out

    def slack(self, stats, params):
        """What adding ``reg_covar`` after the exact covariance update may cost (:func:`regularization_slack`)."""
        if self.reg_covar <= 0:
            return 0.0
        nk = stats.post + 10 * np.finfo(np.float64).eps
        counts = nk + prior_count(self.covariance_type, self.n_features, self.priors["covars_weight"])
        return regularization_slack(params[self.names["covariances"]], self.covariance_type, self.reg_covar, counts,
                                    self.n_features)

    def log_prior(self, params):
        if not (self.learn_means or self.learn_covars):
            return 0.0
        priors = dict(self.priors)
        if not self.learn_means:
            priors["means_weight"] = 0.0
        if not self.learn_covars:
            priors["covars_prior"] = 0.0
            priors["covars_weight"] = None
        return log_prior(params[self.names["means"]], params[self.names["covariances"]], self.covariance_type,
                         **priors)

    def recenter(self, stats, old_params, new_params):
        means_name = self.names["means"]
        return recenter(stats, old_params[means_name], new_params[means_name], self.covariance_type)

    # ------------------------------------------------------------ counting, sampling, shapes
    def n_parameters(self):
        return n_parameters(self.n_components, self.n_features, self.covariance_type)

    def sample(self, params, labels, random_state):
        return sample(params[self.names["means"]], params[self.names["covariances"]], self.covariance_type, labels,
                      random_state)

    def expectation(self, params):
        return params[self.names["means"]]

    def shapes(self):
        K, D = self.n_components, self.n_features
        covariances = parameter_shapes("covariances", self.covariance_type, K, D)[0]
        return {self.names["means"]: (K, D), self.names["covariances"]: covariances}

    def table(self):
        return {name: parameter_shapes(name, self.covariance_type, self.n_components, self.n_features)
                for name in ("means", "covariances", "precisions", "means_prior", "means_weight", "covars_prior")}

    def check(self, value, name, label=None):
        """:func:`check_parameter` (the table of :func:`parameter_shapes` and its value rules)."""
        return check_parameter(value, name, self.covariance_type, self.n_components, self.n_features, label=label)
