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

Statistics are centred: the E-step sums ``r_nk (x_n - c_k)`` and the matching
second moments about a *centre* ``c_k`` (the current means), not about zero.
They are still additive across blocks and sequences, and they avoid the
cancellation of raw moments when the data sit far from the origin.

Rows are processed in blocks whose size depends on the shape of the problem
alone, so temporaries stay small (never n x K x D at once) and results do not
depend on how the caller splits its work.
"""

import functools
from typing import NamedTuple

import numpy as np
from scipy import linalg

from .._inference.mixture import pair_products
from .._math import symmetrize
from .._stats import add_fields, scale_fields

__all__ = [
    "COVARIANCE_TYPES",
    "GaussianStats",
    "precisions_cholesky",
    "precisions_from_cholesky",
    "covariances_from_precisions",
    "log_likelihood",
    "accumulate",
    "shared_features",
    "m_step",
    "log_prior",
    "n_parameters",
    "prior_count",
    "sample",
    "block_size",
]

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

_LOG_2PI = np.log(2.0 * np.pi)
# Elements of the largest temporary (rows x K x D) one block may hold: ~2 MB of float64.
_BLOCK_ELEMENTS = 1 << 18


class GaussianStats(NamedTuple):
    """Expected sufficient statistics of Gaussian components, centred at ``center``.

    Attributes
    ----------
    post : ndarray of shape (K,)
        ``N_k = sum_n r_nk``.
    first : ndarray of shape (K, D)
        ``sum_n r_nk (x_n - c_k)``.
    second : ndarray of shape (K, D, D) or (K, D)
        ``sum_n r_nk (x_n - c_k)(x_n - c_k)^T`` for full and tied, its
        diagonal for diag and spherical.
    """

    post: np.ndarray
    first: np.ndarray
    second: np.ndarray

    add = add_fields
    scale = scale_fields


def block_size(n_components, n_features, covariance_type="diag", dtype=np.float64):
    """Rows per block, so that a block's largest temporary stays near 2 MB.

    That temporary is (rows, K*D) for full covariances in float32 (one whitened
    copy per component), (rows, D*(D+1)/2 + K) for full covariances in float64
    (pair features and log-densities), and (rows, K + D) otherwise.
    """
    if covariance_type == "full" and np.dtype(dtype) != np.float64:
        width = n_components * n_features
    elif covariance_type in ("full", "tied"):
        width = n_features * (n_features + 1) // 2 + n_components
    else:
        width = n_components + n_features
    return int(max(64, _BLOCK_ELEMENTS // max(1, width)))


@functools.lru_cache(maxsize=32)
def _triu(n_features):
    """``numpy.triu_indices(n_features)``, computed once per dimension."""
    rows, cols = np.triu_indices(n_features)
    rows.setflags(write=False)
    cols.setflags(write=False)
    return rows, cols


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
def log_likelihood(X, means, prec_chol, covariance_type, out=None, features=None):
    """Log-density of every row under every component.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    means : ndarray of shape (n_components, n_features)
    prec_chol : ndarray
        Precision Cholesky factors, see :func:`precisions_cholesky`.
    covariance_type : {"full", "tied", "diag", "spherical"}
    out : ndarray of shape (n_samples, n_components), optional
        Where to write the result.
    features : ndarray, optional
        ``shared_features(X, means, covariance_type)`` when the caller already
        has it; saves recomputing it.

    Returns
    -------
    log_prob : ndarray of shape (n_samples, n_components)
        ``log N(x_n | mu_k, Sigma_k)``.
    """
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    dtype = np.result_type(X.dtype, means.dtype)
    if out is None:
        out = np.empty((n_samples, n_components), dtype=dtype)
    const = _log_det_chol(prec_chol, covariance_type, n_components, n_features) - 0.5 * n_features * _LOG_2PI
    step = block_size(n_components, n_features, covariance_type, X.dtype)
    if covariance_type in ("diag", "spherical"):
        prec = prec_chol**2
        if covariance_type == "spherical":
            prec = np.repeat(prec[:, np.newaxis], n_features, axis=1)
        # expanded about g, the middle of the means, so that data far from the origin do not
        # cancel away digits: with y = x - g and m = mu - g,
        # -1/2 sum_d p_kd (y_d - m_kd)^2 = -1/2 y^2 . p + y . (m p) - 1/2 m^2 . p
        g = means.mean(axis=0)
        offset = means - g
        mp = offset * prec
        const = const - 0.5 * np.sum(offset * mp, axis=1)
        # with features [1, y, y^2] (shared_features) it is one product per block
        weights = np.vstack([const[np.newaxis, :], mp.T, -0.5 * prec.T]).astype(dtype, copy=False)
        for start in range(0, n_samples, step):
            if features is None:
                block_features = shared_features(X[start : start + step], means, covariance_type)
            else:
                block_features = features[start : start + step]
            np.matmul(block_features, weights, out=out[start : start + step])
        return out
    if covariance_type == "tied":
        g = means.mean(axis=0)  # expand about the middle of the means (see diag above)
        mw = (means - g) @ prec_chol  # (K, D): whitened means
        for start in range(0, n_samples, step):
            Xw = (X[start : start + step] - g) @ prec_chol  # (m, D)
            block = out[start : start + step]
            # |Xw - mw|^2 = |Xw|^2 - 2 Xw mw^T + |mw|^2
            np.matmul(Xw, mw.T, out=block)
            block *= 2.0
            block -= np.sum(Xw * Xw, axis=1)[:, np.newaxis]
            block -= np.sum(mw * mw, axis=1)
            block *= 0.5
            block += const
        return out
    if X.dtype == np.float64:
        # float64: (x-g)^T P_k (x-g) - 2 (x-g)^T P_k (mu_k-g) + (mu_k-g)^T P_k (mu_k-g), where the
        # quadratic terms of all components are one product of the pair features of x - g with
        # the packed upper triangles of the P_k. It writes (m, K) instead of (m, K*D) per block.
        # g, the middle of the means, keeps the terms small (a few of float64's 16 digits lost
        # where components lie many standard deviations apart).
        g = means.mean(axis=0)
        offset = means - g
        precisions = precisions_from_cholesky(prec_chol, "full")
        rows, cols = _triu(n_features)
        quad = np.ascontiguousarray((precisions[:, rows, cols] * np.where(rows == cols, 1.0, 2.0)).T)  # (T, K)
        lin = np.ascontiguousarray((-2.0 * np.einsum("kij,kj->ki", precisions, offset)).T)  # (D, K)
        const = const - 0.5 * np.einsum("ki,kij,kj->k", offset, precisions, offset)
        scratch = np.empty((min(step, n_samples), quad.shape[0])) if features is None else None
        for start in range(0, n_samples, step):
            Xg = X[start : start + step] - g
            if features is None:
                pairs = pair_products(Xg, out=scratch[: Xg.shape[0]])
            else:
                pairs = features[start : start + step]
            block = out[start : start + step]
            np.matmul(pairs, quad, out=block)
            block += Xg @ lin
            block *= -0.5
            block += const
        return out
    # float32: one GEMM whitens a block under all K components at once, a second one
    # (against a 0/1 matrix that sums each component's D columns) gives the squared norms
    stacked = np.ascontiguousarray(np.transpose(prec_chol, (1, 0, 2)).reshape(n_features, n_components * n_features))
    shift = np.einsum("kd,kde->ke", means, prec_chol).reshape(-1)
    group_sum = np.kron(np.eye(n_components, dtype=dtype), np.ones((n_features, 1), dtype=dtype))
    for start in range(0, n_samples, step):
        Xb = X[start : start + step]
        whitened = Xb @ stacked
        whitened -= shift
        np.square(whitened, out=whitened)
        block = out[start : start + step]
        np.matmul(whitened, group_sum, out=block)
        block *= -0.5
        block += const
    return out


def shared_features(X, means, covariance_type):
    """Per-row features of ``X - g`` (``g`` the middle of ``means``) that :func:`log_likelihood`
    and :func:`accumulate` can share, so a caller doing both on one block builds them once.

    For full covariances in float64, the pair products (see
    :func:`emkit._inference.mixture.pair_products`); for diag and spherical,
    the columns ``[1, y, y**2]`` with ``y = x - g``, which turn both the
    log-densities and the statistics into one matrix product each; None where
    nothing is shared (tied, and full in float32).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    means : ndarray of shape (n_components, n_features)
    covariance_type : {"full", "tied", "diag", "spherical"}

    Returns
    -------
    features : ndarray of shape (n_samples, n_shared) or None
    """
    g = means.mean(axis=0)
    if covariance_type in ("diag", "spherical"):
        n_samples, n_features = X.shape
        features = np.empty((n_samples, 1 + 2 * n_features), dtype=X.dtype)
        features[:, 0] = 1.0
        centred = features[:, 1 : 1 + n_features]
        np.subtract(X, g.astype(X.dtype, copy=False), out=centred)
        np.square(centred, out=features[:, 1 + n_features :])
        return features
    if covariance_type == "full" and X.dtype == np.float64:
        return pair_products(X - g)
    return None


def accumulate(X, posteriors, center, covariance_type, features=None):
    """Weighted, centred sufficient statistics for all components.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    posteriors : ndarray of shape (n_samples, n_components)
        Responsibilities (already multiplied by any sample weights).
    center : ndarray of shape (n_components, n_features)
        Where the moments are taken (the current means).
    covariance_type : {"full", "tied", "diag", "spherical"}
    features : ndarray, optional
        ``shared_features(X, center, covariance_type)`` when the caller
        already has it.

    Returns
    -------
    GaussianStats
        Float64 statistics (accumulated in float64 across blocks even for
        float32 input).
    """
    n_samples, n_features = X.shape
    n_components = center.shape[0]
    post = np.zeros(n_components)
    first = np.zeros((n_components, n_features))
    step = block_size(n_components, n_features, covariance_type, X.dtype)
    if covariance_type in ("diag", "spherical"):
        # moments about one reference point g, moved to each c_k afterwards:
        # sum r (x - c)^2 = sum r (x - g)^2 - 2 (c - g) sum r (x - g) + N (c - g)^2
        g = center.mean(axis=0)
        # with features [1, y, y^2], y = x - g: N_k, sum r y and sum r y^2 in one product per block
        moments = np.zeros((n_components, 1 + 2 * n_features))
        for start in range(0, n_samples, step):
            if features is None:
                block_features = shared_features(X[start : start + step], center, covariance_type)
            else:
                block_features = features[start : start + step]
            moments += posteriors[start : start + step].T @ block_features
        post = moments[:, 0]
        first = moments[:, 1 : 1 + n_features]
        sq = moments[:, 1 + n_features :]
        delta = center - g
        second = sq - 2.0 * delta * first + post[:, np.newaxis] * delta**2
        first = first - post[:, np.newaxis] * delta
        return GaussianStats(post, first, np.maximum(second, 0.0))
    if X.dtype == np.float64:
        # float64: moments about one reference point g from one GEMM per block, moved to
        # each c_k afterwards. The shift loses about log10(|c_k - g|^2 / variance) digits
        # of float64's sixteen: harmless here, and twice as fast as centring per component.
        # The upper triangles of all K scatter matrices are one product of the rows' pair
        # features with the posteriors.
        g = center.mean(axis=0)
        rows, cols = _triu(n_features)
        packed = np.zeros((rows.shape[0], n_components))
        scratch = np.empty((min(step, n_samples), rows.shape[0])) if features is None else None
        for start in range(0, n_samples, step):
            Xg = X[start : start + step] - g
            rb = posteriors[start : start + step]
            post += rb.sum(axis=0)
            first += rb.T @ Xg
            if features is None:
                pairs = pair_products(Xg, out=scratch[: Xg.shape[0]])
            else:
                pairs = features[start : start + step]
            packed += pairs.T @ rb
        second = np.empty((n_components, n_features, n_features))
        second[:, rows, cols] = packed.T
        second[:, cols, rows] = packed.T
        delta = center - g
        fd = np.einsum("ki,kj->kij", first, delta)
        second = second - fd - np.swapaxes(fd, 1, 2) + post[:, None, None] * np.einsum("ki,kj->kij", delta, delta)
        first = first - post[:, np.newaxis] * delta
        return GaussianStats(post, first, symmetrize(second))
    # float32: centre on each component before multiplying (one batched product per block)
    second = np.zeros((n_components, n_features, n_features))
    for start in range(0, n_samples, step):
        Xb = X[start : start + step]
        rb = posteriors[start : start + step]
        centred = Xb[np.newaxis, :, :] - center.astype(X.dtype)[:, np.newaxis, :]  # (K, m, D)
        weighted = centred * rb.T[:, :, np.newaxis]
        post += rb.sum(axis=0)
        first += weighted.sum(axis=1)
        second += np.matmul(np.swapaxes(weighted, 1, 2), centred)
    return GaussianStats(post, first, symmetrize(second))


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
    r"""Closed-form (MAP) update of means and covariances from centred statistics.

    With ``N_k`` the summed posteriors, ``xbar_k`` the weighted data means,
    ``S_k = sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T`` about the new means,
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
        From :func:`accumulate` with centre ``center``.
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

    # second moments about the new means: S_k = second - N d d^T where d = mu_k - c_k adjusted
    delta = new_means - center  # (K, D)
    prior_diff = new_means - m0
    if covariance_type in ("full", "tied"):
        # sum r (x - mu)(x - mu)^T = second - first delta^T - delta first^T + N delta delta^T
        fd = np.einsum("ki,kj->kij", stats.first, delta)
        scatter = stats.second - fd - np.swapaxes(fd, 1, 2) + post[:, None, None] * np.einsum("ki,kj->kij", delta, delta)
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
    sq = stats.second - 2.0 * stats.first * delta + post[:, None] * delta**2
    numer = np.maximum(sq, 0.0) + mw[:, None] * prior_diff**2
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
            if covariance_type == "full":
                numer = psi + mw[k] * np.outer(diff[k], diff[k])
            else:
                numer = psi + np.einsum("k,ki,kj->ij", mw, diff, diff)
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
    """Statistics taken about ``old_center`` moved, exactly, to ``new_center`` (for running averages).

    With ``d_k = new_k - old_k``: ``first' = first - N_k d_k`` and
    ``second' = second - first d^T - d first^T + N_k d d^T`` (its diagonal
    for diag and spherical).

    Parameters
    ----------
    stats : GaussianStats
    old_center, new_center : ndarray of shape (n_components, n_features)
    covariance_type : {"full", "tied", "diag", "spherical"}

    Returns
    -------
    GaussianStats
    """
    delta = np.asarray(new_center, dtype=np.float64) - np.asarray(old_center, dtype=np.float64)
    post = stats.post[:, np.newaxis]
    if covariance_type in ("full", "tied"):
        fd = np.einsum("ki,kj->kij", stats.first, delta)
        outer = np.einsum("ki,kj->kij", delta, delta)
        second = stats.second - fd - np.swapaxes(fd, 1, 2) + post[:, :, np.newaxis] * outer
    else:
        second = stats.second - 2.0 * stats.first * delta + post * delta**2
    return GaussianStats(stats.post, stats.first - post * delta, second)
