"""The shared Gaussian density module against direct computations."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from emkit._densities import gaussian
from emkit._inference import mixture as kernels
from emkit._inference.mixture import normalize_log_rows

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
        centred = Xd - np.average(Xd, axis=0, weights=pd[:, k])  # the scatter is about the weighted mean
        scatter = (centred * pd[:, k, None]).T @ centred
        expected = scatter if covariance_type in ("full", "tied") else np.diag(scatter)
        np.testing.assert_allclose(stats.second[k], expected, rtol=rtol, atol=rtol * 100)


def _lanes_problem(rng, n_features, n_components, n_rows=37):
    lanes = rng.normal(size=(n_features, n_rows)) * 3 + 100.0
    means = rng.normal(size=(n_components, n_features)) * 3 + 100.0
    A = rng.normal(size=(n_components, n_features, n_features)) * 0.3
    cov = A @ np.swapaxes(A, 1, 2) + np.eye(n_features)
    prec_chol = gaussian.precisions_cholesky(cov, "full")
    return lanes, means, prec_chol, rng.normal(size=n_components)


@pytest.mark.parametrize("n_features", [1, 2, 3, 4, 5, 8, 9])
def test_lane_kernels_match_direct_sums_and_py_func(n_features, rng):
    """Compiled lane kernels == their .py_func == direct numpy, for feature counts around the blocks of 4."""
    lanes, means, prec_chol, const = _lanes_problem(rng, n_features, 3)
    direct = np.array([c - 0.5 * np.sum(((lanes.T - m) @ u) ** 2, axis=1) for m, u, c in zip(means, prec_chol, const)])
    out = np.empty((3, lanes.shape[1]))
    kernels.full_log_density(lanes, means, prec_chol, const, out)
    np.testing.assert_allclose(out, direct, rtol=1e-12)
    again = np.empty_like(out)
    kernels._full_log_density.py_func(lanes, means, prec_chol, const, again, np.zeros((n_features + 3, lanes.shape[1])),
                                      np.empty((4, lanes.shape[1])))
    np.testing.assert_allclose(again, out, rtol=1e-13)

    scales = rng.uniform(0.5, 2.0, size=means.shape)
    kernels.diag_log_density(lanes, means, scales, const, out)
    whitened = (lanes.T[None] - means[:, None]) * scales[:, None]
    np.testing.assert_allclose(out, const[:, None] - 0.5 * np.sum(whitened**2, axis=2), rtol=1e-12)
    kernels._diag_log_density.py_func(lanes, means, scales, const, again)
    np.testing.assert_allclose(again, out, rtol=1e-13)

    resp = rng.dirichlet(np.ones(3), size=lanes.shape[1]).T.copy()
    resp[1] = 0.0  # a component with nothing in the block is skipped, exactly
    sums = [np.zeros(3), np.zeros((3, n_features)), np.zeros((3, n_features, n_features))]
    kernels.full_moments(lanes, resp, means, *sums)
    py_sums = [np.zeros(3), np.zeros((3, n_features)), np.zeros((3, n_features, n_features))]
    kernels._moments.py_func(lanes, resp, means, *py_sums, np.zeros((n_features + 3, lanes.shape[1])),
                                  np.zeros((n_features + 1, lanes.shape[1])), *(np.empty(n_features) for _ in range(3)))
    assert sums[0][1] == 0 and not np.any(sums[1][1]) and not np.any(sums[2][1])
    diag_sums = [np.zeros(3), np.zeros((3, n_features)), np.zeros((3, n_features))]
    kernels.diag_moments(lanes, resp, means, *diag_sums)
    for k in (0, 2):
        diff = lanes.T - means[k]
        centred = lanes.T - np.average(lanes.T, axis=0, weights=resp[k])
        scatter = (centred * resp[k][:, None]).T @ centred
        np.testing.assert_allclose(sums[0][k], resp[k].sum(), rtol=1e-13)
        np.testing.assert_allclose(sums[1][k], resp[k] @ diff, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(sums[2][k], np.triu(scatter), rtol=1e-11, atol=1e-12)  # upper triangle only
        np.testing.assert_allclose(diag_sums[2][k], np.diag(scatter), rtol=1e-11, atol=1e-12)
    for a, b in zip(sums, py_sums):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_blas_and_lane_kernels_agree(covariance_type, rng, monkeypatch):
    """The kernel is chosen per shape for speed only: both give the same densities and statistics."""
    means, cov = _random_params(rng, 3, 6, covariance_type, offset=1e4)
    X = means[rng.randint(3, size=700)] + rng.normal(size=(700, 6))
    prec_chol = gaussian.precisions_cholesky(cov, covariance_type)
    post = rng.dirichlet(np.ones(3), size=700)
    results = {}
    for threshold in (10**6, 1):  # lanes, then BLAS
        monkeypatch.setattr(gaussian, "BLAS_MIN_FEATURES", threshold)
        results[threshold] = (
            gaussian.log_likelihood(X, means, prec_chol, covariance_type),
            gaussian.accumulate(X, post, means, covariance_type),
            gaussian.mixture_block(X, None, np.log([0.2, 0.3, 0.5]), means, prec_chol, covariance_type),
        )
    lanes, blas = results[10**6], results[1]
    np.testing.assert_allclose(lanes[0], blas[0], rtol=1e-12)
    for a, b in zip(lanes[1], blas[1]):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-9)
    for a, b in zip(lanes[2][0], blas[2][0]):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-9)
    np.testing.assert_allclose(lanes[2][1], blas[2][1], rtol=1e-13)


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


def test_normalize_log_groups_kernel_matches_logsumexp_and_py_func(rng):
    """GMMHMM's per-state mixture normaliser: scipy's logsumexp over each group, posteriors within it."""
    from scipy.special import logsumexp

    from emkit._inference.mixture import _normalize_log_groups, normalize_log_groups

    joint = rng.normal(size=(40, 3, 4)) * 50
    joint[5, 1] = -np.inf  # a state with no density at this row
    joint[7, 2, :2] = -np.inf
    expected_norm = logsumexp(joint, axis=2)
    with np.errstate(invalid="ignore"):
        expected = np.nan_to_num(np.exp(joint - expected_norm[:, :, None]), nan=0.0)
    compiled = joint.copy()
    log_norm = normalize_log_groups(compiled)
    np.testing.assert_allclose(log_norm, expected_norm, rtol=1e-14)
    np.testing.assert_allclose(compiled, expected, rtol=1e-12, atol=1e-300)
    assert np.all(compiled[5, 1] == 0.0)
    plain, plain_norm = joint.copy(), np.empty((40, 3))
    _normalize_log_groups.py_func(plain, plain_norm)
    np.testing.assert_allclose(plain_norm, log_norm, rtol=1e-15)
    np.testing.assert_allclose(plain, compiled, rtol=1e-15, atol=0)  # numba's exp may differ in the last bit


def test_responsibility_and_layout_kernels_match_py_func(rng):
    """The compiled passes around exp, the transposition and the square norms == their .py_func."""
    lanes = rng.normal(size=(4, 30)) * 300
    lanes[:, 3] = -np.inf
    weight = rng.uniform(0.5, 2.0, size=30)
    compiled, plain = lanes.copy(), lanes.copy()
    outputs = []
    for array, shift, normalize in ((compiled, kernels._shift_lanes, kernels._normalize_lanes),
                                    (plain, kernels._shift_lanes.py_func, kernels._normalize_lanes.py_func)):
        peaks, log_norm, scale = np.empty(30), np.empty(30), np.empty(30)
        with np.errstate(invalid="ignore"):  # the python version meets -inf - -inf on the empty row
            shift(array, peaks)
        np.exp(array, out=array)
        normalize(array, peaks, weight, log_norm, scale)
        outputs.append(log_norm)
    np.testing.assert_array_equal(compiled, plain)
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_allclose(compiled.sum(axis=0), np.where(np.arange(30) == 3, 0.0, weight), rtol=1e-14)

    source = rng.normal(size=(7, 5)).astype(np.float32)
    target, again = np.empty((5, 7)), np.empty((5, 7))
    kernels.transpose_into(source, target)
    kernels._transpose_into.py_func(source, again)
    np.testing.assert_array_equal(target, source.T)
    np.testing.assert_array_equal(again, target)

    whitened = rng.normal(size=(3, 6, 4))
    const = rng.normal(size=3)
    out, out_py = np.empty((3, 6)), np.empty((3, 6))
    kernels.square_norms(whitened, const, out)
    kernels._square_norms.py_func(whitened, const, out_py)
    np.testing.assert_allclose(out, const[:, None] - 0.5 * np.sum(whitened**2, axis=2), rtol=1e-14)
    np.testing.assert_allclose(out_py, out, rtol=1e-14)


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


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("covariance_type", TYPES)
def test_mixture_block_equals_its_pieces(covariance_type, dtype, rng):
    """One call per block == log_likelihood, normalisation and accumulate; chunks never change the sums."""
    means, cov = _random_params(rng, 3, 4, covariance_type, offset=20.0)
    X = (means[rng.randint(3, size=9000)] + rng.normal(size=(9000, 4))).astype(dtype)
    prec_chol = gaussian.precisions_cholesky(cov, covariance_type)
    weight = rng.uniform(0.5, 2.0, size=9000)
    log_weights = np.log([0.2, 0.3, 0.5])
    stats, total = gaussian.mixture_block(X, weight, log_weights, means, prec_chol, covariance_type)
    log_prob = gaussian.log_likelihood(X.astype(np.float64), means, prec_chol, covariance_type) + log_weights
    log_norm = normalize_log_rows(log_prob)
    np.testing.assert_allclose(total, np.dot(weight, log_norm), rtol=1e-12)
    pieces = gaussian.accumulate(X.astype(np.float64), log_prob * weight[:, None], means, covariance_type)
    for a, b in zip(stats, pieces):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-8)
    # split in two blocks anywhere and added: the same statistics
    half = 4321
    first = gaussian.mixture_block(X[:half], weight[:half], log_weights, means, prec_chol, covariance_type)
    second = gaussian.mixture_block(X[half:], weight[half:], log_weights, means, prec_chol, covariance_type)
    for a, b in zip(stats, gaussian.add_stats(first[0], second[0])):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-10)


def test_a_complete_block_is_checked_for_missing_values_once(rng, monkeypatch):
    # layout() finds no NaN: its COMPLETE marker lets each E-step skip the pass over the block that looks for one
    import pickle

    X = rng.normal(size=(50, 2))
    density = gaussian.Gaussian("diag", 3, 2)
    params = density.pack({"means_": rng.normal(size=(3, 2)), "covariances_": np.ones((3, 2))})
    context = density.context(params)
    layout = density.layout(X)
    assert layout is gaussian.COMPLETE
    assert pickle.loads(pickle.dumps(layout)) is gaussian.COMPLETE  # also in worker processes
    expected = density.frames(X, params, context)[0]["log_frameprob"]
    resp = np.full((50, 3), 1.0 / 3.0)
    expected_stats = density.accumulate(X, resp, params, context)
    monkeypatch.setattr(gaussian, "_has_missing", lambda X: pytest.fail("checked again"))
    np.testing.assert_array_equal(density.frames(X, params, context, layout=layout)[0]["log_frameprob"], expected)
    for got, want in zip(density.accumulate(X, resp, params, context, layout=layout), expected_stats):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
@pytest.mark.parametrize("n_features, n_components", [(1, 2), (1, 3), (2, 4), (2, 8), (3, 3), (2, 9)])
def test_log_likelihood_shifted_is_log_likelihood_with_row_maxima(covariance_type, n_features, n_components, rng):
    # the HMMs' one-pass densities and row maxima: the same log-densities bit for bit, where the pass applies
    from emkit._inference import hmm

    X = rng.normal(scale=50.0, size=(3000, n_features)) + 1e4
    means = rng.normal(scale=50.0, size=(n_components, n_features)) + 1e4
    shape = (n_components, n_features) if covariance_type == "diag" else (n_components,)
    prec_chol = gaussian.precisions_cholesky(rng.uniform(0.1, 20.0, size=shape), covariance_type)
    expected = gaussian.log_likelihood(X, means, prec_chol, covariance_type)
    scratch = kernels.Scratch()
    log_prob, shifted = gaussian.log_likelihood_shifted(X, means, prec_chol, covariance_type, scratch)
    np.testing.assert_array_equal(log_prob, expected)
    if n_features > kernels.SHIFTED_MAX_FEATURES or n_components > kernels.SHIFTED_MAX_COMPONENTS:
        assert shifted is None
        return
    frame, shifts = shifted
    want_frame, want_shifts = np.empty_like(expected), np.empty(len(X))
    hmm._shift_rows(expected, want_frame, want_shifts)
    np.testing.assert_array_equal(shifts, want_shifts)
    np.testing.assert_array_equal(frame, want_frame)
    again, _ = gaussian.log_likelihood_shifted(X, means, prec_chol, covariance_type, scratch)
    assert again is log_prob or np.shares_memory(again, log_prob)  # the caller's buffers, kept
    small, small_shifted = gaussian.log_likelihood_shifted(X[:500], means, prec_chol, covariance_type)
    assert small_shifted is None  # the numpy path: nothing compiled for small inputs
    np.testing.assert_array_equal(small, gaussian.log_likelihood(X[:500], means, prec_chol, covariance_type))
