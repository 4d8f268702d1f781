"""Latent Dirichlet Allocation fitted by variational EM on emkit's engine."""

import math
import warnings
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from joblib import effective_n_jobs
from scipy.special import digamma, gammaln
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils.validation import check_non_negative

from ._inference.lda import exp_dirichlet_expectation, expected_counts, update_documents
from ._validation import Interval, StrOptions, check_array_param, check_is_fitted, validate_data
from .base import EMMixin

__all__ = ["LatentDirichletAllocation"]


class _LDAData(NamedTuple):
    X: sp.csr_matrix
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    n_units: int  # documents
    n_words: float
    doc_topic_prior: float
    topic_word_prior: float
    n_threads: int


def _dirichlet_expectation_rows(a):
    """``E[log x]`` row-wise for ``x ~ Dirichlet(a[i])`` (``-inf`` where ``a`` is 0)."""
    with np.errstate(divide="ignore"):
        return digamma(a) - digamma(a.sum(axis=1, keepdims=True))


def _topic_word_params(components, n_batch_iter):
    """Parameter dict for a topic-word matrix ``lambda`` (``components_``)."""
    components = np.ascontiguousarray(components)
    elog = _dirichlet_expectation_rows(components)
    return {
        "components_": components,
        "exp_dirichlet_component_": np.exp(elog),
        "n_batch_iter_": int(n_batch_iter),
        "_elog_component": elog,
    }


def _dirichlet_term(prior, params, elog):
    """``E[log p(x | prior)] - E[log q(x | params)]`` summed over rows (symmetric Dirichlet prior)."""
    n_rows, dim = params.shape
    diff = prior - params
    with np.errstate(invalid="ignore"):
        cross = np.where(diff == 0.0, 0.0, diff * elog)
    return float(
        np.sum(cross)
        + np.sum(gammaln(params))
        - params.size * gammaln(prior)
        + n_rows * gammaln(prior * dim)
        - np.sum(gammaln(params.sum(axis=1)))
    )


def _perplexity(objective_per_document, data):
    """scikit-learn's perplexity ``exp(-total bound / n_words)`` from the engine's per-document objective."""
    return math.exp(min(-objective_per_document * data.n_units / data.n_words, 700.0))


