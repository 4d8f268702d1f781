"""KalmanFilter: parity with pykalman, missing data, EM behaviour, validation, scikit-learn checks."""

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
from pykalman import KalmanFilter as PyKalmanFilter
from sklearn.exceptions import ConvergenceWarning, NotFittedError
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


def test_em_keeps_parity_with_large_offsets_and_small_noise():
    """Statistics about the current parameters: no cancellation of large second moments (offsets 1e4, R 1e-4)."""
    truth = dict(transition_matrices=[[0.95, 0.1], [0.0, 0.9]], observation_matrices=[[1, 0], [0.5, 1], [1, 1]],
                 transition_covariance=1e-2 * np.eye(2), observation_covariance=1e-4 * np.eye(3),
                 observation_offsets=[1e4, -3e4, 2e4], transition_offsets=[50.0, -20.0],
                 initial_state_mean=[1000.0, -200.0])
    X = KalmanFilter(**truth).sample(300, random_state=0)[1]
    start = dict(truth, observation_covariance=1e-3 * np.eye(3), transition_covariance=0.1 * np.eye(2),
                 observation_offsets=np.array([1e4, -3e4, 2e4]) + 1.0)
    theirs = PyKalmanFilter(**start).em(X, n_iter=8, em_vars="all")
    ours = KalmanFilter(**start, em_vars="all").em(X, n_iter=8)
    for name in PARAMS:
        # pykalman expands P_0 = E[x_0 x_0^T] - ... about 1e3-sized means, which costs it ~1e-7 (checked below)
        rtol = 1e-6 if name == "initial_state_covariance" else 1e-8
        np.testing.assert_allclose(getattr(ours, name + "_"), getattr(theirs, name), rtol=rtol, atol=1e-12,
                                   err_msg=name)
    # one sequence: the learned P_0 is the smoothed covariance of the first state, exactly
    one_step = KalmanFilter(**start, em_vars="all").em(X, n_iter=1)
    np.testing.assert_allclose(one_step.initial_state_covariance_, KalmanFilter(**start).smooth(X)[1][0],
                               rtol=1e-12)


# --------------------------------------------------------------------------- EM behaviour
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("T", [150, 3000])  # the numpy and the compiled filter
def test_last_e_step_of_a_run_to_max_iter_runs_the_filter_alone(T, monkeypatch):
    import emkit.kalman as kalman_module

    params = make_model(6)
    X = simulate(params, T, seed=3)
    X[5:9, 1] = np.nan
    full = KalmanFilter(**perturbed(params), em_vars="all", max_iter=4, tol=0.0).fit(X)
    calls = []
    real = kalman_module.kalman_filter
    monkeypatch.setattr(kalman_module, "kalman_filter", lambda *a: calls.append(1) or real(*a))
    short = KalmanFilter(**perturbed(params), em_vars="all", max_iter=3, tol=0.0).fit(X)
    assert len(calls) == 1  # the smoother and the statistics of the last E-step are never used
    assert short.lower_bound_ == full.lower_bound_history_[2]
    np.testing.assert_array_equal(short.lower_bound_history_, full.lower_bound_history_[:3])


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


# --------------------------------------------------------------------------- blocks and threads
def _max_relative_difference(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if b.size == 0:  # the initial state's (empty) regressor fields
        return 0.0 if a.shape == b.shape else np.inf
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), np.finfo(float).tiny)


def _block_problem(time_varying):
    """Eight sequences, partly and wholly missing rows; optionally a fixed time-varying observation matrix."""
    params = make_model(14, n=2, m=3)
    lengths = [40, 25, 60, 30, 35, 20, 50, 45]
    X = np.vstack([simulate(params, T, seed=s) for s, T in enumerate(lengths)])
    rng = np.random.RandomState(3)
    X[rng.rand(*X.shape) < 0.1] = np.nan
    X[[5, 6, 70, 200]] = np.nan
    start = perturbed(params)
    em_vars = "all"
    if time_varying:
        start["observation_matrices"] = params["observation_matrices"] * (1 + 0.2 * rng.rand(len(X), 1, 1))
        em_vars = [name for name in PARAMS if name != "observation_matrices"]
    return X, lengths, dict(start, em_vars=em_vars, max_iter=12, tol=0.0)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("time_varying", [False, True])
