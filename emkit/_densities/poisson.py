"""Poisson emissions: a vector of independent counts per time step.

The same four pieces as every density module: log-likelihood, weighted M-step
from additive statistics (plus the matching log-prior), free-parameter count
and sampling.
"""

from numbers import Real
from typing import NamedTuple

import numpy as np
from scipy.special import gammaln

from .._stats import add_fields, scale_fields
from .._validation import Interval
from .base import Broadcast, Density

__all__ = [
    "Poisson",
    "PoissonStats",
    "PARAMETER_CONSTRAINTS",
    "log_likelihood",
    "accumulate",
    "m_step",
    "log_prior",
    "n_parameters",
    "sample",
]


#: scikit-learn parameter constraints of the estimators with Poisson components (PoissonHMM, PoissonMixture).
PARAMETER_CONSTRAINTS = {
    "lambdas_prior": [Interval(Real, 0, None, closed="left"), "array-like"],
    "lambdas_weight": [Interval(Real, 0, None, closed="left"), "array-like"],
    "lambdas_init": ["array-like", None],
}


class PoissonStats(NamedTuple):
    """Expected sufficient statistics.

    Attributes
    ----------
    post : ndarray of shape (n_components,)
        ``N_k = sum_t r_tk``.
    obs : ndarray of shape (n_components, n_features)
        ``sum_t r_tk x_t``.
    """

    post: np.ndarray
    obs: np.ndarray

    add = add_fields
    scale = scale_fields


def log_likelihood(X, lambdas):
    """``sum_d log Poisson(x_td | lambda_kd)`` for every step and state.

    Non-integral counts use ``lgamma(x + 1)`` in place of ``log x!``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Non-negative counts.
    lambdas : ndarray of shape (n_components, n_features)
        Non-negative rates.

    Returns
    -------
    log_prob : ndarray of shape (n_samples, n_components)
        ``-inf`` where a zero rate meets a positive count.
    """
    zero = lambdas <= 0.0
    log_lam = np.log(np.where(zero, 1.0, lambdas))
    out = X @ log_lam.T
    out -= lambdas.sum(axis=1)
    out -= gammaln(X + 1.0).sum(axis=1, keepdims=True)
    if np.any(zero):
        impossible = (X > 0).astype(np.float64) @ zero.T.astype(np.float64)
        out[impossible > 0] = -np.inf
    return out


def accumulate(X, posteriors):
    """``N_k`` and ``sum_t r_tk x_t`` from posteriors of shape (n_samples, n_components)."""
    return PoissonStats(posteriors.sum(axis=0), posteriors.T @ X)


def m_step(stats, lambdas, lambdas_prior=0.0, lambdas_weight=0.0):
    r"""MAP update of the rates under the conjugate Gamma prior.

    .. math::

        \lambda_{kd} = \frac{a_{kd} + \sum_t r_{tk} x_{td}}{b_{kd} + N_k}

    with ``a`` = ``lambdas_prior`` and ``b`` = ``lambdas_weight``: the mode
    of the posterior under a Gamma(shape ``a + 1``, rate ``b``) prior
    (``a = b = 0``, the default, is maximum likelihood). A component with
    ``b + N_k = 0`` keeps its current rates (with no current rates, a start:
    the rates of all the data).

    Parameters
    ----------
    stats : PoissonStats
    lambdas : ndarray of shape (n_components, n_features) or None
        Current values.
    lambdas_prior, lambdas_weight : float or ndarray broadcastable to (n_components, n_features)

    Returns
    -------
    lambdas : ndarray of shape (n_components, n_features)
    """
    alpha = np.asarray(lambdas_prior, dtype=np.float64)
    beta = np.asarray(lambdas_weight, dtype=np.float64)
    numer = alpha + stats.obs
    denom = np.broadcast_to(beta + stats.post[:, np.newaxis], numer.shape)
    empty = denom <= 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        new = numer / denom
    if not np.any(empty):
        return new
    if lambdas is None:
        lambdas = np.broadcast_to(stats.obs.sum(axis=0) / max(stats.post.sum(), np.finfo(np.float64).tiny), new.shape)
    return np.where(empty, lambdas, new)


