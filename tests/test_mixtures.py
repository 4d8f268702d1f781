"""BernoulliMixture and PoissonMixture: a direct numpy EM as oracle, planted parameters, priors, validation, CV."""

import itertools
import warnings

import numpy as np
import pytest
from scipy.special import gammaln, logsumexp
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from emkit import BernoulliMixture, PoissonMixture

quiet = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

PROFILES = np.array([
    [0.9, 0.8, 0.1, 0.2, 0.5, 0.8, 0.2, 0.7],
    [0.1, 0.2, 0.9, 0.7, 0.5, 0.2, 0.9, 0.6],
    [0.8, 0.1, 0.8, 0.1, 0.9, 0.3, 0.7, 0.1],
])
RATES = np.array([[1.0, 12.0, 3.0], [9.0, 2.0, 3.0], [20.0, 20.0, 0.5]])
WEIGHTS = np.array([0.5, 0.3, 0.2])


def _binary(n=3000, seed=0):
    rng = np.random.RandomState(seed)
    labels = rng.choice(3, size=n, p=WEIGHTS)
    return (rng.uniform(size=(n, PROFILES.shape[1])) < PROFILES[labels]).astype(float), labels


def _counts(n=3000, seed=0):
    rng = np.random.RandomState(seed)
    labels = rng.choice(3, size=n, p=WEIGHTS)
    return rng.poisson(RATES[labels]).astype(float), labels


# ---------------------------------------------------------------------------------------- numpy EM oracle
def _oracle_em(X, weights, component, log_density, m_step, n_iter, log_prior=lambda w, c: 0.0, alpha=1.0):
    """EM written out directly: responsibilities, then the closed-form MAP update; the objective each step."""
    history = []
    for _ in range(n_iter):
        log_joint = log_density(X, component) + np.log(weights)
        resp = np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))
        N = resp.sum(axis=0)
        weights = np.maximum(N + alpha - 1, 0) / np.maximum(N + alpha - 1, 0).sum()
        component = m_step(X, resp, N)
        log_joint = log_density(X, component) + np.log(weights)
        history.append((logsumexp(log_joint, axis=1).sum() + log_prior(weights, component)) / len(X))
    return weights, component, np.array(history)


def _bernoulli_log_density(X, means):
    return X @ np.log(means).T + (1 - X) @ np.log1p(-means).T


def _poisson_log_density(X, lambdas):
    return X @ np.log(lambdas).T - lambdas.sum(axis=1) - gammaln(X + 1).sum(axis=1, keepdims=True)


@quiet
@pytest.mark.parametrize("prior", [None, (2.0, 3.0)], ids=["maximum-likelihood", "beta-prior"])
def test_bernoulli_equals_a_direct_numpy_em(prior):
    X, _ = _binary(800)
    rng = np.random.RandomState(1)
    weights0, means0 = rng.dirichlet(np.ones(3)), rng.uniform(0.2, 0.8, size=(3, 8))
    a, b = (1.0, 1.0) if prior is None else prior
    alpha = 1.0 if prior is None else 1.5

    def m_step(X, resp, N):
        return (resp.T @ X + a - 1) / (N[:, None] + a + b - 2)

    def log_prior(w, means):
        return (alpha - 1) * np.log(w).sum() + ((a - 1) * np.log(means) + (b - 1) * np.log1p(-means)).sum()

    weights, means, history = _oracle_em(X, weights0, means0, _bernoulli_log_density, m_step, 12, log_prior, alpha)
    model = BernoulliMixture(3, binarize=None, means_prior=prior, weights_prior=None if prior is None else alpha,
                             weights_init=weights0, means_init=means0, max_iter=12, tol=0.0).fit(X)
    assert model.n_iter_ == 12
    np.testing.assert_allclose(model.weights_, weights, rtol=1e-10)
    np.testing.assert_allclose(model.means_, means, rtol=1e-10)
    np.testing.assert_allclose(model.lower_bound_history_, history, rtol=1e-12)


