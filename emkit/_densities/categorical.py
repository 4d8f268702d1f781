"""Categorical emissions: one symbol in ``0..n_symbols-1`` per time step.

The same four pieces as every density module: log-likelihood, weighted M-step
from additive statistics (plus the matching log-prior), free-parameter count
and sampling.
"""

from typing import NamedTuple

import numpy as np

from .._inference._jit import jit
from .._math import safe_log
from .._stats import add_fields, scale_fields

__all__ = [
    "CategoricalStats",
    "log_likelihood",
    "likelihood",
    "accumulate",
    "m_step",
    "log_prior",
    "n_parameters",
    "sample",
]


class CategoricalStats(NamedTuple):
    """Expected symbol counts.

    Attributes
    ----------
    counts : ndarray of shape (n_components, n_symbols)
        ``sum_t r_tk [x_t = m]``.
    """

    counts: np.ndarray

    add = add_fields
    scale = scale_fields


def log_likelihood(symbols, emissionprob):
    """``log emissionprob[k, x_t]`` for every step and state.

    Parameters
    ----------
    symbols : ndarray of int of shape (n_samples,)
        Symbols in ``0..n_symbols-1``.
    emissionprob : ndarray of shape (n_components, n_symbols)

    Returns
    -------
    log_prob : ndarray of shape (n_samples, n_components)
        ``-inf`` where a state cannot emit the symbol.
    """
    return np.take(np.ascontiguousarray(safe_log(emissionprob).T), symbols, axis=0)


def likelihood(symbols, emissionprob):
    """``emissionprob[k, x_t]`` for every step and state: shape (n_samples, n_components)."""
    return np.take(np.ascontiguousarray(emissionprob.T), symbols, axis=0)


@jit
def _count_symbols(symbols, posteriors, n_symbols):
    counts_t = np.zeros((n_symbols, posteriors.shape[1]))
    for t in range(symbols.shape[0]):
        m = symbols[t]
        for k in range(posteriors.shape[1]):
            counts_t[m, k] += posteriors[t, k]
    return counts_t.T.copy()


def accumulate(symbols, posteriors, n_symbols):
    """Expected counts ``sum_t r_tk [x_t = m]`` from posteriors of shape (n_samples, n_components)."""
    symbols = np.ascontiguousarray(symbols, dtype=np.int64)
    posteriors = np.ascontiguousarray(posteriors, dtype=np.float64)
    return CategoricalStats(_count_symbols(symbols, posteriors, int(n_symbols)))


def m_step(stats, emissionprob, emissionprob_prior=1.0):
    r"""MAP update under a Dirichlet prior on each state's symbol distribution.

    .. math::

        b_{km} = \frac{\max(\alpha_{km} - 1 + n_{km}, 0)}{\sum_{m'} \max(\alpha_{km'} - 1 + n_{km'}, 0)}

    with ``n_km`` the expected counts and ``alpha`` = ``emissionprob_prior``
    (1 = maximum likelihood). A state whose row is all zero (no posterior
    mass and no prior pseudo-count) keeps its current row, so it stays a
    valid distribution.

    Parameters
    ----------
    stats : CategoricalStats
    emissionprob : ndarray of shape (n_components, n_symbols)
        Current values.
    emissionprob_prior : float or ndarray broadcastable to (n_components, n_symbols)

    Returns
    -------
    emissionprob : ndarray of shape (n_components, n_symbols)
    """
    numer = np.maximum(np.asarray(emissionprob_prior, dtype=np.float64) - 1.0 + stats.counts, 0.0)
    total = numer.sum(axis=1, keepdims=True)
    empty = total[:, 0] <= 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        new = numer / total
    new[empty] = emissionprob[empty]
    return new


def log_prior(emissionprob, emissionprob_prior=1.0):
    """``sum (alpha - 1) log b`` (Dirichlet, up to a constant); zero entries are skipped."""
    alpha = np.broadcast_to(np.asarray(emissionprob_prior, dtype=np.float64), emissionprob.shape)
    mask = (alpha != 1.0) & (emissionprob > 0.0)
    if not np.any(mask):
        return 0.0
    return float(np.sum((alpha[mask] - 1.0) * np.log(emissionprob[mask])))


def n_parameters(n_components, n_symbols):
    """Free parameters of the emission matrix: ``K (M - 1)``."""
    return int(n_components * (n_symbols - 1))


def sample(emissionprob, labels, random_state):
    """One symbol per entry of ``labels``; returns an int64 array of shape (n_samples, 1)."""
    labels = np.asarray(labels)
    cdf = np.cumsum(emissionprob, axis=1)
    cdf[:, -1] = 1.0
    u = random_state.uniform(size=labels.shape[0])
    out = np.empty(labels.shape[0], dtype=np.int64)
    for k in np.unique(labels):
        rows = labels == k
        out[rows] = np.searchsorted(cdf[k], u[rows], side="right")
    return np.minimum(out, emissionprob.shape[1] - 1)[:, np.newaxis]
