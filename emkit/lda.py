"""Latent Dirichlet Allocation fitted by variational EM on emkit's engine."""

import math
import warnings
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.special import gammaln
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils.validation import check_non_negative

from ._blocks import BlockResult, Blocks, row_bounds
from ._dask import DaskBlocks, check_dask_array, is_dask_array
from ._inference.lda import (
    compiled_pays_off,
    exp_dirichlet_expectation,
    expected_counts,
    online_update,
    select_fresh,
    update_documents,
)
from ._inference.lda_batched import dirichlet_expectation as _dirichlet_expectation_rows
from ._stats import add_fields, scale_fields, sum_in_order
from ._validation import (
    Interval,
    StrOptions,
    check_array_param,
    check_is_fitted,
    check_warm_start_shapes,
    reset_n_features,
    validate_data,
)
from .base import EMMixin

__all__ = ["LatentDirichletAllocation"]


class _LDAData(NamedTuple):
    blocks: object  # Blocks of _Documents (DaskBlocks for a dask array)
    X: object  # the validated CSR matrix (or dask array)
    n_units: int  # documents
    n_words: float
    doc_topic_prior: float
    topic_word_prior: float
    online: bool  # learning_method == "online"
    compiled: bool = True  # compiled E-step kernels; False: a small corpus, solved in numpy (see _inference.lda)


class _Documents(NamedTuple):
    """One block of documents: CSR arrays, and the global index of its first document."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    first: int


def _document_rows(source, first, last):
    indptr, indices, data = source
    lo, hi = indptr[first], indptr[last]
    return _Documents(indptr[first : last + 1] - lo, indices[lo:hi], data[lo:hi], int(first))


def _document_chunk(chunk, first):
    """A block made on a Dask worker from one chunk of documents (dense or scipy.sparse)."""
    X = sp.csr_matrix(chunk, dtype=np.float64)
    return _Documents(X.indptr.astype(np.int64), X.indices.astype(np.int64), X.data, int(first))


def _documents_per_block(n_documents, nnz, n_components, n_features):
    """Documents per E-step block: about max(2^16, K * V) stored counts each (each block returns a K x V sum)."""
    target = max(1 << 16, n_components * n_features)
    return max(1, int(target * n_documents // max(1, nnz)))


class _LDAStats(NamedTuple):
    sstats: np.ndarray  # (n_components, n_features): expected topic-word counts, None when not needed

    add = add_fields
    scale = scale_fields


class _BlockState(NamedTuple):
    """A block's documents after an E-step: their ``gamma`` and ELBOs (the topic-word term excluded)."""

    doc_topic: np.ndarray
    elbo: np.ndarray


class _LDAState(NamedTuple):
    """Working state of one restart: its documents (per block) and what the floor of the next E-step needs."""

    blocks: list  # of _BlockState (futures on a Dask cluster); None before the first E-step
    objective: float  # batch: the total objective of the previous E-step (documents + topic-word term); online: None
    seed: int  # seeds the documents' random starts


class _LDAContext(NamedTuple):
    """What every block of an E-step needs."""

    exp_beta_t: np.ndarray  # (n_features, n_components), word-major
    topic_word: np.ndarray  # lambda, for E[log beta] where exp(E[log beta]) underflows
    alpha: float
    max_updates: int
    tol: float
    prune: bool
    mode: str  # "fresh": solve from random starts; "evaluate": outputs at the given gamma; "warm": solve from it
    starts: object  # _DocumentStarts ("fresh" mode)
    sstats: bool  # whether the expected counts are needed
    compiled: bool  # the compiled kernels, or (a small corpus) their numpy implementation
    elbo: bool = True  # whether the documents' ELBOs are needed (an online mini-batch needs only its counts)


