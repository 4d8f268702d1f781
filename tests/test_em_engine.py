"""The EM engine on a toy 1-D two-Gaussian model: restarts, n_jobs, warm start, max_iter=0, warnings."""

import warnings
from typing import NamedTuple

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning

from emkit._blocks import Blocks, forced_block_count, row_bounds
from emkit._stats import add_fields
from emkit.base import BlockResult, EMMixin, NumericalFailure, ObjectiveDecreaseWarning, RestartFailedWarning


class _Data(NamedTuple):
    blocks: Blocks
    n_units: int


class _Stats(NamedTuple):
    n: np.ndarray
    sx: np.ndarray
    sxx: np.ndarray

    add = add_fields


def _rows(X, start, stop):
    return X[start:stop]


class ToyMixture(EMMixin, BaseEstimator):
    """Two 1-D Gaussians; ``fail_seeds`` / ``sabotage`` let tests provoke the engine's edge cases."""

    _parameter_constraints = {
        **EMMixin._em_parameter_constraints,
        "fail_when_mean_below": [None, float],
        "sabotage_iteration": [None, int],
    }

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
        return self._fit(X, y)

    def _validate_fit_data(self, X, y=None):
        X = np.asarray(X, dtype=float).ravel()
        return _Data(Blocks(X, row_bounds(X.shape[0], 128), _rows), X.shape[0])

    def _initialize(self, data, random_state):
        means = random_state.normal(scale=3.0, size=2)
        if self.fail_when_mean_below is not None and means.min() < self.fail_when_mean_below:
            raise NumericalFailure("bad start (increase toy_knob)")
        return {"means_": means, "sds_": np.ones(2), "weights_": np.full(2, 0.5)}

    def _initial_state(self, data, params, random_state):
        return [0] * len(data.blocks)  # counts the E-steps each block saw: state travels with its block

    def _e_step_block(self, X, params, state):
        log_prob = norm.logpdf(X[:, None], params["means_"], params["sds_"]) + np.log(params["weights_"])
        log_norm = logsumexp(log_prob, axis=1)
        resp = np.exp(log_prob - log_norm[:, None])
        return BlockResult(_Stats(resp.sum(0), resp.T @ X, resp.T @ X**2), log_norm.sum(), state + 1)

    def _m_step(self, data, stats, params):
        means = stats.sx / stats.n
        sds = np.sqrt(stats.sxx / stats.n - means**2)
        return {"means_": means, "sds_": sds, "weights_": stats.n / stats.n.sum()}

    def _m_step_slack(self, data, stats, params):
        return 0.0

    def _e_step(self, data, params, state, executor):
        stats, objective, state = super()._e_step(data, params, state, executor)
        assert len(set(state)) == 1  # every block saw every E-step
        if self.sabotage_iteration is not None and state[0] == self.sabotage_iteration + 1:
            objective -= 1e3  # as if the step had made things worse
        return stats, objective, state

    def _fitted_params(self):
        return {"means_": self.means_, "sds_": self.sds_, "weights_": self.weights_}


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


def test_a_decreasing_step_is_undone_and_ends_the_restart(toy_data):
    reference = ToyMixture(random_state=0, max_iter=2)
    with pytest.warns(ConvergenceWarning):
        reference.fit(toy_data)
    with pytest.warns(ObjectiveDecreaseWarning, match="iteration 3"):
        model = ToyMixture(random_state=0, sabotage_iteration=3).fit(toy_data)
    assert not model.converged_
    assert model.n_iter_ == 2 and len(model.lower_bound_history_) == 2
    assert model.lower_bound_ == model.lower_bound_history_[-1]
    np.testing.assert_array_equal(model.means_, reference.means_)  # the parameters from before the step
    assert model.restarts_[0]["rejected_step"] == 3


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_worker_warnings_and_verbose_lines_reach_the_parent(toy_data, capsys, n_jobs):
    with pytest.warns(ObjectiveDecreaseWarning) as record:
        ToyMixture(n_init=2, random_state=0, sabotage_iteration=2, verbose=2, n_jobs=n_jobs).fit(toy_data)
    assert len([w for w in record if w.category is ObjectiveDecreaseWarning]) == 2
    # each restart's lines are printed together, tagged, as soon as it ends; the warnings come in restart order
    assert [str(w.message).count("(restart 0)") for w in record][:1] == [1]
    lines = capsys.readouterr().out.splitlines()
    for index in (0, 1):
        mine = [i for i, line in enumerate(lines) if f"restart {index}]" in line or f"Initialization {index}" in line]
        assert mine == list(range(mine[0], mine[0] + len(mine)))
        assert any(f"[restart {index}] Iteration 1: objective" in lines[i] for i in mine)
    assert all(line.endswith(" s)") for line in lines)  # elapsed time on every line


