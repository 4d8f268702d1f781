"""Gaussian components with missing values (NaN), marginalised exactly (issue 11).

Oracles written here, independently of emkit's precision-side formulas:
scipy's multivariate normal on each row's observed sub-vector for the
densities, and the covariance-side closed form (``Sigma_mo Sigma_oo^-1``,
``Sigma_mm - Sigma_mo Sigma_oo^-1 Sigma_om``) per row and per component for
the expected statistics.
"""

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from emkit._densities import gaussian
from emkit._densities import gaussian_missing as gm
from emkit._inference import missing as missing_kernels

TYPES = ["full", "tied", "diag", "spherical"]


# ----------------------------------------------------------------------------- helpers
def full_covariance(covariances, covariance_type, k, n_features):
    """Component k's covariance as a (D, D) matrix."""
    if covariance_type == "full":
        return covariances[k]
    if covariance_type == "tied":
        return covariances
    if covariance_type == "diag":
        return np.diag(covariances[k])
    return covariances[k] * np.eye(n_features)


def random_parameters(rng, covariance_type, n_components, n_features, offset=0.0, spread=3.0):
    means = offset + spread * rng.normal(size=(n_components, n_features))
    factors = rng.normal(size=(n_components, n_features, n_features))
    full = factors @ np.swapaxes(factors, 1, 2) + 0.5 * np.eye(n_features)
    covariances = {
        "full": full,
        "tied": full[0],
        "diag": rng.uniform(0.3, 2.0, size=(n_components, n_features)),
        "spherical": rng.uniform(0.3, 2.0, size=n_components),
    }[covariance_type]
    return means, covariances


def with_holes(rng, X, fraction):
    """A copy of X with each entry missing with probability ``fraction``."""
    X = X.copy()
    X[rng.uniform(size=X.shape) < fraction] = np.nan
    return X


def oracle_log_likelihood(X, means, covariances, covariance_type):
    n_samples, n_features = X.shape
    out = np.zeros((n_samples, means.shape[0]))
    for n in range(n_samples):
        seen = ~np.isnan(X[n])
        if not seen.any():
            continue
        for k in range(means.shape[0]):
            cov = full_covariance(covariances, covariance_type, k, n_features)[np.ix_(seen, seen)]
            out[n, k] = multivariate_normal(means[k, seen], cov).logpdf(X[n, seen])
    return out


def oracle_conditional(x, mean, cov):
    """E[x | x_o] (observed entries as given) and Cov[x | x_o] (zero outside the missing block)."""
    miss = np.isnan(x)
    seen = ~miss
    expected = x.copy()
    conditional = np.zeros_like(cov)
    if not miss.any():
        return expected, conditional
    if not seen.any():
        return mean.copy(), cov.copy()
    s_oo = cov[np.ix_(seen, seen)]
    s_mo = cov[np.ix_(miss, seen)]
    gain = np.linalg.solve(s_oo, s_mo.T).T  # Sigma_mo Sigma_oo^-1
    expected[miss] = mean[miss] + gain @ (x[seen] - mean[seen])
    conditional[np.ix_(miss, miss)] = cov[np.ix_(miss, miss)] - gain @ s_mo.T
    return expected, conditional


def oracle_statistics(X, posteriors, means, covariances, covariance_type, center):
    """GaussianStats of the completed data, per row and per component (rows with nothing observed skipped)."""
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    post = np.zeros(n_components)
    first = np.zeros((n_components, n_features))
    second = np.zeros((n_components, n_features, n_features))
    for k in range(n_components):
        cov = full_covariance(covariances, covariance_type, k, n_features)
        rows = [(posteriors[n, k], *oracle_conditional(X[n], means[k], cov)) for n in range(n_samples)]
        rows = [row for row, x in zip(rows, X) if not np.isnan(x).all()]
        post[k] = sum(r for r, _, _ in rows)
        first[k] = sum(r * (e - center[k]) for r, e, _ in rows)
        mean = center[k] + first[k] / post[k]
        second[k] = sum(r * (np.outer(e - mean, e - mean) + c) for r, e, c in rows)
    if covariance_type in ("diag", "spherical"):
        second = np.diagonal(second, axis1=1, axis2=2).copy()
    return post, first, second


def random_posteriors(rng, n_samples, n_components):
    resp = rng.uniform(0.05, 1.0, size=(n_samples, n_components))
    return resp / resp.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- densities
