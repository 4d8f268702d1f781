"""GaussianMixture: parity with scikit-learn, weights, priors, validation, degenerate data."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from emkit import GaussianMixture
from emkit.base import ObjectiveDecreaseWarning

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
quiet = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _explicit_start(X, n_components, covariance_type, seed=0):
    """A start both libraries accept: scikit-learn's own parameters after 2 iterations on a subset."""
    with pytest.warns(ConvergenceWarning):
        ref = SkGaussianMixture(n_components, covariance_type=covariance_type, max_iter=2, tol=0, random_state=seed).fit(
            X[::2]
        )
    return {"weights_init": ref.weights_, "means_init": ref.means_, "precisions_init": ref.precisions_}


def _datasets():
    iris = load_iris().data
    rng = np.random.RandomState(42)
    centers = rng.normal(scale=5, size=(4, 5))
    synth = centers[rng.randint(4, size=800)] + rng.normal(size=(800, 5)) * rng.uniform(0.5, 2, size=5)
    return {"iris": (iris, 3), "synthetic": (synth + 100.0, 4)}  # offset data: centred statistics matter


@quiet
@pytest.mark.parametrize("dataset", ["iris", "synthetic"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_same_parameters_as_sklearn_from_the_same_start(dataset, covariance_type):
    X, k = _datasets()[dataset]
    start = _explicit_start(X, k, covariance_type)
    ours = GaussianMixture(k, covariance_type=covariance_type, tol=0, max_iter=8, **start).fit(X)
    ref = SkGaussianMixture(k, covariance_type=covariance_type, tol=0, max_iter=8, **start).fit(X)
    assert ours.n_iter_ == ref.n_iter_ == 8
    for name in ["weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"]:
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-6, atol=1e-10, err_msg=name)
    # our lower bound belongs to the returned parameters: scikit-learn's score at them
    np.testing.assert_allclose(ours.lower_bound_, ref.score(X), rtol=1e-10)
    np.testing.assert_allclose(ours.score_samples(X), ref.score_samples(X), rtol=1e-9)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-9)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    np.testing.assert_allclose(ours.bic(X), ref.bic(X), rtol=1e-9)
    np.testing.assert_allclose(ours.aic(X), ref.aic(X), rtol=1e-9)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_random_inits_match_sklearn_draw_for_draw(init_params, mixture_data):
    """One restart seeded like scikit-learn's draws the same start, so the fits agree."""
    X = mixture_data[0]
    seed = 7
    ours = GaussianMixture(3, init_params=init_params, max_iter=0, random_state=seed)
    ours.fit(X)
    restart_seed = ours.restarts_[0]["seed"]
    ref = SkGaussianMixture(3, init_params=init_params, max_iter=1, tol=np.inf, random_state=restart_seed)
    ref._initialize_parameters(X, np.random.RandomState(restart_seed))
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-10)
    # scikit-learn leaves one-point starts' weights unnormalised (N_k / n_samples); the
    # responsibilities, and so every later iteration, do not depend on that scale
    np.testing.assert_allclose(ours.weights_, ref.weights_ / ref.weights_.sum(), rtol=1e-10)
    np.testing.assert_allclose(ours.covariances_, ref.covariances_, rtol=1e-8, atol=1e-14)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_recovers_known_parameters(covariance_type, mixture_data):
    X, labels, weights, means, covariances = mixture_data
    model = GaussianMixture(3, covariance_type=covariance_type, n_init=3, random_state=0).fit(X)
    order = np.argsort(model.means_[:, 0] + 10 * model.means_[:, 1])
    truth = np.argsort(means[:, 0] + 10 * means[:, 1])
    np.testing.assert_allclose(model.means_[order], means[truth], atol=0.15)
    np.testing.assert_allclose(model.weights_[order], weights[truth], atol=0.03)
    if covariance_type == "full":
        np.testing.assert_allclose(model.covariances_[order], covariances[truth], atol=0.15)
    assert model.converged_


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("reg_covar", [0.0, 1e-6])
def test_objective_never_decreases(covariance_type, reg_covar, mixture_data):
    """Exact EM (reg_covar=0) runs to the round-off floor without a decrease.

    reg_covar > 0 makes the M-step a slightly perturbed maximiser, so decreases of
    order 1e-14 can appear below a change of about 1e-12: the default-regularised
    run is checked with tol=1e-10.
    """
    X = mixture_data[0]
    tol = 1e-13 if reg_covar == 0 else 1e-10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # slow runs are fine: only decreases matter
        model = GaussianMixture(3, covariance_type=covariance_type, init_params="random", tol=tol,
                                max_iter=1000, reg_covar=reg_covar, random_state=3).fit(X)
    history = np.r_[model.restarts_[0]["objective"], model.lower_bound_history_]
    assert np.all(np.diff(model.lower_bound_history_) >= -8 * np.finfo(float).eps * np.abs(history[1:]).max())
    assert model.n_iter_ > 5


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_integer_sample_weight_equals_repeated_rows(covariance_type, mixture_data, rng):
    X = mixture_data[0][:300]
    weights = rng.randint(0, 4, size=X.shape[0])
    repeated = np.repeat(X, weights, axis=0)
    start = _explicit_start(X, 3, covariance_type)
    kwargs = dict(covariance_type=covariance_type, tol=1e-9, max_iter=10, **start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = GaussianMixture(3, **kwargs).fit(X, sample_weight=weights)
        plain = GaussianMixture(3, **kwargs).fit(repeated)
    assert weighted.n_iter_ == plain.n_iter_
    for name in ["weights_", "means_", "covariances_"]:
        np.testing.assert_allclose(getattr(weighted, name), getattr(plain, name), rtol=1e-7, err_msg=name)
    np.testing.assert_allclose(weighted.lower_bound_history_, plain.lower_bound_history_, rtol=1e-7)


def test_n_jobs_gives_identical_results(mixture_data):
    X = mixture_data[0]
    a = GaussianMixture(3, n_init=4, random_state=5, init_params="random", n_jobs=1).fit(X)
    b = GaussianMixture(3, n_init=4, random_state=5, init_params="random", n_jobs=2).fit(X)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-10)
    assert [r["objective"] for r in a.restarts_] == pytest.approx([r["objective"] for r in b.restarts_], rel=1e-10)
    best = max(range(4), key=lambda i: a.restarts_[i]["objective"])
    assert a.lower_bound_ == pytest.approx(a.restarts_[best]["objective"], rel=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_vanishing_priors_equal_maximum_likelihood(covariance_type, mixture_data):
    X = mixture_data[0]
    start = _explicit_start(X, 3, covariance_type)
    kwargs = dict(covariance_type=covariance_type, tol=1e-9, max_iter=8, **start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mle = GaussianMixture(3, **kwargs).fit(X)
        tiny = GaussianMixture(
            3, weights_prior=1.0, means_prior=np.ones(2), means_weight=1e-10, covars_prior=1e-12,
            covars_weight=0.0, **kwargs,
        ).fit(X)
    for name in ["weights_", "means_", "covariances_"]:
        np.testing.assert_allclose(getattr(tiny, name), getattr(mle, name), rtol=1e-7, err_msg=name)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_map_objective_is_monotone_and_prior_prevents_collapse(covariance_type, rng):
    X = np.r_[rng.normal(size=(60, 2)), [[30.0, 30.0]]]  # one far point: ML would collapse onto it
    model = GaussianMixture(
        2, covariance_type=covariance_type, reg_covar=0.0, weights_prior=2.0, means_weight=0.1,
        covars_prior=0.5, covars_weight=3.0, init_params="random_from_data", tol=1e-12, max_iter=500,
        random_state=1,
    ).fit(X)
    assert np.all(np.diff(model.lower_bound_history_) >= -1e-12)
    assert np.all(np.isfinite(model.covariances_))
    variances = np.diagonal(model.covariances_, axis1=-2, axis2=-1) if model.covariances_.ndim == 3 else model.covariances_
    assert np.min(variances) > 0.05
    # the MAP objective differs from the plain log-likelihood by the log-prior per sample
    assert model.lower_bound_ != pytest.approx(model.score(X), rel=1e-9)


def test_float32_stays_float32(mixture_data):
    X = mixture_data[0].astype(np.float32)
    model = GaussianMixture(3, random_state=0).fit(X)
    assert model.means_.dtype == np.float32
    assert model.covariances_.dtype == np.float32
    ref = GaussianMixture(3, random_state=0).fit(X.astype(np.float64))
    np.testing.assert_allclose(np.sort(model.means_, axis=0), np.sort(ref.means_, axis=0), rtol=1e-4, atol=1e-4)
    eps32 = 8 * np.finfo(np.float32).eps
    assert np.all(np.diff(model.lower_bound_history_) >= -eps32 * np.abs(model.lower_bound_history_).max())


def test_sample_and_random_state(mixture_data):
    model = GaussianMixture(3, random_state=0).fit(mixture_data[0])
    X1, y1 = model.sample(500)
    X2, y2 = model.sample(500)
    np.testing.assert_array_equal(X1, X2)  # None means the estimator's random_state
    X3, _ = model.sample(500, random_state=1)
    assert not np.array_equal(X1, X3)
    assert X1.shape == (500, 2) and np.all(np.diff(y1) >= 0)
    with pytest.raises(ValueError, match="positive integer"):
        model.sample(0)


def test_fit_predict_matches_predict(mixture_data):
    X = mixture_data[0]
    model = GaussianMixture(3, random_state=0)
    np.testing.assert_array_equal(model.fit_predict(X), model.predict(X))


def test_input_is_not_modified(mixture_data):
    X = mixture_data[0].copy()
    w = np.ones(X.shape[0])
    X0, w0 = X.copy(), w.copy()
    GaussianMixture(3, random_state=0).fit(X, sample_weight=w)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(w, w0)


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, X, fit_kwargs, match",
    [
        ({}, np.array([[0.0, np.inf], [1.0, 2.0], [3.0, 4.0]]), {}, "infinity"),  # NaN means missing
        ({}, np.array([[0.0, np.inf], [1.0, 2.0], [3.0, 4.0]]), {}, "infinity"),
        ({}, np.zeros((3, 2, 2)), {}, "dim 3"),
        ({"n_components": 5}, np.arange(8.0).reshape(4, 2), {}, "n_samples >= n_components"),
        ({}, np.arange(8.0).reshape(4, 2), {"sample_weight": [1, -1, 1, 1]}, "Negative values in data"),
        ({}, np.arange(8.0).reshape(4, 2), {"sample_weight": [0, 0, 0, 0]}, "non-zero"),
        ({}, np.arange(8.0).reshape(4, 2), {"sample_weight": [1, 1]}, "sample_weight.shape"),
        ({"n_components": 2, "means_init": np.zeros((3, 2))}, np.arange(8.0).reshape(4, 2), {}, "means_init must have shape"),
        ({"n_components": 2, "weights_init": [0.2, 0.2]}, np.arange(8.0).reshape(4, 2), {}, "sum to 1"),
        ({"n_components": 2, "precisions_init": np.array([np.eye(2), -np.eye(2)])}, np.arange(8.0).reshape(4, 2), {},
         "positive definite"),
        ({"n_components": 2, "precisions_init": np.array([[[1, 0.5], [0, 1]]] * 2)}, np.arange(8.0).reshape(4, 2), {},
         "symmetric"),
        ({"n_components": 2, "covariance_type": "diag", "precisions_init": np.ones((2, 3))},
         np.arange(8.0).reshape(4, 2), {}, "precisions_init must have shape"),
        ({"covariance_type": "banana"}, np.arange(8.0).reshape(4, 2), {}, "covariance_type"),
        ({"reg_covar": -1.0}, np.arange(8.0).reshape(4, 2), {}, "reg_covar"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs, X, fit_kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**kwargs).fit(X, **fit_kwargs)


def test_wrong_feature_count_at_predict(mixture_data):
    model = GaussianMixture(2, random_state=0).fit(mixture_data[0])
    with pytest.raises(ValueError, match="features"):
        model.predict(np.zeros((3, 5)))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_degenerate_data_fits_with_finite_parameters(covariance_type, rng):
    identical = np.ones((50, 3))
    column = rng.normal(size=(80, 1))
    duplicated = np.hstack([column, column, rng.normal(size=(80, 1))])
    for X in (identical, duplicated):
        model = GaussianMixture(2, covariance_type=covariance_type, random_state=0)
        with warnings.catch_warnings():
            # k-means warns about identical points (not ours); the fit must still be finite
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X)
        for name in ["weights_", "means_", "covariances_", "precisions_cholesky_"]:
            assert np.all(np.isfinite(getattr(model, name))), name
        assert np.all(np.isfinite(model.score_samples(X)))


def test_all_restarts_failing_names_reg_covar(rng):
    X = np.ones((20, 2))
    with pytest.warns():
        with pytest.raises(ValueError, match="reg_covar"):
            GaussianMixture(1, reg_covar=0.0, random_state=0).fit(X)


def test_warm_start_continues_from_the_fitted_parameters(mixture_data):
    X = mixture_data[0]
    start = _explicit_start(X, 3, "full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm = GaussianMixture(3, tol=0, max_iter=3, warm_start=True, **start).fit(X)
        warm.fit(X)
        straight = GaussianMixture(3, tol=0, max_iter=6, **start).fit(X)
    np.testing.assert_allclose(warm.means_, straight.means_, rtol=1e-10)
    np.testing.assert_allclose(warm.lower_bound_, straight.lower_bound_, rtol=1e-12)


def test_verbose_prints_progress(mixture_data, capsys):
    GaussianMixture(3, verbose=2, verbose_interval=1, random_state=0).fit(mixture_data[0])
    out = capsys.readouterr().out
    assert "Initialization 0" in out and "Iteration 1: objective" in out and "converged" in out


def test_restarts_find_at_least_the_best_single_start(mixture_data):
    X = mixture_data[0]
    multi = GaussianMixture(3, init_params="random", n_init=5, random_state=2).fit(X)
    assert len(multi.restarts_) == 5
    assert multi.lower_bound_ == max(r["objective"] for r in multi.restarts_)
    for seed in (0, 1, 2):
        single = GaussianMixture(3, init_params="random", random_state=seed).fit(X)
        assert multi.lower_bound_ >= single.lower_bound_ - 1e-3  # restarts do at least as well


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(
    X=arrays(np.float64, st.tuples(st.integers(6, 40), st.integers(1, 3)),
             elements=st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)),
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
    n_components=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_any_finite_data_gives_finite_parameters(X, covariance_type, n_components, seed):
    """Whatever finite data (duplicates, constant columns, wild scales): finite parameters and objective.

    Monotonicity is checked on well-posed data elsewhere: here components collapse onto repeated values
    with variances of reg_covar, where the M-step is no longer an exact maximiser and the objective's
    round-off can exceed the 8-eps allowance at a fixed point, so decrease warnings are not asserted.
    """
    model = GaussianMixture(n_components, covariance_type=covariance_type, init_params="random_from_data",
                            max_iter=30, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", ObjectiveDecreaseWarning)
        model.fit(X)
    for name in ["weights_", "means_", "covariances_", "precisions_cholesky_"]:
        assert np.all(np.isfinite(getattr(model, name))), name
    assert np.all(np.isfinite(model.lower_bound_history_))
    assert np.all(np.isfinite(model.score_samples(X)))


def test_lower_bounds_as_scikit_learn_defines_them():
    from sklearn.mixture import GaussianMixture as SklearnGM

    rng = np.random.RandomState(0)
    X = np.r_[rng.normal(0, 1, (200, 2)), rng.normal(4, 1, (150, 2))]
    start = dict(
        weights_init=[0.5, 0.5], means_init=[[0.5, 0.5], [3.0, 3.0]], precisions_init=np.tile(np.eye(2), (2, 1, 1))
    )
    ours = GaussianMixture(2, tol=0, max_iter=6, **start)
    theirs = SklearnGM(2, tol=0, max_iter=6, **start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours.fit(X)
        theirs.fit(X)
    assert ours.lower_bounds_.shape == (ours.n_iter_,)
    np.testing.assert_allclose(ours.lower_bounds_, theirs.lower_bounds_, rtol=1e-10)
