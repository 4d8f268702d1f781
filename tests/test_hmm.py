"""Tests of the hidden Markov models: hmmlearn parity, EM properties, validation, CV."""

import itertools

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


# ---------------------------------------------------------------------------------------- EM properties
def _sampled_gaussian(n_sequences=20, length=50, seed=0):
    rng = np.random.RandomState(seed)
    sp = np.array([0.6, 0.3, 0.1])
    tm = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
    means = np.array([[0.0, 0.0], [4.0, 1.0], [-3.0, 4.0]])
    X, Z = [], []
    for _ in range(n_sequences):
        z = _states(sp, tm, length, rng)
        X.append(rng.normal(size=(length, 2)) + means[z])
        Z.append(z)
    return np.concatenate(X), np.concatenate(Z), [length] * n_sequences


def _make(kind, **kwargs):
    if kind == "gaussian":
        return GaussianHMM(3, **kwargs)
    if kind == "categorical":
        return CategoricalHMM(3, **kwargs)
    return PoissonHMM(3, **kwargs)


def _data(kind, seed=0):
    X, Z, lengths = _sampled_gaussian(seed=seed)
    if kind == "gaussian":
        return X, lengths
    rng = np.random.RandomState(seed)
    if kind == "categorical":
        B = np.array([[0.7, 0.2, 0.05, 0.05], [0.1, 0.1, 0.7, 0.1], [0.05, 0.05, 0.1, 0.8]])
        return np.array([rng.choice(4, p=B[z]) for z in Z])[:, None], lengths
    lam = np.array([[1.0, 5.0], [8.0, 2.0], [15.0, 15.0]])
    return rng.poisson(lam[Z]), lengths


KINDS = ["gaussian", "categorical", "poisson"]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", KINDS)
def test_objective_never_decreases(kind):
    X, lengths = _data(kind)
    extra = {"covariance_type": "full", "means_weight": 1.0, "covars_weight": 4.0} if kind == "gaussian" else {}
    if kind == "categorical":
        extra = {"emissionprob_prior": 2.0, "transmat_prior": 1.5, "startprob_prior": 3.0}
    if kind == "poisson":
        extra = {"lambdas_prior": 2.0, "lambdas_weight": 0.5}
    model = _make(kind, max_iter=40, tol=0.0, random_state=0, **extra).fit(X, lengths=lengths)
    history = np.concatenate([[model.restarts_[0]["objective"]], model.lower_bound_history_])
    assert np.all(np.diff(model.lower_bound_history_) >= -1e-12 * np.abs(model.lower_bound_history_[1:]))
    assert len(history) > 5


@pytest.mark.parametrize("kind", KINDS)
def test_lower_bound_is_score_without_priors(kind):
    X, lengths = _data(kind)
    extra = {"covars_prior": 0.0, "covars_weight": 0.0} if kind == "gaussian" else {}
    model = _make(kind, random_state=0, tol=1e-6, max_iter=300, **extra).fit(X, lengths=lengths)
    assert model.converged_
    np.testing.assert_allclose(model.lower_bound_, model.score(X, lengths=lengths), rtol=1e-12)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", KINDS)
def test_last_e_step_of_a_run_to_max_iter_computes_the_objective_alone(kind, monkeypatch):
    # the statistics of that E-step are never used: the blocks run the forward pass only, and the objective is
    # the one a full E-step gives, to the last bit (the same compiled code)
    from emkit.hmm import _base

    X, lengths = _data(kind)
    full = _make(kind, max_iter=4, tol=0.0, random_state=0).fit(X, lengths=lengths)
    calls = []
    real = _base.forward_backward
    monkeypatch.setattr(_base, "forward_backward", lambda *a, **k: calls.append(k["objective_only"]) or real(*a, **k))
    short = _make(kind, max_iter=3, tol=0.0, random_state=0).fit(X, lengths=lengths)
    assert calls.count(True) == 1 and calls[-1] is True
    assert short.lower_bound_ == full.lower_bound_history_[2]
    np.testing.assert_array_equal(short.lower_bound_history_, full.lower_bound_history_[:3])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", KINDS)
