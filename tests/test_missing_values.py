"""Missing values (NaN) in GaussianMixture, GaussianHMM and GMMHMM: marginalised exactly.

The maths (densities of the observed coordinates, expected statistics of the missing ones) is tested in
tests/test_gaussian_missing.py; here the estimators that use it.
"""

import warnings

import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.exceptions import ConvergenceWarning

from emkit import GaussianHMM, GaussianMixture, GMMHMM

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def _quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return function(*args, **kwargs)


def _two_components(n=6000, seed=0):
    rng = np.random.RandomState(seed)
    means = np.array([[0.0, 0.0, 0.0], [6.0, 5.0, -5.0]])
    covariances = np.array([
        [[1.0, 0.5, 0.2], [0.5, 1.0, 0.3], [0.2, 0.3, 1.0]],
        [[1.5, -0.3, 0.0], [-0.3, 0.6, 0.1], [0.0, 0.1, 1.0]],
    ])
    labels = (rng.rand(n) < 0.4).astype(int)
    X = np.empty((n, 3))
    for k in range(2):
        rows = labels == k
        X[rows] = rng.multivariate_normal(means[k], covariances[k], rows.sum())
    return X, labels, means, covariances, rng


def _full_covariances(model):
    c, (K, D) = model.covariances_, model.means_.shape
    return {
        "full": lambda: c,
        "tied": lambda: np.tile(c, (K, 1, 1)),
        "diag": lambda: np.array([np.diag(v) for v in c]),
        "spherical": lambda: np.array([np.eye(D) * v for v in c]),
    }[model.covariance_type]()


def _with_missing(X, rng, fraction=0.2):
    X = X.copy()
    X[rng.rand(*X.shape) < fraction] = np.nan
    return X


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_score_samples_of_a_row_with_nan_is_the_marginal_density_of_its_observed_coordinates(covariance_type):
    X, _, _, _, rng = _two_components(800)
    model = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    rows = _with_missing(X[:50], rng, 0.4)
    covariances = _full_covariances(model)
    for row, ours in zip(rows, model.score_samples(rows)):
        observed = ~np.isnan(row)
        expected = np.log(sum(
            w * multivariate_normal(m[observed], c[np.ix_(observed, observed)]).pdf(row[observed])
            for w, m, c in zip(model.weights_, model.means_, covariances)
        )) if observed.any() else 0.0
        np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_em_with_a_fifth_of_the_entries_missing_recovers_the_planted_mixture(covariance_type):
    X, _, means, covariances, rng = _two_components()
    missing = _with_missing(X, rng)
    model = _quiet(GaussianMixture(2, covariance_type=covariance_type, tol=1e-6, random_state=0).fit, missing)
    order = np.argsort(model.means_[:, 0])
    np.testing.assert_allclose(model.means_[order], means, atol=0.1)
    history = model.lower_bound_history_
    assert np.all(np.diff(history) >= -8 * np.finfo(float).eps * np.abs(history[1:]))
    if covariance_type == "full":
        for k in range(2):
            error = np.linalg.norm(model.covariances_[order][k] - covariances[k]) / np.linalg.norm(covariances[k])
            assert error < 0.15
    # the fit with missing entries is close to the fit on the complete data
    complete = _quiet(GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit, X)
    np.testing.assert_allclose(np.sort(model.means_[:, 0]), np.sort(complete.means_[:, 0]), atol=0.1)


def test_a_row_with_nothing_observed_gets_the_prior():
    X, _, _, _, rng = _two_components(1000)
    missing = _with_missing(X, rng)
    missing[:7] = np.nan
    model = _quiet(GaussianMixture(2, random_state=0).fit, missing)
    np.testing.assert_allclose(model.predict_proba(missing[:7]), np.tile(model.weights_, (7, 1)), rtol=1e-12)
    np.testing.assert_array_equal(model.score_samples(missing[:7]), 0.0)
    assert model.predict(missing[:7]).shape == (7,)
    assert model.__sklearn_tags__().input_tags.allow_nan