class _DocumentStarts:
    """scikit-learn's random document starts, ``Gamma(100, 0.01)`` draws, by global document index.

    Counter-based: the draw for document ``d`` and topic ``k`` is a function of
    (seed, step, d, k), so any block of documents gets its own rows without the
    others and the fit does not depend on how documents are split into blocks.
    Each draw is exact: Marsaglia and Tsang's rejection method, as numpy's
    ``gamma`` (and so scikit-learn) uses, on counter-based uniforms. An attempt
    takes a standard normal (Box-Muller, two uniforms) and one uniform to
    accept it; at shape 100 an attempt is rejected with probability 2.7e-4
    (measured), and the draw takes up to ``_ATTEMPTS`` of them (all of them
    failing has probability about 1e-18; the last candidate is then kept). This
    replaced Wilson and Hilferty's cube transform of one normal, which is
    4 ms instead of 8 ms per 4,000 x 20 starts but not exact (total variation
    distance 1.3e-4 per draw).
    """

    _MIX = np.uint64(0x9E3779B97F4A7C15)
    _ATTEMPTS = 5
    _SHAPE = 100.0

    def __init__(self, seed, step):
        self.key = _splitmix64(np.array([seed], dtype=np.uint64) * self._MIX + np.array([step], dtype=np.uint64))

    def _uniform(self, counter, offset):
        return _unit(_splitmix64((counter + np.uint64(offset)) ^ self.key))

    def rows(self, first, last, n_topics):
        """The starts of documents ``first..last-1``, shape (last - first, n_topics)."""
        # 3 uniforms per attempt, 16 counters per entry
        counter = (np.arange(first, last, dtype=np.uint64)[:, None] * np.uint64(n_topics)
                   + np.arange(n_topics, dtype=np.uint64)[None, :]) * np.uint64(16)
        d = self._SHAPE - 1.0 / 3.0
        c = 1.0 / np.sqrt(9.0 * d)
        out = np.empty(counter.shape)
        pending = np.ones(counter.shape, dtype=bool)
        for attempt in range(self._ATTEMPTS):
            todo = counter[pending]
            u1, u2, u3 = (self._uniform(todo, 3 * attempt + i) for i in range(3))
            x = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
            v = (1.0 + c * x) ** 3
            with np.errstate(invalid="ignore", divide="ignore"):
                accept = (v > 0.0) & (np.log(u3) < 0.5 * x * x + d - d * v + d * np.log(v))
            if attempt == self._ATTEMPTS - 1:
                # ~1e-18: keep the last candidate (always positive: Box-Muller on 53-bit uniforms gives |x| <= 8.6,
                # and v <= 0 needs x <= -1/c = -30)
                accept[:] = True
            where = np.flatnonzero(pending)[accept]
            out.flat[where] = d * v[accept] / self._SHAPE  # Gamma(100, 0.01)
            pending.flat[where] = False
            if not pending.any():
                break
        return out


