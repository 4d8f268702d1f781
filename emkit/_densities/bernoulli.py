"""Bernoulli components: a vector of independent binary values per row (BernoulliMixture).

The same pieces as every density module: log-likelihood, additive statistics,
MAP update under a Beta prior (a two-category Dirichlet, so the one zero rule
of :mod:`emkit._densities.dirichlet` holds), log-prior, parameter count and
sampling, bound together in :class:`Bernoulli`.
"""

from typing import NamedTuple

import numpy as np

from .._stats import add_fields, scale_fields
from . import dirichlet
from .base import Density

__all__ = ["Bernoulli", "BernoulliStats", "log_likelihood", "accumulate", "m_step", "log_prior", "binarize"]


class BernoulliStats(NamedTuple):
    """Expected sufficient statistics (plain sums).

    Attributes
    ----------
    post : ndarray of shape (n_components,)
        ``N_k = sum_n r_nk``.
    ones : ndarray of shape (n_components, n_features)
        ``sum_n r_nk x_nd``: the expected number of ones.
    """

    post: np.ndarray
    ones: np.ndarray

    add = add_fields
    scale = scale_fields


def binarize(X, threshold, owner="BernoulliMixture"):
    """Rows as 0.0 / 1.0 (scikit-learn's BernoulliNB: ``x > threshold``; None: check the data are in {0, 1}).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    threshold : float or None
    owner : str
        The estimator's name, for the error message.

    Returns
    -------
    X : ndarray of float64 of shape (n_samples, n_features)
        A new array (the input is never modified).
    """
    if threshold is None:
        if not np.all((X == 0) | (X == 1)):
            raise ValueError(
                f"{owner} with binarize=None expects binary data (every entry 0 or 1); give a threshold "
                "(binarize=0.0 maps x > 0 to 1) to binarize other data."
            )
        return np.asarray(X, dtype=np.float64)
    return (X > threshold).astype(np.float64)


def log_likelihood(X, means):
    r"""``sum_d x_d log mu_kd + (1 - x_d) log(1 - mu_kd)`` for every row and component.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Binary values (0.0 or 1.0).
    means : ndarray of shape (n_components, n_features)
        Probabilities of a one.

    Returns
    -------
    log_prob : ndarray of shape (n_samples, n_components)
        ``-inf`` where a probability of exactly 0 (or 1) meets a one (or a zero).
    """
    means = np.asarray(means, dtype=np.float64)
    never, always = means <= 0.0, means >= 1.0
    log_one = np.log(np.where(never, 1.0, means))
    log_zero = np.log1p(-np.where(always, 0.0, means))
    out = X @ (log_one - log_zero).T
    out += log_zero.sum(axis=1)
    if np.any(never) or np.any(always):
        impossible = X @ never.T.astype(np.float64) + (1.0 - X) @ always.T.astype(np.float64)
        out[impossible > 0] = -np.inf
    return out


def accumulate(X, resp):
    """``N_k`` and ``sum_n r_nk x_n`` from responsibilities of shape (n_samples, n_components)."""
    return BernoulliStats(resp.sum(axis=0), resp.T @ X)


def _two_categories(means):
    return np.stack([means, 1.0 - means], axis=-1)


def m_step(stats, means=None, means_prior=(1.0, 1.0)):
    r"""MAP update of the probabilities under a Beta(a, b) prior.

    .. math::

        \mu_{kd} = \frac{\max(s_{kd} + a - 1, 0)}{\max(s_{kd} + a - 1, 0) + \max(N_k - s_{kd} + b - 1, 0)}

    with ``s_kd = sum_n r_nk x_nd`` (``a = b = 1``: maximum likelihood
    ``s_kd / N_k``). A two-category Dirichlet: a probability of exactly 0
    or 1 stays so, and a component with no mass keeps its values (0.5 for a
    start).

    Parameters
    ----------
    stats : BernoulliStats
    means : ndarray of shape (n_components, n_features), optional
        Current values.
    means_prior : array-like of shape (2,), default=(1, 1)
        ``(a, b)``.

    Returns
    -------
    means : ndarray of shape (n_components, n_features)
    """
    counts = np.stack([stats.ones, stats.post[:, np.newaxis] - stats.ones], axis=-1)
    current = None if means is None else _two_categories(np.asarray(means, dtype=np.float64))
    return dirichlet.map_update(counts, np.asarray(means_prior, dtype=np.float64), current)[..., 0]


def log_prior(means, means_prior=(1.0, 1.0)):
    """``sum (a - 1) log mu + (b - 1) log(1 - mu)`` (Beta, up to a constant; zero terms skipped)."""
    return dirichlet.log_prior(_two_categories(np.asarray(means, dtype=np.float64)), means_prior)


class Bernoulli(Density):
    """Independent Bernoulli components as an object.

    Parameters
    ----------
    n_components, n_features : int
    binarize : float or None, default=0.0
        Rows become ``x > binarize`` (None: the data must already be 0 or 1).
    means_prior : None, float or array-like of shape (2,), default=None
        Beta prior ``(a, b)`` on every probability (a float: ``a = b``);
        None: maximum likelihood.
    name : str, default="means_"
    owner : str, default="BernoulliMixture"
    """

    def __init__(self, n_components, n_features, *, binarize=0.0, means_prior=None, name="means_",
                 owner="BernoulliMixture"):
        self.n_components = int(n_components)
        self.n_features = int(n_features)
        self.start_with_a_mean_row = True
        self.names = {"means": name}
        self.owner = owner
        self.binarize = binarize
        prior = (1.0, 1.0) if means_prior is None else self.check(means_prior, "means_prior")
        self.means_prior = np.broadcast_to(np.asarray(prior, dtype=np.float64), (2,))

    def check_input(self, X):
        return binarize(X, self.binarize, self.owner)

    def log_likelihood(self, X, params, context):
        return log_likelihood(X, params[self.names["means"]])

    def accumulate(self, X, resp, params, context, cache=None):
        return accumulate(X, resp)

    def m_step(self, stats, params):
        name = self.names["means"]
        return {name: m_step(stats, params.get(name), self.means_prior)}

    def log_prior(self, params):
        return log_prior(params[self.names["means"]], self.means_prior)

    def n_parameters(self):
        return int(self.n_components * self.n_features)

    def sample(self, params, labels, random_state):
        means = params[self.names["means"]]
        labels = np.asarray(labels)
        return (random_state.uniform(size=(labels.shape[0], means.shape[1])) < means[labels]).astype(np.int64)

    def expectation(self, params):
        return params[self.names["means"]]

    def shapes(self):
        return {self.names["means"]: (self.n_components, self.n_features)}

    def table(self):
        return {"means": ((self.n_components, self.n_features),), "means_prior": ((), (2,))}

    def check_values(self, array, name, label):
        if name == "means" and (np.any(array < 0) or np.any(array > 1)):
            raise ValueError(f"{label} must lie in [0, 1] (probabilities of a one).")
        if name == "means_prior" and np.any(array <= 0):
            raise ValueError(f"{label} must be positive: the Beta prior's (a, b).")
