"""KalmanFilter: parity with pykalman, missing data, EM behaviour, validation, scikit-learn checks."""

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
from pykalman import KalmanFilter as PyKalmanFilter
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from emkit._blocks import forced_block_count
from emkit._inference.lgssm import kalman_smoother
from emkit._inference.lgssm_em import block_statistics
from emkit._kalman_params import PARAMS
from emkit.kalman import KalmanFilter

_spec = importlib.util.spec_from_file_location(
    "_lgssm_oracle", Path(__file__).parent / "inference" / "test_lgssm_kernels.py"
)
oracle = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(oracle)


def make_model(seed=0, n=3, m=4):
    """A stable random model as a dict of pykalman-named parameters."""
    A, b, Q, H, d, R, mu0, P0 = oracle.random_model(np.random.RandomState(seed), n, m)
    return dict(
        transition_matrices=A[0], observation_matrices=H[0], transition_covariance=Q[0],
        observation_covariance=R[0], transition_offsets=b[0], observation_offsets=d[0],
        initial_state_mean=mu0, initial_state_covariance=P0,
    )


def simulate(params, T, seed=0):
    return KalmanFilter(**params).sample(T, random_state=seed)[1]


def perturbed(params):
    """A different starting point for EM."""
    start = dict(params)
    start["transition_covariance"] = params["transition_covariance"] * 2.0
    start["observation_covariance"] = params["observation_covariance"] * 0.5
    start["transition_matrices"] = params["transition_matrices"] * 0.8
    start["observation_offsets"] = params["observation_offsets"] + 0.3
    return start


# --------------------------------------------------------------------------- parity with pykalman
def test_filter_smooth_loglikelihood_match_pykalman():
    params = make_model()
    X = simulate(params, 200)
    ours, theirs = KalmanFilter(**params), PyKalmanFilter(**params)
    for a, b in zip(ours.filter(X), theirs.filter(X)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-8)
    for a, b in zip(ours.smooth(X), theirs.smooth(X)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-8)
    assert ours.loglikelihood(X) == pytest.approx(theirs.loglikelihood(X), abs=1e-8)


def test_time_varying_observation_matrices_match_pykalman():
    """Dynamic regression: a different observation matrix for every row."""
    rng = np.random.RandomState(1)
    T = 60
    H = rng.standard_normal((T, 1, 2))
    params = dict(transition_matrices=np.eye(2), observation_matrices=H, transition_covariance=0.01 * np.eye(2),
                  observation_covariance=[[0.5]], initial_state_covariance=np.eye(2))
    X = KalmanFilter(**params).sample(T, random_state=0)[1]
    ours, theirs = KalmanFilter(**params), PyKalmanFilter(**params)
    for a, b in zip(ours.smooth(X), theirs.smooth(X)):
        np.testing.assert_allclose(a, b, atol=1e-8)
    assert ours.loglikelihood(X) == pytest.approx(theirs.loglikelihood(X), abs=1e-8)
    # EM with the time-varying matrices fixed (pykalman's dynamic regression)
    start = dict(params, transition_covariance=np.eye(2), observation_covariance=[[2.0]])
    em_vars = ["transition_covariance", "observation_covariance", "initial_state_mean", "transition_offsets",
               "observation_offsets"]
    theirs = PyKalmanFilter(**start).em(X, n_iter=5, em_vars=em_vars)
    ours = KalmanFilter(**start, em_vars=em_vars).em(X, n_iter=5)
    for name in ("transition_covariance", "observation_covariance", "initial_state_mean", "transition_offsets",
                 "observation_offsets"):
        np.testing.assert_allclose(getattr(ours, name + "_"), getattr(theirs, name), rtol=1e-8, atol=1e-10,
                                   err_msg=name)
    assert ours.lower_bound_ == pytest.approx(theirs.loglikelihood(X) / T, abs=1e-10)
    with pytest.raises(ValueError, match="EM learns time-invariant parameters only"):
        KalmanFilter(**params, em_vars=["observation_matrices"]).fit(X)
    with pytest.raises(ValueError, match="forecast needs time-invariant"):
        ours.forecast(X, 2)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_em_with_fixed_time_varying_transitions_never_decreases():
    """pykalman's T - 1 transition matrices, fixed, with partly missing rows and everything else learned."""
    rng = np.random.RandomState(2)
    T = 80
    A = np.array([[[np.cos(w), -np.sin(w)], [np.sin(w), np.cos(w)]] for w in 0.1 + 0.05 * rng.rand(T - 1)])
    A *= 0.97
    params = dict(transition_matrices=A, observation_matrices=rng.standard_normal((3, 2)),
                  transition_covariance=0.1 * np.eye(2), observation_covariance=0.5 * np.eye(3))
    X = KalmanFilter(**params).sample(T, random_state=1)[1]
    X[rng.rand(T, 3) < 0.15] = np.nan
    em_vars = [name for name in PARAMS if name != "transition_matrices"]
    model = KalmanFilter(transition_matrices=A, n_dim_obs=3, em_vars=em_vars, max_iter=20, tol=0.0).fit(X)
    assert np.all(np.diff(model.lower_bound_history_) >= -1e-10)
    assert model.transition_matrices_.shape == (T, 2, 2)  # padded to one entry per row
    assert model.lower_bound_ == pytest.approx(model.score(X), rel=1e-12)
    # the same updates as pykalman's on complete data
    X = KalmanFilter(**params).sample(T, random_state=2)[1]
    em_vars = ["transition_covariance", "transition_offsets", "observation_covariance"]
    theirs = PyKalmanFilter(**params).em(X, n_iter=4, em_vars=em_vars)
    ours = KalmanFilter(**params, em_vars=em_vars).em(X, n_iter=4)
    for name in em_vars:
        np.testing.assert_allclose(getattr(ours, name + "_"), getattr(theirs, name), rtol=1e-8, atol=1e-10,
                                   err_msg=name)