def test_blocks_reuse_their_work_arrays_across_e_steps_with_the_same_fit(kind, monkeypatch):
    # each block keeps forward-backward's work arrays as the restart's state (no fresh pages at every E-step)
    from emkit.hmm import _base

    X, lengths = _data(kind)
    kept = _make(kind, max_iter=6, tol=0.0, n_init=2, random_state=0).fit(X, lengths=lengths)
    monkeypatch.setattr(_base._BaseHMM, "_initial_state", lambda self, data, params, rs: None)
    fresh = _make(kind, max_iter=6, tol=0.0, n_init=2, random_state=0).fit(X, lengths=lengths)
    for name in ("startprob_", "transmat_", "lower_bound_history_"):
        np.testing.assert_array_equal(getattr(kept, name), getattr(fresh, name))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", KINDS)
def test_best_restart_wins_and_n_jobs_does_not_matter(kind):
    X, lengths = _data(kind)
    one = _make(kind, n_init=4, random_state=3, max_iter=15, n_jobs=1).fit(X, lengths=lengths)
    two = _make(kind, n_init=4, random_state=3, max_iter=15, n_jobs=2).fit(X, lengths=lengths)
    objectives = [r["objective"] for r in one.restarts_]
    assert one.lower_bound_ >= max(objectives)
    assert one.lower_bound_ == max(objectives)
    for name in ["startprob_", "transmat_"]:
        np.testing.assert_allclose(getattr(one, name), getattr(two, name), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(one.lower_bound_history_, two.lower_bound_history_, rtol=1e-10)
    # each restart on its own (same starting point, through warm start) ends at its recorded objective
    assert [r["seed"] for r in one.restarts_] == [r["seed"] for r in two.restarts_]


@pytest.mark.parametrize("kind", KINDS)
def test_recovers_parameters(kind):
    X, lengths = _data(kind)
    n_init = 10 if kind == "categorical" else 3  # random emission starts often end in local optima
    model = _make(kind, n_init=n_init, random_state=0, tol=1e-5, max_iter=500).fit(X, lengths=lengths)
    true_tm = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
    # match states through the emissions (best permutation)
    if kind == "gaussian":
        fitted, truth = model.means_, np.array([[0.0, 0.0], [4.0, 1.0], [-3.0, 4.0]])
    elif kind == "categorical":
        fitted = model.emissionprob_
        truth = np.array([[0.7, 0.2, 0.05, 0.05], [0.1, 0.1, 0.7, 0.1], [0.05, 0.05, 0.1, 0.8]])
    else:
        fitted, truth = model.lambdas_, np.array([[1.0, 5.0], [8.0, 2.0], [15.0, 15.0]])
    order = list(min(itertools.permutations(range(3)), key=lambda p: np.abs(fitted[list(p)] - truth).sum()))
    np.testing.assert_allclose(fitted[order], truth, atol=(0.12 if kind == "categorical" else 0.1) * np.abs(truth).max())
    np.testing.assert_allclose(model.transmat_[np.ix_(order, order)], true_tm, atol=0.08)


def test_structural_zeros_are_kept_and_never_floored():
    X, lengths = _data("gaussian")
    tm = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
    sp = np.array([1.0, 0.0, 0.0])
    model = GaussianHMM(3, startprob_init=sp, transmat_init=tm, init_params="mc", transmat_prior=2.0,
                        startprob_prior=2.0, random_state=0, max_iter=20, tol=1e-3)
    model.fit(X)
    assert model.transmat_[1, 0] == 0 and model.transmat_[2, 0] == 0 and model.transmat_[2, 1] == 0
    assert model.startprob_[1] == 0 and model.startprob_[2] == 0
    np.testing.assert_allclose(model.transmat_.sum(axis=1), 1.0)


def test_hmmlearn_style_start_on_instance():
    X, lengths = _data("gaussian")
    model = GaussianHMM(3, init_params="", max_iter=0)
    model.startprob_ = np.array([0.2, 0.3, 0.5])
    model.transmat_ = np.full((3, 3), 1 / 3)
    model.means_ = np.array([[0.0, 0.0], [4.0, 1.0], [-3.0, 4.0]])
    model.covars_ = np.ones((3, 2))
    model.fit(X, lengths=lengths)
    np.testing.assert_array_equal(model.startprob_, [0.2, 0.3, 0.5])
    ref = hmmlearn.GaussianHMM(3, init_params="")
    ref.startprob_, ref.transmat_, ref.means_, ref.covars_ = model.startprob_, model.transmat_, model.means_, np.ones((3, 2))
    np.testing.assert_allclose(model.score(X, lengths=lengths) * len(X), ref.score(X, lengths), rtol=1e-10)


def test_params_subset_is_not_learned():
    X, lengths = _data("gaussian")
    means = np.array([[0.0, 0.0], [4.0, 1.0], [-3.0, 4.0]])
    model = GaussianHMM(3, params="stc", means_init=means, random_state=0, max_iter=10, tol=1e-3)
    model.fit(X, lengths=lengths)
    np.testing.assert_array_equal(model.means_, means)
    model2 = GaussianHMM(3, params=("startprob_", "transmat", "covars_"), means_init=means, random_state=0,
                         max_iter=10, tol=1e-3).fit(X, lengths=lengths)
    np.testing.assert_allclose(model2.covars_, model.covars_)
    with pytest.raises(ValueError, match="unknown parameter"):
        GaussianHMM(3, params=("weights",)).fit(X)


@pytest.mark.parametrize("kind", KINDS)
def test_empty_state_keeps_finite_parameters(kind):
    X, lengths = _data(kind)
    K = 3
    sp = np.array([0.5, 0.5, 0.0])
    tm = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.3, 0.3, 0.4]])  # state 2 unreachable
    init = {"startprob_init": sp, "transmat_init": tm, "init_params": ""}
    if kind == "gaussian":
        init.update(means_init=np.array([[0.0, 0.0], [4.0, 1.0], [50.0, 50.0]]), covars_init=np.ones((K, 2)),
                    covars_prior=0.0, covars_weight=0.0)
    elif kind == "categorical":
        init.update(emissionprob_init=np.full((K, 4), 0.25))
    else:
        init.update(lambdas_init=np.array([[1.0, 5.0], [8.0, 2.0], [0.5, 0.5]]))
    model = _make(kind, max_iter=5, tol=0.0, **init)
    with pytest.warns(ConvergenceWarning):
        model.fit(X, lengths=lengths)
    for name in model._fitted_params():
        assert np.all(np.isfinite(getattr(model, name))), name
    np.testing.assert_allclose(model.transmat_.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.transmat_[2], tm[2])  # no mass: row kept