@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_log_likelihood_is_the_marginal_density_of_the_observed_coordinates(covariance_type, offset):
    rng = np.random.RandomState(0)
    n_features, n_components = 5, 3
    means, covariances = random_parameters(rng, covariance_type, n_components, n_features, offset=offset)
    X = with_holes(rng, means[rng.randint(n_components, size=300)] + 2 * rng.normal(size=(300, n_features)), 0.3)
    X[:3] = np.nan  # nothing observed
    X[3] = means[0] + 1.0  # complete
    prec_chol = gaussian.precisions_cholesky(covariances, covariance_type)
    got = gm.log_likelihood(X, means, prec_chol, covariance_type)
    want = oracle_log_likelihood(X, means, covariances, covariance_type)
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-9)
    assert np.all(got[:3] == 0.0)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_log_likelihood_with_widely_separated_components(covariance_type):
    # components 1e4 standard deviations apart: densities of order -1e8 must keep their small differences
    rng = np.random.RandomState(1)
    n_features = 4
    means, covariances = random_parameters(rng, covariance_type, 2, n_features, offset=1e6)
    means[1] = means[0] + 1e4
    X = with_holes(rng, means[0] + rng.normal(size=(200, n_features)), 0.25)
    prec_chol = gaussian.precisions_cholesky(covariances, covariance_type)
    got = gm.log_likelihood(X, means, prec_chol, covariance_type)
    want = oracle_log_likelihood(X, means, covariances, covariance_type)
    np.testing.assert_allclose(got[:, 0], want[:, 0], rtol=1e-11, atol=1e-9)
    np.testing.assert_allclose(got[:, 1], want[:, 1], rtol=1e-12)
    # the difference between two rows' far-component densities (tiny next to either) is right too
    same = np.flatnonzero((~np.isnan(X)).all(axis=1))
    np.testing.assert_allclose(np.diff(got[same, 1]), np.diff(want[same, 1]), rtol=1e-6, atol=1e-6)


def test_complete_rows_take_the_complete_data_path(rng):
    means, covariances = random_parameters(rng, "full", 3, 4)
    X = rng.normal(size=(500, 4))
    prec_chol = gaussian.precisions_cholesky(covariances, "full")
    np.testing.assert_array_equal(
        gm.log_likelihood(X, means, prec_chol, "full"), gaussian.log_likelihood(X, means, prec_chol, "full")
    )
    resp = random_posteriors(rng, 500, 3)
    for got, want in zip(
        gm.accumulate(X, resp, means, prec_chol, "full"), gaussian.accumulate(X, resp, means, "full")
    ):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_float32_rows(covariance_type):
    rng = np.random.RandomState(2)
    means, covariances = random_parameters(rng, covariance_type, 2, 3)
    X = with_holes(rng, rng.normal(size=(100, 3)), 0.3).astype(np.float32)
    prec_chol = gaussian.precisions_cholesky(covariances, covariance_type)
    got = gm.log_likelihood(X, means, prec_chol, covariance_type)
    want = oracle_log_likelihood(X.astype(np.float64), means, covariances, covariance_type)
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-9)
    # the E-step of a float32 block: the same as of its float64 copy (every kernel computes in float64)
    log_weights = np.log([0.5, 0.5])
    stats32, total32 = gm.mixture_block(X, None, log_weights, means, prec_chol, covariance_type)
    stats64, total64 = gm.mixture_block(X.astype(np.float64), None, log_weights, means, prec_chol, covariance_type)
    np.testing.assert_allclose(total32, total64, rtol=1e-13)
    for a, b in zip(stats32, stats64):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())


@pytest.mark.parametrize("n_features", [1, 70])
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_one_feature_and_more_than_62(n_features, covariance_type):
    # one feature: rows are complete or empty; 70: patterns no longer fit in one integer key
    rng = np.random.RandomState(13)
    means, covariances = random_parameters(rng, covariance_type, 2, n_features)
    X = with_holes(rng, rng.normal(scale=2.0, size=(40, n_features)), 0.3 if n_features == 1 else 0.02)
    X[-1] = np.nan
    X[-2] = X[-3]  # two rows with one pattern
    prec_chol = gaussian.precisions_cholesky(covariances, covariance_type)
    got = gm.log_likelihood(X, means, prec_chol, covariance_type)
    np.testing.assert_allclose(got, oracle_log_likelihood(X, means, covariances, covariance_type),
                               rtol=1e-10, atol=1e-9)
    resp = random_posteriors(rng, 40, 2)
    stats = gm.accumulate(X, resp, means, prec_chol, covariance_type)
    want = oracle_statistics(X, resp, means, covariances, covariance_type, means)
    for a, b in zip(stats, want):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * np.abs(b).max())


