"""Categorical emissions: one symbol in ``0..n_symbols-1`` per time step.

The same four pieces as every density module: log-likelihood, weighted M-step
from additive statistics (plus the matching log-prior), free-parameter count
and sampling.
"""

from typing import NamedTuple

import numpy as np

from .._inference._jit import jit
from .._inference.mixture import NUMPY_MAX_ROWS
from .._math import safe_log
from .._stats import add_fields, scale_fields
from . import dirichlet
from .base import Broadcast, Density

__all__ = [
    "Categorical",
    "CategoricalStats",
    "check_symbols",
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
def _count_symbols_compiled(symbols, posteriors, n_symbols):
    counts_t = np.zeros((n_symbols, posteriors.shape[1]))
    for t in range(symbols.shape[0]):
        m = symbols[t]
        for k in range(posteriors.shape[1]):
            counts_t[m, k] += posteriors[t, k]
    return counts_t.T.copy()


def _count_symbols(symbols, posteriors, n_symbols):
    """``counts[k, m] = sum_t posteriors[t, k] [symbols[t] = m]``, summed in the order of ``t``.

    Small inputs (at most :data:`emkit._inference.mixture.NUMPY_MAX_ROWS`
    rows) use one ``np.bincount`` per state, which needs no compilation on
    first use; larger ones a compiled loop (three times faster at 200,000
    rows). Both make the same additions in the same order: the same numbers.
    """
    if symbols.shape[0] > NUMPY_MAX_ROWS:
        return _count_symbols_compiled(symbols, posteriors, n_symbols)
    counts = np.empty((posteriors.shape[1], n_symbols))
    for k in range(posteriors.shape[1]):
        counts[k] = np.bincount(symbols, weights=posteriors[:, k], minlength=n_symbols)
    return counts


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
    (1 = maximum likelihood); :func:`emkit._densities.dirichlet.map_update`,
    so its zero rule holds (a zero probability stays zero, a state with no
    mass keeps its row).

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
    return dirichlet.map_update(stats.counts, emissionprob_prior, emissionprob)


def log_prior(emissionprob, emissionprob_prior=1.0):
    """``sum (alpha - 1) log b`` (Dirichlet, up to a constant); zero entries are skipped."""
    return dirichlet.log_prior(emissionprob, emissionprob_prior)


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


def check_symbols(X, owner="CategoricalHMM"):
    """Check one column of integer symbols (any numeric dtype); return them as int64 of shape (n_samples,)."""
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError(f"{owner} expects numeric integer symbols, got dtype {X.dtype}.")
    if X.shape[1] != 1:
        raise ValueError(
            f"{owner} expects X of shape (n_samples, 1): one column of integer symbols; got {X.shape[1]} columns."
        )
    if np.any(X < 0):
        raise ValueError(f"Negative values in data passed to {owner}: symbols must be integers >= 0.")
    if not np.issubdtype(X.dtype, np.integer) and np.any(X != np.floor(X)):
        raise ValueError(f"{owner} expects integer symbols, found non-integral values.")
    if X.size and X.max() >= 2**53:
        raise ValueError(
            f"{owner}: symbol {X.max():.6g} is too large; symbols are the integers 0 .. n_features - 1 "
            "(encode raw ids first, e.g. with sklearn.preprocessing.OrdinalEncoder)."
        )
    return X[:, 0].astype(np.int64)


class Categorical(Density):
    """Categorical components as an object: one symbol in ``0..n_symbols-1`` per row.

    Parameters
    ----------
    n_components, n_symbols : int
    emissionprob_prior : float or array-like broadcastable to (n_components, n_symbols), default=1.0
        Dirichlet prior on each component's symbol distribution.
    name : str, default="emissionprob_"
    owner : str, default="CategoricalHMM"
        The estimator's name, for error messages.
    """

    def __init__(self, n_components, n_symbols, *, emissionprob_prior=1.0, name="emissionprob_",
                 owner="CategoricalHMM"):
        self.n_components = int(n_components)
        self.n_symbols = int(n_symbols)
        self.names = {"emissionprob": name}
        self.owner = owner
        self.emissionprob_prior = self.check(emissionprob_prior, "emissionprob_prior")

    def check_input(self, X):
        return check_symbols(X, self.owner)

    def log_likelihood(self, X, params, context):
        return log_likelihood(X, params[self.names["emissionprob"]])

    def likelihood(self, X, params, context):
        return likelihood(X, params[self.names["emissionprob"]])

    def accumulate(self, X, resp, params, context, cache=None):
        return accumulate(X, resp, self.n_symbols)

    def post(self, stats):
        return stats.counts.sum(axis=1)

    def m_step(self, stats, params):
        name = self.names["emissionprob"]
        return {name: m_step(stats, params.get(name), self.emissionprob_prior)}

    def log_prior(self, params):
        return log_prior(params[self.names["emissionprob"]], self.emissionprob_prior)

    def n_parameters(self):
        return n_parameters(self.n_components, self.n_symbols)

    def sample(self, params, labels, random_state):
        return sample(params[self.names["emissionprob"]], labels, random_state)

    def expectation(self, params):
        return params[self.names["emissionprob"]]

    def shapes(self):
        return {self.names["emissionprob"]: (self.n_components, self.n_symbols)}

    def table(self):
        shape = (self.n_components, self.n_symbols)
        return {"emissionprob": (shape,), "emissionprob_prior": Broadcast(shape)}

    def check_values(self, array, name, label):
        if name == "emissionprob_prior":
            if np.any(array < 0):
                raise ValueError(f"{label} must be finite and >= 0.")
            return
        dirichlet.check_distribution(array, label, array.shape)
