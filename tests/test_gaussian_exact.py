"""Gaussian densities and statistics exact at any scale (issue 9).

The references are an exact two-pass EM written here in extended precision
(``numpy.longdouble``): every row centred on every component, means before
scatter matrices. Each test reproduces a defect a user met with the old
expansion about the middle of the means.
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from emkit import GaussianMixture
from emkit._densities import gaussian
from emkit.base import ObjectiveDecreaseWarning
from emkit.hmm import GaussianHMM

TYPES = ["full", "tied", "diag", "spherical"]
LONG = np.longdouble
_LOG_2PI = np.log(LONG(2) * LONG(np.pi))


# ----------------------------------------------------------------------------- the exact oracle
def _cholesky_lower(a):
    """Cholesky factor of a small symmetric positive-definite matrix, in the matrix's own precision."""
    n = a.shape[0]
    low = np.zeros_like(a)
    for j in range(n):
        low[j, j] = np.sqrt(a[j, j] - np.sum(low[j, :j] ** 2))
        for i in range(j + 1, n):
            low[i, j] = (a[i, j] - np.sum(low[i, :j] * low[j, :j])) / low[j, j]
    return low


def _solve_lower(low, b):
    """``low^-1 b`` by forward substitution (b of shape (n, m))."""
    out = np.zeros_like(b)
    for i in range(low.shape[0]):
        out[i] = (b[i] - low[i, :i] @ out[:i]) / low[i, i]
    return out


def _full_covariance(covariances, covariance_type, k, n_features):
    if covariance_type == "full":
        return covariances[k]
    if covariance_type == "tied":
        return covariances
    if covariance_type == "diag":
        return np.diag(covariances[k])
    return covariances[k] * np.eye(n_features, dtype=covariances.dtype)


def oracle_log_density(X, means, covariances, covariance_type):
    """``log N(x_n | mu_k, Sigma_k)`` in long double: centre on mu_k, then solve with the Cholesky factor."""
    X, means, covariances = (np.asarray(a, dtype=LONG) for a in (X, means, covariances))
    n_samples, n_features = X.shape
    out = np.empty((n_samples, means.shape[0]), dtype=LONG)
    for k in range(means.shape[0]):
        low = _cholesky_lower(_full_covariance(covariances, covariance_type, k, n_features))
        z = _solve_lower(low, (X - means[k]).T)
        out[:, k] = -0.5 * np.sum(z * z, axis=0) - np.sum(np.log(np.diag(low))) - 0.5 * n_features * _LOG_2PI
    return out


def _logsumexp_rows(a):
    peak = np.max(a, axis=1, keepdims=True)
    return (peak + np.log(np.sum(np.exp(a - peak), axis=1, keepdims=True)))[:, 0]


def oracle_em(X, weights, means, covariances, covariance_type, n_iter, reg_covar=1e-6):
    """Exact two-pass EM (long double) from an explicit start: weights, means, covariances after n_iter steps."""
    X = np.asarray(X, dtype=LONG)
    weights, means, covariances = (np.asarray(a, dtype=LONG) for a in (weights, means, covariances))
    n_samples, n_features = X.shape
    tiny = 10 * LONG(np.finfo(np.float64).eps)
    for _ in range(n_iter):
        log_prob = oracle_log_density(X, means, covariances, covariance_type) + np.log(weights)
        resp = np.exp(log_prob - _logsumexp_rows(log_prob)[:, np.newaxis])
        nk = resp.sum(axis=0) + tiny
        means = (resp.T @ X) / nk[:, np.newaxis]  # first pass: the means
        scatter = []
        for k in range(means.shape[0]):  # second pass: scatter about the new means
            diff = X - means[k]
            scatter.append((resp[:, k, np.newaxis] * diff).T @ diff)
        scatter = np.array(scatter)
        if covariance_type == "full":
            covariances = scatter / nk[:, np.newaxis, np.newaxis] + reg_covar * np.eye(n_features)
        elif covariance_type == "tied":
            covariances = scatter.sum(axis=0) / nk.sum() + reg_covar * np.eye(n_features)
        elif covariance_type == "diag":
            covariances = np.diagonal(scatter, axis1=1, axis2=2) / nk[:, np.newaxis] + reg_covar
        else:
            covariances = np.diagonal(scatter, axis1=1, axis2=2).mean(axis=1) / nk + reg_covar
        weights = nk / nk.sum()
    return weights, means, covariances