@quiet
@pytest.mark.parametrize("prior", [(0.0, 0.0), (3.0, 0.5)], ids=["maximum-likelihood", "gamma-prior"])
def test_poisson_equals_a_direct_numpy_em(prior):
    X, _ = _counts(800)
    rng = np.random.RandomState(1)
    weights0, lambdas0 = rng.dirichlet(np.ones(3)), rng.uniform(1.0, 15.0, size=(3, 3))
    a, b = prior

    def m_step(X, resp, N):
        return (a + resp.T @ X) / (b + N[:, None])

    def log_prior(w, lambdas):
        return (a * np.log(lambdas) - b * lambdas).sum()

    weights, lambdas, history = _oracle_em(X, weights0, lambdas0, _poisson_log_density, m_step, 6, log_prior)
    model = PoissonMixture(3, lambdas_prior=a, lambdas_weight=b, weights_init=weights0, lambdas_init=lambdas0,
                           max_iter=6, tol=0.0).fit(X)
    assert model.n_iter_ == 6
    np.testing.assert_allclose(model.weights_, weights, rtol=1e-10)
    np.testing.assert_allclose(model.lambdas_, lambdas, rtol=1e-10)
    np.testing.assert_allclose(model.lower_bound_history_, history, rtol=1e-12)


# ---------------------------------------------------------------------------------------- planted parameters
def _best_order(fitted, truth):
    return list(min(itertools.permutations(range(3)), key=lambda p: np.abs(fitted[list(p)] - truth).sum()))


def test_bernoulli_recovers_planted_profiles():
    X, labels = _binary(5000)
    model = BernoulliMixture(3, n_init=4, random_state=0, tol=1e-6).fit(X)
    order = _best_order(model.means_, PROFILES)
    np.testing.assert_allclose(model.means_[order], PROFILES, atol=0.05)
    np.testing.assert_allclose(model.weights_[order], WEIGHTS, atol=0.03)
    assert model.converged_


def test_poisson_recovers_planted_rates():
    X, labels = _counts()
    model = PoissonMixture(3, n_init=2, random_state=0, tol=1e-6).fit(X)
    order = _best_order(model.lambdas_, RATES)
    np.testing.assert_allclose(model.lambdas_[order], RATES, rtol=0.06)
    np.testing.assert_allclose(model.weights_[order], WEIGHTS, atol=0.02)
    agree = np.mean(np.argsort(order)[model.predict(X)] == labels)
    assert agree > 0.97


# ---------------------------------------------------------------------------------------- data handling
@quiet
def test_binarize_is_bernoulli_nb_s_threshold():
    rng = np.random.RandomState(0)
    raw = rng.normal(size=(400, 8)) + 0.5 * _binary(400)[0]
    for threshold in (0.0, 0.5):
        a = BernoulliMixture(2, binarize=threshold, random_state=0, max_iter=5).fit(raw)
        b = BernoulliMixture(2, binarize=None, random_state=0, max_iter=5).fit((raw > threshold).astype(int))
        np.testing.assert_array_equal(a.means_, b.means_)
        np.testing.assert_array_equal(a.predict(raw), b.predict((raw > threshold).astype(float)))


def test_binarize_none_refuses_other_values_and_input_is_not_modified():
    X = _binary(50)[0]
    with pytest.raises(ValueError, match="binarize=None expects binary data"):
        BernoulliMixture(2, binarize=None).fit(X * 2)
    X_raw = X - 0.3
    copy = X_raw.copy()
    BernoulliMixture(2, random_state=0, max_iter=3).fit(X_raw)
    np.testing.assert_array_equal(X_raw, copy)


def test_poisson_refuses_negative_counts():
    with pytest.raises(ValueError, match="Negative values in data passed to PoissonMixture"):
        PoissonMixture(2).fit(np.array([[1.0, 2.0], [-1.0, 0.0], [3.0, 1.0]]))


@pytest.mark.parametrize(
    "estimator, match",
    [
        (BernoulliMixture(2, means_init=[[0.5, 1.5], [0.2, 0.3]]), r"means_init must lie in \[0, 1\]"),
        (BernoulliMixture(2, means_init=np.full((3, 2), 0.5)), r"means_init must have shape \(2, 2\)"),
        (BernoulliMixture(2, means_prior=(1.0, 2.0, 3.0)), "means_prior must have a shape"),
        (BernoulliMixture(2, weights_init=[0.3, 0.3]), "weights_init must sum to 1"),
        (PoissonMixture(2, lambdas_init=[[1.0, -2.0], [1.0, 1.0]]), "lambdas_init must be non-negative"),
        (PoissonMixture(2, lambdas_prior=np.ones(3)), "lambdas_prior must be a scalar or broadcastable"),
        (PoissonMixture(2, weights_prior=[1.0, 2.0, 3.0]), "weights_prior"),
    ],
)
def test_bad_starting_values_and_priors(estimator, match):
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match=match):
        estimator.fit(X)


