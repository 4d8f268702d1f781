"""GMMHMM: hmmlearn parity at fixed parameters, an exact M-step (brute-force oracle), EM properties, validation."""

import itertools
import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.exceptions import ConvergenceWarning

from emkit import GMMHMM, GaussianHMM

hmmlearn = pytest.importorskip("hmmlearn.hmm")

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
K, M, D = 3, 2, 2
quiet = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _layout(name):
    return {"long": [1500], "short": [15] * 40}[name]


def _data(layout, seed=0):
    rng = np.random.RandomState(seed)
    lengths = _layout(layout)
    n = sum(lengths)
    X = rng.normal(size=(n, D)) * 1.5 + rng.randint(0, 3, size=(n, 1)) * 3.0
    return X, lengths, rng


def _start(covariance_type, rng, X):
    """Random parameters in hmmlearn's shapes (tied: one matrix per state)."""
    startprob = rng.dirichlet(np.ones(K))
    transmat = rng.dirichlet(np.ones(K), size=K)
    weights = rng.dirichlet(np.ones(M), size=K)
    means = X[rng.choice(len(X), K * M, replace=False)].reshape(K, M, D) + 0.1
    if covariance_type == "full":
        A = rng.normal(size=(K, M, D, D))
        covars = A @ np.swapaxes(A, -1, -2) + np.eye(D)
    elif covariance_type == "tied":
        A = rng.normal(size=(K, D, D))
        covars = A @ np.swapaxes(A, -1, -2) + np.eye(D)
    elif covariance_type == "diag":
        covars = rng.uniform(0.5, 2.0, size=(K, M, D))
    else:
        covars = rng.uniform(0.5, 2.0, size=(K, M))
    return {"startprob_": startprob, "transmat_": transmat, "weights_": weights, "means_": means, "covars_": covars}


def _set(model, start):
    for name, value in start.items():
        setattr(model, name, value)
    return model


def _as_init(start):
    return {name[:-1] + "_init": value for name, value in start.items()}


def _hmmlearn_mixture_posteriors(ref, X, lengths):
    """hmmlearn's p(z_t = k, m_t = m | X), from its own densities and state posteriors."""
    posteriors = ref.predict_proba(X, lengths)
    mix = np.empty((len(X), K, M))
    for k in range(K):
        log_dens = ref._compute_log_weighted_gaussian_densities(X, k)
        mix[:, k] = np.exp(log_dens - logsumexp(log_dens, axis=1, keepdims=True))
    return posteriors[:, :, np.newaxis] * mix