@pytest.mark.parametrize(
    "em_vars",
    [None, "all", ["transition_matrices", "transition_offsets"], ["initial_state_covariance"],
     ["observation_matrices", "observation_covariance", "observation_offsets"]],
)
def test_em_matches_pykalman(em_vars):
    params = make_model(2)
    X = simulate(params, 150)
    start = perturbed(params)
    theirs = PyKalmanFilter(**start).em(X, n_iter=6, em_vars=em_vars)
    ours = KalmanFilter(**start, em_vars=em_vars).em(X, n_iter=6)
    assert ours.n_iter_ == 6
    for name in PARAMS:
        np.testing.assert_allclose(getattr(ours, name + "_"), getattr(theirs, name), rtol=1e-8, atol=1e-10,
                                   err_msg=name)
    assert ours.lower_bound_ == pytest.approx(theirs.loglikelihood(X) / len(X), abs=1e-10)
    # fit with a fixed budget is the same EM
    with pytest.warns(ConvergenceWarning):
        fitted = KalmanFilter(**start, em_vars=em_vars, max_iter=6, tol=0.0).fit(X)
    for name in PARAMS:
        np.testing.assert_allclose(getattr(fitted, name + "_"), getattr(ours, name + "_"), rtol=1e-12, atol=1e-14)


def test_wholly_missing_rows_match_pykalman_masked_rows():
    params = make_model(3)
    X = simulate(params, 120)
    gone = [0, 5, 6, 7, 50, 119]
    X[gone] = np.nan
    masked = np.ma.masked_invalid(X)
    start = perturbed(params)
    ours, theirs = KalmanFilter(**start), PyKalmanFilter(**start)
    for a, b in zip(ours.filter(X), theirs.filter(masked)):
        np.testing.assert_allclose(a, b, atol=1e-8)
    for a, b in zip(ours.smooth(X), theirs.smooth(masked)):
        np.testing.assert_allclose(a, b, atol=1e-8)
    assert ours.loglikelihood(X) == pytest.approx(theirs.loglikelihood(masked), abs=1e-8)
    # a masked array is read as NaN entries
    np.testing.assert_allclose(ours.smooth(masked)[0], ours.smooth(X)[0], rtol=1e-14)
    theirs.em(masked, n_iter=4, em_vars="all")
    ours = KalmanFilter(**start, em_vars="all").em(X, n_iter=4)
    for name in PARAMS:
        np.testing.assert_allclose(getattr(ours, name + "_"), getattr(theirs, name), rtol=1e-8, atol=1e-10,
                                   err_msg=name)