# ----------------------------------------------------------------------------- statistics
@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_statistics_equal_the_closed_form(covariance_type, offset):
    rng = np.random.RandomState(3)
    n_samples, n_features, n_components = 60, 4, 3
    means, covariances = random_parameters(rng, covariance_type, n_components, n_features, offset=offset)
    X = with_holes(rng, means[rng.randint(n_components, size=n_samples)] + rng.normal(size=(n_samples, 4)), 0.35)
    X[5] = np.nan
    resp = random_posteriors(rng, n_samples, n_components)
    prec_chol = gaussian.precisions_cholesky(covariances, covariance_type)
    # a centre that is not the means (the statistics then include the shift)
    center = means + rng.normal(size=means.shape)
    got = gm.accumulate(X, resp, means, prec_chol, covariance_type, center=center)
    want = oracle_statistics(X, resp, means, covariances, covariance_type, center)
    np.testing.assert_allclose(got.post, want[0], rtol=1e-13)
    np.testing.assert_allclose(got.first, want[1], rtol=1e-9, atol=1e-9 * np.abs(want[1]).max())
    np.testing.assert_allclose(got.second, want[2], rtol=1e-9, atol=1e-9 * np.abs(want[2]).max())


@pytest.mark.parametrize("covariance_type", TYPES)
def test_kept_completion_gives_the_same_densities_and_statistics(covariance_type, monkeypatch):
    # an HMM takes a block's densities, then its statistics under the same parameters: the completed rows
    # kept by log_likelihood(keep=True) must give accumulate exactly what completing them again gives
    rng = np.random.RandomState(13)
    means, covariances = random_parameters(rng, covariance_type, 3, 5)
    X = with_holes(rng, rng.normal(scale=2.0, size=(700, 5)), 0.3)
    X[:3] = np.nan
    prec_chol = gaussian.precisions_cholesky(covariances, covariance_type)
    monkeypatch.setattr(gm, "_MAX_CHUNK_ROWS", 64)  # several chunks
    monkeypatch.setattr(gm, "_MIN_CHUNK_ROWS", 64)
    monkeypatch.setattr(gm.kernels, "NUMPY_MAX_ROWS", -1)  # the compiled path, which keeps the completed rows
    dens, completion = gm.log_likelihood(X, means, prec_chol, covariance_type, keep=True)
    np.testing.assert_array_equal(dens, gm.log_likelihood(X, means, prec_chol, covariance_type))
    assert len(completion.chunks) > 2
    resp = random_posteriors(rng, 700, 3)
    center = means + 0.1
    again = gm.accumulate(X, resp, means, prec_chol, covariance_type, center=center)
    reused = gm.accumulate(X, resp, means, prec_chol, covariance_type, center=center, completion=completion)
    for a, b in zip(reused, again):
        np.testing.assert_array_equal(a, b)
    # complete blocks keep nothing; a completion beyond the memory budget is not kept
    assert gm.log_likelihood(np.nan_to_num(X), means, prec_chol, covariance_type, keep=True)[1] is None
    monkeypatch.setattr(gm, "_KEEP_BYTES", 1000)
    assert gm.log_likelihood(X, means, prec_chol, covariance_type, keep=True)[1] is None


@pytest.mark.parametrize("n_components", [1, 3, 9])
def test_tied_factorises_each_pattern_once_with_the_numbers_of_full(n_components, monkeypatch):
    # a tied covariance is one matrix for every component: its P_mm^-1 are computed once per run, not K times,
    # with the same arithmetic as full covariances that repeat it
    rng = np.random.RandomState(22)
    X = with_holes(rng, rng.normal(size=(3000, 6)), 0.3)
    means = rng.normal(size=(n_components, 6))
    a = rng.normal(size=(6, 6))
    covariance = a @ a.T + np.eye(6)
    tied = gaussian.precisions_cholesky(covariance, "tied")
    full = gaussian.precisions_cholesky(np.tile(covariance, (n_components, 1, 1)), "full")
    resp = random_posteriors(rng, 3000, n_components)
    monkeypatch.setattr(gm.kernels, "NUMPY_MAX_ROWS", -1)
    np.testing.assert_array_equal(gm.log_likelihood(X, means, tied, "tied"), gm.log_likelihood(X, means, full, "full"))
    for a, b in zip(gm.accumulate(X, resp, means, tied, "tied"), gm.accumulate(X, resp, means, full, "full")):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("n_rows", [300, 3000])  # the numpy and the compiled path