def oracle_hmm_m_step(X, posteriors, covariance_type, means_prior, means_weight, covars_prior, covars_weight):
    """Exact two-pass MAP update of a Gaussian HMM's means and covariances, fed the posteriors (hmmlearn's priors)."""
    X = np.asarray(X, dtype=LONG)
    posteriors = np.asarray(posteriors, dtype=LONG)
    n_features = X.shape[1]
    nk = posteriors.sum(axis=0) + 10 * LONG(np.finfo(np.float64).eps)
    m0 = LONG(means_prior)
    means = (means_weight * m0 + posteriors.T @ X) / (means_weight + nk)[:, np.newaxis]
    scatter = []
    for k in range(means.shape[0]):
        diff = X - means[k]
        prior_diff = means[k] - m0
        scatter.append((posteriors[:, k, np.newaxis] * diff).T @ diff + means_weight * np.outer(prior_diff, prior_diff))
    scatter = np.array(scatter)
    if covariance_type in ("full", "tied"):
        extra = max(covars_weight - n_features, 0.0)
        psi = covars_prior * np.eye(n_features, dtype=LONG)
        if covariance_type == "full":
            return means, (psi + scatter) / (extra + nk)[:, np.newaxis, np.newaxis]
        return means, (psi + scatter.sum(axis=0)) / (extra + nk.sum())
    extra = max(covars_weight - 1.0, 0.0)
    var = (covars_prior + np.diagonal(scatter, axis1=1, axis2=2)) / (extra + nk)[:, np.newaxis]
    return means, (var if covariance_type == "diag" else var.mean(axis=1))


def _relative_error(ours, reference):
    reference = np.asarray(reference, dtype=LONG)
    return float(np.max(np.abs(np.asarray(ours, dtype=LONG) - reference)) / np.max(np.abs(reference)))


# ----------------------------------------------------------------------------- data
_DIRECTION = np.array([1.0, 2.0, -1.0]) / np.sqrt(6.0)


def three_clusters(sep, n_per_cluster=200, seed=0):
    """Three unit-variance clusters in 3-D at 0, +sep and -sep (along a fixed direction)."""
    rng = np.random.RandomState(seed)
    centres = np.array([0.0, 1.0, -1.0])[:, np.newaxis] * sep * _DIRECTION
    X = np.concatenate([rng.normal(size=(n_per_cluster, 3)) + c for c in centres])
    return X, centres


def explicit_start(centres, covariance_type, seed=1):
    """Weights, means (the true centres moved by half a standard deviation) and unit precisions."""
    rng = np.random.RandomState(seed)
    n_components, n_features = centres.shape
    weights = np.full(n_components, 1.0 / n_components)
    means = centres + 0.5 * rng.normal(size=centres.shape)
    precisions = {
        "full": np.tile(np.eye(n_features), (n_components, 1, 1)),
        "tied": np.eye(n_features),
        "diag": np.ones((n_components, n_features)),
        "spherical": np.ones(n_components),
    }[covariance_type]
    return weights, means, precisions


