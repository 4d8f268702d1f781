"""Kalman filter / RTS smoother kernels against the dense joint Gaussian of a short series."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from emkit._inference import lgssm
from emkit._inference.lgssm import kalman_filter, kalman_smoother

compiled_filter = lgssm._compiled_filter


@pytest.fixture(autouse=True, params=["compiled", "numpy"])
def implementation(request, monkeypatch):
    """Run every test through the compiled kernels and through the numpy path for small inputs."""
    monkeypatch.setattr(lgssm, "_NUMPY_MAX_ROWS", -1 if request.param == "compiled" else 10**9)
    monkeypatch.setattr(lgssm, "_NUMPY_MAX_FULL_STEPS", None)
    return request.param


def _compiled_only(implementation):
    if implementation == "numpy":
        pytest.skip("tests the compiled kernels only (too long, or the template the numpy path does not have)")


def random_model(rng, n, m, T=1):
    """Stable random parameters, each with a leading time axis of length T."""
    A = np.empty((T, n, n))
    Q = np.empty((T, n, n))
    H = rng.standard_normal((T, m, n))
    R = np.empty((T, m, m))
    for t in range(T):
        a = rng.standard_normal((n, n))
        A[t] = 0.9 * a / np.abs(np.linalg.eigvals(a)).max()
        q = rng.standard_normal((n, n))
        Q[t] = q @ q.T / n + 0.2 * np.eye(n)
        r = rng.standard_normal((m, m))
        R[t] = r @ r.T / m + 0.3 * np.eye(m)
    b = 0.5 * rng.standard_normal((T, n))
    d = rng.standard_normal((T, m))
    mu0 = rng.standard_normal(n)
    p = rng.standard_normal((n, n))
    P0 = p @ p.T + np.eye(n)
    return A, b, Q, H, d, R, mu0, P0


def joint_gaussian(T, A, b, Q, H, d, R, mu0, P0):
    """Mean and covariance of (x_0..x_{T-1}, y_0..y_{T-1}) stacked, by writing x = F (noise + offsets)."""
    n, m = mu0.shape[0], H.shape[1]

    def at(a, t):
        return a[t if a.shape[0] > 1 else 0]

    # x = F e + c, e = (x_0 - mu0, w_0, ..., w_{T-2})
    F = np.zeros((T * n, T * n))
    c = np.zeros(T * n)
    E = np.zeros((T * n, T * n))
    E[:n, :n] = P0
    c[:n] = mu0
    F[:n, :n] = np.eye(n)
    for t in range(1, T):
        At = at(A, t - 1)
        F[t * n:(t + 1) * n] = At @ F[(t - 1) * n:t * n]
        F[t * n:(t + 1) * n, t * n:(t + 1) * n] += np.eye(n)
        c[t * n:(t + 1) * n] = At @ c[(t - 1) * n:t * n] + at(b, t - 1)
        E[t * n:(t + 1) * n, t * n:(t + 1) * n] = at(Q, t - 1)
    Sxx = F @ E @ F.T
    Hb = np.zeros((T * m, T * n))
    Rb = np.zeros((T * m, T * m))
    dvec = np.zeros(T * m)
    for t in range(T):
        Hb[t * m:(t + 1) * m, t * n:(t + 1) * n] = at(H, t)
        Rb[t * m:(t + 1) * m, t * m:(t + 1) * m] = at(R, t)
        dvec[t * m:(t + 1) * m] = at(d, t)
    mean = np.concatenate([c, Hb @ c + dvec])
    cov = np.block([[Sxx, Sxx @ Hb.T], [Hb @ Sxx, Hb @ Sxx @ Hb.T + Rb]])
    return mean, cov


def condition(mean, cov, target, given, values):
    """Moments of the target coordinates given the others' values."""
    gain = np.linalg.solve(cov[np.ix_(given, given)], cov[np.ix_(given, target)]).T
    cond_mean = mean[target] + gain @ (values - mean[given])
    cond_cov = cov[np.ix_(target, target)] - gain @ cov[np.ix_(given, target)]
    return cond_mean, cond_cov