# ---------------------------------------------------------------------------------------- inference API
def test_score_samples_filter_forecast_decode():
    X, lengths = _data("gaussian")
    model = GaussianHMM(3, random_state=0, tol=1e-3).fit(X, lengths=lengths)
    log_density = model.score_samples(X, lengths=lengths)
    assert log_density.shape == (len(X),)
    np.testing.assert_allclose(log_density.mean(), model.score(X, lengths=lengths))
    ref = hmmlearn.GaussianHMM(3, init_params="")
    ref.startprob_, ref.transmat_, ref.means_, ref.covars_ = model.startprob_, model.transmat_, model.means_, model.covars_
    np.testing.assert_allclose(log_density.sum(), ref.score(X, lengths), rtol=1e-10)
    # filtered: the last row of each sequence equals the smoothed posterior; earlier rows use only the past
    filtered = model.filter(X, lengths=lengths)
    posteriors = model.predict_proba(X, lengths=lengths)
    ends = np.cumsum(lengths) - 1
    np.testing.assert_allclose(filtered[ends], posteriors[ends], atol=1e-12)
    np.testing.assert_allclose(model.filter(X[:30])[:30], filtered[:30], atol=1e-12)
    # forecast: one step ahead of each sequence's end
    state_proba, expected = model.forecast(X, n_steps=3, lengths=lengths)
    assert state_proba.shape == (len(lengths), 3, 3) and expected.shape == (len(lengths), 3, 2)
    np.testing.assert_allclose(state_proba[:, 0], filtered[ends] @ model.transmat_)
    np.testing.assert_allclose(expected[:, 1], state_proba[:, 1] @ model.means_)
    # MAP decoding is the argmax of the posteriors; viterbi path agrees with predict
    _, map_states = model.decode(X, lengths=lengths, algorithm="map")
    np.testing.assert_array_equal(map_states, posteriors.argmax(axis=1))
    np.testing.assert_array_equal(model.decode(X, lengths=lengths)[1], model.predict(X, lengths=lengths))
    with pytest.raises(ValueError, match="algorithm"):
        model.decode(X, algorithm="beam")


