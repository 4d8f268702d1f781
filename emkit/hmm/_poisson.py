"""PoissonHMM: hidden Markov model with independent Poisson emissions (a vector of counts per step)."""

import numpy as np

from .._densities import poisson
from .._validation import store_init_arguments
from ._base import _BaseHMM, fill_docstring

__all__ = ["PoissonHMM"]


@fill_docstring
class PoissonHMM(_BaseHMM):
    """Hidden Markov model with independent Poisson emissions (a vector of counts per step).

    X holds non-negative counts, one column per count variable (negative
    values raise). Non-integral values are accepted and scored with
    ``lgamma(x + 1)`` in place of ``log x!`` (a quasi-likelihood; the M-step,
    a weighted mean, is the same).

    Parameters
    ----------
    n_components : int, default=1
        Number of hidden states.
    lambdas_prior, lambdas_weight : float or array-like broadcastable to (n_components, n_features), default=0
        Gamma prior on the rates: the M-step is
        ``(lambdas_prior + sum r x) / (lambdas_weight + N_k)`` (0, 0 =
        maximum likelihood). hmmlearn uses the total count of all states in
        place of ``N_k`` there; with its default 0, 0 both agree.
    params : str or tuple of str, default="stl"
        What EM learns: letters s, t, l (lambdas).
    init_params : str or tuple of str, default="stl"
        What is initialised (the rest must be given).
    lambdas_init : array-like of shape (n_components, n_features), default=None
        Starting rates.
    {shared_parameters}
    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
    transmat_ : ndarray of shape (n_components, n_components)
    lambdas_ : ndarray of shape (n_components, n_features)
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from emkit.hmm import PoissonHMM
    >>> rng = np.random.RandomState(0)
    >>> states = np.repeat([0, 1, 0, 1], 50)
    >>> X = rng.poisson(np.where(states == 0, 2.0, 20.0))[:, None]
    >>> model = PoissonHMM(n_components=2, random_state=0).fit(X)
    >>> np.round(np.sort(model.lambdas_[:, 0]))
    array([ 2., 20.])
    """

    _emission_names = {"l": "lambdas_"}

    _parameter_constraints = {
        **_BaseHMM._hmm_parameter_constraints,
        **poisson.PARAMETER_CONSTRAINTS,
    }

    def __init__(self, n_components=1, *, startprob_prior=1.0, transmat_prior=1.0, lambdas_prior=0.0,
                 lambdas_weight=0.0, algorithm="viterbi", params="stl", init_params="stl", startprob_init=None,
                 transmat_init=None, lambdas_init=None, max_iter=100, tol=1e-4, n_init=1, random_state=None,
                 warm_start=False, verbose=0, verbose_interval=10, n_jobs=None, keep_params_history=False,
                 learning_decay=0.7, learning_offset=10.0):
        store_init_arguments(self, locals())

    _positive_only = True
    _width_attr = "lambdas_"

    def _emission_input(self, X):
        if np.any(X < 0):
            raise ValueError("Negative values in data passed to PoissonHMM: counts must be >= 0.")
        return X

    def _make_density(self, n_features, learn):
        return poisson.Poisson(self.n_components, n_features, lambdas_prior=self.lambdas_prior,
                               lambdas_weight=self.lambdas_weight, learn="l" in learn)

    def _emission_check(self, X, emission_input, continuing, learn):
        density = self._make_density(X.shape[1], learn)  # checks the priors
        value = self._user_value("l", self.lambdas_init)
        if value is None:
            return density, {}
        name = "lambdas_init" if self.lambdas_init is not None else "lambdas_"
        return density, {"lambdas_": density.check(value, "lambdas", label=name)}

    def _emission_initialize(self, data, random_state):
        if "lambdas_" in data.given:
            return {"lambdas_": data.given["lambdas_"].copy()}, None
        X = data.X
        shape = (self.n_components, X.shape[1])
        mean, var = X.mean(), X.var()
        if mean > 0 and var > 0:
            # method of moments for a Gamma over all counts (hmmlearn's start)
            return {"lambdas_": random_state.gamma(shape=mean**2 / var, scale=var / mean, size=shape)}, None
        return {"lambdas_": np.full(shape, mean)}, None