class LatentDirichletAllocation(EMMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Latent Dirichlet Allocation fitted by variational EM.

    A drop-in replacement for :class:`sklearn.decomposition.LatentDirichletAllocation`
    (same constructor names and defaults, same fitted attributes and methods)
    that runs on emkit's EM engine: restarts (``n_init``) in parallel,
    ``lower_bound_history_``, ``components_init``, ``warm_start``. The
    E-step is a compiled per-document kernel.

    The E-step infers each document's variational Dirichlet parameters
    ``gamma`` (its topic mixture) by coordinate ascent, every time from
    scikit-learn's random start ``Gamma(100, 0.01)``; the M-step sets the
    topic-word parameters ``lambda = topic_word_prior + sum_d n_dw phi_dwk``
    (batch) or moves them towards that value one mini-batch at a time with
    step ``(learning_offset + n_batch_iter_) ** -learning_decay`` (online).
    Given the same random starts, both modes reproduce scikit-learn's fits
    (see the user guide). In batch mode a document's previous ``gamma`` is
    kept only where the restarts would lower the ELBO, which therefore never
    decreases.

    Parameters
    ----------
    n_components : int, default=10
        Number of topics.
    doc_topic_prior : float, default=None
        Prior ``alpha`` of the document-topic distributions; None means
        ``1 / n_components``.
    topic_word_prior : float, default=None
        Prior ``eta`` of the topic-word distributions; None means
        ``1 / n_components``.
    learning_method : {'batch', 'online'}, default='batch'
        'batch': every iteration uses all documents (the ELBO never decreases).
        'online': every iteration is a pass of mini-batch updates.
    learning_decay : float, default=0.7
        Exponent of the online step size (``kappa``), in (0.5, 1] for
        asymptotic convergence.
    learning_offset : float, default=10.0
        Online step-size offset (``tau_0``), at least 1.
    max_iter : int, default=10
        Number of passes over the data (M-steps).
    batch_size : int, default=128
        Documents per mini-batch (online learning and :meth:`partial_fit`).
    evaluate_every : int, default=-1
        When positive, the perplexity on the training data is checked every
        ``evaluate_every`` iterations and fitting stops once it changes by
        less than ``perp_tol``; a fit that uses up ``max_iter`` passes instead
        raises a ConvergenceWarning. The perplexity is that of emkit's
        objective (no extra E-step is run for it).
    total_samples : float, default=1e6
        Total number of documents, used by :meth:`partial_fit` only.
    perp_tol : float, default=0.1
        Perplexity tolerance of the ``evaluate_every`` rule.
    mean_change_tol : float, default=1e-3
        A document's updates stop when the mean absolute change of its
        ``gamma`` falls below this.
    max_doc_update_iter : int, default=100
        Maximum number of updates of one document per E-step.
    n_jobs : int, default=None
        With ``n_init > 1``: restarts run in parallel processes. Otherwise:
        the E-step splits the documents over this many threads. The results
        do not depend on ``n_jobs``.
    verbose : int, default=0
        Verbosity of the engine.
    random_state : int, RandomState instance or None, default=None
        Seeds the restarts' random topic-word matrices.
    n_init : int, default=1
        Number of restarts; the one with the highest final ELBO is kept.
    components_init : array-like of shape (n_components, n_features), default=None
        Starting topic-word matrix ``lambda`` (positive). When given, every
        restart starts from it. None means scikit-learn's random start,
        ``Gamma(100, 0.01)`` entries.
    warm_start : bool, default=False
        Start from the fitted ``components_`` (one restart).
    keep_params_history : bool, default=False
        Keep the parameters after every iteration in ``params_history_``.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        Variational topic-word parameters ``lambda``; normalise each row for the
        topics' word distributions.
    exp_dirichlet_component_ : ndarray of shape (n_components, n_features)
        ``exp(E[log beta])`` at ``components_``.
    n_batch_iter_ : int
        Number of topic-word updates made plus one (scikit-learn's count).
    bound_ : float
        Perplexity of the training data at the returned parameters,
        ``exp(-lower_bound_ * n_documents / n_words)``.
    doc_topic_prior_ : float
        The prior ``alpha`` used.
    topic_word_prior_ : float
        The prior ``eta`` used.
    n_iter_ : int
        Number of passes (M-steps) made; :meth:`partial_fit` counts its calls
        (continuing the count of an earlier fit).
    converged_ : bool
        True only when the ``perp_tol`` rule (``evaluate_every > 0``) stopped
        the fit, at the latest at the last pass. False when the fit used up
        ``max_iter`` passes without meeting it (with a ConvergenceWarning) and
        always when ``evaluate_every <= 0`` (no rule, no warning, as
        scikit-learn), and after :meth:`partial_fit`.
    lower_bound_ : float
        ELBO per document of the returned parameters. Batch: with each
        document's ``gamma`` from the last E-step. Online: with each
        document's ``gamma`` from its mini-batch in the last pass (no
        further updates), so a little below what re-inferring the documents
        would give. After :meth:`partial_fit`: that call's objective.
    lower_bound_history_ : ndarray, one entry per iteration
        ELBO per document after each pass (never decreasing in batch mode;
        online updates are stochastic and may lower it). :meth:`partial_fit`
        appends one entry per call: the ELBO of its chunk at the updated
        topics (documents at their mini-batch ``gamma``), scaled to
        ``total_samples`` documents as scikit-learn's sub-sampled bound and
        divided by ``total_samples``.
    restarts_ : list of dict
        One record per restart (seed, objective, n_iter, converged, error);
        ``converged`` as ``converged_`` (for a restart other than the winner,
        True when ``perp_tol`` stopped it before ``max_iter``).
    n_features_in_ : int
        Number of words in the vocabulary.
    feature_names_in_ : ndarray of str, one entry per word
        Vocabulary, when X had string column names.

    See Also
    --------
    sklearn.decomposition.LatentDirichletAllocation : The estimator this replaces.

    Examples
    --------
    >>> import numpy as np
    >>> from emkit.lda import LatentDirichletAllocation
    >>> rng = np.random.RandomState(0)
    >>> topics = np.array([[8, 8, 8, 1, 1, 1], [1, 1, 1, 8, 8, 8]]) / 27
    >>> X = np.vstack([rng.multinomial(40, topics[i % 2]) for i in range(20)])
    >>> lda = LatentDirichletAllocation(n_components=2, max_iter=30, random_state=0).fit(X)
    >>> sorted(sorted(topic) for topic in lda.top_words(["a", "b", "c", "d", "e", "f"], n_top=3))
    [['a', 'b', 'c'], ['d', 'e', 'f']]
    >>> mixtures = lda.transform(X[:4])
    >>> mixtures.shape, bool(np.allclose(mixtures.sum(axis=1), 1))
    ((4, 2), True)
    >>> bool(np.all(np.diff(lda.lower_bound_history_) >= 0))
    True
    """

    # fit's E-steps skip negligible topics between full updates (see emkit._inference.lda);
    # transform, score and perplexity run scikit-learn's updates exactly
    _prune = True

    _parameter_constraints: dict = {
        **{k: v for k, v in EMMixin._em_parameter_constraints.items() if k not in ("tol", "verbose_interval")},
        "n_components": [Interval(Integral, 0, None, closed="neither")],
        "doc_topic_prior": [None, Interval(Real, 0, 1, closed="both")],
        "topic_word_prior": [None, Interval(Real, 0, 1, closed="both")],
        "learning_method": [StrOptions({"batch", "online"})],
        "learning_decay": [Interval(Real, 0, 1, closed="both")],
        "learning_offset": [Interval(Real, 1.0, None, closed="left")],
        "batch_size": [Interval(Integral, 0, None, closed="neither")],
        "evaluate_every": [Interval(Integral, None, None, closed="neither")],
        "total_samples": [Interval(Real, 0, None, closed="neither")],
        "perp_tol": [Interval(Real, 0, None, closed="left")],
        "mean_change_tol": [Interval(Real, 0, None, closed="left")],
        "max_doc_update_iter": [Interval(Integral, 0, None, closed="left")],
        "components_init": ["array-like", None],
    }

    def __init__(
        self,
        n_components=10,
        *,
        doc_topic_prior=None,
        topic_word_prior=None,
        learning_method="batch",
        learning_decay=0.7,
        learning_offset=10.0,
        max_iter=10,
        batch_size=128,
        evaluate_every=-1,
        total_samples=1e6,
        perp_tol=1e-1,
        mean_change_tol=1e-3,
        max_doc_update_iter=100,
        n_jobs=None,
        verbose=0,
        random_state=None,
        n_init=1,
        components_init=None,
        warm_start=False,
        keep_params_history=False,
    ):
        self.n_components = n_components
        self.doc_topic_prior = doc_topic_prior
        self.topic_word_prior = topic_word_prior
        self.learning_method = learning_method
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.evaluate_every = evaluate_every
        self.total_samples = total_samples
        self.perp_tol = perp_tol
        self.mean_change_tol = mean_change_tol
        self.max_doc_update_iter = max_doc_update_iter
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.random_state = random_state
        self.n_init = n_init
        self.components_init = components_init
        self.warm_start = warm_start
        self.keep_params_history = keep_params_history

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags

    # ------------------------------------------------------------- validation
    def _check_counts(self, X, reset, whom):
        """Validate a document-term count matrix and return it as float64 CSR."""
        shape = getattr(X, "shape", None)
        if shape is not None and len(shape) == 2 and shape[1] == 0:
            raise ValueError(
                f"{whom}: X has an empty vocabulary: 0 feature(s) (shape={tuple(shape)}) while a minimum "
                "of 1 is required (LDA needs at least one word column)."
            )
        X = validate_data(self, X, reset=reset, accept_sparse="csr", dtype=np.float64)
        check_non_negative(X, whom)  # "Negative values in data passed to ..."
        if not sp.issparse(X):
            X = sp.csr_matrix(X)
        return X

    def _priors(self):
        alpha = 1.0 / self.n_components if self.doc_topic_prior is None else float(self.doc_topic_prior)
        eta = 1.0 / self.n_components if self.topic_word_prior is None else float(self.topic_word_prior)
        return alpha, eta

    def _make_data(self, X, n_threads):
        alpha, eta = self._priors()
        return _LDAData(
            X=X,
            indptr=np.asarray(X.indptr, dtype=np.int64),
            indices=np.asarray(X.indices, dtype=np.int64),
            data=np.asarray(X.data, dtype=np.float64),
            n_units=X.shape[0],
            n_words=float(X.data.sum()),
            doc_topic_prior=alpha,
            topic_word_prior=eta,
            n_threads=n_threads,
        )

    def _validate_fit_data(self, X, y=None):
        X = self._check_counts(X, reset=True, whom=f"{type(self).__name__}.fit")
        if X.data.sum() <= 0:
            raise ValueError(f"{type(self).__name__}.fit: X has no words (every count is zero).")
        warm = self.warm_start and self._is_fitted_for_warm_start()
        n_threads = effective_n_jobs(self.n_jobs) if (self.n_init == 1 or warm) else 1
        return self._make_data(X, n_threads)

    def _starting_components(self, n_features, random_state):
        if self.components_init is not None:
            components = check_array_param(self.components_init, "components_init", (self.n_components, n_features))
            if np.any(components <= 0):
                raise ValueError("components_init must be strictly positive (it is a Dirichlet parameter).")
            return components
        return random_state.gamma(100.0, 0.01, (self.n_components, n_features))

    # ------------------------------------------------------------------ hooks
    def _initialize(self, data, random_state):
        params = _topic_word_params(self._starting_components(data.X.shape[1], random_state), 1)
        params["_seed"] = int(random_state.randint(np.iinfo(np.int32).max))
        return params

    @staticmethod
    def _fresh_starts(seed, n_batch_iter):
        """The stream of scikit-learn's random document starts, ``Gamma(100, 0.01)`` draws.

        Keyed by the restart's seed and the topic update count: every batch
        E-step, and every online pass, draws from its own stream.
        """
        return np.random.default_rng([seed, n_batch_iter])

    def _e_step(self, data, params):
        shape = (data.n_units, params["components_"].shape[0])
        seed = params.get("_seed", 0)
        previous = params.get("_doc_topic")
        if self.learning_method == "online":
            # the ELBO of the topics after the pass, each document at the gamma its mini-batch
            # found (no updates); before the first pass, at gamma = 1
            if previous is None:
                previous = np.ones(shape)
            return self._e_step_arrays(data, params, previous, max_updates=0, sstats=False)
        # batch: every document restarts from scikit-learn's random values; the previous
        # iteration's solutions are only the fallback that keeps the ELBO from decreasing
        fresh = self._fresh_starts(seed, params["n_batch_iter_"]).gamma(100.0, 0.01, shape)
        if previous is None:
            return self._e_step_arrays(data, params, fresh)
        floor = params["_previous_objective"] - self._log_prior(params)
        return self._e_step_arrays(data, params, previous, fresh_start=fresh, floor=floor)

    def _e_step_arrays(
        self, data, params, doc_topic, rows=None, fresh_start=None, floor=None, prune=None, max_updates=None,
        sstats=True, elbo=True,
    ):
        """E-step over all documents (or the row range ``rows``); returns (stats, total ELBO).

        ``params`` needs ``components_`` and ``exp_dirichlet_component_``.
        ``max_updates`` (default ``max_doc_update_iter``) caps the updates per
        document; 0 evaluates the ELBO at ``doc_topic``. ``sstats=False``
        skips the expected topic-word counts, ``elbo=False`` the ELBO (the
        total is then 0).
        """
        if prune is None:
            prune = self._prune
        if max_updates is None:
            max_updates = self.max_doc_update_iter
        indptr, indices, values = data.indptr, data.indices, data.data
        if rows is not None:
            first, last = rows
            lo, hi = indptr[first], indptr[last]
            indptr = indptr[first : last + 1] - lo
            indices, values = indices[lo:hi], values[lo:hi]
        exp_beta = params["exp_dirichlet_component_"]
        result = update_documents(
            indptr,
            indices,
            values,
            exp_beta.T,
            params["components_"],
            data.doc_topic_prior,
            doc_topic,
            max_updates,
            self.mean_change_tol,
            fresh_start=fresh_start,
            floor=floor,
            prune=prune,
            elbo=elbo,
            n_threads=data.n_threads,
        )
        total = float(np.sum(result.elbo))
        stats = {"doc_topic": result.doc_topic, "n_updates": result.n_updates, "elbo": total}
        if sstats:
            stats["sstats"] = expected_counts(indptr, indices, result.ratio, result.exp_doc_topic, exp_beta.T)
        return stats, total

    def _log_prior(self, params):
        """The topic-word term ``E[log p(beta | eta)] - E[log q(beta | lambda)]`` of the ELBO."""
        _, eta = self._priors()
        cached = params.get("_topic_term")
        if cached is not None and cached[0] == eta:
            return cached[1]
        elog = params.get("_elog_component")
        if elog is None:
            elog = _dirichlet_expectation_rows(params["components_"])
        return _dirichlet_term(eta, params["components_"], elog)

    def _m_step(self, data, stats, params):
        """Batch: ``lambda = eta + sum_d n_dw phi_dwk``; online: one pass of mini-batch updates."""
        seed = params.get("_seed", 0)
        if self.learning_method == "batch":
            new = _topic_word_params(data.topic_word_prior + stats["sstats"], params["n_batch_iter_"] + 1)
            # the topic-word term is asked for twice per iteration (floor, objective): compute it once
            new["_topic_term"] = (data.topic_word_prior, self._log_prior(new))
            new["_doc_topic"] = stats["doc_topic"]
            new["_seed"] = seed
            new["_previous_objective"] = stats["elbo"] + self._log_prior(params)
            return new
        new, doc_topic = self._online_pass(data, params, total_samples=data.n_units, seed=seed)
        new["_doc_topic"] = doc_topic
        new["_seed"] = seed
        # stochastic updates carry no promise that the ELBO goes up: a lower value is no sign of trouble
        new["_objective_slack"] = math.inf
        return new

    def _online_pass(self, data, params, total_samples, seed):
        """scikit-learn's online updates over the documents in order, one mini-batch at a time.

        Each mini-batch's documents start from fresh random values (as in
        scikit-learn); the topics then move towards what the mini-batch
        suggests, ``lambda <- (1 - rho) lambda + rho (eta + total_samples /
        batch size * sstats)`` with ``rho = (learning_offset + n_batch_iter_)
        ** -learning_decay``. Returns the parameters after the pass and each
        document's ``gamma`` from its mini-batch.
        """
        components = params["components_"].copy()
        current = {"components_": components, "exp_dirichlet_component_": params["exp_dirichlet_component_"]}
        n_batch_iter = params["n_batch_iter_"]
        doc_topic = np.empty((data.n_units, components.shape[0]))
        starts = self._fresh_starts(seed, n_batch_iter)  # one stream per pass, drawn mini-batch by mini-batch
        for batch in gen_batches(data.n_units, self.batch_size):
            first, last = batch.start, batch.stop
            start = starts.gamma(100.0, 0.01, (last - first, components.shape[0]))
            stats, _ = self._e_step_arrays(data, current, start, rows=(first, last), elbo=False)
            doc_topic[first:last] = stats["doc_topic"]
            weight = (self.learning_offset + n_batch_iter) ** (-self.learning_decay)
            components *= 1.0 - weight
            components += weight * data.topic_word_prior
            components += (weight * total_samples / (last - first)) * stats["sstats"]
            n_batch_iter += 1
            # word-major, the layout the kernel reads (the K x V view costs no copy)
            current["exp_dirichlet_component_"] = exp_dirichlet_expectation(components, word_major=True).T
        return _topic_word_params(components, n_batch_iter), doc_topic

    def _perp_tol_met(self, data, history):
        """scikit-learn's ``perp_tol`` rule at the last entry of ``history`` (False when ``evaluate_every <= 0``).

        Every ``evaluate_every`` iterations the perplexity
        ``exp(-total ELBO / n_words)`` of the current parameters is compared with
        the one ``evaluate_every`` iterations earlier (the first evaluation only
        records it, as scikit-learn does).
        """
        iteration = len(history)
        every = self.evaluate_every
        if every <= 0 or iteration % every != 0 or iteration <= every:
            return False
        now = _perplexity(history[-1], data)
        before = _perplexity(history[-1 - every], data)
        return abs(before - now) < self.perp_tol

    def _is_converged(self, data, history, change):
        """Stop when the ``perp_tol`` rule is met, or after ``max_iter`` passes.

        The engine records a stop as "converged"; ``_after_fit`` then sets
        ``converged_`` to whether the ``perp_tol`` rule stopped the fit (see
        ``_convergence``), so that a fit which used up ``max_iter`` is not
        called converged. (Returning False at ``max_iter`` would make today's
        engine warn even when ``evaluate_every <= 0``, and name a ``tol`` this
        estimator does not have.)
        """
        return self._perp_tol_met(data, history) or len(history) >= self.max_iter

    def _convergence(self, data):
        """Set ``converged_`` (and the restarts' records) to whether ``perp_tol`` stopped the fit; warn if not.

        The winner's rule is checked on its history. Another restart counts as
        converged when it stopped before ``max_iter`` (only the rule stops a fit
        early); its history is not kept, so a rule met exactly at its last pass
        is not seen.
        """
        self.converged_ = self._perp_tol_met(data, self.lower_bound_history_)
        winner = None
        for record in self.restarts_:
            if record["error"] is None:
                record["converged"] = record["n_iter"] < self.max_iter and self.evaluate_every > 0
                if winner is None and record["objective"] == self.lower_bound_:
                    winner = record
        if winner is not None:
            winner["converged"] = self.converged_
        if self.evaluate_every > 0 and self.max_iter > 0 and not self.converged_:
            warnings.warn(
                f"{type(self).__name__}: the perplexity did not settle within perp_tol={self.perp_tol} in "
                f"max_iter={self.max_iter} passes (evaluated every {self.evaluate_every}). Increase max_iter "
                "or perp_tol.",
                ConvergenceWarning,
                stacklevel=5,
            )

    def _fitted_params(self):
        return _topic_word_params(self.components_.copy(), self.n_batch_iter_)

    def _after_fit(self, data, params):
        self.doc_topic_prior_ = data.doc_topic_prior
        self.topic_word_prior_ = data.topic_word_prior
        self.bound_ = _perplexity(self.lower_bound_, data)
        self._convergence(data)

    # ------------------------------------------------------------- public API
    def fit(self, X, y=None):
        """Learn the topics of the document-term matrix X by variational EM.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Document-term counts (non-negative).
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : LatentDirichletAllocation
            The fitted estimator.
        """
        self._validate_params()
        self._fit_em(self._validate_fit_data(X, y))
        return self

    def partial_fit(self, X, y=None):
        """One pass of online (mini-batch) updates over X.

        The first call starts from ``components_init`` or a random matrix;
        later calls continue from ``components_``. ``total_samples`` is the
        size of the whole corpus. Each call appends its objective to
        ``lower_bound_history_`` (see the class docstring).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Document-term counts (non-negative).
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : LatentDirichletAllocation
            The updated estimator.
        """
        self._validate_params()
        first_time = not hasattr(self, "components_")
        X = self._check_counts(X, reset=first_time, whom=f"{type(self).__name__}.partial_fit")
        data = self._make_data(X, effective_n_jobs(self.n_jobs))
        if first_time:
            random_state = check_random_state(self.random_state)
            params = _topic_word_params(self._starting_components(X.shape[1], random_state), 1)
            history = []
        else:
            params = self._fitted_params()
            history = list(getattr(self, "lower_bound_history_", []))
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        params, doc_topic = self._online_pass(data, params, total_samples=self.total_samples, seed=seed)
        # the chunk's ELBO at the new topics (documents at their mini-batch gamma), scaled up to
        # total_samples documents as scikit-learn's sub-sampled bound, per document
        _, total = self._e_step_arrays(data, params, doc_topic, max_updates=0, sstats=False)
        objective = self._bound(data, params, total, sub_sampling=True) / self.total_samples
        self._set_params_attrs(params)
        self.doc_topic_prior_ = data.doc_topic_prior
        self.topic_word_prior_ = data.topic_word_prior
        history.append(objective)
        self.lower_bound_history_ = np.asarray(history, dtype=np.float64)
        self.lower_bound_ = float(objective)
        self.n_iter_ = len(history)
        self.converged_ = False
        return self

    def _infer(self, X, whom):
        check_is_fitted(self)
        X = self._check_counts(X, reset=False, whom=f"{type(self).__name__}.{whom}")
        data = self._make_data(X, effective_n_jobs(self.n_jobs))
        params = self._fitted_params()
        stats, total = self._e_step_arrays(data, params, np.ones((data.n_units, self.n_components)), prune=False)
        return data, params, stats, total

    def transform(self, X, *, normalize=True):
        """Topic mixture of each document of X.

        Every document starts from ``gamma = 1`` (as in scikit-learn), so
        the result depends on the fitted model only.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Document-term counts (non-negative).
        normalize : bool, default=True
            Return the normalised mixtures (rows sum to one); False returns
            the variational Dirichlet parameters ``gamma``.

        Returns
        -------
        doc_topic_distr : ndarray of shape (n_samples, n_components)
            Document-topic distributions.
        """
        _, _, stats, _ = self._infer(X, "transform")
        doc_topic = stats["doc_topic"]
        if normalize:
            doc_topic = doc_topic / doc_topic.sum(axis=1, keepdims=True)
        return doc_topic

    def fit_transform(self, X, y=None, *, normalize=True):
        """Fit to X, then return :meth:`transform` of X.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Document-term counts (non-negative).
        y : Ignored
            Not used, present for API consistency.
        normalize : bool, default=True
            Whether to normalise the document-topic distributions.

        Returns
        -------
        doc_topic_distr : ndarray of shape (n_samples, n_components)
            Document-topic distributions.
        """
        return self.fit(X, y).transform(X, normalize=normalize)

    def _bound(self, data, params, doc_total, sub_sampling=False):
        if sub_sampling:
            doc_total = doc_total * (self.total_samples / data.n_units)
        return doc_total + self._log_prior(params)

    def score(self, X, y=None):
        """Approximate log-likelihood: the variational bound summed over the documents of X.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Document-term counts (non-negative).
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        score : float
            The ELBO of X (documents' terms summed, plus the topic-word term).
        """
        data, params, _, total = self._infer(X, "score")
        return self._bound(data, params, total)

    def perplexity(self, X, sub_sampling=False):
        """Approximate perplexity ``exp(-bound / number of words)`` of X.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Document-term counts (non-negative).
        sub_sampling : bool, default=False
            Scale the documents' part of the bound and the word count by
            ``total_samples / n_samples`` (as scikit-learn).

        Returns
        -------
        perplexity : float
        """
        data, params, _, total = self._infer(X, "perplexity")
        n_words = data.n_words
        if sub_sampling:
            n_words = n_words * (self.total_samples / data.n_units)
        with np.errstate(divide="ignore", over="ignore"):
            return float(np.exp(-self._bound(data, params, total, sub_sampling) / n_words))

    def top_words(self, feature_names=None, n_top=10):
        """The ``n_top`` most probable words of each topic.

        Parameters
        ----------
        feature_names : array-like of str of shape (n_features,), default=None
            The vocabulary, e.g. ``CountVectorizer.get_feature_names_out()``.
            None uses ``feature_names_in_`` when X had column names, else
            ``"x0", "x1", ...``.
        n_top : int, default=10
            Number of words per topic.

        Returns
        -------
        top_words : list of list of str
            ``top_words[k]`` lists topic ``k``'s words, most probable first.
        """
        check_is_fitted(self)
        n_features = self.components_.shape[1]
        if feature_names is None:
            feature_names = getattr(self, "feature_names_in_", None)
            if feature_names is None:
                feature_names = [f"x{i}" for i in range(n_features)]
        feature_names = np.asarray(feature_names, dtype=object)
        if feature_names.shape != (n_features,):
            raise ValueError(f"feature_names must have {n_features} entries, got shape {feature_names.shape}.")
        if not isinstance(n_top, Integral) or n_top < 1:
            raise ValueError(f"n_top must be a positive integer, got {n_top!r}.")
        order = np.argsort(-self.components_, axis=1, kind="stable")[:, :n_top]
        return [[str(feature_names[i]) for i in row] for row in order]

    @property
    def _n_features_out(self):
        return self.components_.shape[0]