@pytest.mark.parametrize("kind", KINDS)
def test_sample_shapes_and_random_state(kind):
    X, lengths = _data(kind)
    model = _make(kind, random_state=0, tol=1e-2).fit(X, lengths=lengths)
    Xs, states = model.sample(200, random_state=1)
    assert Xs.shape == (200, X.shape[1]) and states.shape == (200,)
    Xs2, states2 = model.sample(200, random_state=1)
    np.testing.assert_array_equal(Xs, Xs2)
    assert not np.array_equal(model.sample(200, random_state=2)[1], states)
    assert np.isfinite(model.score(Xs))


def test_bic_selects_the_true_number_of_states():
    X, lengths = _data("gaussian")
    bics = [GaussianHMM(k, random_state=0, n_init=2, tol=1e-3).fit(X, lengths=lengths).bic(X, lengths=lengths)
            for k in (1, 2, 3, 4)]
    assert int(np.argmin(bics)) == 2
    model = GaussianHMM(3, random_state=0, tol=1e-3).fit(X, lengths=lengths)
    n_params = 2 + 6 + 6 + 6
    total = model.score(X, lengths=lengths) * len(X)
    np.testing.assert_allclose(model.aic(X, lengths=lengths), -2 * total + 2 * n_params)
    np.testing.assert_allclose(model.bic(X, lengths=lengths), -2 * total + n_params * np.log(len(X)))


def test_categorical_n_features_is_never_overwritten():
    X = np.array([[0], [1], [2], [1]])
    model = CategoricalHMM(2, n_features=5, random_state=0).fit(X)
    assert model.n_features == 5 and model.n_symbols_ == 5 and model.emissionprob_.shape == (2, 5)
    model = CategoricalHMM(2, random_state=0).fit(X)
    assert model.n_features is None and model.n_symbols_ == 3
    assert model.predict(np.array([[0.0], [2.0]])).shape == (2,)  # integral floats are fine
    with pytest.raises(ValueError, match="Largest symbol is 3"):
        model.predict(np.array([[3]]))


# ---------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(  # NaN means missing in GaussianHMM (tests/test_missing_values.py)
    "kind, bad", [(kind, bad) for kind in KINDS for bad in (np.nan, np.inf) if (kind, np.isnan(bad)) != ("gaussian", True)]
)
def test_nan_inf_rejected(kind, bad):
    X, lengths = _data(kind)
    X = X.astype(float)
    X[5, 0] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        _make(kind).fit(X, lengths=lengths)


@pytest.mark.parametrize("lengths, match", [([10, 10], "sum to 20"), ([0, 1000], "positive"),
                                            ([500.5, 499.5], "integers")])
def test_bad_lengths(lengths, match):
    X, _ = _data("gaussian")
    with pytest.raises(ValueError, match=match):
        GaussianHMM(2).fit(X, lengths=lengths)


def test_positional_lengths_caught_as_y():
    X, lengths = _data("gaussian")
    with pytest.raises(ValueError, match="lengths="):
        GaussianHMM(2).fit(X, lengths)
    GaussianHMM(2, max_iter=2, tol=1).fit(X, np.zeros(len(X)))  # a real y is ignored


@pytest.mark.parametrize("X, match", [
    (np.array([[0], [-1], [2]]), "Negative values"),
    (np.array([[0], [1.5], [2]]), "integer"),
    (np.array([[0, 1], [1, 1]]), "one column"),
])
def test_bad_categorical_symbols(X, match):
    with pytest.raises(ValueError, match=match):
        CategoricalHMM(1).fit(X)


def test_negative_counts_rejected():
    with pytest.raises(ValueError, match="Negative values"):
        PoissonHMM(1).fit(np.array([[1, 2], [3, -1]]))


