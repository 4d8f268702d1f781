"""Regression tests for what users ran into (crashes, silent wrong states, missing conveniences).

One test per behaviour, named after it. KalmanFilter's items live in tests/test_kalman.py, LDA's in
tests/test_lda.py.
"""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from emkit import CategoricalHMM, GaussianHMM, GaussianMixture, PoissonHMM


def _quiet_fit(model, X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, **kw)


# ---------------------------------------------------------------- crashes and wrong states
def test_raw_ids_as_symbols_are_refused_before_allocating_a_huge_table():
    with pytest.raises(ValueError, match="OrdinalEncoder"):
        CategoricalHMM(n_components=2).fit(np.array([[0], [10**9]] * 5))


def test_symbols_beyond_integer_range_are_refused():
    with pytest.raises(ValueError, match="too large"):
        CategoricalHMM(n_components=2).fit(np.array([[0.0], [1e20]] * 5))


def test_a_large_symbol_table_is_fine_when_n_features_says_so():
    model = _quiet_fit(CategoricalHMM(n_components=2, n_features=50, max_iter=2, random_state=0),
                       np.array([[0], [49]] * 5))
    assert model.emissionprob_.shape == (2, 50)


@pytest.mark.parametrize(
    "first, second",
    [
        (GaussianMixture(2, warm_start=True, random_state=0), {"n_features": 3}),
        (GaussianMixture(2, warm_start=True, random_state=0), {"n_components": 3}),
        (GaussianMixture(2, warm_start=True, random_state=0), {"covariance_type": "diag"}),
        (GaussianHMM(n_components=2, warm_start=True, random_state=0), {"n_features": 3}),
        (GaussianHMM(n_components=2, warm_start=True, random_state=0), {"n_components": 3}),
        (GaussianHMM(n_components=2, warm_start=True, random_state=0), {"covariance_type": "full"}),
        (PoissonHMM(n_components=2, warm_start=True, random_state=0), {"n_features": 3}),
    ],
)
def test_a_warm_start_that_no_longer_fits_is_a_clear_error(first, second):
    rng = np.random.RandomState(0)
    X = rng.poisson(3.0, size=(60, 2)).astype(float)
    model = _quiet_fit(first, X)
    params = {k: v for k, v in second.items() if k != "n_features"}
    model.set_params(**params)
    X_new = rng.poisson(3.0, size=(60, second.get("n_features", 2))).astype(float)
    with pytest.raises(ValueError, match="warm_start=True cannot continue"):
        model.fit(X_new)


def test_sampling_zero_steps_is_a_clear_error():
    X = np.random.RandomState(0).normal(size=(50, 2))
    model = _quiet_fit(GaussianHMM(n_components=2, random_state=0), X)
    with pytest.raises(ValueError, match="positive integer"):
        model.sample(0)
    with pytest.raises(ValueError, match="positive integer"):
        GaussianMixture(2, random_state=0).fit(X).sample(0)


# ---------------------------------------------------------------- defaults and conveniences
def _sticky_regimes(seed):
    """3 well-separated sticky regimes: means 0, 3, 6, noise 0.5, 60 segments of 50 steps."""
    rng = np.random.RandomState(seed)
    states = np.repeat(rng.randint(0, 3, 60), 50)
    return rng.normal(np.array([0.0, 3.0, 6.0])[states], 0.5)[:, None]


def test_default_start_recovers_well_separated_sticky_regimes():
    recovered = 0
    for seed in range(10):
        model = _quiet_fit(GaussianHMM(n_components=3, random_state=seed), _sticky_regimes(seed))
        recovered += np.allclose(np.sort(model.means_[:, 0]), [0.0, 3.0, 6.0], atol=0.2)
    assert recovered == 10


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: GaussianHMM(3, n_iter=5), "emkit uses max_iter"),
        (lambda: GaussianHMM(3, implementation="log"), "no `implementation` parameter"),
        (lambda: GaussianHMM(3, "full"), r"GaussianHMM\(3, covariance_type='full'\)"),
        (lambda: CategoricalHMM(3, 1.0), "n_features=1.0"),
    ],
)
def test_hmmlearn_habits_get_a_message_that_says_what_to_write(make, message):
    with pytest.raises(TypeError, match=message):
        make()


def test_unknown_letter_in_params_is_an_error():
    X = np.random.RandomState(0).normal(size=(50, 1))
    with pytest.raises(ValueError, match=r"unknown letter\(s\) \['x'\]"):
        GaussianHMM(n_components=2, params="stmx").fit(X)
    with pytest.raises(ValueError, match="init_params"):
        GaussianHMM(n_components=2, init_params="q").fit(X)


def test_stationary_distribution_is_left_fixed_by_the_transitions():
    model = GaussianHMM(n_components=3)
    model.transmat_ = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.3, 0.0, 0.7]])
    model.startprob_ = np.full(3, 1 / 3)
    model.means_ = np.zeros((3, 1))
    model.covars_ = np.ones((3, 1))
    pi = model.get_stationary_distribution()
    np.testing.assert_allclose(pi @ model.transmat_, pi, atol=1e-14)
    np.testing.assert_allclose(pi.sum(), 1.0)
    eigenvalues, eigenvectors = np.linalg.eig(model.transmat_.T)
    reference = np.real(eigenvectors[:, np.argmin(np.abs(eigenvalues - 1))])
    np.testing.assert_allclose(pi, reference / reference.sum(), rtol=1e-12)


def test_bic_and_aic_are_the_same_type():
    X = np.random.RandomState(0).normal(size=(50, 2))
    model = GaussianMixture(2, random_state=0).fit(X)
    assert type(model.bic(X)) is float and type(model.aic(X)) is float