def oracle(X, params):
    """Filtered, smoothed, lag-one moments and the log-likelihood from the dense joint Gaussian."""
    T, m = X.shape
    n = params[-2].shape[0]
    mean, cov = joint_gaussian(T, *params)
    y_index = T * n + np.arange(T * m)
    observed = ~np.isnan(X.ravel())
    loglik = multivariate_normal(mean[y_index][observed], cov[np.ix_(y_index, y_index)][np.ix_(observed, observed)]).logpdf(
        X.ravel()[observed]
    )
    all_x = np.arange(T * n)
    sm_mean, sm_cov = condition(mean, cov, all_x, y_index[observed], X.ravel()[observed])
    filt_means, filt_covs = np.zeros((T, n)), np.zeros((T, n, n))
    for t in range(T):
        upto = observed & (np.arange(T * m) < (t + 1) * m)
        xt = np.arange(t * n, (t + 1) * n)
        if upto.any():
            filt_means[t], filt_covs[t] = condition(mean, cov, xt, y_index[upto], X.ravel()[upto])
        else:
            filt_means[t], filt_covs[t] = mean[xt], cov[np.ix_(xt, xt)]
    sm_means = sm_mean.reshape(T, n)
    sm_covs = np.array([sm_cov[t * n:(t + 1) * n, t * n:(t + 1) * n] for t in range(T)])
    pairs = np.zeros((T, n, n))
    for t in range(1, T):
        pairs[t] = sm_cov[t * n:(t + 1) * n, (t - 1) * n:t * n]
    return loglik, filt_means, filt_covs, sm_means, sm_covs, pairs


def simulate(rng, T, A, b, Q, H, d, R, mu0, P0):
    n, m = mu0.shape[0], H.shape[1]
    at = lambda a, t: a[t if a.shape[0] > 1 else 0]  # noqa: E731
    x = rng.multivariate_normal(mu0, P0)
    X = np.empty((T, m))
    for t in range(T):
        if t:
            x = at(A, t - 1) @ x + at(b, t - 1) + rng.multivariate_normal(np.zeros(n), at(Q, t - 1))
        X[t] = at(H, t) @ x + at(d, t) + rng.multivariate_normal(np.zeros(m), at(R, t))
    return X


@pytest.mark.parametrize("time_varying", [False, True])
@pytest.mark.parametrize("missing", ["none", "rows", "entries"])
def test_matches_dense_joint_gaussian(time_varying, missing):
    rng = np.random.RandomState(0)
    T, n, m = 6, 2, 3
    params = random_model(rng, n, m, T if time_varying else 1)
    X = simulate(rng, T, *params)
    if missing == "rows":
        X[[0, 3]] = np.nan
    elif missing == "entries":
        X[1, 0] = X[2, [0, 2]] = X[4, 1] = np.nan
        X[5] = np.nan
    result = kalman_smoother(X, [0, T], *params)
    loglik, filt_means, filt_covs, sm_means, sm_covs, pairs = oracle(X, params)
    assert result.log_likelihood == pytest.approx(loglik, rel=1e-10)
    np.testing.assert_allclose(result.filtered_means, filt_means, atol=1e-9)
    np.testing.assert_allclose(result.filtered_covariances, filt_covs, atol=1e-9)
    np.testing.assert_allclose(result.smoothed_means, sm_means, atol=1e-9)
    np.testing.assert_allclose(result.smoothed_covariances, sm_covs, atol=1e-9)
    np.testing.assert_allclose(result.pairwise_covariances, pairs, atol=1e-9)
    # the per-step terms add up to the total, and wholly missing rows contribute nothing
    assert result.step_log_likelihoods.sum() == pytest.approx(result.log_likelihood, rel=1e-12)
    assert np.all(result.step_log_likelihoods[np.isnan(X).all(axis=1)] == 0.0)


