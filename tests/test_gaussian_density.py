"""The shared Gaussian density module against direct computations."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from emkit._densities import gaussian
from emkit._inference.mixture import _pair_products, normalize_log_rows, pair_products

TYPES = ["full", "tied", "diag", "spherical"]


def _random_params(rng, n_components, n_features, covariance_type, offset=0.0):
    means = rng.normal(scale=3.0, size=(n_components, n_features)) + offset
    if covariance_type == "full":
        A = rng.normal(size=(n_components, n_features, n_features)) * 0.5
        cov = A @ np.swapaxes(A, 1, 2) + np.eye(n_features)
    elif covariance_type == "tied":
        A = rng.normal(size=(n_features, n_features)) * 0.5
        cov = A @ A.T + np.eye(n_features)
    elif covariance_type == "diag":
        cov = rng.uniform(0.3, 2.0, size=(n_components, n_features))
    else:
        cov = rng.uniform(0.3, 2.0, size=n_components)
    return means, cov


def _full(cov, covariance_type, k, n_features):
    if covariance_type == "full":
        return cov[k]
    if covariance_type == "tied":
        return cov
    if covariance_type == "diag":
        return np.diag(cov[k])
    return cov[k] * np.eye(n_features)


@pytest.mark.parametrize("offset", [0.0, 1000.0])
@pytest.mark.parametrize("covariance_type", TYPES)
def test_log_likelihood_matches_scipy(covariance_type, offset, rng):
    means, cov = _random_params(rng, 4, 5, covariance_type, offset)
    X = means[rng.randint(4, size=3000)] + rng.normal(size=(3000, 5))  # more rows than one block
    prec_chol = gaussian.precisions_cholesky(cov, covariance_type)
    ours = gaussian.log_likelihood(X, means, prec_chol, covariance_type)
    for k in range(4):
        ref = multivariate_normal(means[k], _full(cov, covariance_type, k, 5)).logpdf(X)
        np.testing.assert_allclose(ours[:, k], ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_float32_log_likelihood(covariance_type, rng):
    means, cov = _random_params(rng, 3, 4, covariance_type)
    X = rng.normal(size=(500, 4)) * 2
    prec_chol = gaussian.precisions_cholesky(cov, covariance_type)
    ref = gaussian.log_likelihood(X, means, prec_chol, covariance_type)
    ours = gaussian.log_likelihood(X.astype(np.float32), means.astype(np.float32), prec_chol.astype(np.float32),
                                   covariance_type)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("covariance_type", TYPES)
def test_accumulate_matches_direct_sums(covariance_type, dtype, rng):
    X = (rng.normal(size=(2500, 3)) * 2 + 50).astype(dtype)
    post = rng.dirichlet(np.ones(4), size=2500).astype(dtype)
    center = rng.normal(size=(4, 3)) + 50
    stats = gaussian.accumulate(X, post, center, covariance_type)
    Xd, pd = X.astype(np.float64), post.astype(np.float64)
    rtol = 1e-9 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(stats.post, pd.sum(0), rtol=rtol)
    for k in range(4):
        diff = Xd - center[k]
        np.testing.assert_allclose(stats.first[k], pd[:, k] @ diff, rtol=rtol, atol=rtol * 100)
        scatter = (diff * pd[:, k, None]).T @ diff
        expected = scatter if covariance_type in ("full", "tied") else np.diag(scatter)
        np.testing.assert_allclose(stats.second[k], expected, rtol=rtol, atol=rtol * 100)


def test_pair_products_kernel(rng):
    X = rng.normal(size=(7, 4))
    rows, cols = np.triu_indices(4)
    out = pair_products(X)
    np.testing.assert_array_equal(out, X[:, rows] * X[:, cols])
    again = np.empty_like(out)
    _pair_products.py_func(X, rows.astype(np.int64), cols.astype(np.int64), again)
    np.testing.assert_array_equal(out, again)


def test_normalize_log_rows_kernel(rng):
    log_prob = rng.normal(size=(50, 4)) * 300
    log_prob[3] = -np.inf
    expected = log_prob.copy()
    log_norm = normalize_log_rows(log_prob)
    with np.errstate(invalid="ignore"):
        ref = np.exp(expected - np.max(expected, axis=1, keepdims=True))
    ref /= ref.sum(axis=1, keepdims=True)
    ref[3] = 0.0
    ref[ref < np.exp(-700)] = 0.0  # flushed, never subnormal
    np.testing.assert_allclose(log_prob, ref, atol=1e-300)
    assert log_norm[3] == -np.inf
    assert np.all(np.isfinite(np.delete(log_norm, 3)))


@pytest.mark.parametrize("covariance_type", TYPES)
def test_map_step_maximises_the_penalised_objective(covariance_type, rng):
    """Q(params) + log_prior(params) is largest at m_step's answer (perturbations only lower it)."""
    X = rng.normal(size=(60, 3)) * 1.5
    post = rng.dirichlet(np.ones(2), size=60)
    center = np.zeros((2, 3))
    priors = dict(means_prior=np.array([0.5, -0.5, 0.0]), means_weight=2.0, covars_prior=0.7, covars_weight=5.0)
    stats = gaussian.accumulate(X, post, center, covariance_type)
    means, cov = gaussian.m_step(stats, center, covariance_type, **priors)

    def penalised(means_, cov_):
        prec_chol = gaussian.precisions_cholesky(cov_, covariance_type)
        ll = gaussian.log_likelihood(X, means_, prec_chol, covariance_type)
        return np.sum(post * ll) + gaussian.log_prior(means_, cov_, covariance_type, **priors)

    best = penalised(means, cov)
    for _ in range(20):
        scale = np.exp(rng.normal(scale=0.05, size=np.shape(cov)))
        cov_p = cov * scale if covariance_type in ("diag", "spherical") else cov + 0.02 * np.eye(3)
        assert penalised(means + rng.normal(scale=0.05, size=means.shape), cov_p) < best