def test_convergence_warning_only_for_the_winner(toy_data):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ToyMixture(n_init=3, max_iter=1, random_state=0).fit(toy_data)
    assert sum(issubclass(w.category, ConvergenceWarning) for w in caught) == 1


def test_ties_within_round_off_go_to_the_earliest_restart():
    from emkit.base import EMRun, _best_run

    runs = [EMRun(index=i, seed=i, history=[v]) for i, v in enumerate([-1.0, -1.0 + 1e-16, -1.5, -1.0 - 1e-16])]
    assert _best_run(runs, np.float64).index == 0
    runs[2].history = [-0.9]
    assert _best_run(runs, np.float64).index == 2


@pytest.mark.parametrize("n_blocks", [1, 2, 7])
def test_block_count_does_not_change_the_result(toy_data, n_blocks):
    reference = ToyMixture(random_state=0).fit(toy_data)
    with forced_block_count(n_blocks):
        model = ToyMixture(random_state=0).fit(toy_data)
    np.testing.assert_allclose(model.means_, reference.means_, rtol=1e-12)
    np.testing.assert_allclose(model.lower_bound_history_, reference.lower_bound_history_, rtol=1e-12)


def test_threads_inside_one_restart_do_not_change_the_result(toy_data):
    reference = ToyMixture(random_state=0).fit(toy_data)
    model = ToyMixture(random_state=0, n_jobs=2).fit(toy_data)  # one restart: blocks on 2 threads
    np.testing.assert_allclose(model.means_, reference.means_, rtol=1e-12)


def test_every_restart_warning_arrives_under_the_threading_backend(toy_data):
    from joblib import parallel_backend

    for seed in range(5):
        with parallel_backend("threading", n_jobs=2):
            with pytest.warns(ObjectiveDecreaseWarning) as record:
                ToyMixture(n_init=8, random_state=seed, sabotage_iteration=2, n_jobs=2).fit(toy_data)
        assert sum(w.category is ObjectiveDecreaseWarning for w in record) == 8


def test_n_jobs_none_follows_the_joblib_backend_context(toy_data, monkeypatch):
    from joblib import parallel_backend

    import emkit.base as base

    threads = set()
    original = base._run_restart_task

    def spy(*args, **kwargs):
        import threading

        threads.add(threading.get_ident())
        return original(*args, **kwargs)

    monkeypatch.setattr(base, "_run_restart_task", spy)
    with parallel_backend("threading", n_jobs=2):
        a = ToyMixture(n_init=6, random_state=0).fit(toy_data)
    import threading

    assert threads and threading.get_ident() not in threads  # ran on the backend's threads
    b = ToyMixture(n_init=6, random_state=0).fit(toy_data)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)


def test_fixed_iterations_from_a_given_start(toy_data):
    model = ToyMixture(random_state=0, tol=1e3)
    data = model._validate_fit_data(toy_data)
    start = {"means_": np.array([-1.0, 1.0]), "sds_": np.ones(2), "weights_": np.full(2, 0.5)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model._fit_em(data, start=start, max_iter=5, fixed_iterations=True)
    assert model.n_iter_ == 5 and not model.converged_  # tol=1e3 would have stopped at once
    assert model.max_iter == 200  # no constructor parameter written


def _engine_example():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "engine_example.py"
    spec = importlib.util.spec_from_file_location("engine_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_documented_example_family_works():
    """docs/engine.rst's complete family fits, recovers its rates and passes through the engine's features."""
    rng = np.random.RandomState(0)
    rates = np.array([[1.0, 8.0, 3.0], [9.0, 1.0, 0.5]])
    labels = rng.rand(3000) < 0.4
    X = rng.poisson(rates[labels.astype(int)])
    model = _engine_example().ToyPoissonMixture(2, n_init=3, random_state=0).fit(X)
    assert model.converged_ and len(model.restarts_) == 3
    np.testing.assert_allclose(np.sort(model.lambdas_, axis=0), np.sort(rates, axis=0), rtol=0.1)
    assert np.all(np.diff(model.lower_bound_history_) >= -1e-12)
    with forced_block_count(3):
        split = _engine_example().ToyPoissonMixture(2, n_init=3, random_state=0).fit(X)
    np.testing.assert_allclose(split.lambdas_, model.lambdas_, rtol=1e-12)
