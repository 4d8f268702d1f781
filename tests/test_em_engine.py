"""The EM engine on a toy 1-D two-Gaussian model: restarts, n_jobs, warm start, max_iter=0, warnings."""

import warnings
from typing import NamedTuple

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning

from emkit.base import EMMixin, NumericalFailure, ObjectiveDecreaseWarning, RestartFailedWarning


class _Data(NamedTuple):
    X: np.ndarray
    n_units: int


class ToyMixture(EMMixin, BaseEstimator):
    """Two 1-D Gaussians; ``fail_seeds`` / ``sabotage`` let tests provoke the engine's edge cases."""

    def __init__(
        self,
        max_iter=200,
        tol=1e-8,
        n_init=1,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=1,
        n_jobs=None,
        keep_params_history=False,
        fail_when_mean_below=None,
        sabotage_iteration=None,
    ):
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_jobs = n_jobs
        self.keep_params_history = keep_params_history
        self.fail_when_mean_below = fail_when_mean_below
        self.sabotage_iteration = sabotage_iteration

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=float).ravel()
        self._fit_em(_Data(X, X.shape[0]))
        return self

    def _initialize(self, data, random_state):
        means = random_state.normal(scale=3.0, size=2)
        if self.fail_when_mean_below is not None and means.min() < self.fail_when_mean_below:
            raise NumericalFailure("bad start (increase toy_knob)")
        return {"means_": means, "sds_": np.ones(2), "weights_": np.full(2, 0.5), "_count": 0}

    def _e_step(self, data, params):
        log_prob = norm.logpdf(data.X[:, None], params["means_"], params["sds_"]) + np.log(params["weights_"])
        log_norm = logsumexp(log_prob, axis=1)
        resp = np.exp(log_prob - log_norm[:, None])
        return (resp.sum(0), resp.T @ data.X, resp.T @ data.X**2), log_norm.sum()

    def _m_step(self, data, stats, params):
        n, sx, sxx = stats
        means = sx / n
        sds = np.sqrt(sxx / n - means**2)
        count = params["_count"] + 1
        if self.sabotage_iteration is not None and count == self.sabotage_iteration:
            sds = sds * 3.0  # deliberately not the maximiser: the objective drops
        return {"means_": means, "sds_": sds, "weights_": n / n.sum(), "_count": count}

    def _fitted_params(self):
        return {"means_": self.means_, "sds_": self.sds_, "weights_": self.weights_, "_count": 0}


@pytest.fixture
def toy_data():
    rng = np.random.RandomState(0)
    return np.r_[rng.normal(-2, 1, 300), rng.normal(3, 0.7, 200)]


def test_best_restart_wins_and_restarts_are_recorded(toy_data):
    model = ToyMixture(n_init=5, random_state=0).fit(toy_data)
    objectives = [r["objective"] for r in model.restarts_]
    assert len(model.restarts_) == 5
    assert model.lower_bound_ == max(objectives)
    assert len({r["seed"] for r in model.restarts_}) == 5
    assert np.allclose(np.sort(model.means_), [-2, 3], atol=0.2)


def test_history_semantics(toy_data):
    model = ToyMixture(random_state=1).fit(toy_data)
    assert len(model.lower_bound_history_) == model.n_iter_
    assert model.lower_bound_ == model.lower_bound_history_[-1]
    assert np.all(np.diff(model.lower_bound_history_) >= -1e-12)
    assert model.converged_
    assert "_count" not in vars(model)  # private params are never set as attributes


def test_n_jobs_does_not_change_the_result(toy_data):
    a = ToyMixture(n_init=4, random_state=3, n_jobs=1).fit(toy_data)
    b = ToyMixture(n_init=4, random_state=3, n_jobs=2).fit(toy_data)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)
    assert [r["seed"] for r in a.restarts_] == [r["seed"] for r in b.restarts_]
    np.testing.assert_allclose(a.lower_bound_history_, b.lower_bound_history_, rtol=1e-10)


def test_max_iter_zero_returns_the_start(toy_data):
    model = ToyMixture(max_iter=0, random_state=0).fit(toy_data)
    assert model.n_iter_ == 0
    assert model.lower_bound_history_.shape == (0,)
    assert np.isfinite(model.lower_bound_)
    assert np.all(model.sds_ == 1.0)


def test_warm_start_continues(toy_data):
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        model = ToyMixture(max_iter=2, random_state=0, warm_start=True).fit(toy_data)
    first = model.lower_bound_
    with pytest.warns(ConvergenceWarning):
        model.fit(toy_data)
    assert model.lower_bound_ >= first
    assert model.restarts_[0]["seed"] is None  # a warm start draws no seed
    cold = ToyMixture(max_iter=4, random_state=0)
    with pytest.warns(ConvergenceWarning):
        cold.fit(toy_data)
    np.testing.assert_allclose(model.means_, cold.means_, rtol=1e-12)


def test_params_history(toy_data):
    model = ToyMixture(random_state=0, keep_params_history=True).fit(toy_data)
    assert len(model.params_history_) == model.n_iter_ + 1
    np.testing.assert_array_equal(model.params_history_[-1]["means_"], model.means_)
    assert all(not key.startswith("_") for params in model.params_history_ for key in params)


def test_failing_restart_is_dropped_with_a_warning(toy_data):
    seeds = np.random.RandomState(0).randint(np.iinfo(np.int32).max, size=6)
    starts = [np.random.RandomState(s).normal(scale=3.0, size=2).min() for s in seeds]
    threshold = np.median(starts)  # half of the restarts fail
    with pytest.warns(RestartFailedWarning, match="toy_knob"):
        model = ToyMixture(n_init=6, random_state=0, fail_when_mean_below=threshold).fit(toy_data)
    assert sum(r["error"] is not None for r in model.restarts_) == sum(s < threshold for s in starts)
    assert np.isfinite(model.lower_bound_)


def test_all_restarts_failing_is_an_error(toy_data):
    with pytest.raises(ValueError, match="every restart failed.*toy_knob"):
        with pytest.warns(RestartFailedWarning):
            ToyMixture(n_init=2, random_state=0, fail_when_mean_below=1e9).fit(toy_data)


def test_decrease_is_reported_and_never_converged(toy_data):
    with pytest.warns(ObjectiveDecreaseWarning, match="iteration 3"):
        model = ToyMixture(random_state=0, sabotage_iteration=3).fit(toy_data)
    assert model.n_iter_ > 3  # the decrease at iteration 3 did not stop the run


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_worker_warnings_and_verbose_lines_reach_the_parent(toy_data, capsys, n_jobs):
    with pytest.warns(ObjectiveDecreaseWarning) as record:
        ToyMixture(n_init=2, random_state=0, sabotage_iteration=2, verbose=2, n_jobs=n_jobs).fit(toy_data)
    assert len([w for w in record if w.category is ObjectiveDecreaseWarning]) == 2
    out = capsys.readouterr().out
    assert out.index("Initialization 0") < out.index("Initialization 1")
    assert "Iteration 1: objective" in out


def test_convergence_warning_only_for_the_winner(toy_data):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ToyMixture(n_init=3, max_iter=1, random_state=0).fit(toy_data)
    assert sum(issubclass(w.category, ConvergenceWarning) for w in caught) == 1