def test_many_sequences_equal_separate_runs():
    rng = np.random.RandomState(1)
    params = random_model(rng, 2, 3)
    parts = [simulate(rng, T, *params) for T in (5, 1, 8)]
    parts[2][3, 1] = np.nan
    together = kalman_smoother(np.vstack(parts), [0, 5, 6, 14], *params)
    start = 0
    total = 0.0
    for part in parts:
        alone = kalman_smoother(part, [0, len(part)], *params)
        rows = slice(start, start + len(part))
        np.testing.assert_allclose(together.smoothed_means[rows], alone.smoothed_means, rtol=1e-12)
        np.testing.assert_allclose(together.smoothed_covariances[rows], alone.smoothed_covariances, rtol=1e-12)
        np.testing.assert_allclose(together.pairwise_covariances[rows], alone.pairwise_covariances, atol=1e-15)
        total += alone.log_likelihood
        start += len(part)
    assert together.log_likelihood == pytest.approx(total, rel=1e-12)


@pytest.mark.parametrize("time_varying", [False, True])
def test_numpy_path_equals_compiled_path(time_varying, monkeypatch, implementation):
    _compiled_only(implementation)
    rng = np.random.RandomState(7)
    params = random_model(rng, 3, 2, 150 if time_varying else 1)
    lengths = [60, 1, 40, 49]
    X = np.vstack([simulate(rng, L, *params)[:L] if not time_varying else rng.standard_normal((L, 2)) * 3
                   for L in lengths])
    X[[5, 70]] = np.nan
    X[[8, 90, 120], [0, 1, 0]] = np.nan
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    results = {}
    for name, max_rows in [("compiled", -1), ("numpy", 10**9)]:
        monkeypatch.setattr(lgssm, "_NUMPY_MAX_ROWS", max_rows)
        results[name] = kalman_smoother(X, offsets, *params)
    for name in results:  # both sides take their steady-state shortcuts
        assert results[name].steady.any() != time_varying, name
    for field in results["compiled"]._fields:
        if field != "steady":
            np.testing.assert_allclose(getattr(results["numpy"], field), getattr(results["compiled"], field),
                                       rtol=1e-9, atol=1e-11, err_msg=field)


@pytest.mark.parametrize("case, compiled", [("complete", False), ("time-varying", True), ("gaps", True),
                                            ("short time-varying", False), ("long", True)])
def test_numpy_path_takes_small_inputs_within_its_budget(case, compiled, monkeypatch, implementation):
    """Small inputs run in numpy unless too many rows need a full covariance update; the results agree."""
    _compiled_only(implementation)
    monkeypatch.setattr(lgssm, "_NUMPY_MAX_ROWS", 300)
    monkeypatch.setattr(lgssm, "_NUMPY_MAX_FULL_STEPS", 50)
    rng = np.random.RandomState(9)
    T = {"short time-varying": 40, "long": 301}.get(case, 200)
    params = random_model(rng, 2, 3, T if "time-varying" in case else 1)
    X = simulate(rng, T, *params)
    if case == "gaps":
        X[::10, 1] = np.nan  # every gap restarts the transient
    calls = []
    monkeypatch.setattr(lgssm, "_compiled_filter", lambda args: calls.append(1) or compiled_filter(args))
    result = kalman_smoother(X, [0, T], *params)
    assert bool(calls) == compiled
    monkeypatch.setattr(lgssm, "_NUMPY_MAX_ROWS", -1)
    reference = kalman_smoother(X, [0, T], *params)
    for field in ("filtered_means", "filtered_covariances", "smoothed_means", "smoothed_covariances",
                  "pairwise_covariances", "step_log_likelihoods"):
        np.testing.assert_allclose(getattr(result, field), getattr(reference, field), rtol=1e-9, atol=1e-11,
                                   err_msg=field)