def test_a_layout_made_once_gives_every_call_the_same_numbers(covariance_type, n_rows):
    # where the entries are missing does not depend on the parameters: a fit makes the layout once per block
    rng = np.random.RandomState(21)
    X = with_holes(rng, rng.normal(scale=2.0, size=(n_rows, 5)), 0.3)
    X[:2] = np.nan
    layout = gm.layout(X, 3, covariance_type)
    assert (layout.chunks is not None) == (n_rows > gm.kernels.NUMPY_MAX_ROWS)
    for _ in range(2):  # two E-steps' parameters
        means, covariances = random_parameters(rng, covariance_type, 3, 5)
        prec_chol = gaussian.precisions_cholesky(covariances, covariance_type)
        resp = random_posteriors(rng, n_rows, 3)
        for keep in (False, True):
            fresh = gm.log_likelihood(X, means, prec_chol, covariance_type, keep=keep)
            reused = gm.log_likelihood(X, means, prec_chol, covariance_type, keep=keep, layout=layout)
            np.testing.assert_array_equal(reused[0] if keep else reused, fresh[0] if keep else fresh)
        again = gm.accumulate(X, resp, means, prec_chol, covariance_type)
        for a, b in zip(gm.accumulate(X, resp, means, prec_chol, covariance_type, layout=layout), again):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="layout was made for other rows"):
        gm.log_likelihood(X[1:], means, prec_chol, covariance_type, layout=layout)


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_numpy_path_for_few_incomplete_rows_agrees_with_the_kernels(covariance_type, offset, monkeypatch):
    # up to NUMPY_MAX_ROWS incomplete rows are completed with numpy (no compilation on a first small fit)
    rng = np.random.RandomState(17)
    n_features, n_components = 6, 3
    means, covariances = random_parameters(rng, covariance_type, n_components, n_features, offset=offset)
    X = means[rng.randint(n_components, size=150)] + rng.normal(size=(150, n_features))
    X = with_holes(rng, X, 0.3)
    X[:2] = np.nan
    X[2, :-1] = np.nan  # one observed coordinate
    weight = rng.uniform(0.5, 2.0, size=150)
    resp = random_posteriors(rng, 150, n_components)
    prec_chol = gaussian.precisions_cholesky(covariances, covariance_type)
    log_weights = np.log([0.2, 0.3, 0.5])
    center = means + rng.normal(size=means.shape)
    results = {}
    for path, limit in (("numpy", 1000), ("compiled", 0)):
        monkeypatch.setattr(gm.kernels, "NUMPY_MAX_ROWS", limit)
        results[path] = (
            gm.log_likelihood(X, means, prec_chol, covariance_type),
            gm.accumulate(X, resp, means, prec_chol, covariance_type, center=center),
            gm.mixture_block(X, weight, log_weights, means, prec_chol, covariance_type),
        )
    (ll, acc, (block, total)), (ll_c, acc_c, (block_c, total_c)) = results["numpy"], results["compiled"]
    np.testing.assert_allclose(ll, ll_c, rtol=1e-11)
    np.testing.assert_allclose(total, total_c, rtol=1e-12)
    for got, want in list(zip(acc, acc_c)) + list(zip(block, block_c)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())
    # and against the covariance-side oracle
    np.testing.assert_allclose(ll, oracle_log_likelihood(X, means, covariances, covariance_type), rtol=1e-9)
    want = oracle_statistics(X, resp, means, covariances, covariance_type, center)
    for got, expected in zip(acc, want):
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())


def test_numpy_path_is_what_a_small_fit_takes(monkeypatch):
    # a small data set with gaps never calls the compiled completion kernels
    rng = np.random.RandomState(18)
    X = with_holes(rng, rng.normal(size=(120, 3)), 0.2)

    def refuse(*args, **kwargs):
        raise AssertionError("compiled completion kernel called")

    for name in ("complete_full", "complete_diag", "row_patterns", "gather_rows"):
        monkeypatch.setattr(missing_kernels, name, refuse)
    from emkit import GaussianHMM, GaussianMixture

    for covariance_type in TYPES:
        GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X).predict(X)
        GaussianHMM(2, covariance_type=covariance_type, random_state=0).fit(X).predict(X)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_mixture_block_is_densities_responsibilities_and_statistics(covariance_type):
    rng = np.random.RandomState(4)
    n_samples, n_features, n_components = 400, 3, 3
    means, covariances = random_parameters(rng, covariance_type, n_components, n_features)
    X = with_holes(rng, rng.normal(scale=3.0, size=(n_samples, n_features)), 0.3)
    X[:4] = np.nan
    weights = np.array([0.5, 0.3, 0.2])
    sample_weight = rng.uniform(0.5, 2.0, size=n_samples)
    prec_chol = gaussian.precisions_cholesky(covariances, covariance_type)
    stats, total = gm.mixture_block(X, sample_weight, np.log(weights), means, prec_chol, covariance_type)
    joint = oracle_log_likelihood(X, means, covariances, covariance_type) + np.log(weights)
    log_norm = logsumexp(joint, axis=1)
    np.testing.assert_allclose(total, np.dot(sample_weight, log_norm), rtol=1e-12)
    resp = np.exp(joint - log_norm[:, None]) * sample_weight[:, None]
    want = oracle_statistics(X, resp, means, covariances, covariance_type, means)
    for got_field, want_field in zip(stats, want):
        np.testing.assert_allclose(got_field, want_field, rtol=1e-9, atol=1e-9 * np.abs(want_field).max())