@pytest.mark.parametrize("covariance_type", TYPES)
def test_regularization_slack_bounds_the_loss(covariance_type, rng):
    """The objective lost by adding reg_covar after the exact update is at most the stated slack."""
    X = rng.normal(size=(40, 3))
    post = rng.dirichlet(np.ones(2), size=40)
    stats = gaussian.accumulate(X, post, np.zeros((2, 3)), covariance_type)
    means, exact = gaussian.m_step(stats, np.zeros((2, 3)), covariance_type)
    _, regular = gaussian.m_step(stats, np.zeros((2, 3)), covariance_type, reg_covar=0.05)

    def q(cov_):
        ll = gaussian.log_likelihood(X, means, gaussian.precisions_cholesky(cov_, covariance_type), covariance_type)
        return np.sum(post * ll)

    loss = q(exact) - q(regular)
    slack = gaussian.regularization_slack(regular, covariance_type, 0.05, stats.post, 3)
    assert 0 < loss <= slack * (1 + 1e-9)
    np.testing.assert_allclose(loss, slack, rtol=1e-6)  # the bound is exact for this update


@pytest.mark.parametrize("covariance_type", TYPES)
def test_shared_features_give_the_same_results(covariance_type, rng):
    means, cov = _random_params(rng, 3, 4, covariance_type, offset=20.0)
    X = means[rng.randint(3, size=900)] + rng.normal(size=(900, 4))
    prec_chol = gaussian.precisions_cholesky(cov, covariance_type)
    features = gaussian.shared_features(X, means, covariance_type)
    assert (features is None) == (covariance_type == "tied")
    np.testing.assert_array_equal(gaussian.log_likelihood(X, means, prec_chol, covariance_type, features=features),
                                  gaussian.log_likelihood(X, means, prec_chol, covariance_type))
    post = rng.dirichlet(np.ones(3), size=900)
    shared = gaussian.accumulate(X, post, means, covariance_type, features)
    for a, b in zip(shared, gaussian.accumulate(X, post, means, covariance_type)):
        np.testing.assert_array_equal(a, b)
    if covariance_type == "full":
        assert gaussian.shared_features(X.astype(np.float32), means, "full") is None