# ----------------------------------------------------------------------------- GaussianMixture
SEPARATIONS = [10.0, 1e3, 1e5, 1e7]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("sep", SEPARATIONS)
@pytest.mark.parametrize("covariance_type", TYPES)
def test_separation_sweep_matches_exact_two_pass_em(covariance_type, sep):
    """Covariances after 10 iterations equal exact two-pass EM's (issue 9 asks 1e-9 up to sep 1e5 and 1e-6
    at 1e7; they agree to round-off, 1e-12 is asserted).

    The old expansion about the middle of the means was off by 7.5e-6 at 1e5
    and 0.12 at 1e7 (full), and warned of decreases (diag); scikit-learn's
    tied, diag and spherical are off by 1e-6 at 1e5 and a few % at 1e7.
    Warnings are errors here, so a false ObjectiveDecreaseWarning fails the
    test too.
    """
    X, centres = three_clusters(sep)
    weights, means, precisions = explicit_start(centres, covariance_type)
    model = GaussianMixture(3, covariance_type=covariance_type, tol=0, max_iter=10, weights_init=weights,
                            means_init=means, precisions_init=precisions).fit(X)
    start_cov = gaussian.covariances_from_precisions(precisions, covariance_type)
    ref_weights, ref_means, ref_cov = oracle_em(X, weights, means, start_cov, covariance_type, 10)
    assert _relative_error(model.covariances_, ref_cov) < 1e-12
    assert _relative_error(model.means_, ref_means) < 1e-12
    np.testing.assert_allclose(model.weights_, ref_weights.astype(np.float64), rtol=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("sep", [10.0, 1e3])
@pytest.mark.parametrize("covariance_type", TYPES)
def test_float32_matches_exact_two_pass_em(covariance_type, sep):
    """float32 input stays float32 and agrees with the exact oracle to float32's precision.

    The parameters are stored in float32 after every step, which alone costs
    a few float32 epsilons per step (far beyond sep = 1e3 the means cannot
    even be stored to a fraction of a standard deviation in float32).
    """
    X, centres = three_clusters(sep)
    X = X.astype(np.float32)
    weights, means, precisions = explicit_start(centres, covariance_type)
    model = GaussianMixture(3, covariance_type=covariance_type, tol=0, max_iter=10, weights_init=weights,
                            means_init=means, precisions_init=precisions).fit(X)
    assert model.covariances_.dtype == np.float32 and model.means_.dtype == np.float32
    start_cov = gaussian.covariances_from_precisions(precisions, covariance_type)
    _, ref_means, ref_cov = oracle_em(X, weights, means, start_cov, covariance_type, 10)
    eps32 = np.finfo(np.float32).eps
    # measured: 3e-8 (a quarter of float32's epsilon: the storage); scikit-learn's tied is off by 3e-2 at 1e3
    assert _relative_error(model.covariances_, ref_cov) < 4 * eps32
    assert _relative_error(model.means_, ref_means) < 4 * eps32


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("n_iter", [1, 10])
@pytest.mark.parametrize("sep", [1e3, 1e6, 1e8])
@pytest.mark.parametrize("covariance_type", TYPES)
def test_a_mean_that_jumps_far_in_one_step_keeps_every_digit(covariance_type, sep, n_iter):
    """A component started half-way between two clusters takes one of them in one step (its mean moves by
    sep/2 standard deviations). Statistics about the old mean would lose eps * (sep/2)^2 (relative error
    3e-7 at 1e5, garbage at 1e8); scatters about each chunk's own mean, merged exactly, lose nothing."""
    rng = np.random.RandomState(0)
    X = np.concatenate([rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + [sep, 0.0]])
    means = np.array([[0.1, 0.0], [sep / 2, 0.0]])
    precisions = explicit_start(np.zeros((2, 2)), covariance_type)[2]
    model = GaussianMixture(2, covariance_type=covariance_type, tol=0, max_iter=n_iter, weights_init=[0.5, 0.5],
                            means_init=means, precisions_init=precisions).fit(X)
    start_cov = gaussian.covariances_from_precisions(precisions, covariance_type)
    _, ref_means, ref_cov = oracle_em(X, [0.5, 0.5], means, start_cov, covariance_type, n_iter)
    assert _relative_error(model.covariances_, ref_cov) < 1e-12
    assert _relative_error(model.means_, ref_means) < 1e-14


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("sep", SEPARATIONS)
def test_separation_sweep_matches_sklearn_full(sep):
    """scikit-learn's ``full`` M-step is two-pass; from the same start both agree at every separation."""
    X, centres = three_clusters(sep)
    weights, means, precisions = explicit_start(centres, "full")
    common = dict(covariance_type="full", tol=0, max_iter=10, weights_init=weights, means_init=means,
                  precisions_init=precisions)
    ours = GaussianMixture(3, **common).fit(X)
    theirs = SkGaussianMixture(3, **common).fit(X)
    tolerance = 1e-9 if sep <= 1e5 else 1e-6
    assert _relative_error(ours.covariances_, theirs.covariances_) < tolerance
    np.testing.assert_allclose(ours.score(X), theirs.score(X), rtol=1e-12)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_fits_at_sep_over_sigma_1e8_where_sklearn_fits(covariance_type):
    """At sep/sigma = 1e8 every restart used to fail ("scale the data", which cannot help)."""
    X, centres = three_clusters(1e8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = SkGaussianMixture(3, covariance_type="full", random_state=0).fit(X)  # scikit-learn fits this
        model = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    assert np.isfinite(reference.score(X))
    labels = np.repeat(np.arange(3), 200)
    assert _agreement(model.predict(X), labels) == 1.0  # the three clusters, exactly
    order = np.argsort(model.means_ @ _DIRECTION)  # components at -sep, 0, +sep
    clusters = [X[labels == k] for k in (2, 0, 1)]
    np.testing.assert_allclose(model.means_[order], [c.mean(axis=0) for c in clusters], rtol=0, atol=1e-6)
    sample_cov = np.array([np.cov(c.T, bias=True) for c in clusters]) + 1e-6 * np.eye(3)  # plus reg_covar
    expected = {
        "full": sample_cov,
        "tied": sample_cov.mean(axis=0),
        "diag": np.diagonal(sample_cov, axis1=1, axis2=2),
        "spherical": np.diagonal(sample_cov, axis1=1, axis2=2).mean(axis=1),
    }[covariance_type]
    got = model.covariances_ if covariance_type == "tied" else model.covariances_[order]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def _agreement(predicted, labels):
    """Fraction of rows in the majority component of their true cluster (1.0: the same partition up to names)."""
    agree = sum(np.max(np.bincount(predicted[labels == k])) for k in np.unique(labels))
    return agree / len(labels) if len(np.unique(predicted)) == len(np.unique(labels)) else 0.0


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("covariance_type", TYPES)
def test_integer_weights_equal_repeated_rows(covariance_type):
    """Integer sample_weight equals repeated rows, and unit weights equal none, to rtol 1e-9 (same start)."""
    X, centres = three_clusters(1e3, n_per_cluster=150, seed=3)
    X = X + 1e4  # away from the origin as well
    weights, means, precisions = explicit_start(centres + 1e4, covariance_type)
    counts = np.random.RandomState(4).randint(1, 4, size=len(X))
    common = dict(covariance_type=covariance_type, tol=0, max_iter=10, weights_init=weights, means_init=means,
                  precisions_init=precisions)
    weighted = GaussianMixture(3, **common).fit(X, sample_weight=counts)
    repeated = GaussianMixture(3, **common).fit(np.repeat(X, counts, axis=0))
    unit = GaussianMixture(3, **common).fit(X, sample_weight=np.ones(len(X)))
    plain = GaussianMixture(3, **common).fit(X)
    for a, b in ((weighted, repeated), (unit, plain)):
        for attr in ("weights_", "means_", "covariances_"):
            np.testing.assert_allclose(getattr(a, attr), getattr(b, attr), rtol=1e-9, atol=0)
        np.testing.assert_allclose(a.lower_bound_, b.lower_bound_, rtol=1e-9)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_constant_data_far_from_zero(covariance_type):
    """Constant rows at 1e150 score -D/2 log(2 pi reg_covar) per sample (the mean found exactly)."""
    X = np.full((50, 2), 1e150)
    model = GaussianMixture(1, covariance_type=covariance_type, random_state=0).fit(X)
    expected = -0.5 * 2 * np.log(2 * np.pi * 1e-6)
    np.testing.assert_allclose(model.score(X), expected, rtol=1e-12)
    np.testing.assert_allclose(model.lower_bound_, expected, rtol=1e-12)
    np.testing.assert_array_equal(model.means_, X[:1])


# ----------------------------------------------------------------------------- GaussianHMM
def _sample_hmm(seed, n_steps=2000):
    """2,000 steps of a 3-state diag GaussianHMM: means randint(-20, 20, (3, 3)), variances 0.05."""
    rng = np.random.RandomState(seed)
    means = rng.randint(-20, 20, (3, 3)).astype(float)
    startprob = np.array([0.6, 0.3, 0.1])
    transmat = np.array([[0.7, 0.2, 0.1], [0.3, 0.5, 0.2], [0.3, 0.3, 0.4]])
    states = np.empty(n_steps, dtype=int)
    states[0] = rng.choice(3, p=startprob)
    for t in range(1, n_steps):
        states[t] = rng.choice(3, p=transmat[states[t - 1]])
    return means[states] + np.sqrt(0.05) * rng.normal(size=(n_steps, 3))


@pytest.mark.parametrize("covariance_type", TYPES)
def test_hmm_no_false_decrease_warnings(covariance_type):
    """Default fits of well-separated data raised ObjectiveDecreaseWarning in 10-80% of seeds (round-off)."""
    for seed in range(20):
        X = _sample_hmm(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # hmmlearn's test style: every warning is an error
            model = GaussianHMM(3, covariance_type=covariance_type, random_state=0).fit(X)
        assert np.all(np.diff(model.lower_bound_history_) >= -1e-13 * np.abs(model.lower_bound_history_[1:]))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_hmm_decrease_then_converged_example():
    """The issue's 1-D example dropped the objective from -14.02 to -22.50 per step, then claimed convergence.

    With exact densities no step decreases the objective: every step is an
    ascent and the fit ends better than its start (the same seed with
    ``max_iter=0`` gives the start).
    """
    X = np.array([[3.0664592037063010e7], [-4.5113275801212616e7], [1.0628984178413312e8],
                  [3.4935664168520443e7], [-5.3225112296911605e7]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ObjectiveDecreaseWarning)
        model = GaussianHMM(3, random_state=33).fit(X)
    start = GaussianHMM(3, random_state=33, max_iter=0).fit(X).lower_bound_
    history = np.concatenate([[start], model.lower_bound_history_])
    assert np.all(np.diff(history) >= -8 * np.finfo(float).eps * np.abs(history[1:]))
    assert model.lower_bound_ > start
    assert model.lower_bound_ > -14.0  # the old run ended at -22.50 per step


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("sep", [10.0, 1e5, 1e7])
@pytest.mark.parametrize("covariance_type", TYPES)
def test_hmm_m_step_matches_exact_oracle_fed_the_same_posteriors(covariance_type, sep):
    """GaussianHMM's update of means and covariances equals an exact two-pass MAP update from its posteriors."""
    X, centres = three_clusters(sep, n_per_cluster=100, seed=5)
    X = X[np.random.RandomState(6).permutation(len(X))]  # no temporal structure needed: any posteriors do
    weights, means, precisions = explicit_start(centres, covariance_type)
    start_cov = gaussian.covariances_from_precisions(precisions, covariance_type)
    model = GaussianHMM(3, covariance_type=covariance_type, init_params="", max_iter=1, tol=0,
                        startprob_init=weights, transmat_init=np.full((3, 3), 1 / 3), means_init=means,
                        covars_init=start_cov)
    model.fit(X)
    start = GaussianHMM(3, covariance_type=covariance_type, init_params="", max_iter=0, startprob_init=weights,
                        transmat_init=np.full((3, 3), 1 / 3), means_init=means, covars_init=start_cov).fit(X)
    posteriors = start.predict_proba(X)
    ref_means, ref_cov = oracle_hmm_m_step(X, posteriors, covariance_type, 0.0, 0.0, 1e-2, 1.0)
    assert _relative_error(model.means_, ref_means) < 1e-12
    assert _relative_error(model.covars_, ref_cov) < (1e-9 if sep <= 1e5 else 1e-6)


def test_hmm_full_covars_prior_per_state():
    """A (K, D, D) covars_prior for full covariances used to pass validation and crash in the log-prior."""
    rng = np.random.RandomState(0)
    X = np.concatenate([rng.normal(size=(150, 2)) + c for c in ([0, 0], [8, 0], [0, 8])])
    prior = np.array([np.eye(2) * s for s in (0.5, 1.0, 2.0)])
    model = GaussianHMM(3, covariance_type="full", covars_prior=prior, covars_weight=4, random_state=0).fit(X)
    assert np.isfinite(model.lower_bound_)
    mixture = GaussianMixture(3, covariance_type="full", covars_prior=prior, covars_weight=4, random_state=0).fit(X)
    assert np.isfinite(mixture.lower_bound_)
    # each state's own prior enters its own update: the MAP step maximises the penalised objective
    stats = gaussian.accumulate(X, model.predict_proba(X), model.means_, "full")
    _, cov = gaussian.m_step(stats, model.means_, "full", covars_prior=prior, covars_weight=4.0)
    one = gaussian.m_step(stats, model.means_, "full", covars_prior=prior[1], covars_weight=4.0)[1]
    np.testing.assert_allclose(cov[1], one[1], rtol=1e-12)
    assert not np.allclose(cov[0], one[0])


@pytest.mark.parametrize("covariance_type", TYPES)
def test_one_table_of_accepted_shapes(covariance_type):
    """Both estimators accept and refuse the same covars_prior shapes (the table in _densities/gaussian.py)."""
    K, D = 2, 3
    X = np.random.RandomState(0).normal(size=(40, D))
    allowed = gaussian.parameter_shapes("covars_prior", covariance_type, K, D)
    for shape in [(), (D,), (K,), (D, D), (K, D), (K, D, D)]:
        value = np.broadcast_to(np.eye(D), shape).copy() if shape[-2:] == (D, D) else np.ones(shape)
        for estimator in (GaussianMixture(K, covariance_type=covariance_type, covars_prior=value, max_iter=2,
                                          random_state=0),
                          GaussianHMM(K, covariance_type=covariance_type, covars_prior=value, max_iter=2,
                                      random_state=0)):
            if shape in allowed:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    estimator.fit(X)
            else:
                with pytest.raises(ValueError, match="covars_prior"):
                    estimator.fit(X)


# ----------------------------------------------------------------------------- property test
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    log_offset=st.floats(0.0, 8.0),
    log_scale=st.floats(-3.0, 3.0),
    log_sep=st.floats(0.0, 6.0),
    covariance_type=st.sampled_from(TYPES),
    n_features=st.sampled_from([1, 2, 5, 33]),
    seed=st.integers(0, 2**16),
)
def test_densities_and_statistics_exact_at_any_scale(log_offset, log_scale, log_sep, covariance_type, n_features,
                                                     seed):
    """log_likelihood, accumulate and mixture_block equal the long-double oracle for any offset, scale, separation."""
    rng = np.random.RandomState(seed)
    K = 3
    scale, offset, sep = 10.0**log_scale, 10.0**log_offset, 10.0**log_sep
    directions = rng.normal(size=(K, n_features))
    means = offset + scale * sep * directions
    if covariance_type == "full":
        A = rng.normal(size=(K, n_features, n_features)) * 0.3
        cov = scale**2 * (A @ np.swapaxes(A, 1, 2) + np.eye(n_features))
    elif covariance_type == "tied":
        A = rng.normal(size=(n_features, n_features)) * 0.3
        cov = scale**2 * (A @ A.T + np.eye(n_features))
    elif covariance_type == "diag":
        cov = scale**2 * rng.uniform(0.5, 2.0, size=(K, n_features))
    else:
        cov = scale**2 * rng.uniform(0.5, 2.0, size=K)
    labels = rng.randint(K, size=300)
    X = means[labels] + scale * rng.normal(size=(300, n_features))
    prec_chol = gaussian.precisions_cholesky(cov, covariance_type)

    ours = gaussian.log_likelihood(X, means, prec_chol, covariance_type)
    ref = oracle_log_density(X, means, cov, covariance_type)
    # relative to the size of the terms (the log-determinant and the Mahalanobis distance)
    magnitude = np.abs(ref) + np.abs(np.log(scale)) * n_features + n_features
    assert np.all(np.abs(ours - ref) <= 1e-12 * magnitude)

    post = rng.dirichlet(np.ones(K), size=300)
    center = means + scale * sep * rng.normal(size=means.shape)  # first moments about points far from the data
    stats = gaussian.accumulate(X, post, center, covariance_type)
    _check_moments(stats, X, post, center, covariance_type)

    log_weights = np.log(np.array([0.2, 0.3, 0.5]))
    block_stats, total = gaussian.mixture_block(X, None, log_weights, means, prec_chol, covariance_type)
    joint = ref + np.asarray(log_weights, dtype=LONG)
    ref_total = np.sum(_logsumexp_rows(joint))
    assert abs(total - ref_total) <= 1e-12 * np.sum(np.max(magnitude, axis=1))
    resp = np.exp(joint - _logsumexp_rows(joint)[:, np.newaxis]).astype(np.float64)
    _check_moments(block_stats, X, resp, means, covariance_type, rtol=1e-10)


def _check_moments(stats, X, post, center, covariance_type, rtol=1e-12):
    """Mass, first moment about ``center`` and scatter about the weighted mean, against long-double sums."""
    Xl, pl = np.asarray(X, dtype=LONG), np.asarray(post, dtype=LONG)
    for k in range(center.shape[0]):
        mass = pl[:, k].sum()
        first = pl[:, k] @ (Xl - np.asarray(center[k], dtype=LONG))
        centred = Xl - (pl[:, k] @ Xl) / mass
        scatter = (pl[:, k, np.newaxis] * centred).T @ centred
        size = float(np.trace(scatter)) + 1e-300
        expected = scatter if covariance_type in ("full", "tied") else np.diagonal(scatter)
        assert abs(stats.post[k] - mass) <= rtol * len(X)
        assert np.max(np.abs(stats.first[k] - first)) <= rtol * (np.sqrt(size * mass) + np.max(np.abs(first)))
        assert np.max(np.abs(stats.second[k] - expected)) <= rtol * size