@pytest.mark.parametrize("covariance_type", TYPES)
def test_rows_with_nothing_observed_change_nothing(covariance_type):
    rng = np.random.RandomState(5)
    n_features, n_components = 3, 2
    means, covariances = random_parameters(rng, covariance_type, n_components, n_features)
    X = with_holes(rng, rng.normal(scale=3.0, size=(200, n_features)), 0.2)
    X_more = np.vstack([X, np.full((50, n_features), np.nan)])
    prec_chol = gaussian.precisions_cholesky(covariances, covariance_type)
    log_weights = np.log([0.4, 0.6])

    ll = gm.log_likelihood(X_more, means, prec_chol, covariance_type)
    assert np.all(ll[200:] == 0.0)

    resp = random_posteriors(rng, 250, n_components)
    without = gm.accumulate(X, resp[:200], means, prec_chol, covariance_type)
    with_them = gm.accumulate(X_more, resp, means, prec_chol, covariance_type)
    for a, b in zip(without, with_them):
        np.testing.assert_array_equal(a, b)

    stats, total = gm.mixture_block(X, None, log_weights, means, prec_chol, covariance_type)
    stats_more, total_more = gm.mixture_block(X_more, None, log_weights, means, prec_chol, covariance_type)
    np.testing.assert_allclose(total_more, total, rtol=1e-14, atol=1e-12)  # each adds log(0.4 + 0.6) = 0
    update = gaussian.m_step(stats, means, covariance_type)
    update_more = gaussian.m_step(stats_more, means, covariance_type)
    for a, b in zip(update, update_more):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(stats.post / stats.post.sum(), stats_more.post / stats_more.post.sum())


def test_empty_rows_add_the_log_of_the_total_weight(rng):
    means, covariances = random_parameters(rng, "diag", 2, 2)
    X = np.full((3, 2), np.nan)
    prec_chol = gaussian.precisions_cholesky(covariances, "diag")
    log_weights = np.log([0.2, 0.3])  # not normalised: p(nothing) = 0.5
    stats, total = gm.mixture_block(X, np.array([1.0, 2.0, 3.0]), log_weights, means, prec_chol, "diag")
    np.testing.assert_allclose(total, 6.0 * np.log(0.5), rtol=1e-14)
    assert np.all(stats.post == 0.0)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_statistics_add_across_blocks(covariance_type):
    rng = np.random.RandomState(6)
    means, covariances = random_parameters(rng, covariance_type, 3, 4, offset=1e5)
    X = with_holes(rng, means[rng.randint(3, size=3000)] + rng.normal(size=(3000, 4)), 0.2)
    prec_chol = gaussian.precisions_cholesky(covariances, covariance_type)
    whole, total = gm.mixture_block(X, None, np.log([0.2, 0.3, 0.5]), means, prec_chol, covariance_type)
    parts = [gm.mixture_block(X[s : s + 700], None, np.log([0.2, 0.3, 0.5]), means, prec_chol, covariance_type)
             for s in range(0, 3000, 700)]
    summed = parts[0][0]
    for part in parts[1:]:
        summed = summed.add(part[0])
    np.testing.assert_allclose(sum(p[1] for p in parts), total, rtol=1e-12)
    for a, b in zip(summed, whole):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * np.abs(b).max())


# ----------------------------------------------------------------------------- EM
def _planted(covariance_type):
    means = np.array([[0.0, 0.0, 0.0], [6.0, 5.0, -4.0]])
    full = np.array(
        [[[1.0, 0.6, 0.3], [0.6, 1.5, -0.4], [0.3, -0.4, 0.8]], [[0.7, -0.2, 0.0], [-0.2, 0.5, 0.25], [0.0, 0.25, 1.2]]]
    )
    covariances = {
        "full": full,
        "tied": full[0],
        "diag": np.array([[1.0, 1.5, 0.8], [0.7, 0.5, 1.2]]),
        "spherical": np.array([0.9, 0.6]),
    }[covariance_type]
    return np.array([0.4, 0.6]), means, covariances