@pytest.mark.parametrize("rows", [1, 2, 3, 7, 64, 1000])
@pytest.mark.parametrize("radius", [0.3, 0.999])
def test_affine_scan_equals_the_step_by_step_recursion(rows, radius, implementation):
    """The numpy path's steady rows: x[i] = F x[i-1] + g[i] for all rows at once, to round-off."""
    if implementation == "compiled":
        pytest.skip("a numpy-path helper, tested once")
    rng = np.random.RandomState(rows)
    F = rng.standard_normal((3, 3))
    F *= radius / np.abs(np.linalg.eigvals(F)).max()
    g = 1e3 + rng.standard_normal((rows, 3))  # an offset: the terms do not cancel to zero
    x0 = rng.standard_normal(3)
    expected, x = np.empty_like(g), x0
    for i in range(rows):
        x = F @ x + g[i]
        expected[i] = x
    np.testing.assert_allclose(lgssm._affine_scan(F, g, x0), expected, rtol=1e-12)


@pytest.mark.parametrize("smoother", [False, True])
def test_not_positive_definite_names_the_row(smoother):
    rng = np.random.RandomState(8)
    A, b, Q, H, d, R, mu0, P0 = random_model(rng, 2, 2, 6)
    X = simulate(rng, 6, A, b, Q, H, d, R, mu0, P0)
    if smoother:
        Q[2] = -np.eye(2)  # the predicted covariance of row 3 is not positive definite
        with pytest.raises(np.linalg.LinAlgError, match="predicted state covariance at row 3 "):
            kalman_smoother(X, [0, 6], A, b, Q, H, d, R * 0 + np.eye(2) * 1e3, mu0, P0)
    else:
        R[4] = -np.eye(2) * 1e3
        with pytest.raises(np.linalg.LinAlgError, match="innovation covariance at row 4 "):
            kalman_filter(X, [0, 6], A, b, Q, H, d, R, mu0, P0)


def test_compiled_equals_python(implementation):
    _compiled_only(implementation)
    rng = np.random.RandomState(2)
    params = random_model(rng, 3, 2)
    X = simulate(rng, 40, *params)
    X[7] = np.nan
    X[9, 1] = np.nan
    X = np.vstack([X, simulate(rng, 30, *params)])
    args = lgssm._prepare(X, [0, 25, 40, 52, 70], *params)  # complete sequences reuse the recursion
    compiled, failed = lgssm._compiled_filter(args)
    python, python_failed = lgssm._compiled_filter(args, kernel=lgssm._filter.py_func)
    assert failed == python_failed == 0
    for a, b in zip(compiled, python):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    pred_means, pred_covs, filt_means, filt_covs, _, steady = compiled
    assert steady.any()
    smooth_args = (args[1], args[2], args[4], pred_means, pred_covs, filt_means, filt_covs, steady)
    smoothed = lgssm._compiled_smoother(*smooth_args)
    python = lgssm._compiled_smoother(*smooth_args, kernel=lgssm._smooth.py_func)
    for a, b in zip(smoothed, python):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_steady_state_shortcut_is_exact():
    """Time-invariant parameters take the steady-state path; a time-axis copy of them does not."""
    rng = np.random.RandomState(3)
    A, b, Q, H, d, R, mu0, P0 = random_model(rng, 3, 4)
    T = 400
    X = simulate(rng, T, A, b, Q, H, d, R, mu0, P0)
    X[200, 1] = np.nan  # breaks the steady state once; it must resume afterwards
    fast = kalman_smoother(X, [0, T], A, b, Q, H, d, R, mu0, P0)
    tiled = [np.repeat(a, T, axis=0) for a in (A, b, Q, H, d, R)]
    slow = kalman_smoother(X, [0, T], *tiled, mu0, P0)
    assert fast.steady.sum() > T // 2 and not fast.steady[200] and fast.steady[-1]
    assert not slow.steady.any()
    assert fast.log_likelihood == pytest.approx(slow.log_likelihood, rel=1e-12)
    for name in ("filtered_means", "filtered_covariances", "smoothed_means", "smoothed_covariances",
                 "pairwise_covariances"):
        np.testing.assert_allclose(getattr(fast, name), getattr(slow, name), rtol=1e-9, atol=1e-11)