def log_prior(lambdas, lambdas_prior=0.0, lambdas_weight=0.0):
    """``sum a log(lambda) - b lambda`` (Gamma(a + 1, b), up to a constant); 0 with the defaults."""
    alpha = np.broadcast_to(np.asarray(lambdas_prior, dtype=np.float64), lambdas.shape)
    beta = np.broadcast_to(np.asarray(lambdas_weight, dtype=np.float64), lambdas.shape)
    if not np.any(alpha) and not np.any(beta):
        return 0.0
    with np.errstate(divide="ignore"):
        term = np.where(alpha != 0.0, alpha * np.log(lambdas), 0.0)
    return float(np.sum(term - beta * lambdas))


def n_parameters(n_components, n_features):
    """Free parameters of the rates: ``K D``."""
    return int(n_components * n_features)


def sample(lambdas, labels, random_state):
    """Counts for each entry of ``labels``; returns an int64 array of shape (n_samples, n_features)."""
    labels = np.asarray(labels)
    return random_state.poisson(lambdas[labels]).astype(np.int64)


class Poisson(Density):
    """Independent Poisson components as an object (PoissonHMM, PoissonMixture).

    Parameters
    ----------
    n_components, n_features : int
    lambdas_prior, lambdas_weight : float or array-like broadcastable to (n_components, n_features), default=0
        The Gamma prior of :func:`m_step` (0, 0: maximum likelihood).
    name : str, default="lambdas_"
        The attribute name of the rates.
    learn : bool, default=True
        Whether the M-step updates the rates.
    owner : str, default="PoissonHMM"
        The estimator's name, for error messages.
    """

    def __init__(self, n_components, n_features, *, lambdas_prior=0.0, lambdas_weight=0.0, name="lambdas_",
                 learn=True, owner="PoissonHMM"):
        self.n_components = int(n_components)
        self.n_features = int(n_features)
        self.start_with_a_mean_row = True
        self.names = {"lambdas": name}
        self.owner = owner
        self.lambdas_prior = self.check(lambdas_prior, "lambdas_prior")
        self.lambdas_weight = self.check(lambdas_weight, "lambdas_weight")
        self.learn = bool(learn)

    def param_names(self):
        return (self.names["lambdas"],)

    def check_input(self, X):
        if np.any(X < 0):
            raise ValueError(f"Negative values in data passed to {self.owner}: counts must be >= 0.")
        return X

    def log_likelihood(self, X, params, context):
        return log_likelihood(X, params[self.names["lambdas"]])

    def accumulate(self, X, resp, params, context, cache=None):
        return accumulate(X, resp)

    def m_step(self, stats, params):
        current = params.get(self.names["lambdas"])
        return {self.names["lambdas"]: m_step(stats, current, self.lambdas_prior, self.lambdas_weight)}

    def log_prior(self, params):
        if not self.learn:
            return 0.0
        return log_prior(params[self.names["lambdas"]], self.lambdas_prior, self.lambdas_weight)

    def n_parameters(self):
        return n_parameters(self.n_components, self.n_features)

    def sample(self, params, labels, random_state):
        return sample(params[self.names["lambdas"]], labels, random_state)

    def expectation(self, params):
        return params[self.names["lambdas"]]

    def shapes(self):
        return {self.names["lambdas"]: (self.n_components, self.n_features)}

    def table(self):
        shape = (self.n_components, self.n_features)
        return {"lambdas": (shape,), "lambdas_prior": Broadcast(shape), "lambdas_weight": Broadcast(shape)}

    def check_values(self, array, name, label):
        if np.any(array < 0):
            raise ValueError(f"{label} must be non-negative.")