@pytest.mark.parametrize("covariance_type", TYPES)
def test_em_with_twenty_percent_missing_recovers_the_parameters(covariance_type):
    rng = np.random.RandomState(7)
    weights, means, covariances = _planted(covariance_type)
    n_samples = 4000
    labels = rng.choice(2, size=n_samples, p=weights)
    X = gaussian.sample(means, covariances, covariance_type, labels, rng)
    X = with_holes(rng, X, 0.2)
    assert 0.18 < np.isnan(X).mean() < 0.22
    # a poor start: both means near the middle, unit covariances
    est_means = np.array([[2.0, 2.0, -1.0], [4.0, 3.0, -3.0]])
    est_cov = {"full": np.array([np.eye(3)] * 2), "tied": np.eye(3), "diag": np.ones((2, 3)),
               "spherical": np.ones(2)}[covariance_type]
    est_weights = np.array([0.5, 0.5])
    history = []
    for _ in range(60):
        prec_chol = gaussian.precisions_cholesky(est_cov, covariance_type)
        stats, total = gm.mixture_block(X, None, np.log(est_weights), est_means, prec_chol, covariance_type)
        history.append(total)
        est_means, est_cov = gaussian.m_step(stats, est_means, covariance_type)
        est_weights = stats.post / stats.post.sum()
    history = np.array(history)
    # the observed-data log-likelihood never decreases (to round-off of the sum)
    assert np.all(np.diff(history) >= -64 * np.finfo(float).eps * np.abs(history[1:])), np.diff(history).min()
    assert history[-1] - history[-2] < 1e-9 * abs(history[-1])  # converged
    np.testing.assert_allclose(est_weights, weights, atol=0.03)
    np.testing.assert_allclose(est_means, means, atol=0.1)
    # covariances within 15%: every variance, and each matrix in Frobenius norm
    full_est = [full_covariance(est_cov, covariance_type, k, 3) for k in range(2)]
    full_true = [full_covariance(covariances, covariance_type, k, 3) for k in range(2)]
    for got, want in zip(full_est, full_true):
        np.testing.assert_allclose(np.diag(got), np.diag(want), rtol=0.15)
        assert np.linalg.norm(got - want) <= 0.15 * np.linalg.norm(want)


# ----------------------------------------------------------------------------- patterns, imputation, kernels
def test_missing_patterns_group_rows():
    X = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, np.nan], [4.0, np.nan, 6.0], [1.0, 2.0, 3.0]])
    missing, patterns, inverse = gm.missing_patterns(X)
    np.testing.assert_array_equal(missing, np.isnan(X))
    assert patterns.shape == (3, 3)
    np.testing.assert_array_equal(patterns[inverse], missing)
    assert inverse[0] == inverse[2] != inverse[1]


def test_missing_patterns_with_many_features():
    rng = np.random.RandomState(8)
    X = with_holes(rng, rng.normal(size=(300, 70)), 0.01)
    X[10] = X[20]
    missing, patterns, inverse = gm.missing_patterns(X)
    np.testing.assert_array_equal(patterns[inverse], missing)
    assert len(np.unique(inverse)) == patterns.shape[0] == len({row.tobytes() for row in missing})


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_sorted_and_unsorted_rows_give_the_same_numbers(covariance_type):
    # the kernels factorise once per run of a pattern: any order of the rows gives the same results
    rng = np.random.RandomState(9)
    means, covariances = random_parameters(rng, covariance_type, 3, 5)
    X = with_holes(rng, rng.normal(scale=2.0, size=(500, 5)), 0.3)
    prec_chol = gaussian.precisions_cholesky(covariances, covariance_type)
    order = np.argsort(gm._pattern_keys(np.isnan(X)), kind="stable")
    for rows in (X, X[order]):
        got = gm.log_likelihood(rows, means, prec_chol, covariance_type)
        np.testing.assert_allclose(got, oracle_log_likelihood(rows, means, covariances, covariance_type),
                                   rtol=1e-11, atol=1e-9)
    # the conditional covariances summed over runs of one pattern (few, sorted; many, unsorted)
    prep = gm._prepare(means, prec_chol, covariance_type)
    resp = random_posteriors(rng, 500, 3)
    sums = []
    for rows, r in ((X, resp), (X[order], resp[order])):
        rows = np.ascontiguousarray(rows)
        runs = missing_kernels.pattern_runs(rows)
        centred, extra = np.empty((3, 5, 500)), np.empty((3, 500))
        inverses = np.empty((runs.offsets[-1], 3))
        lanes = np.ascontiguousarray(rows.T)
        run_missing, run_count = missing_kernels.complete_full(
            rows, lanes, runs, prep.lanes, centred, extra, inverses
        )
        out = np.zeros((3, 5, 5))
        missing_kernels.conditional_covariance_full(
            runs, run_missing, run_count, inverses, np.ascontiguousarray(r.T), out
        )
        sums.append(out)
    assert len(missing_kernels.pattern_runs(np.ascontiguousarray(X[order])).starts) - 1 == len(
        gm.missing_patterns(X).patterns
    )
    np.testing.assert_allclose(sums[0], sums[1], rtol=1e-12)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_grouping_by_pattern_changes_only_round_off(covariance_type):
    rng = np.random.RandomState(12)
    means, covariances = random_parameters(rng, covariance_type, 3, 6)
    X = with_holes(rng, rng.normal(scale=2.0, size=(3000, 6)), 0.25)
    prec_chol = gaussian.precisions_cholesky(covariances, covariance_type)
    log_weights = np.log([0.3, 0.3, 0.4])
    grouped = gm.mixture_block(X, None, log_weights, means, prec_chol, covariance_type, group=True)
    ungrouped = gm.mixture_block(X, None, log_weights, means, prec_chol, covariance_type, group=False)
    np.testing.assert_allclose(grouped[1], ungrouped[1], rtol=1e-13)
    for a, b in zip(grouped[0], ungrouped[0]):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11 * np.abs(b).max())
    # rows permuted by pattern (what a mixture may do once per fit) give the same block sums
    order = gm.pattern_order(X)
    assert np.all(np.diff(gm._pattern_keys(np.isnan(X[order]))) >= 0)
    np.testing.assert_array_equal(np.sort(order), np.arange(3000))
    permuted = gm.mixture_block(X[order], None, log_weights, means, prec_chol, covariance_type)
    np.testing.assert_allclose(permuted[1], grouped[1], rtol=1e-13)
    for a, b in zip(permuted[0], grouped[0]):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11 * np.abs(b).max())


