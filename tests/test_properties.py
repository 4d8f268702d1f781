"""Properties every estimator must have, whatever its model.

For each estimator: the EM history never decreases; ``lower_bound_`` equals
``score`` on the training data (priors off); the same seed gives the same fit;
``clone`` then ``fit`` is identical; n_jobs does not change the result; and the
E-step statistics add up across splits of the data where the model's statistics
are plain sums.
"""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from emkit import GaussianMixture, KalmanFilter


def _mixture_data():
    rng = np.random.RandomState(0)
    return np.r_[rng.normal(0, 1, (150, 2)), rng.normal([4, 3], 0.8, (100, 2))], {}


def _series_data():
    rng = np.random.RandomState(0)
    states = np.cumsum(rng.normal(scale=0.3, size=(300, 2)), axis=0)
    X = states @ np.array([[1.0, 0.2, 0.0], [0.0, 1.0, 0.5]]) + rng.normal(scale=0.5, size=(300, 3))
    return X, {"lengths": [120, 180]}


# (estimator, data factory, whether score(train) equals lower_bound_, whether stats are plain sums)
CASES = {
    "GaussianMixture": (GaussianMixture(2, init_params="random", tol=1e-8, random_state=0), _mixture_data, True, True),
    "GaussianMixture-diag": (
        GaussianMixture(2, covariance_type="diag", init_params="random", tol=1e-8, random_state=0),
        _mixture_data, True, True,
    ),
    "KalmanFilter": (KalmanFilter(n_dim_state=2, em_vars="all", max_iter=30, random_state=0), _series_data, True, False),
}


def _fit(estimator, X, fit_kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # short fits are fine here
        return estimator.fit(X, **fit_kwargs)


@pytest.mark.parametrize("name", CASES)
def test_history_never_decreases(name):
    estimator, data, _, _ = CASES[name]
    X, kw = data()
    model = _fit(clone(estimator), X, kw)
    history = model.lower_bound_history_
    assert model.n_iter_ == len(history) > 2
    eps = 8 * np.finfo(float).eps * np.maximum(1.0, np.abs(history[1:]))
    assert np.all(np.diff(history) >= -eps)
    assert np.all(np.isfinite(history))


@pytest.mark.parametrize("name", [n for n in CASES if CASES[n][2]])
def test_lower_bound_is_the_score_of_the_returned_parameters(name):
    estimator, data, _, _ = CASES[name]
    X, kw = data()
    model = _fit(clone(estimator), X, kw)
    np.testing.assert_allclose(model.lower_bound_, model.score(X, **kw), rtol=1e-10)


@pytest.mark.parametrize("name", CASES)
def test_same_seed_same_fit_and_clone_is_identical(name):
    estimator, data, _, _ = CASES[name]
    X, kw = data()
    a = _fit(clone(estimator), X, kw)
    b = _fit(clone(a), X, kw)
    assert a.lower_bound_ == b.lower_bound_
    np.testing.assert_array_equal(a.lower_bound_history_, b.lower_bound_history_)


@pytest.mark.parametrize("name", CASES)
def test_n_jobs_does_not_change_the_result(name):
    estimator, data, _, _ = CASES[name]
    X, kw = data()
    a = _fit(clone(estimator).set_params(n_init=3, n_jobs=1), X, kw)
    b = _fit(clone(estimator).set_params(n_init=3, n_jobs=2), X, kw)
    np.testing.assert_allclose(a.lower_bound_history_, b.lower_bound_history_, rtol=1e-10)
    assert [r["seed"] for r in a.restarts_] == [r["seed"] for r in b.restarts_]


@pytest.mark.parametrize("name", [n for n in CASES if CASES[n][3]])
def test_e_step_statistics_add_across_splits(name):
    estimator, data, _, _ = CASES[name]
    X, kw = data()
    model = _fit(clone(estimator).set_params(max_iter=2), X, kw)
    params = model._fitted_params()
    whole, total = model._e_step(model._validate_fit_data(X, **kw), params)
    first, total1 = model._e_step(model._validate_fit_data(X[:100], **kw), params)
    second, total2 = model._e_step(model._validate_fit_data(X[100:], **kw), params)
    np.testing.assert_allclose(total1 + total2, total, rtol=1e-12)
    for a, b, c in zip(first, second, whole):
        np.testing.assert_allclose(np.asarray(a) + np.asarray(b), np.asarray(c), rtol=1e-9, atol=1e-9)