def test_partly_missing_rows_against_joint_gaussian():
    """pykalman drops such rows whole; emkit uses the observed entries, checked on the exact joint Gaussian."""
    params = make_model(4, n=2, m=3)
    X = simulate(params, 6)
    X[1, 0] = X[2, [0, 2]] = X[4, 1] = np.nan
    model = KalmanFilter(**params)
    kernel_params = [params[k][np.newaxis] for k in ("transition_matrices", "transition_offsets",
                                                      "transition_covariance", "observation_matrices",
                                                      "observation_offsets", "observation_covariance")]
    kernel_params += [params["initial_state_mean"], params["initial_state_covariance"]]
    loglik, filt_means, filt_covs, sm_means, sm_covs, _ = oracle.oracle(X, kernel_params)
    assert model.loglikelihood(X) == pytest.approx(loglik, rel=1e-10)
    np.testing.assert_allclose(model.filter(X)[0], filt_means, atol=1e-9)
    np.testing.assert_allclose(model.smooth(X)[0], sm_means, atol=1e-9)
    np.testing.assert_allclose(model.smooth(X)[1], sm_covs, atol=1e-9)



def _expected_regression(post_mean, post_cov, responses, regressors):
    """Sums of E[e], E[x], E[x x^T], E[e x^T], E[e e^T] for e = S z - c, x = G z under z ~ N(post_mean, post_cov).

    ``responses`` holds one (S, c) per row, ``regressors`` one G per row (None: no regressor).
    """
    sums = None
    for (S, c), G in zip(responses, regressors):
        G = np.zeros((0, post_mean.shape[0])) if G is None else G
        e, x = S @ post_mean - c, G @ post_mean
        terms = (1.0, x, e, G @ post_cov @ G.T + np.outer(x, x), S @ post_cov @ G.T + np.outer(e, x),
                 S @ post_cov @ S.T + np.outer(e, e))
        sums = terms if sums is None else tuple(a + b for a, b in zip(sums, terms))
    return sums