@pytest.mark.parametrize("n_blocks", [1, 2, 7])
def test_fit_does_not_depend_on_blocks_or_threads(n_blocks, time_varying):
    """Whole sequences cut into 1, 2 or 7 blocks, serially or on two threads: the same fit to rtol 1e-12."""
    X, lengths, settings = _block_problem(time_varying)
    reference = KalmanFilter(**settings).fit(X, lengths=lengths)
    with forced_block_count(n_blocks):
        data = KalmanFilter(**settings)._validate_fit_data(X, lengths=lengths)
        assert len(data.blocks) == n_blocks
        split = KalmanFilter(**settings).fit(X, lengths=lengths)
        threaded = KalmanFilter(**settings, n_jobs=2).fit(X, lengths=lengths)
    for model in (split, threaded):
        assert model.n_iter_ == reference.n_iter_ == 12
        assert _max_relative_difference(model.lower_bound_history_, reference.lower_bound_history_) <= 1e-12
        for name in PARAMS:
            assert _max_relative_difference(getattr(model, name + "_"), getattr(reference, name + "_")) <= 1e-12, name


def test_block_statistics_add_across_blocks():
    """The statistics of the blocks (each with its rows of the time-varying matrix) add up to the whole's."""
    X, lengths, settings = _block_problem(time_varying=True)
    model = KalmanFilter(**settings)
    with forced_block_count(1):
        whole = model._validate_fit_data(X, lengths=lengths)
    with forced_block_count(5):
        split = model._validate_fit_data(X, lengths=lengths)
    params = model._initialize(whole, np.random.RandomState(0))
    context = model._e_step_context(whole, params)
    total = model._e_step_block(whole.blocks[0], context, None)
    parts = [model._e_step_block(block, context, None) for block in split.blocks]
    assert sum(p.objective for p in parts) == pytest.approx(total.objective, rel=1e-12)
    summed = parts[0].stats
    for part in parts[1:]:
        summed = summed.add(part.stats)
    for ours, reference in zip(summed, total.stats):
        for field, value in zip(ours, reference):
            assert _max_relative_difference(field, value) <= 1e-12
    assert all(block.varying["observation_matrices"].shape[0] == block.X.shape[0] for block in split.blocks)


# --------------------------------------------------------------------------- em: pykalman's semantics
@pytest.fixture
def em_problem():
    params = make_model(15, n=2, m=2)
    X = simulate(params, 120)
    return X, perturbed(params)


def test_em_loop_of_single_iterations_matches_pykalman(em_problem):
    """``for i in range(5): kf = kf.em(X, n_iter=1)`` climbs, as pykalman's loop does (issue: it stayed flat)."""
    X, start = em_problem
    theirs = PyKalmanFilter(**start)
    ours = KalmanFilter(**start, em_vars="all")
    log_likelihoods = []
    for _ in range(5):
        theirs = theirs.em(X, n_iter=1, em_vars="all")
        ours = ours.em(X, n_iter=1)
        log_likelihoods.append(ours.loglikelihood(X))
        assert ours.n_iter_ == 1 and len(ours.lower_bound_history_) == 1 and not ours.converged_
    assert np.all(np.diff(log_likelihoods) > 0)
    reference = PyKalmanFilter(**start).em(X, n_iter=5, em_vars="all")
    for name in PARAMS:
        np.testing.assert_allclose(getattr(ours, name + "_"), getattr(reference, name), rtol=1e-8, atol=1e-12,
                                   err_msg=name)
        np.testing.assert_allclose(getattr(ours, name + "_"), getattr(theirs, name), rtol=1e-8, atol=1e-12,
                                   err_msg=name)
    assert ours.lower_bound_ == pytest.approx(reference.loglikelihood(X) / len(X), rel=1e-10)


