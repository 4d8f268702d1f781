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

from emkit import (
    GMMHMM,
    BernoulliMixture,
    CategoricalHMM,
    GaussianHMM,
    GaussianMixture,
    KalmanFilter,
    LatentDirichletAllocation,
    PoissonHMM,
    PoissonMixture,
)
from emkit._blocks import forced_block_count
from emkit.base import SerialExecutor


def _mixture_data():
    rng = np.random.RandomState(0)
    return np.r_[rng.normal(0, 1, (150, 2)), rng.normal([4, 3], 0.8, (100, 2))], {}


def _binary_data():
    rng = np.random.RandomState(0)
    profiles = np.array([[0.9, 0.8, 0.2, 0.1, 0.6], [0.1, 0.3, 0.9, 0.8, 0.5]])
    return (rng.uniform(size=(300, 5)) < profiles[rng.randint(2, size=300)]).astype(float), {}


def _count_rows_data():
    rng = np.random.RandomState(0)
    return rng.poisson(np.array([[1.0, 7.0, 3.0], [6.0, 1.5, 3.0]])[rng.randint(2, size=300)]).astype(float), {}


def _hmm_mixture_data():
    rng = np.random.RandomState(0)
    z = _hmm_states(rng, 300)
    sign = np.where(rng.uniform(size=300) < 0.5, -1.0, 1.0)
    X = np.c_[sign * np.where(z == 0, 2.0, 0.5), 4.0 * z] + 0.4 * rng.normal(size=(300, 2))
    return X, {"lengths": [100, 200]}


def _series_data():
    rng = np.random.RandomState(0)
    states = np.cumsum(rng.normal(scale=0.3, size=(300, 2)), axis=0)
    X = states @ np.array([[1.0, 0.2, 0.0], [0.0, 1.0, 0.5]]) + rng.normal(scale=0.5, size=(300, 3))
    return X, {"lengths": [100, 200]}


def _hmm_states(rng, n):
    z = np.zeros(n, dtype=int)
    for t in range(1, n):
        z[t] = z[t - 1] if rng.rand() < 0.9 else 1 - z[t - 1]
    return z


def _hmm_gaussian_data():
    rng = np.random.RandomState(0)
    z = _hmm_states(rng, 300)
    return rng.normal(size=(300, 2)) + 3.0 * z[:, None], {"lengths": [100, 200]}


def _hmm_categorical_data():
    rng = np.random.RandomState(0)
    z = _hmm_states(rng, 300)
    B = np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]])
    return np.array([rng.choice(3, p=B[s]) for s in z])[:, None], {"lengths": [100, 200]}


def _hmm_poisson_data():
    rng = np.random.RandomState(0)
    z = _hmm_states(rng, 300)
    return rng.poisson(np.array([[1.0, 6.0], [7.0, 2.0]])[z]), {"lengths": [100, 200]}


def _count_data():
    rng = np.random.RandomState(0)
    topics = rng.dirichlet(np.full(30, 0.2), 3)
    mixtures = rng.dirichlet(np.full(3, 0.3), 200)
    return np.vstack([rng.multinomial(50, m @ topics) for m in mixtures]).astype(float), {}