def test_block_statistics_against_joint_gaussian():
    """Every summed statistic (missing entries imputed) equals its expectation under the exact joint posterior."""
    T, n, m = 6, 2, 3
    params = make_model(4, n=n, m=m)
    X = simulate(params, T)
    X[1, 0] = X[2, [0, 2]] = X[4, 1] = np.nan
    X[5] = np.nan  # a wholly missing row is not an observation row
    A, b, Q, H, d, R, mu0, P0 = (np.asarray(params[k], dtype=float) for k in (
        "transition_matrices", "transition_offsets", "transition_covariance", "observation_matrices",
        "observation_offsets", "observation_covariance", "initial_state_mean", "initial_state_covariance"))
    kernel_params = [A[None], b[None], Q[None], H[None], d[None], R[None], mu0, P0]
    mean, cov = oracle.joint_gaussian(T, *kernel_params)
    y_index = T * n + np.arange(T * m)
    observed = ~np.isnan(X.ravel())
    everything = np.arange(T * (n + m))
    post_mean, post_cov = oracle.condition(mean, cov, everything, y_index[observed], X.ravel()[observed])

    def pick(block, t, size):
        out = np.zeros((size, T * (n + m)))
        out[:, block + t * size + np.arange(size)] = np.eye(size)
        return out

    def x(t):
        return pick(0, t, n)

    rows = [t for t in range(T) if not np.all(np.isnan(X[t]))]
    observation = _expected_regression(
        post_mean, post_cov, [(pick(T * n, t, m) - H @ x(t), d) for t in rows], [x(t) for t in rows])
    transition = _expected_regression(
        post_mean, post_cov, [(x(t) - A @ x(t - 1), b) for t in range(1, T)], [x(t - 1) for t in range(1, T)])
    initial = _expected_regression(post_mean, post_cov, [(x(0), mu0)], [None])

    result = kalman_smoother(X, [0, T], *kernel_params)
    stats = block_statistics(X, np.array([0, T]), result.smoothed_means, result.smoothed_covariances,
                             result.pairwise_covariances, A[None], b[None], H[None], d[None], R[None], mu0)
    for ours, expected in zip(stats, (observation, transition, initial)):
        for field, value in zip(ours, expected):
            np.testing.assert_allclose(field, value, rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------- EM behaviour
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_objective_never_decreases(covariance_type):
    params = make_model(5)
    X = np.vstack([simulate(params, 80, seed=1), simulate(params, 50, seed=2)])
    rng = np.random.RandomState(0)
    X[rng.rand(*X.shape) < 0.1] = np.nan
    X[[3, 4, 90]] = np.nan
    model = KalmanFilter(**perturbed(params), em_vars="all", max_iter=25, tol=0.0,
                         transition_covariance_type=covariance_type,
                         observation_covariance_type=covariance_type).fit(X, lengths=[80, 50])
    history = np.concatenate([[model.restarts_[0]["objective"]], model.lower_bound_history_])
    assert len(model.lower_bound_history_) == 25
    assert np.all(np.diff(model.lower_bound_history_) >= -1e-10)
    assert model.lower_bound_ == pytest.approx(model.score(X, lengths=[80, 50]), rel=1e-12)
    if covariance_type == "diag":
        R = model.observation_covariance_
        assert np.array_equal(R, np.diag(np.diag(R)))
    if covariance_type == "spherical":
        Q = model.transition_covariance_
        assert np.array_equal(Q, Q[0, 0] * np.eye(3))
    del history


def test_recovers_process_and_measurement_noise():
    A = np.array([[1.0, 1.0], [0.0, 0.9]])
    H = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    Q = np.array([[0.3, 0.1], [0.1, 0.2]])
    R = np.diag([1.0, 0.5, 2.0])
    truth = KalmanFilter(transition_matrices=A, observation_matrices=H, transition_covariance=Q,
                         observation_covariance=R)
    X = truth.sample(4000, random_state=0)[1]
    model = KalmanFilter(transition_matrices=A, observation_matrices=H, tol=1e-6, max_iter=300,
                         em_vars=["transition_covariance", "observation_covariance"]).fit(X)
    assert model.converged_
    np.testing.assert_allclose(model.transition_covariance_, Q, atol=0.08)
    np.testing.assert_allclose(model.observation_covariance_, R, atol=0.15)
    diag = KalmanFilter(transition_matrices=A, observation_matrices=H, tol=1e-6, max_iter=300,
                        observation_covariance_type="diag",
                        em_vars=["transition_covariance", "observation_covariance"]).fit(X)
    np.testing.assert_allclose(np.diag(diag.observation_covariance_), np.diag(R), atol=0.15)
    assert np.count_nonzero(diag.observation_covariance_ - np.diag(np.diag(diag.observation_covariance_))) == 0


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_restarts_deterministic_and_perturb_only_unset_learned_params():
    params = make_model(6, n=2, m=2)
    X = simulate(params, 100)
    given_Q = params["transition_covariance"]
    common = dict(transition_covariance=given_Q, n_dim_state=2, em_vars="all", n_init=3, max_iter=5,
                  random_state=7, keep_params_history=True)
    one = KalmanFilter(**common, n_jobs=1).fit(X)
    two = KalmanFilter(**common, n_jobs=2).fit(X)
    for name in PARAMS:
        np.testing.assert_allclose(getattr(one, name + "_"), getattr(two, name + "_"), rtol=1e-10)
    assert [r["seed"] for r in one.restarts_] == [r["seed"] for r in two.restarts_]
    start = one.params_history_[0]
    np.testing.assert_array_equal(start["transition_covariance_"], given_Q)  # user-given: not perturbed
    assert not np.array_equal(start["observation_covariance_"], np.eye(2))  # left as None: perturbed
    # a single run starts from pykalman's defaults exactly
    single = KalmanFilter(em_vars="all", max_iter=1, n_dim_state=2, keep_params_history=True).fit(X)
    np.testing.assert_array_equal(single.params_history_[0]["observation_covariance_"], np.eye(2))


def test_sequences_and_sequence_ids():
    params = make_model(7, n=2, m=2)
    X = np.vstack([simulate(params, 30, seed=1), simulate(params, 20, seed=2)])
    ids = np.repeat(["a", "b"], [30, 20])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        by_lengths = KalmanFilter(em_vars="all", max_iter=3).fit(X, lengths=[30, 20])
        by_ids = KalmanFilter(em_vars="all", max_iter=3).fit(X, sequence_ids=ids)
    np.testing.assert_allclose(by_lengths.transition_matrices_, by_ids.transition_matrices_, rtol=1e-12)
    # the second sequence starts afresh from the initial state distribution
    joined = by_lengths.smooth(X, lengths=[30, 20])[0]
    alone = by_lengths.smooth(X[30:])[0]
    np.testing.assert_allclose(joined[30:], alone, rtol=1e-12)
    assert by_lengths.score(X, lengths=[30, 20]) == pytest.approx(
        (by_lengths.loglikelihood(X[:30]) + by_lengths.loglikelihood(X[30:])) / 50, rel=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sequence_ids_routed_through_cross_validation():
    from sklearn import config_context
    from sklearn.model_selection import GroupKFold, cross_val_score

    params = make_model(13, n=2, m=2)
    X = np.vstack([simulate(params, 25, seed=s) for s in range(4)])
    ids = np.repeat(np.arange(4), 25)
    with config_context(enable_metadata_routing=True):
        est = KalmanFilter(max_iter=5).set_fit_request(sequence_ids=True).set_score_request(sequence_ids=True)
        scores = cross_val_score(est, X, cv=GroupKFold(2), params={"sequence_ids": ids, "groups": ids})
    # by hand: each fold fits on two whole sequences and scores the other two
    expected = []
    for train, test in GroupKFold(2).split(X, groups=ids):
        model = KalmanFilter(max_iter=5).fit(X[train], sequence_ids=ids[train])
        expected.append(model.score(X[test], sequence_ids=ids[test]))
    np.testing.assert_allclose(scores, expected, rtol=1e-12)


# --------------------------------------------------------------------------- other methods
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_transform_pipeline_and_feature_names():
    params = make_model(8, n=2, m=3)
    X = simulate(params, 60)
    model = KalmanFilter(n_dim_state=2, max_iter=3)
    Z = make_pipeline(StandardScaler(), model).fit_transform(X)
    assert Z.shape == (60, 2)
    np.testing.assert_allclose(Z, model.smooth(StandardScaler().fit_transform(X))[0], rtol=1e-12)
    assert list(model.get_feature_names_out()) == ["kalmanfilter0", "kalmanfilter1"]
    causal = KalmanFilter(n_dim_state=2, max_iter=3, transform_method="filter").fit(X)
    np.testing.assert_allclose(causal.transform(X), causal.filter(X)[0], rtol=1e-14)
    np.testing.assert_allclose(causal.score_samples(X).mean(), causal.score(X), rtol=1e-12)


def test_filter_update_matches_batch_filter():
    params = make_model(9)
    X = simulate(params, 20)
    X[15, 1] = np.nan
    model = KalmanFilter(**params)
    means, covs = model.filter(X)
    for t in (10, 14, 18):
        mean, cov = model.filter_update(means[t], covs[t], X[t + 1])
        np.testing.assert_allclose(mean, means[t + 1], rtol=1e-10)
        np.testing.assert_allclose(cov, covs[t + 1], rtol=1e-10)
    # no observation: prediction only
    mean, cov = model.filter_update(means[5], covs[5])
    A, b, Q = params["transition_matrices"], params["transition_offsets"], params["transition_covariance"]
    np.testing.assert_allclose(mean, A @ means[5] + b, rtol=1e-12)
    np.testing.assert_allclose(cov, A @ covs[5] @ A.T + Q, rtol=1e-12)


def test_forecast():
    params = make_model(10, n=2, m=2)
    model = KalmanFilter(**params, max_iter=0).fit(simulate(params, 5))
    X = simulate(params, 40)
    means, covs = model.forecast(X, 3)
    assert means.shape == (3, 2) and covs.shape == (3, 2, 2)
    mean, cov = model.filter(X)[0][-1], model.filter(X)[1][-1]
    A, b, Q = params["transition_matrices"], params["transition_offsets"], params["transition_covariance"]
    H, d, R = params["observation_matrices"], params["observation_offsets"], params["observation_covariance"]
    for h in range(3):
        mean, cov = A @ mean + b, A @ cov @ A.T + Q
        np.testing.assert_allclose(means[h], H @ mean + d, rtol=1e-12)
        np.testing.assert_allclose(covs[h], H @ cov @ H.T + R, rtol=1e-12)
    # forecasting is filtering over missing future rows
    padded = np.vstack([X, np.full((3, 2), np.nan)])
    future_means, future_covs = model.filter(padded)
    np.testing.assert_allclose(means, future_means[-3:] @ H.T + d, rtol=1e-10)
    many_means, _ = model.forecast(np.vstack([X, X[:10]]), 3, lengths=[40, 10])
    assert many_means.shape == (6, 2)
    np.testing.assert_allclose(many_means[:3], means, rtol=1e-12)


def test_sample_reproducible_and_shaped():
    params = make_model(11)
    model = KalmanFilter(**params, random_state=3)
    states, obs = model.sample(25)
    assert states.shape == (25, 3) and obs.shape == (25, 4)
    np.testing.assert_array_equal(model.sample(25)[1], obs)
    assert not np.array_equal(model.sample(25, random_state=4)[1], obs)
    start = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(model.sample(5, initial_state=start)[0][0], start)
    with pytest.raises(ValueError, match=r"initial_state must have shape \(3,\)"):
        model.sample(5, initial_state=[1.0])


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs, X, message",
    [
        ({}, np.array([[1.0], [np.inf]]), "infinity"),
        ({"transition_matrices": np.eye(3), "observation_matrices": np.ones((2, 2))}, np.ones((5, 2)),
         "disagree on the state dimension"),
        ({"observation_covariance": np.eye(3)}, np.ones((5, 2)), r"observation_covariance must have shape \(2, 2\)"),
        ({"transition_covariance": [[1.0, 0.5], [0.0, 1.0]]}, np.ones((5, 2)), "transition_covariance must be symmetric"),
        ({"observation_covariance": [[1.0, 2.0], [2.0, 1.0]]}, np.ones((5, 2)),
         "observation_covariance must be positive definite"),
        ({"initial_state_covariance": -np.eye(2)}, np.ones((5, 2)), "initial_state_covariance must be positive"),
        ({"em_vars": ["transition_covariance", "noise"]}, np.ones((5, 2)), r"unknown parameters \['noise'\]"),
        ({"n_dim_obs": 3}, np.ones((5, 2)), "n_dim_obs=3 but X has 2 columns"),
        ({"transition_offsets": [0.0, np.nan]}, np.ones((5, 2)), "transition_offsets must be finite"),
    ],
)
def test_bad_input_raises_clear_value_error(kwargs, X, message):
    with pytest.raises(ValueError, match=message):
        KalmanFilter(**kwargs, max_iter=1).fit(X)


def test_y_that_looks_like_lengths_is_rejected():
    with pytest.raises(ValueError, match="lengths="):
        KalmanFilter().fit(np.ones((10, 1)), [4, 6])


def test_does_not_modify_input_or_constructor_values():
    params = make_model(12, n=2, m=2)
    X = simulate(params, 30)
    X[3, 0] = np.nan
    X_copy = X.copy()
    start = {k: np.array(v, copy=True) for k, v in params.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = KalmanFilter(**start, em_vars="all", max_iter=3).fit(X)
    np.testing.assert_array_equal(X, X_copy)
    for name in PARAMS:
        np.testing.assert_array_equal(getattr(model, name), params[name])