def test_em_runs_exactly_n_iter_and_never_warns_about_convergence(em_problem):
    X, start = em_problem
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConvergenceWarning, however loose tol and short max_iter are
        model = KalmanFilter(**start, tol=1e3, max_iter=1).em(X, n_iter=7)
    assert model.n_iter_ == 7 and len(model.lower_bound_history_) == 7 and not model.converged_
    assert len(model.restarts_) == 1 and model.restarts_[0]["n_iter"] == 7
    assert model.max_iter == 1 and model.tol == 1e3
    assert KalmanFilter(**start).em(X).n_iter_ == 10  # pykalman's default n_iter
    unchanged = KalmanFilter(**start).em(X, n_iter=0)
    for name in PARAMS:
        np.testing.assert_array_equal(getattr(unchanged, name + "_"), np.asarray(start[name], dtype=float))
    with pytest.raises(ValueError, match="n_iter must be a non-negative integer"):
        KalmanFilter(**start).em(X, n_iter=-1)


def test_em_continues_from_fit_and_em_vars_applies_to_that_call_only(em_problem):
    X, start = em_problem
    with pytest.warns(ConvergenceWarning):
        model = KalmanFilter(**start, max_iter=3, tol=0.0).fit(X)
    fitted = {name: getattr(model, name + "_").copy() for name in PARAMS}
    model.em(X, n_iter=2, em_vars=["transition_matrices", "observation_offsets"])
    assert model.em_vars is None
    theirs = PyKalmanFilter(**fitted).em(X, n_iter=2, em_vars=["transition_matrices", "observation_offsets"])
    for name in PARAMS:
        np.testing.assert_allclose(getattr(model, name + "_"), getattr(theirs, name), rtol=1e-8, atol=1e-12,
                                   err_msg=name)


def test_fit_follows_warm_start_after_em(em_problem):
    X, start = em_problem
    cold = KalmanFilter(**start, max_iter=4, tol=0.0)
    with pytest.warns(ConvergenceWarning):
        reference = KalmanFilter(**start, max_iter=4, tol=0.0).fit(X)
        cold.em(X, n_iter=3)
        cold.fit(X)  # warm_start=False: from the constructor values again
    for name in PARAMS:
        np.testing.assert_array_equal(getattr(cold, name + "_"), getattr(reference, name + "_"))
    warm = KalmanFilter(**start, max_iter=4, tol=0.0, warm_start=True)
    with pytest.warns(ConvergenceWarning):
        warm.em(X, n_iter=3)
        warm.fit(X)  # continues from em's parameters: 3 + 4 iterations
    seven = KalmanFilter(**start).em(X, n_iter=7)
    for name in PARAMS:
        np.testing.assert_allclose(getattr(warm, name + "_"), getattr(seven, name + "_"), rtol=1e-12, atol=1e-14)