def _splitmix64(x):
    """SplitMix64's finaliser on an array of uint64 (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _unit(bits):
    """Uniforms in (0, 1] from the top 53 bits."""
    return ((bits >> np.uint64(11)).astype(np.float64) + 1.0) * (1.0 / 9007199254740992.0)


def _topic_word_params(components, n_batch_iter, compiled=True):
    """Parameter dict for a topic-word matrix ``lambda`` (``components_``); ``compiled`` as in :class:`_LDAData`."""
    components = np.ascontiguousarray(components)
    return {
        "components_": components,
        "exp_dirichlet_component_": exp_dirichlet_expectation(components, compiled=compiled),
        "n_batch_iter_": int(n_batch_iter),
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
    if data.n_words <= 0:
        return math.nan  # no words: undefined, as in scikit-learn
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

    def _make_data(self, X):
        alpha, eta = self._priors()
        n_documents, n_features = X.shape
        if is_dask_array(X):
            first = np.cumsum((0,) + X.chunks[0])[:-1]
            blocks = DaskBlocks([X], _document_chunk, [(int(f),) for f in first])
            (X,) = blocks.arrays  # persisted when they fit in the workers' memory
            import dask

            n_words = float(sum(dask.compute(*[dask.delayed(_chunk_sum)(c) for c in X.to_delayed().ravel()])))
        else:
            indptr = np.asarray(X.indptr, dtype=np.int64)
            source = (indptr, np.asarray(X.indices, dtype=np.int64), np.asarray(X.data, dtype=np.float64))
            step = _documents_per_block(n_documents, X.nnz, self.n_components, n_features)
            blocks = Blocks(source, row_bounds(n_documents, step), _document_rows)
            n_words = float(X.data.sum())
        # a small corpus is solved in numpy: compiling the kernels would take longer than the whole fit
        compiled = is_dask_array(X) or compiled_pays_off(X.nnz, self.n_components)
        return _LDAData(blocks, X, n_documents, n_words, alpha, eta, self.learning_method == "online", compiled)

    def _validate_fit_data(self, X, y=None):
        whom = f"{type(self).__name__}.fit"
        if is_dask_array(X):
            if self.learning_method == "online":
                raise ValueError(
                    f"{whom}: learning_method='online' runs its mini-batches one after the other in this process; "
                    "on a dask array use learning_method='batch' (each pass spread over the cluster), or call "
                    "partial_fit on chunks you compute."
                )
            X = check_dask_array(X, non_negative=True, whom=whom)
            reset_n_features(self, X.shape[1])
        else:
            X = self._check_counts(X, reset=True, whom=whom)
        data = self._make_data(X)
        if data.n_words <= 0:
            warnings.warn(
                f"{whom}: X has no words (every count is zero): the topics stay at the prior topic_word_prior "
                "and the perplexity is undefined (nan).",
                UserWarning,
                stacklevel=4,
            )
        return data

    def _starting_components(self, n_features, random_state):
        if self.components_init is not None:
            components = check_array_param(self.components_init, "components_init", (self.n_components, n_features))
            if np.any(components <= 0):
                raise ValueError("components_init must be strictly positive (it is a Dirichlet parameter).")
            return components
        return random_state.gamma(100.0, 0.01, (self.n_components, n_features))

    # ------------------------------------------------------------------ hooks
    def _initialize(self, data, random_state):
        return _topic_word_params(self._starting_components(data.X.shape[1], random_state), 1, data.compiled)

    def _initial_state(self, data, params, random_state):
        return _LDAState(None, None, int(random_state.randint(np.iinfo(np.int32).max)))

    def _check_warm_start(self, data, params):
        check_warm_start_shapes(params, {"components_": (self.n_components, data.X.shape[1])})

    @staticmethod
    def _fresh_starts(seed, n_batch_iter):
        """scikit-learn's random document starts, ``Gamma(100, 0.01)``: one stream per E-step (or online pass).

        Keyed by the restart's seed and the topic update count; ``.rows(first,
        last, n_topics)`` gives documents ``first..last-1`` their rows.
        """
        return _DocumentStarts(seed, n_batch_iter)

    def _context(self, params, mode, starts=None, sstats=True, max_updates=None, prune=None, compiled=True):
        return _LDAContext(
            np.ascontiguousarray(params["exp_dirichlet_component_"].T),
            params["components_"],
            self._priors()[0],
            self.max_doc_update_iter if max_updates is None else max_updates,
            self.mean_change_tol,
            self._prune if prune is None else prune,
            mode,
            starts,
            sstats,
            compiled,
        )

    def _e_step_block(self, block, context, state):
        """One block of documents: solve (or evaluate) each document, return the expected counts and ELBOs.

        ``state`` is the block's previous :class:`_BlockState` ("evaluate" and
        "warm" start from its ``gamma``), or for "warm" a pair
        ``(previous, selected)`` that solves only the selected documents.
        """
        n_documents = len(block.indptr) - 1
        n_topics = context.topic_word.shape[0]
        selected = None
        if context.mode == "fresh":
            start = context.starts.rows(block.first, block.first + n_documents, n_topics)
        else:
            previous, selected = state if context.mode == "warm" else (state, None)
            start = previous.doc_topic
        max_updates = 0 if context.mode == "evaluate" else context.max_updates
        result = update_documents(
            block.indptr, block.indices, block.data, context.exp_beta_t, context.topic_word, context.alpha, start,
            max_updates, context.tol, prune=context.prune, elbo=context.elbo, selected=selected,
            compiled=context.compiled,
        )
        sstats = None
        if context.sstats:
            sstats = expected_counts(block.indptr, block.indices, result.ratio, result.exp_doc_topic,
                                     context.exp_beta_t, compiled=context.compiled)
        return BlockResult(_LDAStats(sstats), float(np.sum(result.elbo)), _BlockState(result.doc_topic, result.elbo))

    def _e_step(self, data, params, state, executor):
        """Batch: every document restarts from random values (scikit-learn's), with a floor that keeps the ELBO.

        The restarts' total ELBO must reach the floor: the previous iteration's
        objective minus the new topic-word term, which the previous solutions
        always reach (the M-step only raised the ELBO). In the usual case it
        does, and one pass is all. When it does not, the ELBO of every document
        at its previous ``gamma`` (under the new topics) is computed, the
        documents whose restart lost the most are solved from their previous
        ``gamma`` instead until the total is back above the floor
        (:func:`emkit._inference.lda.select_fresh`, a choice over all
        documents, so it does not depend on the blocks), and the chosen
        solutions give the statistics. Online: the ELBO of the topics after the
        pass with each document at the ``gamma`` its mini-batch found (the
        engine adds the topic-word term; the state keeps no objective, which
        only the batch floor reads).
        """
        n_blocks = len(data.blocks)

        def run(context, states):
            context = context._replace(compiled=data.compiled)  # the corpus decides (every context of the E-step)
            results = executor.map(self._e_step_block, data.blocks, [context] * n_blocks, states)
            stats = sum_in_order(r.stats for r in results)
            documents = 0.0
            for r in results:
                documents += float(r.objective)
            return stats, documents, [r.state for r in results]

        if data.online:  # evaluate the pass's own solutions (they are in the state the pass left)
            previous = state.blocks
            if previous is None:  # before the first pass: every document at gamma = 1
                previous = [
                    _BlockState(np.ones((int(stop - start), self.n_components)), None)
                    for start, stop in zip(data.blocks.bounds[:-1], data.blocks.bounds[1:])
                ]
            stats, documents, blocks = run(self._context(params, "evaluate", sstats=False), previous)
            return stats, documents, state._replace(blocks=blocks)
        topic_term = self._log_prior(data, params)
        starts = self._fresh_starts(state.seed, params["n_batch_iter_"])
        stats, documents, fresh = run(self._context(params, "fresh", starts), [None] * n_blocks)
        if state.blocks is not None:
            floor = state.objective - topic_term
            margin = 1e-9 * max(1.0, abs(documents))  # round-off allowance, on the safe side
            if documents < floor + margin:
                stats, documents, fresh = self._fall_back(run, params, state.blocks, fresh, floor, margin, executor)
        return stats, documents, state._replace(blocks=fresh, objective=documents + topic_term)

    def _fall_back(self, run, params, previous, fresh, floor, margin, executor):
        """Documents whose restart lost the most go on from their previous ``gamma`` (see :meth:`_e_step`)."""
        _, baseline_total, baseline = run(self._context(params, "evaluate", sstats=False), previous)
        fresh_local, previous_local = executor.fetch(fresh), executor.fetch(previous)
        fresh_elbo = np.concatenate([b.elbo for b in fresh_local])
        baseline_elbo = np.concatenate([b.elbo for b in executor.fetch(baseline)])
        slack = max(0.0, baseline_total - floor - margin)  # the documents' total may drop from baseline to floor
        keep = select_fresh(fresh_elbo - baseline_elbo, slack)
        sizes = np.cumsum([0] + [len(b.elbo) for b in fresh_local])
        warm = []
        for i in range(len(sizes) - 1):
            mine = keep[sizes[i] : sizes[i + 1]]
            doc_topic = np.where(mine[:, None], fresh_local[i].doc_topic, previous_local[i].doc_topic)
            warm.append((_BlockState(doc_topic, None), ~mine))
        # solve the fallen-back documents from their previous gamma, then the statistics at every final gamma
        _, _, solved = run(self._context(params, "warm", sstats=False), warm)
        final = [_BlockState(s.doc_topic, None) for s in executor.fetch(solved)]
        return run(self._context(params, "evaluate"), final)

    def _log_prior(self, data, params):
        """The topic-word term ``E[log p(beta | eta)] - E[log q(beta | lambda)]`` of the ELBO."""
        eta = self._priors()[1]
        return _dirichlet_term(eta, params["components_"], _dirichlet_expectation_rows(params["components_"]))

    def _monotone(self, data):
        return not data.online  # stochastic updates carry no promise that the ELBO goes up

    def _m_step(self, data, stats, params):
        """Batch: ``lambda = eta + sum_d n_dw phi_dwk``."""
        return _topic_word_params(data.topic_word_prior + stats.sstats, params["n_batch_iter_"] + 1, data.compiled)

    def _m_step_state(self, data, stats, params, state):
        """Online: one pass of mini-batch updates, which also leaves each document's ``gamma``."""
        if not data.online:
            return self._m_step(data, stats, params), state
        new, doc_topic = self._online_pass(data, params, total_samples=data.n_units, seed=state.seed)
        blocks = [
            _BlockState(doc_topic[data.blocks.bounds[i] : data.blocks.bounds[i + 1]], None)
            for i in range(len(data.blocks))
        ]
        return new, state._replace(blocks=blocks)

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
        current = params  # the topics the next mini-batch sees
        n_batch_iter = params["n_batch_iter_"]
        n_topics = components.shape[0]
        doc_topic = np.empty((data.n_units, n_topics))
        starts = self._fresh_starts(seed, n_batch_iter)  # one stream per pass, drawn mini-batch by mini-batch
        source = (np.asarray(data.X.indptr, dtype=np.int64), data.X.indices, data.X.data)
        for batch in gen_batches(data.n_units, self.batch_size):
            if batch.start > 0:  # the topics the previous mini-batch left
                # word-major, the layout the kernel reads (the K x V view costs no copy)
                exp_beta_t = exp_dirichlet_expectation(
                    components, word_major=True, compiled=data.compiled, vector_exp=True
                )
                current = {"components_": components, "exp_dirichlet_component_": exp_beta_t.T}
            documents = _document_rows(source, batch.start, batch.stop)
            # the documents' ELBOs are not needed: the pass's objective is taken after it (see _e_step)
            context = self._context(current, "fresh", starts, compiled=data.compiled)._replace(elbo=False)
            result = self._e_step_block(documents, context, None)
            doc_topic[batch] = result.state.doc_topic
            weight = (self.learning_offset + n_batch_iter) ** (-self.learning_decay)
            online_update(
                components, result.stats.sstats, weight, data.topic_word_prior, total_samples,
                batch.stop - batch.start, compiled=data.compiled,
            )
            n_batch_iter += 1
        return _topic_word_params(components, n_batch_iter, data.compiled), doc_topic

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
        """scikit-learn's rule: with ``evaluate_every > 0``, the perplexity changed by less than ``perp_tol``.

        Otherwise the fit runs its ``max_iter`` passes and is not called
        converged; the engine then warns only when the user asked for the
        evaluation (see :meth:`_convergence_message`).
        """
        return self._perp_tol_met(data, history)

    def _convergence_message(self, data, run):
        if self.evaluate_every <= 0:
            return None  # no rule was asked for: scikit-learn's default stays quiet
        return (
            f"{type(self).__name__}: the perplexity did not settle within perp_tol={self.perp_tol} in "
            f"max_iter={self.max_iter} passes (evaluated every {self.evaluate_every}). Increase max_iter or perp_tol."
        )

    def _iteration_message(self, data, history, change, verbose, interval):
        """scikit-learn's lines: every pass, with the perplexity when it is evaluated."""
        iteration = len(history)
        line = f"iteration: {iteration} of max_iter: {self.max_iter}"
        if self.evaluate_every > 0 and iteration % self.evaluate_every == 0:
            line += f", perplexity: {_perplexity(history[-1], data):.4f}"
        return line

    def _fitted_params(self, compiled=True):
        return _topic_word_params(self.components_.copy(), self.n_batch_iter_, compiled)

    def _after_fit(self, data, params):
        self.doc_topic_prior_ = data.doc_topic_prior
        self.topic_word_prior_ = data.topic_word_prior
        self.bound_ = _perplexity(self.lower_bound_, data)

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
        return self._fit(X, y)

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
        whom = f"{type(self).__name__}.partial_fit"
        if is_dask_array(X):
            raise ValueError(
                f"{whom}: a mini-batch pass runs in this process; pass the chunks as arrays "
                "(e.g. for chunk in X.to_delayed(): model.partial_fit(chunk.compute())), or fit a dask array "
                "with learning_method='batch'."
            )
        first_time = not hasattr(self, "components_")
        X = self._check_counts(X, reset=first_time, whom=whom)
        data = self._make_data(X)._replace(online=True)
        if first_time:
            random_state = check_random_state(self.random_state)
            params = _topic_word_params(self._starting_components(X.shape[1], random_state), 1, data.compiled)
            history = []
        else:
            params = self._fitted_params(data.compiled)
            history = list(getattr(self, "lower_bound_history_", []))
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        params, doc_topic = self._online_pass(data, params, total_samples=self.total_samples, seed=seed)
        # the chunk's ELBO at the new topics (documents at their mini-batch gamma), scaled up to
        # total_samples documents as scikit-learn's sub-sampled bound, per document
        evaluate = self._context(params, "evaluate", sstats=False, compiled=data.compiled)
        documents = _document_rows((np.asarray(X.indptr, dtype=np.int64), X.indices, X.data), 0, data.n_units)
        total = self._e_step_block(documents, evaluate, _BlockState(doc_topic, None)).objective
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
        """Every document of X from ``gamma = 1`` (scikit-learn's transform): (data, params, gamma, ELBO total)."""
        check_is_fitted(self)
        X = self._check_counts(X, reset=False, whom=f"{type(self).__name__}.{whom}")
        data = self._make_data(X)
        params = self._fitted_params(data.compiled)
        context = self._context(
            params, "evaluate", sstats=False, max_updates=self.max_doc_update_iter, prune=False, compiled=data.compiled
        )
        context = context._replace(mode="warm")
        doc_topic, total = [], 0.0
        for block in data.blocks:
            ones = _BlockState(np.ones((len(block.indptr) - 1, self.n_components)), None)
            result = self._e_step_block(block, context, (ones, None))
            doc_topic.append(result.state.doc_topic)
            total += result.objective
        return data, params, np.concatenate(doc_topic) if doc_topic else np.ones((0, self.n_components)), total

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
        if is_dask_array(X):  # lazy, chunked like X
            self._check_dask_input(X, "transform")
            return X.map_blocks(
                _transform_chunk, self, normalize, chunks=(X.chunks[0], (self.n_components,)), dtype=np.float64,
                meta=np.empty((0, 0)),
            )
        doc_topic = self._infer(X, "transform")[2]
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
        return doc_total + self._log_prior(data, params)

    def _check_dask_input(self, X, whom):
        check_is_fitted(self)
        return check_dask_array(
            X, n_features=self.n_features_in_, non_negative=True, whom=f"{type(self).__name__}.{whom}",
            check_values=False,
        )

    def _dask_totals(self, X, whom):
        """ELBO of X's documents (from ``gamma = 1``), word and document counts, summed chunk by chunk."""
        import dask

        X = self._check_dask_input(X, whom)
        parts = [dask.delayed(_chunk_totals, pure=True)(self, chunk) for chunk in X.to_delayed().ravel()]
        totals = np.sum(dask.compute(*parts), axis=0)
        data = _LDAData(None, None, int(totals[2]), float(totals[1]), *self._priors(), False)
        return data, self._fitted_params(), float(totals[0])

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
        if is_dask_array(X):
            data, params, total = self._dask_totals(X, "score")
        else:
            data, params, _, total = self._infer(X, "score")
        return float(self._bound(data, params, total))

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
        if is_dask_array(X):
            data, params, total = self._dask_totals(X, "perplexity")
        else:
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


def _transform_chunk(chunk, estimator, normalize):
    return estimator.transform(chunk, normalize=normalize)


def _chunk_totals(estimator, chunk):
    """(documents' ELBO from ``gamma = 1``, words, documents) of one chunk."""
    data, _, _, total = estimator._infer(chunk, "score")
    return np.array([total, data.n_words, data.n_units])


def _chunk_sum(chunk):
    """All the counts of a chunk (dense or scipy.sparse)."""
    return float(chunk.sum())