# (estimator, data factory, whether score(train) equals lower_bound_, whether stats are plain sums).
# LDA: score is scikit-learn's bound summed over re-inferred documents, and its E-step restarts documents at
# random, so neither identity holds.
CASES = {
    "GaussianMixture": (GaussianMixture(2, init_params="random", tol=1e-8, random_state=0), _mixture_data, True, True),
    "GaussianMixture-diag": (
        GaussianMixture(2, covariance_type="diag", init_params="random", tol=1e-8, random_state=0),
        _mixture_data, True, True,
    ),
    "BernoulliMixture": (BernoulliMixture(2, init_params="random", tol=1e-8, random_state=0), _binary_data, True, True),
    "PoissonMixture": (PoissonMixture(2, init_params="random", tol=1e-8, random_state=0), _count_rows_data, True, True),
    # priors off, so that score(train) is the objective
    "GaussianHMM": (
        GaussianHMM(2, covars_prior=0.0, max_iter=40, tol=1e-10, random_state=0, n_init=1), _hmm_gaussian_data,
        True, True,
    ),
    "GMMHMM": (GMMHMM(2, n_mix=2, max_iter=40, tol=1e-10, random_state=0), _hmm_mixture_data, True, True),
    "GMMHMM-tied": (
        GMMHMM(2, n_mix=2, covariance_type="tied", max_iter=40, tol=1e-10, random_state=0), _hmm_mixture_data, True,
        True,
    ),
    "CategoricalHMM": (CategoricalHMM(2, max_iter=40, random_state=0), _hmm_categorical_data, True, True),
    "PoissonHMM": (PoissonHMM(2, max_iter=40, random_state=0), _hmm_poisson_data, True, True),
    "KalmanFilter": (KalmanFilter(n_dim_state=2, em_vars="all", max_iter=30, random_state=0), _series_data, True, True),
    "LatentDirichletAllocation": (LatentDirichletAllocation(3, max_iter=20, random_state=0), _count_data, False, False),
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


def _e_step(model, X, kw, params):
    data = model._validate_fit_data(X, **kw)
    state = model._initial_state(data, params, np.random.RandomState(0))
    stats, total, _ = model._e_step(data, params, state, SerialExecutor())
    return stats, total


@pytest.mark.parametrize("name", [n for n in CASES if CASES[n][3]])
def test_e_step_statistics_add_across_splits(name):
    estimator, data, _, _ = CASES[name]
    X, kw = data()
    model = _fit(clone(estimator).set_params(max_iter=2), X, kw)
    params = model._fitted_params()
    whole, total = _e_step(model, X, kw, params)
    kw1 = {"lengths": [100]} if "lengths" in kw else {}  # the first sequence is 100 rows long
    kw2 = {"lengths": [len(X) - 100]} if "lengths" in kw else {}
    first, total1 = _e_step(model, X[:100], kw1, params)
    second, total2 = _e_step(model, X[100:], kw2, params)
    np.testing.assert_allclose(total1 + total2, total, rtol=1e-12)
    _assert_stats_add(first, second, whole)


def _max_relative_difference(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), np.finfo(float).tiny)


@pytest.mark.parametrize("n_blocks", [1, 2, 7])
@pytest.mark.parametrize("name", CASES)
def test_fit_does_not_depend_on_the_blocks_or_threads(name, n_blocks):
    """The data cut into 1, 2 or 7 blocks, on one thread or two: the same parameters to rtol 1e-12."""
    estimator, data, _, _ = CASES[name]
    X, kw = data()
    reference = _fit(clone(estimator), X, kw)
    with forced_block_count(n_blocks):
        split = _fit(clone(estimator), X, kw)
        threaded = _fit(clone(estimator).set_params(n_jobs=2), X, kw)
    for model in (split, threaded):
        assert model.n_iter_ == reference.n_iter_
        for key, value in reference._fitted_params().items():
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                assert _max_relative_difference(model._fitted_params()[key], value) <= 1e-12, key


def _assert_stats_add(a, b, c):
    """The statistics of two splits, summed with their type's own ``add``, equal the statistics of the whole."""
    _assert_equal_stats(a.add(b), c)


def _assert_equal_stats(merged, whole):
    if isinstance(whole, tuple):
        assert len(merged) == len(whole)
        for x, y in zip(merged, whole):
            _assert_equal_stats(x, y)
    elif whole is not None:
        np.testing.assert_allclose(np.asarray(merged), np.asarray(whole), rtol=1e-9, atol=1e-9)
    else:
        assert merged is None


_PUBLIC_CALLS = ("predict", "predict_proba", "score_samples", "score", "transform", "bic", "aic", "filter", "smooth")


@pytest.mark.parametrize("name", CASES)
def test_public_calls_never_change_what_fit_does(name):
    """After any public calls (``em`` included), ``fit`` gives what a fresh clone's ``fit`` gives."""
    estimator, data, _, _ = CASES[name]
    X, kw = data()
    model = _fit(clone(estimator), X, kw)
    for method in _PUBLIC_CALLS:
        if hasattr(model, method):
            getattr(model, method)(X, **kw)
    if hasattr(model, "sample"):
        model.sample(5, random_state=1)
    if hasattr(model, "em"):
        model.em(X, n_iter=2, **kw)
    refit = _fit(model, X, kw)
    fresh = _fit(clone(estimator), X, kw)
    assert refit.lower_bound_ == fresh.lower_bound_
    for key, value in fresh._fitted_params().items():
        np.testing.assert_array_equal(refit._fitted_params()[key], value)