def test_em_never_assigns_a_constructor_parameter(em_problem, monkeypatch):
    X, start = em_problem
    model = KalmanFilter(**start, random_state=0)
    names = set(model.get_params())

    def guarded_setattr(self, key, value):
        assert key not in names, f"{key} was assigned"
        object.__setattr__(self, key, value)

    monkeypatch.setattr(KalmanFilter, "__setattr__", guarded_setattr)
    model.em(X, n_iter=2)
    model.em(X, n_iter=1, em_vars="all")
    model.em(X[:, 0:1].repeat(2, axis=1), n_iter=1, em_vars=["observation_covariance"])
    with pytest.raises(ValueError, match="unknown parameters"):
        model.em(X, n_iter=1, em_vars=["noise"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    assert model.em_vars is None and model.max_iter == 100


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_clone_fit_reproduces_fit_after_any_public_calls(em_problem):
    from sklearn.base import clone

    X, start = em_problem
    model = KalmanFilter(**start, em_vars="all", n_init=2, max_iter=6, random_state=0)
    model.em(X, n_iter=2)
    model.fit(X)
    model.em(X[:60], n_iter=1, em_vars=["transition_covariance"])
    model.filter(X), model.smooth(X), model.score(X), model.transform(X), model.sample(4)
    model.filter_update(np.zeros(2), np.eye(2), X[0])
    model.forecast(X, 2)
    model.fit(X)
    fresh = clone(model).fit(X)
    assert fresh.lower_bound_ == model.lower_bound_
    for name in PARAMS:
        np.testing.assert_array_equal(getattr(fresh, name + "_"), getattr(model, name + "_"))


# --------------------------------------------------------------------------- usable without fit
def _specified_model():
    params = make_model(16, n=2, m=3)
    return {k: params[k] for k in ("transition_matrices", "observation_matrices", "transition_covariance",
                                   "observation_covariance")}, simulate(params, 80)


def test_fully_specified_model_answers_every_method_like_pykalman_without_fit():
    from sklearn.utils.validation import check_is_fitted

    params, X = _specified_model()
    ours, theirs = KalmanFilter(**params), PyKalmanFilter(**params)
    check_is_fitted(ours)
    assert ours.loglikelihood(X) == pytest.approx(theirs.loglikelihood(X), rel=1e-10)
    assert ours.score(X) == pytest.approx(theirs.loglikelihood(X) / len(X), rel=1e-10)
    np.testing.assert_allclose(ours.transform(X), theirs.smooth(X)[0], atol=1e-9)
    np.testing.assert_allclose(ours.score_samples(X).sum(), theirs.loglikelihood(X), rtol=1e-10)
    for a, b in zip(ours.filter(X), theirs.filter(X)):
        np.testing.assert_allclose(a, b, atol=1e-9)
    for a, b in zip(ours.smooth(X), theirs.smooth(X)):
        np.testing.assert_allclose(a, b, atol=1e-9)
    means, covs = theirs.filter(X)
    for a, b in zip(ours.filter_update(means[-1], covs[-1], X[0]), theirs.filter_update(means[-1], covs[-1], X[0])):
        np.testing.assert_allclose(a, b, atol=1e-9)
    assert [a.shape for a in ours.sample(7)] == [a.shape for a in theirs.sample(7)]
    # forecast = pykalman's filter over missing future rows, mapped through H
    future = np.ma.masked_all((3, 3))
    padded = np.ma.concatenate([np.ma.asarray(X), future])
    H = params["observation_matrices"]
    np.testing.assert_allclose(ours.forecast(X, 3)[0], theirs.filter(padded)[0][-3:] @ H.T, atol=1e-9)
    assert list(ours.get_feature_names_out()) == ["kalmanfilter0", "kalmanfilter1"]


def test_requires_fit_tag_follows_the_given_matrices():
    params, _ = _specified_model()
    assert not KalmanFilter(**params).__sklearn_tags__().requires_fit
    assert KalmanFilter().__sklearn_tags__().requires_fit


def test_identity_observation_matrix_is_implied_by_equal_dimensions():
    from sklearn.utils.validation import check_is_fitted

    A, Q, R = 0.9 * np.eye(2), 0.1 * np.eye(2), [[1.0, 0.2], [0.2, 0.5]]
    X = KalmanFilter(transition_matrices=A, transition_covariance=Q, observation_covariance=R).sample(
        40, random_state=0)[1]
    ours = KalmanFilter(transition_matrices=A, transition_covariance=Q, observation_covariance=R)
    theirs = PyKalmanFilter(transition_matrices=A, transition_covariance=Q, observation_covariance=R)
    check_is_fitted(ours)
    assert ours.score(X) * len(X) == pytest.approx(theirs.loglikelihood(X), rel=1e-10)
    # a state of another size than the observations needs its observation matrix: not fitted
    with pytest.raises(NotFittedError):
        KalmanFilter(transition_matrices=np.eye(3), transition_covariance=np.eye(3),
                     observation_covariance=R).score(X)


@pytest.mark.parametrize("missing", ["transition_matrices", "transition_covariance", "observation_covariance"])
def test_a_partly_specified_model_needs_fit_for_score_and_transform(missing):
    params, X = _specified_model()
    del params[missing]
    model = KalmanFilter(**params)
    for method in (model.score, model.transform, model.score_samples):
        with pytest.raises(NotFittedError):
            method(X)
    model.filter(X)  # pykalman's methods keep working on pykalman's defaults


# --------------------------------------------------------------------------- scalar parameters
SCALARS = dict(transition_matrices=0.98, transition_covariance=0.0025, observation_covariance=0.01)


@pytest.fixture
def scalar_series():
    return PyKalmanFilter(**SCALARS, initial_state_mean=1.0).sample(150, random_state=0)[1].data.ravel()


def test_scalar_parameters_filter_smooth_loglikelihood_like_pykalman(scalar_series):
    X = scalar_series
    ours, theirs = KalmanFilter(**SCALARS), PyKalmanFilter(**SCALARS)
    for a, b in zip(ours.filter(X), theirs.filter(X)):  # a 1-D series, as pykalman users pass it
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-10)
    for a, b in zip(ours.smooth(X[:, None]), theirs.smooth(X)):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    assert ours.loglikelihood(X) == pytest.approx(theirs.loglikelihood(X), rel=1e-12)
    assert ours.score(X[:, None]) * len(X) == pytest.approx(theirs.loglikelihood(X), rel=1e-12)
    # pykalman's moving-average idiom: one-element lists
    idiom = dict(transition_matrices=[1], observation_matrices=[1], initial_state_mean=0,
                 initial_state_covariance=1, observation_covariance=1, transition_covariance=0.01)
    np.testing.assert_allclose(KalmanFilter(**idiom).filter(X)[0], PyKalmanFilter(**idiom).filter(X)[0], rtol=1e-10)


def test_scalar_parameters_filter_update_sample_and_forecast(scalar_series):
    X = scalar_series
    ours, theirs = KalmanFilter(**SCALARS), PyKalmanFilter(**SCALARS)
    means, covs = theirs.filter(X)
    for observation in (X[10], X[10:11], None):
        for a, b in zip(ours.filter_update(means[9], covs[9], observation),
                        theirs.filter_update(means[9], covs[9], observation)):
            np.testing.assert_allclose(a, b, rtol=1e-12)
    for a, b in zip(ours.filter_update(means[9], covs[9], X[10], transition_matrix=0.5, observation_covariance=2.0),
                    theirs.filter_update(means[9], covs[9], X[10], transition_matrix=np.array([[0.5]]),
                                         observation_covariance=np.array([[2.0]]))):  # pykalman needs arrays here
        np.testing.assert_allclose(a, b, rtol=1e-12)
    states, observations = ours.sample(200, random_state=0)
    assert states.shape == observations.shape == (200, 1)
    padded = np.ma.concatenate([np.ma.asarray(X), np.ma.masked_all(4)])
    forecast_means, forecast_covs = ours.forecast(X[:, None], 4)
    np.testing.assert_allclose(forecast_means, theirs.filter(padded)[0][-4:], rtol=1e-10)
    np.testing.assert_allclose(forecast_covs, theirs.filter(padded)[1][-4:] + 0.01, rtol=1e-10)


def test_scalar_parameters_fit_and_em_like_pykalman(scalar_series):
    X = scalar_series
    theirs = PyKalmanFilter(**SCALARS).em(X, n_iter=5)
    ours = KalmanFilter(**SCALARS).em(X, n_iter=5)
    with pytest.warns(ConvergenceWarning):
        fitted = KalmanFilter(**SCALARS, max_iter=5, tol=0.0).fit(X[:, None])
    for name in PARAMS:
        expected = np.asarray(getattr(theirs, name), dtype=float)
        np.testing.assert_allclose(getattr(ours, name + "_"), expected, rtol=1e-8, err_msg=name)
        np.testing.assert_allclose(getattr(fitted, name + "_"), expected, rtol=1e-8, err_msg=name)
    assert ours.transition_covariance_.shape == (1, 1) and ours.initial_state_mean_.shape == (1,)


# --------------------------------------------------------------------------- rough edges (issue 13)
def test_warm_start_on_data_with_another_column_count_is_a_clear_error(em_problem):
    X, start = em_problem
    model = KalmanFilter(warm_start=True, max_iter=3)
    with pytest.warns(ConvergenceWarning):
        model.fit(X)
    before = {name: getattr(model, name + "_").copy() for name in PARAMS}
    wider = np.hstack([X, X[:, :1]])
    with pytest.raises(ValueError, match="X has 3 columns, but the fitted parameters observe 2"):
        model.fit(wider)
    with pytest.raises(ValueError, match="X has 3 columns, but the fitted parameters observe 2"):
        model.em(wider, n_iter=1)
    assert model.n_features_in_ == 2  # nothing half-changed
    for name in PARAMS:
        np.testing.assert_array_equal(getattr(model, name + "_"), before[name])


def test_warm_start_with_another_state_dimension_is_a_clear_error(em_problem):
    X, _ = em_problem
    model = KalmanFilter(warm_start=True, max_iter=3, n_dim_state=2)
    with pytest.warns(ConvergenceWarning):
        model.fit(X)
    with pytest.raises(ValueError, match="2-dimensional state, but n_dim_state and the constructor values now give 3"):
        model.set_params(n_dim_state=3).fit(X)
    with pytest.raises(ValueError, match="not diag but transition_covariance_type='diag'"):
        model.set_params(n_dim_state=2, transition_covariance_type="diag").fit(X)
    # em projects what it learns onto the structure instead, as fit does from constructor values
    model.em(X, n_iter=1)
    Q = model.transition_covariance_
    np.testing.assert_array_equal(Q, np.diag(np.diag(Q)))


def test_warm_start_with_time_varying_matrices_for_other_data_is_a_clear_error():
    rng = np.random.RandomState(5)
    H = rng.standard_normal((30, 1, 2))
    model = KalmanFilter(observation_matrices=H, transition_covariance=0.1 * np.eye(2), warm_start=True, max_iter=2)
    X = model.sample(30, random_state=0)[1]
    with pytest.warns(ConvergenceWarning):
        model.fit(X)
    model.set_params(observation_matrices=H * 2)
    with pytest.raises(ValueError, match="observation_matrices is time-varying"):
        model.fit(X)


def test_fit_on_all_missing_data_is_a_clear_error():
    for X in (np.full((50, 2), np.nan), np.ma.masked_all((50, 2))):
        with pytest.raises(ValueError, match="no observed value"):
            KalmanFilter().fit(X)
        with pytest.raises(ValueError, match="no observed value"):
            KalmanFilter().em(X)
    assert KalmanFilter().filter(np.full((5, 2), np.nan))[0].shape == (5, 2)  # filtering it is fine


def test_constant_series_warns_that_a_variance_collapses_and_what_helps():
    with pytest.warns(ConvergenceWarning) as record:
        KalmanFilter().fit(np.ones((100, 2)))
    message = str(record[0].message)
    assert "shrinking towards zero" in message and "does not help" in message
    for name in ("transition_covariance_", "observation_covariance_", "initial_state_covariance_"):
        assert name in message
    assert "leave them out of em_vars" in message
    # what helps: the named covariances fixed
    model = KalmanFilter(em_vars=["initial_state_mean"]).fit(np.ones((100, 2)))
    assert model.converged_


def test_filter_update_with_an_observation_of_the_wrong_size_names_the_observation(em_problem):
    X, start = em_problem
    model = KalmanFilter(**start)
    mean, cov = model.filter(X)
    with pytest.raises(ValueError, match=r"observation has shape \(3,\), but the model observes 2 dimension"):
        model.filter_update(mean[-1], cov[-1], np.zeros(3))
    with pytest.raises(ValueError, match=r"filtered_state_mean must have shape \(2,\)"):
        model.filter_update(mean[-1][:1], cov[-1], X[0])
    with pytest.raises(ValueError, match=r"observation_matrix must have shape \(2, 2\)"):
        model.filter_update(mean[-1], cov[-1], X[0], observation_matrix=np.ones((3, 2)))


def test_em_on_a_single_time_step_is_a_clear_error():
    with pytest.raises(ValueError, match="n_samples=1 time step.*transition_covariance"):
        KalmanFilter().fit(np.ones((1, 2)))
    with pytest.raises(ValueError, match="No sequence has two time steps"):
        KalmanFilter().em(np.arange(6.0).reshape(3, 2), lengths=[1, 1, 1])
    # what EM can learn from one step per sequence is allowed
    KalmanFilter(em_vars=["observation_covariance", "initial_state_mean"]).em(np.ones((1, 2)), n_iter=2)