@pytest.mark.parametrize("name, value, match", [
    ("transmat_init", [[0.5, 0.4], [0.5, 0.5]], "rows must each sum to 1"),
    ("transmat_init", [[1.5, -0.5], [0.5, 0.5]], "non-negative"),
    ("startprob_init", [0.5, 0.6], "must sum to 1"),
    ("transmat_init", np.eye(3), "shape"),
])
def test_bad_user_parameters(name, value, match):
    X, _ = _data("gaussian")
    with pytest.raises(ValueError, match=match):
        GaussianHMM(2, **{name: value}).fit(X)


def test_bad_user_parameters_set_hmmlearn_style():
    X, _ = _data("gaussian")
    model = GaussianHMM(2, init_params="mc")
    model.startprob_ = np.array([0.5, 0.5])
    model.transmat_ = np.array([[0.9, 0.2], [0.5, 0.5]])
    with pytest.raises(ValueError, match="transmat_ rows must each sum to 1"):
        model.fit(X)
    with pytest.raises(ValueError, match="emissionprob_init rows"):
        CategoricalHMM(2, emissionprob_init=[[0.5, 0.4], [0.5, 0.5]]).fit(np.array([[0], [1], [1]]))


def test_input_not_modified():
    X, lengths = _data("gaussian")
    X_copy = X.copy()
    GaussianHMM(2, max_iter=3, tol=1).fit(X, lengths=lengths)
    np.testing.assert_array_equal(X, X_copy)


# ---------------------------------------------------------------------------------------- scikit-learn
def test_grid_search_with_sequence_ids_never_cuts_sequences():
    from sklearn import config_context
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, Z, lengths = _sampled_gaussian(n_sequences=12, length=40)
    sequence_ids = np.repeat(np.arange(12), 40)
    seen = []

    class Recording(GaussianHMM):
        def fit(self, X, y=None, lengths=None, sequence_ids=None):
            seen.append(np.unique(sequence_ids, return_counts=True)[1])
            return super().fit(X, y, lengths=lengths, sequence_ids=sequence_ids)

    with config_context(enable_metadata_routing=True):
        hmm = Recording(random_state=0, tol=1e-3).set_fit_request(sequence_ids=True).set_score_request(
            sequence_ids=True
        )
        pipe = make_pipeline(StandardScaler(), hmm)
        search = GridSearchCV(pipe, {"recording__n_components": [1, 2, 3]}, cv=GroupKFold(n_splits=3))
        search.fit(X, groups=sequence_ids, sequence_ids=sequence_ids)
    assert search.best_params_ == {"recording__n_components": 3}
    # every fit saw whole sequences of 40 steps
    assert all(np.all(counts == 40) for counts in seen)
    assert len(seen) == 3 * 3 + 1


def test_categorical_counts_are_the_posteriors_summed_per_symbol():
    from emkit._densities import categorical

    rng = np.random.RandomState(0)
    symbols = rng.randint(0, 5, size=300)
    posteriors = rng.dirichlet(np.ones(3), size=300)
    expected = np.zeros((3, 7))
    for t, m in enumerate(symbols):  # in the order of t, as the implementation adds them
        expected[:, m] += posteriors[t]
    np.testing.assert_array_equal(categorical.accumulate(symbols, posteriors, 7).counts, expected)
    np.testing.assert_array_equal(categorical._count_symbols_compiled(symbols, posteriors, 7), expected)
    small = np.zeros((3, 7))  # at most 200 rows: the numpy path, the same additions in the same order
    for t, m in enumerate(symbols[:150]):
        small[:, m] += posteriors[t]
    np.testing.assert_array_equal(categorical.accumulate(symbols[:150], posteriors[:150], 7).counts, small)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_n_init_at_least_as_good_as_each_single_restart_refitted():
    X, lengths = _data("gaussian")
    model = GaussianHMM(3, n_init=4, random_state=5, max_iter=30).fit(X, lengths=lengths)
    data = model._validate_fit_data(X, lengths=lengths)
    for record in model.restarts_:
        start = model._initialize(data, np.random.RandomState(record["seed"]))
        single = GaussianHMM(3, max_iter=30, init_params="", startprob_init=start["startprob_"],
                             transmat_init=start["transmat_"], means_init=start["means_"],
                             covars_init=start["covars_"]).fit(X, lengths=lengths)
        np.testing.assert_allclose(single.lower_bound_, record["objective"], rtol=1e-10)
        assert model.lower_bound_ >= single.lower_bound_


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", KINDS)
def test_warm_start_continues(kind):
    X, lengths = _data(kind)
    model = _make(kind, max_iter=3, tol=0.0, random_state=0, warm_start=True).fit(X, lengths=lengths)
    first = model.lower_bound_
    cold = _make(kind, max_iter=6, tol=0.0, random_state=0).fit(X, lengths=lengths)
    model.fit(X, lengths=lengths)
    assert model.lower_bound_ >= first
    np.testing.assert_allclose(model.lower_bound_, cold.lower_bound_, rtol=1e-10)