@pytest.mark.parametrize("estimator", [GaussianMixture(2), GaussianHMM(n_components=2), GMMHMM(n_components=2)])
def test_infinity_is_still_a_clear_error(estimator):
    X = np.random.RandomState(0).normal(size=(40, 2))
    X[3, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        estimator.fit(X)


def test_hmm_with_missing_entries_recovers_the_regimes_and_a_missing_step_emits_nothing():
    rng = np.random.RandomState(0)
    states = np.repeat(rng.randint(0, 3, 60), 50)
    means = np.array([[0.0, 0.0], [3.0, 3.0], [6.0, -2.0]])
    X = rng.normal(means[states], 0.5)
    missing = _with_missing(X, rng)
    missing[100:110] = np.nan
    model = _quiet(GaussianHMM(n_components=3, random_state=0).fit, missing)
    np.testing.assert_allclose(model.means_[np.argsort(model.means_[:, 0])], means, atol=0.1)
    assert np.mean(model.predict(missing) == model.predict(X)) > 0.99
    # a step with nothing observed: its predictive density is that of the empty set of coordinates, 1
    np.testing.assert_allclose(model.score_samples(missing)[100:110], 0.0, atol=1e-12)
    history = model.lower_bound_history_
    assert np.all(np.diff(history) >= -8 * np.finfo(float).eps * np.abs(history[1:]))
    mixtures = _quiet(GMMHMM(n_components=3, n_mix=2, covars_prior=1e-2, random_state=0).fit, missing)
    history = mixtures.lower_bound_history_
    assert np.all(np.diff(history) >= -8 * np.finfo(float).eps * np.abs(history[1:]))


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_hmm_makes_each_blocks_layout_of_missing_entries_once_per_restart(covariance_type, monkeypatch):
    # where the entries are missing does not change between E-steps: each block's layout is made at its
    # first E-step and carried as the restart's state; the fit is bit for bit the one that makes it every time
    from emkit._densities import gaussian_missing
    from emkit.hmm import _base

    rng = np.random.RandomState(3)
    states = np.repeat(rng.randint(0, 3, 100), 30)
    X = _with_missing(rng.normal(np.array([[0.0, 0.0, 1.0], [3.0, 3.0, 0.0], [6.0, -2.0, 2.0]])[states], 0.5), rng)
    lengths = [1000, 2000]  # the compiled completion (more than NUMPY_MAX_ROWS incomplete rows)
    made = []
    real = gaussian_missing.layout
    monkeypatch.setattr(gaussian_missing, "layout", lambda *a, **k: made.append(1) or real(*a, **k))
    model = GaussianHMM(3, covariance_type=covariance_type, n_init=2, max_iter=5, tol=0.0, random_state=0)
    fitted = _quiet(model.fit, X, lengths=lengths)
    n_blocks = len(model._validate_fit_data(X, lengths=lengths).blocks)
    assert len(made) == 2 * n_blocks  # once per block and restart, not per E-step
    monkeypatch.setattr(_base._BaseHMM, "_initial_state", lambda self, data, params, rs: None)
    again = _quiet(GaussianHMM(3, covariance_type=covariance_type, n_init=2, max_iter=5, tol=0.0,
                               random_state=0).fit, X, lengths=lengths)
    assert len(made) == 2 * n_blocks
    for name in ("means_", "covars_", "transmat_", "lower_bound_history_"):
        np.testing.assert_array_equal(getattr(fitted, name), getattr(again, name))


@pytest.mark.parametrize("covariance_type", ["tied", "spherical"])
def test_mixture_makes_each_blocks_layout_of_missing_entries_once_per_restart(covariance_type, monkeypatch):
    from emkit import mixture
    from emkit._densities import gaussian_missing

    X = _with_missing(_two_components(n=6000)[0], np.random.RandomState(4))
    made = []
    real = gaussian_missing.layout
    monkeypatch.setattr(gaussian_missing, "layout", lambda *a, **k: made.append(1) or real(*a, **k))
    model = GaussianMixture(2, covariance_type=covariance_type, n_init=2, max_iter=4, tol=0.0, random_state=0)
    fitted = _quiet(model.fit, X)
    n_blocks = len(model._validate_fit_data(X).blocks)
    assert len(made) == 2 * n_blocks  # once per block and restart, not per E-step
    monkeypatch.setattr(mixture._BaseMixture, "_initial_state", lambda self, data, params, rs: None)
    again = _quiet(GaussianMixture(2, covariance_type=covariance_type, n_init=2, max_iter=4, tol=0.0,
                                   random_state=0).fit, X)
    assert len(made) == 2 * n_blocks
    for name in ("means_", "covariances_", "weights_", "lower_bound_history_"):
        np.testing.assert_array_equal(getattr(fitted, name), getattr(again, name))


def test_missing_values_on_dask_equal_the_fit_in_memory():
    da = pytest.importorskip("dask.array")
    X, _, _, _, rng = _two_components(3000)
    missing = _with_missing(X, rng)
    start = dict(weights_init=[0.5, 0.5], means_init=[[1.0] * 3, [5.0, 4.0, -4.0]],
                 precisions_init=np.tile(np.eye(3), (2, 1, 1)), tol=0, max_iter=8)
    reference = _quiet(GaussianMixture(2, **start).fit, missing)
    model = _quiet(GaussianMixture(2, **start).fit, da.from_array(missing, chunks=(700, 3)))
    np.testing.assert_allclose(model.means_, reference.means_, rtol=1e-9)
    np.testing.assert_allclose(model.covariances_, reference.covariances_, rtol=1e-9)
