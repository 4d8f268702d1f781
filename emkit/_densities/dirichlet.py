"""Probability vectors under a Dirichlet prior: one MAP update and one log-prior for every emkit model.

Used by the HMMs' start and transition probabilities, categorical emissions,
the mixtures' weights (GaussianMixture, BernoulliMixture, PoissonMixture, the
per-state weights of GMMHMM) and, as a two-category Dirichlet, the Beta prior
of Bernoulli components.

The one zero rule
-----------------
An entry that is exactly zero in the current parameters stays zero (a
structural zero: EM itself can never move it, since no posterior mass reaches
it, and a prior pseudo-count must not revive it either). A row whose
numerators all vanish keeps its current values, so it stays a distribution.
The log-prior leaves zero entries out (they are outside the support the model
keeps).
"""

import numpy as np

from .._validation import check_array_param

__all__ = ["map_update", "log_prior", "check_prior", "check_distribution", "SUM_ATOL"]

#: How far a user-given distribution may be from summing to one.
SUM_ATOL = 1e-6


def map_update(counts, prior=1.0, current=None):
    r"""MAP probabilities under a Dirichlet prior, along the last axis.

    .. math::

        p_j = \frac{\max(n_j + \alpha_j - 1, 0)}{\sum_{j'} \max(n_{j'} + \alpha_{j'} - 1, 0)}

    with ``n`` the expected counts and ``alpha`` the concentration (1 is a
    flat prior: maximum likelihood). Entries exactly zero in ``current`` stay
    zero; a row with no mass left keeps ``current`` (see the module's zero
    rule).

    Parameters
    ----------
    counts : ndarray of shape (..., n_categories)
        Expected counts ``n_j``.
    prior : float or ndarray broadcastable to ``counts.shape``, default=1.0
        Concentration ``alpha_j``.
    current : ndarray of the shape of ``counts``, optional
        The current probabilities (structural zeros, and the fallback of an
        empty row). None: no structural zeros; an empty row becomes uniform.

    Returns
    -------
    prob : ndarray of the shape of ``counts``
        Each row sums to one.
    """
    counts = np.asarray(counts, dtype=np.float64)
    numer = np.maximum(counts + (np.asarray(prior, dtype=np.float64) - 1.0), 0.0)
    if current is not None:
        numer = np.where(current == 0.0, 0.0, numer)
    total = numer.sum(axis=-1, keepdims=True)
    empty = total <= 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        prob = numer / total
    if not np.any(empty):
        return prob
    fallback = np.full_like(prob, 1.0 / prob.shape[-1]) if current is None else np.asarray(current, np.float64)
    return np.where(empty, fallback, prob)


def log_prior(prob, prior=1.0):
    r"""Dirichlet log-density up to a constant: ``sum_j (alpha_j - 1) log p_j`` over the non-zero ``p_j``.

    Parameters
    ----------
    prob : ndarray of shape (..., n_categories)
    prior : float or ndarray broadcastable to ``prob.shape``, default=1.0

    Returns
    -------
    log_prior : float
        0.0 for a flat prior.
    """
    prob = np.asarray(prob, dtype=np.float64)
    alpha = np.broadcast_to(np.asarray(prior, dtype=np.float64), prob.shape)
    mask = (alpha != 1.0) & (prob > 0.0)
    if not np.any(mask):
        return 0.0
    return float(np.sum((alpha[mask] - 1.0) * np.log(prob[mask])))


def check_prior(value, name, shape, minimum=0.0, strict=False):
    """A prior given as a scalar or an array broadcastable to ``shape``; finite and ``>= minimum``.

    Parameters
    ----------
    value : float or array-like
    name : str
        For the error message.
    shape : tuple of int
    minimum : float, default=0.0
    strict : bool, default=False
        Require ``> minimum`` instead.

    Returns
    -------
    prior : ndarray of shape ``shape`` (a read-only broadcast view)
    """
    prior = np.asarray(value, dtype=np.float64)
    try:
        prior = np.broadcast_to(prior, shape)
    except ValueError:
        raise ValueError(f"{name} must be a scalar or broadcastable to {tuple(shape)}, got {prior.shape}.") from None
    below = prior <= minimum if strict else prior < minimum
    if not np.all(np.isfinite(prior)) or np.any(below):
        raise ValueError(f"{name} must be finite and {'>' if strict else '>='} {minimum}.")
    return prior


def check_distribution(value, name, shape):
    """A user-given probability vector (or stack of them, along the last axis): non-negative, summing to one.

    Parameters
    ----------
    value : array-like
    name : str
        For the error message.
    shape : tuple of int

    Returns
    -------
    prob : ndarray of float64 of shape ``shape`` (a copy)
    """
    array = check_array_param(value, name, shape)
    if np.any(array < 0):
        raise ValueError(f"{name} must be non-negative.")
    sums = array.sum(axis=-1)
    if not np.allclose(sums, 1.0, rtol=0.0, atol=SUM_ATOL):
        what = "must sum to 1" if array.ndim == 1 else "rows must each sum to 1"
        raise ValueError(f"{name} {what}, got sums {np.round(np.atleast_1d(sums), 8).tolist()}.")
    return array