# ---------------------------------------------------------------------------------------- hmmlearn parity
@pytest.mark.parametrize("layout", ["long", "short"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_matches_hmmlearn_at_fixed_parameters(covariance_type, layout):
    X, lengths, rng = _data(layout)
    start = _start(covariance_type, rng, X)
    ref = _set(hmmlearn.GMMHMM(K, n_mix=M, covariance_type=covariance_type, init_params=""), start)
    ours = _set(GMMHMM(K, n_mix=M, covariance_type=covariance_type), start)
    np.testing.assert_allclose(ours.score(X, lengths=lengths) * len(X), ref.score(X, lengths), rtol=1e-8)
    # probabilities below 1e-300 are zero on both sides (within absolute 1e-300)
    np.testing.assert_allclose(ours.predict_proba(X, lengths=lengths), ref.predict_proba(X, lengths), rtol=1e-8,
                               atol=1e-300)
    np.testing.assert_allclose(ours.predict_mixture_proba(X, lengths=lengths),
                               _hmmlearn_mixture_posteriors(ref, X, lengths), rtol=1e-8, atol=1e-300)
    np.testing.assert_array_equal(ours.predict(X, lengths=lengths), ref.predict(X, lengths))
    log_prob, _ = ours.decode(X, lengths=lengths)
    np.testing.assert_allclose(log_prob, ref.decode(X, lengths)[0], rtol=1e-8)
    np.testing.assert_allclose(ours.predict_mixture_proba(X, lengths=lengths).sum(axis=2),
                               ours.predict_proba(X, lengths=lengths), rtol=1e-12, atol=1e-15)


@quiet
@pytest.mark.parametrize("layout", ["long", "short"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_ten_iterations_reach_at_least_hmmlearn(covariance_type, layout):
    """hmmlearn's M-step takes the scatter about the old means, so it is not exact EM; from the same start, ten of
    emkit's iterations reach at least its log-likelihood (on these data: it is not a theorem, see the M-step tests
    below for what is)."""
    X, lengths, rng = _data(layout)
    start = _start(covariance_type, rng, X)
    ref = hmmlearn.GMMHMM(K, n_mix=M, covariance_type=covariance_type, init_params="", n_iter=10, tol=-np.inf,
                          implementation="scaling")
    _set(ref, start).fit(X, lengths)
    ours = GMMHMM(K, n_mix=M, covariance_type=covariance_type, init_params="", max_iter=10, tol=0.0,
                  **_as_init(start)).fit(X, lengths=lengths)
    assert ours.n_iter_ == 10
    assert ours.score(X, lengths=lengths) * len(X) >= ref.score(X, lengths)
    assert np.all(np.diff(ours.lower_bound_history_) >= -1e-12 * np.abs(ours.lower_bound_history_[1:]))


# ---------------------------------------------------------------------------------------- brute-force oracle
def _full_covariances(covariance_type, covars):
    if covariance_type == "full":
        return covars
    if covariance_type == "tied":
        return np.repeat(covars[:, np.newaxis], M, axis=1)
    if covariance_type == "diag":
        return np.einsum("kmd,de->kmde", covars, np.eye(D))
    return covars[:, :, np.newaxis, np.newaxis] * np.eye(D)


def _oracle_e_step(X, lengths, p):
    """Posteriors by log-space forward-backward, written out step by step (scipy densities)."""
    covariances = _full_covariances(p["covariance_type"], p["covars_"])
    log_joint = np.empty((len(X), K, M))
    for k, m in itertools.product(range(K), range(M)):
        log_joint[:, k, m] = np.log(p["weights_"][k, m]) + multivariate_normal(
            p["means_"][k, m], covariances[k, m]).logpdf(X)
    log_b = logsumexp(log_joint, axis=2)
    log_a = np.log(p["transmat_"])
    gamma = np.empty((len(X), K))
    start, xi, total = np.zeros(K), np.zeros((K, K)), 0.0
    for first, last in zip(np.cumsum([0] + lengths[:-1]), np.cumsum(lengths)):
        T = last - first
        alpha, beta = np.empty((T, K)), np.zeros((T, K))
        alpha[0] = np.log(p["startprob_"]) + log_b[first]
        for t in range(1, T):
            alpha[t] = logsumexp(alpha[t - 1][:, None] + log_a, axis=0) + log_b[first + t]
        for t in range(T - 2, -1, -1):
            beta[t] = logsumexp(log_a + log_b[first + t + 1] + beta[t + 1], axis=1)
        log_lik = logsumexp(alpha[-1])
        total += log_lik
        gamma[first:last] = np.exp(alpha + beta - log_lik)
        start += gamma[first]
        for t in range(T - 1):
            xi += np.exp(alpha[t][:, None] + log_a + log_b[first + t + 1] + beta[t + 1] - log_lik)
    mixture = gamma[:, :, None] * np.exp(log_joint - log_b[:, :, None])
    return start, xi, mixture, total


def _oracle_m_step(X, covariance_type, start, xi, g, priors):
    """The MAP update written out for each state and Gaussian."""
    alpha, m0, kappa = priors["weights_prior"], priors["means_prior"], priors["means_weight"]
    psi, nu = priors["covars_prior"], priors["covars_weight"]
    N = g.sum(axis=0)  # (K, M)
    weights = np.maximum(N + alpha - 1, 0)
    weights /= weights.sum(axis=1, keepdims=True)
    means = (kappa * m0 + np.einsum("tkm,td->kmd", g, X)) / (kappa + N)[:, :, None]
    scatter = np.empty((K, M, D, D))
    for k, m in itertools.product(range(K), range(M)):
        centred = X - means[k, m]
        scatter[k, m] = (g[:, k, m, None] * centred).T @ centred + kappa * np.outer(means[k, m] - m0, means[k, m] - m0)
    if covariance_type == "full":
        covars = (psi * np.eye(D) + scatter) / (max(nu - D, 0) + N)[:, :, None, None]
    elif covariance_type == "tied":
        covars = (psi * np.eye(D) + scatter.sum(axis=1)) / (max(nu - D, 0) + N.sum(axis=1))[:, None, None]
    else:
        variances = (psi + np.diagonal(scatter, axis1=2, axis2=3)) / (max(nu - 1, 0) + N)[:, :, None]
        covars = variances if covariance_type == "diag" else variances.mean(axis=2)
    return {"startprob_": start / start.sum(), "transmat_": xi / xi.sum(axis=1, keepdims=True), "weights_": weights,
            "means_": means, "covars_": covars}


_NO_PRIOR = {"weights_prior": 1.0, "means_prior": 0.0, "means_weight": 0.0, "covars_prior": 0.0, "covars_weight": 0.0}
_PRIOR = {"weights_prior": 2.5, "means_prior": 0.7, "means_weight": 0.8, "covars_prior": 0.4, "covars_weight": 5.0}


@quiet
@pytest.mark.parametrize("priors", [_NO_PRIOR, _PRIOR], ids=["maximum-likelihood", "map"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_one_iteration_equals_the_brute_force_oracle(covariance_type, priors):
    X, _, rng = _data("short")
    X, lengths = X[:200], [60, 45, 95]
    start = _start(covariance_type, rng, X)
    model = GMMHMM(K, n_mix=M, covariance_type=covariance_type, init_params="", max_iter=1, tol=0.0,
                   **_as_init(start), **priors).fit(X, lengths=lengths)
    start_sum, xi, g, total = _oracle_e_step(X, lengths, {**start, "covariance_type": covariance_type})
    at_start = GMMHMM(K, n_mix=M, covariance_type=covariance_type, init_params="", max_iter=0, **_as_init(start))
    np.testing.assert_allclose(at_start.fit(X, lengths=lengths).score(X, lengths=lengths) * len(X), total, rtol=1e-10)
    expected = _oracle_m_step(X, covariance_type, start_sum, xi, g, priors)
    for name, value in expected.items():
        np.testing.assert_allclose(getattr(model, name), value, rtol=1e-8, err_msg=name)


def _expected_complete_log_likelihood(X, lengths, covariance_type, start, params):
    """Q(params | start): EM's auxiliary function, from the oracle's posteriors at ``start``."""
    start_sum, xi, g, _ = _oracle_e_step(X, lengths, {**start, "covariance_type": covariance_type})
    covariances = _full_covariances(covariance_type, params["covars_"])
    total = start_sum @ np.log(params["startprob_"]) + np.sum(xi * np.log(params["transmat_"]))
    for k, m in itertools.product(range(K), range(M)):
        log_dens = multivariate_normal(params["means_"][k, m], covariances[k, m]).logpdf(X)
        total += g[:, k, m] @ (np.log(params["weights_"][k, m]) + log_dens)
    return total


@quiet
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_the_m_step_maximises_the_expected_complete_log_likelihood(covariance_type):
    """Exact EM: one M-step's parameters beat hmmlearn's one M-step and any nearby parameters on Q."""
    X, _, rng = _data("short")
    X, lengths = X[:300], [100, 200]
    start = _start(covariance_type, rng, X)
    ours = GMMHMM(K, n_mix=M, covariance_type=covariance_type, init_params="", max_iter=1, tol=0.0,
                  **_as_init(start)).fit(X, lengths=lengths)
    ours_params = {name: getattr(ours, name) for name in start}
    ref = _set(hmmlearn.GMMHMM(K, n_mix=M, covariance_type=covariance_type, init_params="", n_iter=1,
                               tol=-np.inf), start).fit(X, lengths)
    ref_params = {name: getattr(ref, name) for name in start}
    best = _expected_complete_log_likelihood(X, lengths, covariance_type, start, ours_params)
    assert best >= _expected_complete_log_likelihood(X, lengths, covariance_type, start, ref_params)
    for trial in range(5):
        nearby = dict(ours_params)
        nearby["means_"] = ours_params["means_"] + 0.01 * rng.normal(size=ours_params["means_"].shape)
        nearby["covars_"] = ours_params["covars_"] * (1.0 + 0.02 * (trial - 2))
        weights = ours_params["weights_"] * np.exp(0.02 * rng.normal(size=(K, M)))
        nearby["weights_"] = weights / weights.sum(axis=1, keepdims=True)
        assert best >= _expected_complete_log_likelihood(X, lengths, covariance_type, start, nearby)


# ---------------------------------------------------------------------------------------- EM properties
def _planted(seed=0, n_sequences=10, length=200):
    """Two sticky states, each a mixture of two well-separated Gaussians."""
    rng = np.random.RandomState(seed)
    centres = np.array([[[0.0, 0.0], [6.0, 0.0]], [[0.0, 8.0], [6.0, 8.0]]])
    X, Z = [], []
    for _ in range(n_sequences):
        z = np.cumsum(rng.uniform(size=length) < 0.05) % 2
        m = rng.uniform(size=length) < np.where(z == 0, 0.3, 0.6)
        X.append(centres[z, m.astype(int)] + 0.5 * rng.normal(size=(length, 2)))
        Z.append(z)
    return np.concatenate(X), np.concatenate(Z), [length] * n_sequences


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_recovers_planted_mixtures(covariance_type):
    X, Z, lengths = _planted()
    model = GMMHMM(2, n_mix=2, covariance_type=covariance_type, n_init=3, random_state=0, tol=1e-6,
                   max_iter=300).fit(X, lengths=lengths)
    assert model.converged_
    agree = np.mean(model.predict(X, lengths=lengths) == Z)
    assert max(agree, 1 - agree) > 0.99
    state = int(model.means_[:, :, 1].mean(axis=1).argmin())  # the state around y = 0
    order = np.argsort(model.means_[state, :, 0])
    np.testing.assert_allclose(model.means_[state, order], [[0.0, 0.0], [6.0, 0.0]], atol=0.1)
    np.testing.assert_allclose(model.weights_[state, order], [0.7, 0.3], atol=0.04)
    variances = model._density().flat_covariances(model.covars_)
    if covariance_type in ("full", "tied"):
        variances = np.diagonal(variances, axis1=1, axis2=2)
    np.testing.assert_allclose(variances, 0.25, rtol=0.15)


@quiet
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_objective_never_decreases_with_priors(covariance_type):
    X, _, lengths = _planted(n_sequences=4)
    model = GMMHMM(2, n_mix=3, covariance_type=covariance_type, weights_prior=2.0, means_weight=0.5,
                   covars_prior=0.3, covars_weight=4.0, max_iter=30, tol=0.0, random_state=0)
    model.fit(X, lengths=lengths)
    history = model.lower_bound_history_
    assert len(history) == 30
    assert np.all(np.diff(history) >= -8 * np.finfo(float).eps * np.abs(history[1:]))
    assert model.lower_bound_ > model.score(X, lengths=lengths) - 1.0  # the log-prior is part of the objective


@quiet
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_one_gaussian_per_state_is_gaussian_hmm(covariance_type):
    """n_mix=1 is GaussianHMM; GMMHMM's tied (one matrix per state) is then GaussianHMM's full."""
    X, _, lengths = _planted(n_sequences=3)
    rng = np.random.RandomState(1)
    means = X[rng.choice(len(X), 2)]
    single_type = "full" if covariance_type == "tied" else covariance_type
    covars = {"full": np.tile(np.eye(2), (2, 1, 1)), "diag": np.ones((2, 2)), "spherical": np.ones(2)}[single_type]
    common = dict(init_params="", max_iter=8, tol=0.0, startprob_init=[0.5, 0.5], transmat_init=[[0.9, 0.1], [0.2, 0.8]])
    single = GaussianHMM(2, covariance_type=single_type, means_init=means, covars_init=covars, covars_prior=0.0,
                         covars_weight=0.0, **common).fit(X, lengths=lengths)
    mixture_covars = covars if covariance_type == "tied" else covars[:, None]
    mixture = GMMHMM(2, n_mix=1, covariance_type=covariance_type, means_init=means[:, None],
                     covars_init=mixture_covars, weights_init=np.ones((2, 1)), **common).fit(X, lengths=lengths)
    np.testing.assert_allclose(mixture.lower_bound_history_, single.lower_bound_history_, rtol=1e-12)
    np.testing.assert_allclose(mixture.means_[:, 0], single.means_, rtol=1e-10)
    fitted = mixture.covars_ if covariance_type == "tied" else mixture.covars_[:, 0]
    np.testing.assert_allclose(fitted, single.covars_, rtol=1e-10)
    np.testing.assert_allclose(mixture.transmat_, single.transmat_, rtol=1e-10)


def test_tied_means_one_matrix_per_state():
    X, _, lengths = _planted(n_sequences=3)
    model = GMMHMM(2, n_mix=2, covariance_type="tied", random_state=0, max_iter=20).fit(X, lengths=lengths)
    assert model.covars_.shape == (2, 2, 2)
    assert not np.allclose(model.covars_[0], model.covars_[1])


def test_params_subset_is_not_learned_and_bad_letters_raise():
    X, _, lengths = _planted(n_sequences=3)
    weights = np.array([[0.5, 0.5], [0.2, 0.8]])
    model = GMMHMM(2, n_mix=2, params="stmc", weights_init=weights, random_state=0, max_iter=5, tol=1e-3)
    model.fit(X, lengths=lengths)
    np.testing.assert_array_equal(model.weights_, weights)
    with pytest.raises(ValueError, match="unknown letter"):
        GMMHMM(2, params="stx").fit(X)


@quiet
def test_sample_forecast_bic_and_restarts():
    X, _, lengths = _planted(n_sequences=4)
    one = GMMHMM(2, n_mix=2, n_init=3, random_state=0, max_iter=20, n_jobs=1).fit(X, lengths=lengths)
    two = GMMHMM(2, n_mix=2, n_init=3, random_state=0, max_iter=20, n_jobs=2).fit(X, lengths=lengths)
    np.testing.assert_allclose(one.lower_bound_history_, two.lower_bound_history_, rtol=1e-10)
    assert one.lower_bound_ == max(r["objective"] for r in one.restarts_)
    sample, states = one.sample(2000, random_state=0)
    assert sample.shape == (2000, 2) and states.shape == (2000,)
    again, _ = one.sample(2000, random_state=0)
    np.testing.assert_array_equal(sample, again)
    # samples from each state follow its mixture: their mean is the weighted mean of its Gaussians
    expectation = np.einsum("km,kmd->kd", one.weights_, one.means_)
    for k in range(2):
        np.testing.assert_allclose(sample[states == k].mean(axis=0), expectation[k], atol=0.3)
    proba, expected = one.forecast(X, 3, lengths=lengths)
    assert proba.shape == (4, 3, 2) and expected.shape == (4, 3, 2)
    np.testing.assert_allclose(expected, proba @ expectation)
    n_params = 1 + 2 + 2 * 1 + 2 * 2 * 2 + 2 * 2 * 2  # start, transitions, weights, means, diag covariances
    np.testing.assert_allclose(one.bic(X, lengths=lengths),
                               -2 * one.score(X, lengths=lengths) * len(X) + n_params * np.log(len(X)))
    np.testing.assert_allclose(one.aic(X, lengths=lengths), -2 * one.score(X, lengths=lengths) * len(X) + 2 * n_params)


def test_bic_prefers_two_gaussians_per_state():
    X, _, lengths = _planted(n_sequences=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        bics = [GMMHMM(2, n_mix=m, n_init=2, random_state=0).fit(X, lengths=lengths).bic(X, lengths=lengths)
                for m in (1, 2, 3)]
    assert int(np.argmin(bics)) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"weights_init": [[0.5, 0.6], [0.5, 0.5]]}, "weights_init rows must each sum to 1"),
        ({"weights_init": np.ones((2, 3)) / 3}, r"weights_init must have shape \(2, 2\)"),
        ({"means_init": np.zeros((2, 2))}, r"means_init must have shape \(2, 2, 2\)"),
        ({"covars_init": np.ones((2, 2))}, "covars_init must have shape"),
        ({"covariance_type": "full", "covars_init": -np.tile(np.eye(2), (2, 2, 1, 1))}, "positive definite"),
        ({"covariance_type": "tied", "covars_init": np.ones((2, 2, 2, 2))}, r"shape \(2, 2, 2\)"),
        ({"means_weight": np.ones(3)}, "means_weight"),
        ({"covars_prior": -1.0}, "covars_prior"),
        ({"weights_prior": np.ones((3, 3))}, "weights_prior"),
    ],
)
def test_bad_starting_values_and_priors(kwargs, match):
    X, _, lengths = _planted(n_sequences=2)
    with pytest.raises(ValueError, match=match):
        GMMHMM(2, n_mix=2, random_state=0, max_iter=2, **kwargs).fit(X, lengths=lengths)


@quiet
def test_partial_fit_over_chunks_of_sequences_reaches_the_batch_score():
    X, _, lengths = _planted(n_sequences=20, length=100)
    batch = GMMHMM(2, n_mix=2, random_state=0, tol=1e-6).fit(X, lengths=lengths)
    online = GMMHMM(2, n_mix=2, random_state=0)
    for _ in range(3):
        for i in range(0, 20, 2):
            online.partial_fit(X[i * 100:(i + 2) * 100], lengths=[100, 100])
    assert online.score(X, lengths=lengths) > batch.score(X, lengths=lengths) - 0.02


@quiet
def test_grid_search_over_n_mix_in_a_pipeline_never_cuts_sequences():
    from sklearn import config_context
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, _, lengths = _planted(n_sequences=9, length=100)
    sequence_ids = np.repeat(np.arange(9), 100)
    with config_context(enable_metadata_routing=True):
        model = GMMHMM(2, random_state=0, covars_prior=1e-2, covars_weight=1.0).set_fit_request(
            sequence_ids=True).set_score_request(sequence_ids=True)
        search = GridSearchCV(make_pipeline(StandardScaler(), model), {"gmmhmm__n_mix": [1, 2]},
                              cv=GroupKFold(n_splits=3))
        search.fit(X, groups=sequence_ids, sequence_ids=sequence_ids)
    assert search.best_params_ == {"gmmhmm__n_mix": 2}