def test_complete_sequences_share_one_covariance_recursion(implementation):
    _compiled_only(implementation)
    """Complete sequences copy the recursion of earlier ones; the result equals computing each afresh."""
    rng = np.random.RandomState(6)
    A, b, Q, H, d, R, mu0, P0 = random_model(rng, 3, 2)
    lengths = [5, 60, 3, 80, 40, 7]
    X = np.vstack([simulate(rng, L, A, b, Q, H, d, R, mu0, P0) for L in lengths])
    X[70, 0] = np.nan  # the fourth sequence is incomplete: computed in full
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    fast = kalman_smoother(X, offsets, A, b, Q, H, d, R, mu0, P0)
    T = len(X)
    slow = kalman_smoother(X, offsets, *[np.repeat(a, T, axis=0) for a in (A, b, Q, H, d, R)], mu0, P0)
    assert fast.log_likelihood == pytest.approx(slow.log_likelihood, rel=1e-12)
    for name in ("predicted_covariances", "filtered_means", "filtered_covariances", "smoothed_means",
                 "smoothed_covariances", "pairwise_covariances"):
        np.testing.assert_allclose(getattr(fast, name), getattr(slow, name), rtol=1e-9, atol=1e-11, err_msg=name)
    np.testing.assert_allclose(fast.step_log_likelihoods, slow.step_log_likelihoods, rtol=1e-10)
    # the copies are exact: the same step of two complete sequences has bit-identical covariances
    assert np.array_equal(fast.filtered_covariances[offsets[1]:offsets[1] + 5], fast.filtered_covariances[:5])
    assert np.array_equal(fast.filtered_covariances[offsets[4]:offsets[4] + 40],
                          fast.filtered_covariances[offsets[1]:offsets[1] + 40])


def test_long_series_stays_symmetric_positive_definite(implementation):
    _compiled_only(implementation)
    """Ill-conditioned model (tiny R, nearly unit-root A) over a long series with gaps."""
    rng = np.random.RandomState(4)
    n, m, T = 3, 2, 20000
    A = np.array([[1.0, 1.0, 0.5], [0.0, 1.0, 1.0], [0.0, 0.0, 0.999]])[None]
    Q = (np.diag([1e-8, 1e-6, 1e-4]))[None]
    H = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])[None]
    R = (np.eye(m) * 1e-6)[None]
    b, d = np.zeros((1, n)), np.zeros((1, m))
    X = simulate(rng, T, A, b, Q, H, d, R, np.zeros(n), np.eye(n))
    X[rng.rand(T) < 0.05, 0] = np.nan
    X[rng.rand(T) < 0.02] = np.nan
    result = kalman_smoother(X, [0, T], A, b, Q, H, d, R, np.zeros(n), np.eye(n))
    assert np.isfinite(result.log_likelihood)
    for name in ("filtered_covariances", "smoothed_covariances", "predicted_covariances"):
        covs = getattr(result, name)
        assert np.array_equal(covs, np.swapaxes(covs, 1, 2)), name
        assert np.linalg.eigvalsh(covs).min() > 0, name


def test_shape_checks():
    rng = np.random.RandomState(5)
    A, b, Q, H, d, R, mu0, P0 = random_model(rng, 2, 3)
    X = simulate(rng, 4, A, b, Q, H, d, R, mu0, P0)
    with pytest.raises(ValueError, match="transition_matrices must have shape"):
        kalman_filter(X, [0, 4], A[0], b, Q, H, d, R, mu0, P0)  # no time axis
    with pytest.raises(ValueError, match=r"observation_matrices must have shape \(1 or 4"):
        kalman_filter(X, [0, 4], A, b, Q, np.repeat(H, 3, axis=0), d, R, mu0, P0)
    with pytest.raises(ValueError, match="offsets"):
        kalman_filter(X, [0, 3], A, b, Q, H, d, R, mu0, P0)
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        kalman_filter(X, [0, 4], A, b, Q, H, d, -np.eye(3)[None], mu0, P0)