@pytest.mark.parametrize("covariance_type", TYPES)
def test_conditional_mean_is_the_posterior_average(covariance_type):
    rng = np.random.RandomState(10)
    n_features, n_components = 4, 3
    means, covariances = random_parameters(rng, covariance_type, n_components, n_features)
    X = with_holes(rng, rng.normal(scale=3.0, size=(80, n_features)), 0.3)
    X[0] = np.nan
    X_before = X.copy()
    resp = random_posteriors(rng, 80, n_components)
    prec_chol = gaussian.precisions_cholesky(covariances, covariance_type)
    filled = gm.conditional_mean(X, resp, means, prec_chol, covariance_type)
    np.testing.assert_array_equal(X, X_before)  # input untouched
    want = np.zeros_like(X)
    for n in range(80):
        for k in range(n_components):
            cov = full_covariance(covariances, covariance_type, k, n_features)
            want[n] += resp[n, k] * oracle_conditional(X[n], means[k], cov)[0]
    np.testing.assert_allclose(filled, want, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(filled[0], resp[0] @ means, rtol=1e-12)


def test_compiled_kernels_match_their_python():
    rng = np.random.RandomState(11)
    n_components, n_features, n_rows = 3, 4, 40
    means, covariances = random_parameters(rng, "full", n_components, n_features)
    X = with_holes(rng, rng.normal(size=(n_rows, n_features)), 0.4)
    X[0] = np.nan
    prep = gm._prepare(means, gaussian.precisions_cholesky(covariances, "full"), "full")
    runs = missing_kernels.pattern_runs(X)
    compiled = missing_kernels._pattern_runs
    starts, offsets = np.zeros(n_rows + 1, dtype=np.intp), np.zeros(n_rows + 1, dtype=np.intp)
    n_runs = compiled.py_func(X, starts, offsets, np.empty(n_features, dtype=np.intp))
    np.testing.assert_array_equal(starts[: n_runs + 1], runs.starts)
    np.testing.assert_array_equal(offsets[: n_runs + 1], runs.offsets)
    counts, keys, infinite = missing_kernels.row_patterns(X)
    assert not infinite
    np.testing.assert_array_equal(counts, np.isnan(X).sum(axis=1))
    np.testing.assert_array_equal(keys, gm._pattern_keys(np.isnan(X)))
    python_counts, python_keys = np.empty_like(counts), np.empty_like(keys)
    assert not missing_kernels._row_patterns.py_func(X, python_counts, python_keys)
    np.testing.assert_array_equal(python_counts, counts)
    np.testing.assert_array_equal(python_keys, keys)
    from_keys = missing_kernels.pattern_runs(X, keys, counts)
    np.testing.assert_array_equal(from_keys.starts, runs.starts)
    np.testing.assert_array_equal(from_keys.offsets, runs.offsets)
    index = np.array([3, 0, 39, 3])
    rows, lanes = missing_kernels.gather_rows(X.astype(np.float32), index)
    np.testing.assert_array_equal(rows, X.astype(np.float32)[index])
    np.testing.assert_array_equal(lanes, rows.T)

    # the factorisations (lanes of runs and components) and the completion, compiled and in Python
    n_runs = len(runs.starts) - 1
    run_missing = np.empty((n_runs, n_features), dtype=np.intp)
    run_count = np.empty(n_runs, dtype=np.intp)
    missing_kernels._run_missing(X, runs.starts, run_missing, run_count)
    np.testing.assert_array_equal(run_count, np.isnan(X[runs.starts[:-1]]).sum(axis=1))
    results = []
    for kernel in (missing_kernels._factor_runs, missing_kernels._factor_runs.py_func):
        inverses = np.zeros((runs.offsets[-1], n_components))
        product, log_part = np.ones((n_runs, n_components)), np.zeros((n_runs, n_components))
        order = np.argsort(run_count, kind="stable")
        kernel(order, run_count, run_missing, runs.offsets, prep.lanes.precision, inverses, product, log_part,
               np.empty((5, 200)), n_components)  # 200: batches of a few runs
        results.append((inverses, product, log_part))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    inverses, product, log_part = results[0]
    for r in range(n_runs):  # against numpy: the inverse of P_k[m, m] and half its log-determinant
        miss = run_missing[r, : run_count[r]]
        for k in range(n_components):
            block = prep.precision[k][np.ix_(miss, miss)]
            got = inverses[runs.offsets[r] : runs.offsets[r + 1], k].reshape(len(miss), len(miss))
            np.testing.assert_allclose(got, np.linalg.inv(block), rtol=1e-12)
            np.testing.assert_allclose(log_part[r, k] + np.log(product[r, k]), 0.5 * np.linalg.slogdet(block)[1],
                                       rtol=1e-12, atol=1e-14)
    half_log_det = log_part + np.log(product)

    results = []
    for kernel in (missing_kernels._complete_full, missing_kernels._complete_full.py_func):
        centred, extra = np.empty((n_components, n_features, n_rows)), np.empty((n_components, n_rows))
        kernel(X, np.ascontiguousarray(X.T), runs.starts, runs.offsets, prep.lanes.means, prep.lanes.precision,
               centred, extra, inverses, half_log_det, run_missing, run_count,
               np.empty((n_features, n_components)), np.empty((n_features, n_components)), n_components)
        results.append((centred, extra))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    resp = np.ascontiguousarray(random_posteriors(rng, n_rows, n_components).T)
    sums = []
    for kernel in (missing_kernels._conditional_covariance_full, missing_kernels._conditional_covariance_full.py_func):
        out = np.zeros((n_components, n_features, n_features))
        kernel(runs.starts, runs.offsets, run_missing, run_count, inverses, resp, out, np.zeros(n_components),
               n_components)
        sums.append(out)
    np.testing.assert_allclose(sums[0], sums[1], rtol=1e-13)
    centred = [np.empty((n_components, n_features, n_rows)) for _ in range(2)]
    missing_kernels._complete_diag(np.ascontiguousarray(X.T), prep.means, centred[0])
    missing_kernels._complete_diag.py_func(np.ascontiguousarray(X.T), prep.means, centred[1])
    np.testing.assert_array_equal(centred[0], centred[1])


def test_bad_input_is_a_clear_error(rng):
    means, covariances = random_parameters(rng, "diag", 2, 3)
    prec_chol = gaussian.precisions_cholesky(covariances, "diag")
    X = rng.normal(size=(5, 3))
    X[1, 1] = np.inf
    for call in (
        lambda: gm.log_likelihood(X, means, prec_chol, "diag"),
        lambda: gm.accumulate(X, np.ones((5, 2)), means, prec_chol, "diag"),
        lambda: gm.mixture_block(X, None, np.log([0.5, 0.5]), means, prec_chol, "diag"),
        lambda: gm.conditional_mean(X, np.ones((5, 2)), means, prec_chol, "diag"),
    ):
        with pytest.raises(ValueError, match="infinity"):
            call()
    with pytest.raises(ValueError, match="means must have shape"):
        gm.log_likelihood(rng.normal(size=(5, 4)), means, prec_chol, "diag")
    with pytest.raises(ValueError, match="posteriors must have shape"):
        gm.accumulate(rng.normal(size=(5, 3)), np.ones((4, 2)), means, prec_chol, "diag")
    with pytest.raises(ValueError, match="covariance_type"):
        gm.log_likelihood(rng.normal(size=(5, 3)), means, prec_chol, "banana")
    with pytest.raises(ValueError, match=r"prec_chol for covariance_type='full' must have shape \(2, 3, 3\)"):
        gm.log_likelihood(rng.normal(size=(5, 3)), means, prec_chol, "full")