@pytest.mark.parametrize("make", [lambda: BernoulliMixture(3, random_state=0), lambda: PoissonMixture(3, random_state=0)])
def test_integer_sample_weight_equals_repeated_rows_from_an_explicit_start(make):
    X = _binary(300)[0] if isinstance(make(), BernoulliMixture) else _counts(300)[0]
    rng = np.random.RandomState(2)
    weights = rng.randint(0, 4, size=len(X))
    model = make()
    name = "means_init" if isinstance(model, BernoulliMixture) else "lambdas_init"
    start = {"weights_init": [0.4, 0.3, 0.3], name: np.abs(X[:3]) * 0.5 + 0.25}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = make().set_params(max_iter=10, tol=0, **start).fit(X, sample_weight=weights)
        repeated = make().set_params(max_iter=10, tol=0, **start).fit(np.repeat(X, weights, axis=0))
    for key, value in repeated._fitted_params().items():
        np.testing.assert_allclose(weighted._fitted_params()[key], value, rtol=1e-7)


# ---------------------------------------------------------------------------------------- estimator behaviour
@quiet
@pytest.mark.parametrize("cls, data", [(BernoulliMixture, _binary), (PoissonMixture, _counts)])
def test_restarts_sample_bic_and_aic(cls, data):
    X, _ = data(600)
    one = cls(3, n_init=4, random_state=5, max_iter=30, n_jobs=1).fit(X)
    two = cls(3, n_init=4, random_state=5, max_iter=30, n_jobs=2).fit(X)
    np.testing.assert_allclose(one.lower_bound_history_, two.lower_bound_history_, rtol=1e-10)
    assert one.lower_bound_ == max(r["objective"] for r in one.restarts_)
    sample, labels = one.sample(4000, random_state=0)
    assert sample.shape == (4000, X.shape[1]) and np.all(np.diff(labels) >= 0)
    expectation = one.means_ if cls is BernoulliMixture else one.lambdas_
    for k in range(3):
        if np.sum(labels == k) > 200:
            np.testing.assert_allclose(sample[labels == k].mean(axis=0), expectation[k],
                                       atol=0.06 if cls is BernoulliMixture else 0.1 * expectation[k].max())
    n_params = 3 * X.shape[1] + 2
    log_lik = one.score(X) * len(X)
    np.testing.assert_allclose(one.bic(X), -2 * log_lik + n_params * np.log(len(X)))
    np.testing.assert_allclose(one.aic(X), -2 * log_lik + 2 * n_params)
    np.testing.assert_allclose(one.predict_proba(X).sum(axis=1), 1.0)
    np.testing.assert_array_equal(one.fit_predict(X), one.predict(X))


def test_bic_selects_the_planted_number_of_components():
    X, _ = _counts(1500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        bics = [PoissonMixture(k, n_init=2, random_state=0).fit(X).bic(X) for k in (1, 2, 3, 4)]
    assert int(np.argmin(bics)) == 2


def test_grid_search_in_a_pipeline():
    X, _ = _binary(600)
    pipe = make_pipeline(FunctionTransformer(lambda Z: Z), BernoulliMixture(random_state=0))
    search = GridSearchCV(pipe, {"bernoullimixture__n_components": [1, 3]}, cv=3).fit(X)
    assert search.best_params_ == {"bernoullimixture__n_components": 3}


@quiet
def test_laplace_prior_keeps_new_data_finite():
    X, _ = _binary(200)
    X[:, 0] = 1.0  # a feature always on: maximum likelihood gives a probability of exactly 1
    ml = BernoulliMixture(2, random_state=0).fit(X)
    smooth = BernoulliMixture(2, means_prior=2.0, random_state=0).fit(X)
    new = np.zeros((1, 8))
    assert np.isneginf(ml.score_samples(new)[0])
    assert np.isfinite(smooth.score_samples(new)[0])
    assert np.all(np.diff(smooth.lower_bound_history_) >= -1e-12)


def test_partial_fit_over_chunks_reaches_the_batch_score():
    X, _ = _counts(6000, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        batch = PoissonMixture(3, random_state=0, tol=1e-6).fit(X)
    online = PoissonMixture(3, random_state=0)
    for epoch in range(2):
        for chunk in np.array_split(X, 30):
            online.partial_fit(chunk)
    assert online.score(X) > batch.score(X) - 0.01
