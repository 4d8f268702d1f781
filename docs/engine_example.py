"""A complete emkit family in one page: a mixture of Poisson distributions over count vectors.

Shown in docs/engine.rst and run by tests/test_em_engine.py. Everything the
engine needs is here: validated data cut into blocks, a start, a block
function returning additive statistics, and an M-step.
"""

from numbers import Integral
from typing import NamedTuple

import numpy as np
from scipy.special import gammaln, logsumexp
from sklearn.base import BaseEstimator, DensityMixin

from emkit._blocks import Blocks, row_bounds
from emkit._stats import add_fields
from emkit._validation import Interval, validate_data
from emkit.base import BlockResult, EMMixin


class _Data(NamedTuple):
    blocks: Blocks  # what the engine maps over
    n_units: float  # what the objective is averaged over
    X: np.ndarray


class _Stats(NamedTuple):
    post: np.ndarray  # (K,) summed responsibilities
    counts: np.ndarray  # (K, D) responsibility-weighted counts

    add = add_fields  # statistics of two blocks add field by field


def _rows(X, start, stop):  # module level, so that blocks pickle
    return X[start:stop]


class ToyPoissonMixture(EMMixin, DensityMixin, BaseEstimator):
    """Mixture of independent Poisson distributions (the engine's worked example)."""

    _parameter_constraints = {
        **EMMixin._em_parameter_constraints,
        "n_components": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, n_components=2, *, max_iter=100, tol=1e-6, n_init=1, random_state=None,
                 warm_start=False, verbose=0, verbose_interval=10, n_jobs=None, keep_params_history=False):
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_jobs = n_jobs
        self.keep_params_history = keep_params_history

    def fit(self, X, y=None):
        return self._fit(X, y)  # the engine's template: validates parameters, runs EM, sets attributes

    # ------------------------------------------------------------ hooks
    def _validate_fit_data(self, X, y=None):
        X = validate_data(self, X, dtype=np.float64)
        if np.any(X < 0):
            raise ValueError("counts must be non-negative")
        return _Data(Blocks(X, row_bounds(X.shape[0], 4096), _rows), float(X.shape[0]), X)

    def _initialize(self, data, random_state):
        rows = random_state.choice(data.X.shape[0], self.n_components, replace=False)
        return {"weights_": np.full(self.n_components, 1.0 / self.n_components),
                "lambdas_": data.X[rows] + 0.5}

    def _e_step_block(self, block, params, state):
        log_prob = (block @ np.log(params["lambdas_"]).T - params["lambdas_"].sum(axis=1)
                    - gammaln(block + 1).sum(axis=1, keepdims=True) + np.log(params["weights_"]))
        log_norm = logsumexp(log_prob, axis=1, keepdims=True)
        resp = np.exp(log_prob - log_norm)
        return BlockResult(_Stats(resp.sum(axis=0), resp.T @ block), float(log_norm.sum()))

    def _m_step(self, data, stats, params):
        post = stats.post + 10 * np.finfo(float).eps
        return {"weights_": post / post.sum(), "lambdas_": stats.counts / post[:, None] + 1e-12}

    def _fitted_params(self):
        return {"weights_": self.weights_, "lambdas_": self.lambdas_}