def test_bad_priors():
    X, _ = _data("gaussian")
    with pytest.raises(ValueError, match="positive semi-definite"):
        GaussianHMM(2, covariance_type="full", covars_prior=-np.eye(2)).fit(X)
    with pytest.raises(ValueError, match="covars_prior"):
        GaussianHMM(2, covariance_type="diag", covars_prior=[1.0, 2.0, 3.0]).fit(X)
    with pytest.raises(ValueError, match="transmat_prior"):
        GaussianHMM(2, transmat_prior=np.ones((3, 3))).fit(X)
    with pytest.raises(ValueError, match="lambdas_weight"):
        PoissonHMM(2, lambdas_weight=[1.0, 2.0, 3.0]).fit(np.ones((10, 2)))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_default_priors_match_hmmlearn_defaults(covariance_type):
    rng = np.random.RandomState(3)
    X, lengths = _gaussian_data("short", rng)
    sp, tm, means, covars = _gaussian_start(covariance_type, rng, X=X)
    ref = hmmlearn.GaussianHMM(3, covariance_type=covariance_type, n_iter=N_ITER, tol=-np.inf, init_params="")
    ref.startprob_, ref.transmat_, ref.means_, ref.covars_ = sp, tm, means, covars
    ref.fit(X, lengths)
    ours = GaussianHMM(3, covariance_type=covariance_type, max_iter=N_ITER, tol=0.0, init_params="",
                       startprob_init=sp, transmat_init=tm, means_init=means, covars_init=covars)
    ours.fit(X, lengths=lengths)
    np.testing.assert_allclose(ours.score(X, lengths=lengths) * len(X), ref.score(X, lengths), rtol=1e-6)
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-6)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_categorical_estimator_properties_on_one_column_of_symbols():
    """What the sklearn checks cannot test for CategoricalHMM (they feed it several columns), on valid input."""
    import pickle

    from sklearn.base import clone

    X, lengths = _data("categorical")
    model = CategoricalHMM(3, max_iter=10, n_init=2, random_state=0)
    before = clone(model).get_params()
    assert model.fit(X, lengths=lengths) is model  # fit returns self
    after = model.get_params()
    assert before.keys() == after.keys() and all(  # constructor parameters untouched
        np.array_equal(before[k], after[k]) if isinstance(before[k], np.ndarray) else before[k] == after[k]
        for k in before
    )
    assert model.n_features_in_ == 1
    again = clone(model).fit(X, lengths=lengths)  # idempotent: same seed, same fit
    np.testing.assert_array_equal(again.emissionprob_, model.emissionprob_)
    restored = pickle.loads(pickle.dumps(model))  # pickling keeps the fitted model
    np.testing.assert_array_equal(restored.predict(X, lengths=lengths), model.predict(X, lengths=lengths))
    assert restored.score(X, lengths=lengths) == model.score(X, lengths=lengths)
    readonly = X.copy()
    readonly.setflags(write=False)  # read-only input is fine, and never modified
    np.testing.assert_array_equal(model.predict_proba(readonly, lengths=lengths),
                                  model.predict_proba(X, lengths=lengths))
    for bad in (np.array([[0.0], [np.nan], [1.0]]), np.array([[0.0], [np.inf], [1.0]])):
        with pytest.raises(ValueError):
            CategoricalHMM(2).fit(bad)
    with pytest.raises(ValueError, match="features"):
        model.predict(np.zeros((5, 2), dtype=int))
