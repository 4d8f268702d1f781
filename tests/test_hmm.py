"""Tests of the hidden Markov models: hmmlearn parity, EM properties, validation, CV."""

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from emkit.hmm import CategoricalHMM, GaussianHMM, PoissonHMM

hmmlearn = pytest.importorskip("hmmlearn.hmm")

COVARIANCE_TYPES = ["diag", "full", "tied", "spherical"]
N_ITER = 5


def _chain(K, rng, stay=0.8):
    startprob = rng.dirichlet(np.ones(K))
    transmat = rng.dirichlet(np.ones(K), size=K) * (1 - stay) + stay * np.eye(K)
    return startprob, transmat


def _states(startprob, transmat, n, rng):
    z = np.empty(n, dtype=int)
    z[0] = rng.choice(len(startprob), p=startprob)
    for t in range(1, n):
        z[t] = rng.choice(len(startprob), p=transmat[z[t - 1]])
    return z


def _layouts(n_long=1500, n_short=40, short_len=15):
    return {"long": [n_long], "short": [short_len] * n_short}


def _gaussian_data(layout, rng, K=3, D=2):
    lengths = _layouts()[layout]
    sp, tm = _chain(K, rng)
    means = rng.normal(scale=3.0, size=(K, D))
    X = np.concatenate([rng.normal(size=(n, D)) + means[_states(sp, tm, n, rng)] for n in lengths])
    return X, lengths


def _gaussian_start(covariance_type, rng, K=3, D=2, X=None):
    sp, tm = _chain(K, rng, stay=0.5)
    means = X[rng.choice(len(X), K, replace=False)] + 0.1
    if covariance_type == "full":
        A = rng.normal(size=(K, D, D))
        covars = A @ np.swapaxes(A, 1, 2) + np.eye(D)
    elif covariance_type == "tied":
        A = rng.normal(size=(D, D))
        covars = A @ A.T + np.eye(D)
    elif covariance_type == "diag":
        covars = rng.uniform(0.5, 2.0, size=(K, D))
    else:
        covars = rng.uniform(0.5, 2.0, size=K)
    return sp, tm, means, covars


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("layout", ["long", "short"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_gaussian_matches_hmmlearn(covariance_type, layout):
    rng = np.random.RandomState(0)
    X, lengths = _gaussian_data(layout, rng)
    D = X.shape[1]
    sp, tm, means, covars = _gaussian_start(covariance_type, rng, X=X)
    # hmmlearn adds a scalar covars_prior to every matrix entry; a matrix prior means the same in both
    covars_prior = 0.05 * np.eye(D) if covariance_type in ("full", "tied") else 0.05
    priors = dict(means_prior=0.3, means_weight=0.5, covars_prior=covars_prior, covars_weight=3.0)
    ref = hmmlearn.GaussianHMM(3, covariance_type=covariance_type, n_iter=N_ITER, tol=-np.inf, init_params="",
                               **priors)
    ref.startprob_, ref.transmat_, ref.means_, ref.covars_ = sp, tm, means, covars
    ref.fit(X, lengths)
    ours = GaussianHMM(3, covariance_type=covariance_type, max_iter=N_ITER, tol=0.0, init_params="",
                       startprob_init=sp, transmat_init=tm, means_init=means, covars_init=covars, **priors)
    ours.fit(X, lengths=lengths)
    assert ours.n_iter_ == N_ITER
    n = X.shape[0]
    np.testing.assert_allclose(ours.score(X, lengths=lengths) * n, ref.score(X, lengths), rtol=1e-6)
    np.testing.assert_allclose(ours.startprob_, ref.startprob_, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(ours.transmat_, ref.transmat_, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-6, atol=1e-10)
    ref_covars = ref._covars_ if covariance_type != "spherical" else ref._covars_.reshape(3, -1)[:, 0]
    np.testing.assert_allclose(ours.covars_, ref_covars, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(ours.predict_proba(X, lengths=lengths), ref.predict_proba(X, lengths), atol=1e-7)
    log_prob, states = ours.decode(X, lengths=lengths)
    ref_log_prob, ref_states = ref.decode(X, lengths)
    np.testing.assert_array_equal(states, ref_states)
    np.testing.assert_allclose(log_prob, ref_log_prob, rtol=1e-8)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("layout", ["long", "short"])
def test_categorical_matches_hmmlearn(layout):
    rng = np.random.RandomState(1)
    K, M = 3, 5
    lengths = _layouts()[layout]
    sp, tm = _chain(K, rng)
    B = rng.dirichlet(np.ones(M), size=K)
    X = np.concatenate([
        np.array([rng.choice(M, p=B[z]) for z in _states(sp, tm, n, rng)])[:, None] for n in lengths
    ])
    sp0, tm0 = _chain(K, rng, stay=0.3)
    B0 = rng.dirichlet(np.ones(M), size=K)
    ref = hmmlearn.CategoricalHMM(K, n_iter=N_ITER, tol=-np.inf, init_params="", emissionprob_prior=1.5,
                                  transmat_prior=1.2)
    ref.startprob_, ref.transmat_, ref.emissionprob_ = sp0, tm0, B0
    ref.fit(X, lengths)
    ours = CategoricalHMM(K, max_iter=N_ITER, tol=0.0, init_params="", emissionprob_prior=1.5,
                          transmat_prior=1.2, startprob_init=sp0, transmat_init=tm0, emissionprob_init=B0)
    ours.fit(X, lengths=lengths)
    n = X.shape[0]
    np.testing.assert_allclose(ours.score(X, lengths=lengths) * n, ref.score(X, lengths), rtol=1e-6)
    np.testing.assert_allclose(ours.emissionprob_, ref.emissionprob_, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(ours.transmat_, ref.transmat_, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(ours.predict_proba(X, lengths=lengths), ref.predict_proba(X, lengths), atol=1e-7)
    np.testing.assert_array_equal(ours.predict(X, lengths=lengths), ref.predict(X, lengths))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("layout", ["long", "short"])
def test_poisson_matches_hmmlearn(layout):
    rng = np.random.RandomState(2)
    K, D = 3, 2
    lengths = _layouts()[layout]
    sp, tm = _chain(K, rng)
    lam = rng.uniform(1, 15, size=(K, D))
    X = np.concatenate([rng.poisson(lam[_states(sp, tm, n, rng)]) for n in lengths])
    sp0, tm0 = _chain(K, rng, stay=0.3)
    lam0 = rng.uniform(1, 15, size=(K, D))
    ref = hmmlearn.PoissonHMM(K, n_iter=N_ITER, tol=-np.inf, init_params="")
    ref.startprob_, ref.transmat_, ref.lambdas_ = sp0, tm0, lam0
    ref.fit(X, lengths)
    ours = PoissonHMM(K, max_iter=N_ITER, tol=0.0, init_params="", startprob_init=sp0, transmat_init=tm0,
                      lambdas_init=lam0)
    ours.fit(X, lengths=lengths)
    n = X.shape[0]
    np.testing.assert_allclose(ours.score(X, lengths=lengths) * n, ref.score(X, lengths), rtol=1e-6)
    np.testing.assert_allclose(ours.lambdas_, ref.lambdas_, rtol=1e-6)
    np.testing.assert_allclose(ours.predict_proba(X, lengths=lengths), ref.predict_proba(X, lengths), atol=1e-7)
    np.testing.assert_array_equal(ours.predict(X, lengths=lengths), ref.predict(X, lengths))
