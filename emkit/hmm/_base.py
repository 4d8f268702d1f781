"""The core of emkit's hidden Markov models (Baum-Welch on the shared EM engine).

:class:`_BaseHMM` holds everything about start and transition probabilities,
sequences, decoding, filtering, forecasting and sampling. The emissions are a
component density object (:mod:`emkit._densities`), the same objects the
mixtures use: log-likelihood, statistics, M-step, log-prior, parameter count,
sampling and per-state expectation all come from it. An emission family is
one small module of this package: its constructor, how it checks its input
and starting values, how it starts, and which density it is.

Names follow hmmlearn (``startprob_``, ``transmat_``, ``means_``, ``covars_``,
``emissionprob_``, ``lambdas_``, ``params``, ``init_params``, ``lengths``), the
engine's ``max_iter`` / ``tol`` / ``n_init`` / ``n_jobs`` replace hmmlearn's
``n_iter`` / ``tol``, and ``score`` is the mean log-likelihood per time step.
"""

import inspect
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils import check_random_state

from .._blocks import Blocks, sequence_bounds
from .._dask import (
    DaskBlocks,
    check_dask_array,
    gather_labels,
    is_dask_array,
    per_chunk,
    row_chunks_on_sequences,
    sample_sequences,
    sequencewise,
)
from .._densities import dirichlet
from .._densities.base import PENDING_LAYOUT
from .._inference.hmm import forward, forward_backward, viterbi
from .._math import fill_missing, safe_log
from .._stats import add_fields, scale_fields
from .._validation import (
    Interval,
    StrOptions,
    check_is_fitted,
    check_sample_weight,
    check_sequences,
    check_warm_start_shapes,
    check_y_unsupervised,
    fit_context,
    reset_n_features,
    validate_data,
)
from ..base import BlockResult, EMMixin, NumericalFailure

__all__ = ["_BaseHMM", "SHARED_PARAMS_DOC", "cluster_covariances", "fill_docstring"]

_INIT_SAMPLE_ROWS = 20_000  # rows of whole sequences gathered from a dask array to draw a start


class _HMMData(NamedTuple):
    blocks: Blocks  # of _HMMBlock: whole sequences
    X: np.ndarray  # validated input
    emission_input: np.ndarray  # what the emission hooks consume (row-aligned with X)
    offsets: np.ndarray  # sequence boundaries, (n_sequences + 1,)
    given: dict  # user-given starting values, validated
    learn: frozenset  # letters of the parameters EM learns (``params``, resolved once)
    n_units: float  # time steps
    density: object  # the emission density (emkit._densities), hyperparameters and ``learn`` resolved


class _HMMBlock(NamedTuple):
    emission_input: np.ndarray  # the block's rows
    offsets: np.ndarray  # its sequences' boundaries, from 0


def _hmm_sequences(source, first, last):
    emission_input, offsets = source
    begin, end = offsets[first], offsets[last]
    return _HMMBlock(emission_input[begin:end], offsets[first : last + 1] - begin)


def _hmm_chunk(emission_input, offsets):
    """A block made on a Dask worker from one chunk of whole sequences."""
    return _HMMBlock(np.asarray(emission_input), offsets)


def _emission_input_of_chunk(chunk, estimator):
    """The emission's own checks and conversion on one chunk, on its worker."""
    return estimator._emission_input(np.asarray(chunk, dtype=estimator._emission_dtype))


class _BlockWork(NamedTuple):
    """What a block's E-steps reuse during one restart (its per-block state)."""

    layout: object  # the emission density's layout of the block (``Density.layout``: where entries are missing)
    work: dict  # forward-backward's work arrays (frames, posteriors, normalisers), written anew at every E-step


class _HMMContext(NamedTuple):
    """What every block of an E-step needs."""

    params: dict
    learn: frozenset
    density: object
    emission: object  # the density's own values derived once per E-step (``density.context``)
    learn_emission: bool  # whether any emission parameter is learned (its statistics are then taken)
    objective_only: bool = False  # the log-likelihood alone (forward pass), no statistics


class _HMMStats(NamedTuple):
    start: np.ndarray  # (K,)
    trans: np.ndarray  # (K, K), None when transitions are not learned
    emission: object  # the emission's NamedTuple of statistics, None when it learns nothing

    add = add_fields
    scale = scale_fields


def _rows_per_block(n_components):
    """Rows of whole sequences grouped into one E-step block (posteriors of about 2 MB)."""
    return max(2048, (1 << 18) // max(1, n_components))


def _label_counts(labels, n_components):
    """Distribution of ``labels`` with one pseudo-count per state."""
    counts = np.bincount(labels, minlength=n_components) + 1.0
    return counts / counts.sum()


def _label_transitions(labels, offsets, n_components):
    """Row-stochastic matrix of the label transitions within sequences, one pseudo-count per entry."""
    inside = np.ones(labels.shape[0] - 1, dtype=bool)
    inside[offsets[1:-1] - 1] = False  # no transition across a sequence boundary
    pairs = labels[:-1][inside] * n_components + labels[1:][inside]
    counts = np.bincount(pairs, minlength=n_components * n_components).reshape(n_components, n_components) + 1.0
    return counts / counts.sum(axis=1, keepdims=True)


def cluster_covariances(X, labels, means, covariance_type, min_covar):
    """Each cluster's covariance about its centre (pooled for tied), ``min_covar`` added to the diagonal.

    A cluster with a single row gets ``min_covar`` alone on its diagonal.
    """
    n_components, n_features = means.shape
    scatter = np.zeros((n_components, n_features, n_features))
    counts = np.bincount(labels, minlength=n_components).astype(np.float64)
    for k in range(n_components):
        centred = X[labels == k] - means[k]
        scatter[k] = centred.T @ centred
    eye = np.eye(n_features)
    if covariance_type == "tied":
        return scatter.sum(axis=0) / max(X.shape[0] - 1, 1) + min_covar * eye
    full = scatter / np.maximum(counts - 1.0, 1.0)[:, None, None] + min_covar * eye
    if covariance_type == "full":
        return full
    variances = np.diagonal(full, axis1=1, axis2=2).copy()
    return variances if covariance_type == "diag" else variances.mean(axis=1)


class _BaseHMM(EMMixin, DensityMixin, BaseEstimator):
    """Shared core of the HMMs: start/transition parameters, sequences, inference.

    An emission family is one subclass: its constructor, ``_emission_names``
    (hmmlearn letter -> fitted attribute, e.g. ``{"m": "means_"}``),
    ``_parameter_constraints``, and these hooks (``learn`` is the set of
    letters being learned):

    - ``_make_density(width, learn)``: the emission density (:mod:`emkit._densities`),
      hyperparameters resolved; ``width`` is the number of features (of symbols for CategoricalHMM);
    - ``_emission_validate_X(X, reset) -> (X, emission_input)`` (optional: ``validate_data`` then
      ``_emission_input``);
    - ``_emission_input(X) -> emission_input``: the value checks alone, also run on each Dask chunk
      (optional: identity);
    - ``_emission_check(X, emission_input, continuing, learn) -> (density, dict)``: the density and the
      validated user-given starting values;
    - ``_emission_initialize(data, random_state) -> (dict, labels or None)``: the start (labels of a
      clustering start seed the start and transition probabilities);
    - optionally ``_emission_dtype`` (float64, or None to keep the input's), ``_width_attr`` (the
      fitted attribute whose last axis sizes the density: ``means_``) and ``_failure_message`` (what a restart whose emissions became invalid
      reports, naming the knob that helps).

    Everything else -- log-likelihoods, statistics, M-step, priors, counting, sampling,
    expectations -- is the density's.
    """

    _emission_names = {}
    _emission_dtype = np.float64
    _width_attr = "means_"  # the fitted attribute whose last axis sizes the emission density
    _positive_only = False  # the scikit-learn tag: the family's data are non-negative (counts, symbols)
    _allow_nan = False  # NaN marks a missing entry, marginalised exactly (GaussianHMM, GMMHMM)
    _failure_message = "the emission parameters became invalid ({exc}); lower n_components or check the data"

    def __new__(cls, *args, **kwargs):
        # hmmlearn habits get a message that says what to write instead (before Python's bare TypeError)
        if "n_iter" in kwargs:
            raise TypeError(
                f"{cls.__name__}: emkit uses max_iter (hmmlearn's n_iter): write max_iter={kwargs['n_iter']!r}."
            )
        if "implementation" in kwargs:
            raise TypeError(
                f"{cls.__name__}: emkit has no `implementation` parameter: its compiled forward-backward is "
                "scaled and falls back to log space where it must, so it is both fast and safe. Drop the argument."
            )
        if len(args) > 1:
            keywords = [
                p.name for p in inspect.signature(cls.__init__).parameters.values() if p.kind is p.KEYWORD_ONLY
            ]
            written = ", ".join(f"{name}={value!r}" for name, value in zip(keywords, args[1:]))
            raise TypeError(
                f"{cls.__name__} takes only n_components positionally (the other parameters are keyword-only, as in "
                f"scikit-learn): write {cls.__name__}({args[0]!r}, {written})."
            )
        return super().__new__(cls)

    _hmm_parameter_constraints = {
        **EMMixin._em_parameter_constraints,
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "startprob_prior": [Interval(Real, 0, None, closed="left"), "array-like"],
        "transmat_prior": [Interval(Real, 0, None, closed="left"), "array-like"],
        "algorithm": [StrOptions({"viterbi", "map"})],
        "params": [str, list, tuple],
        "init_params": [str, list, tuple],
        "startprob_init": ["array-like", None],
        "transmat_init": ["array-like", None],
        "learning_decay": [Interval(Real, 0.5, 1.0, closed="both")],
        "learning_offset": [Interval(Real, 1.0, None, closed="left")],
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = self._positive_only
        tags.input_tags.allow_nan = self._allow_nan
        return tags

    # ------------------------------------------------------------ parameters
    def _names(self):
        return {"s": "startprob_", "t": "transmat_", **self._emission_names}

    def _letters(self, value, what):
        """hmmlearn's letter string, or a tuple of attribute names -> set of letters."""
        names = self._names()
        if isinstance(value, str):
            unknown = sorted(set(value) - set(names))
            if unknown:
                raise ValueError(
                    f"{what}={value!r} has unknown letter(s) {unknown}; {type(self).__name__} knows "
                    + ", ".join(f"{letter!r} ({attr})" for letter, attr in names.items())
                    + "."
                )
            return set(value)
        by_name = {}
        for letter, attr in names.items():
            by_name[attr] = letter
            by_name[attr.rstrip("_")] = letter
        letters = set()
        for item in value:
            if item not in by_name:
                raise ValueError(
                    f"{what}: unknown parameter {item!r}; expected letters from {''.join(names)!r} "
                    f"or names from {sorted(set(names.values()))}."
                )
            letters.add(by_name[item])
        return letters

    def __sklearn_is_fitted__(self):
        # fitted once every model parameter exists (after fit, or set by hand as in hmmlearn);
        # n_features_in_ alone (set while validating) does not count
        return all(hasattr(self, attr) for attr in self._names().values())

    def _init_letters(self):
        return self._letters(self.init_params, "init_params")

    def _user_value(self, letter, init_value):
        """A starting value the user gave: ``*_init``, or hmmlearn's attribute set before fit."""
        if init_value is not None:
            return init_value
        attr = self._names()[letter]
        if letter not in self._init_letters() and hasattr(self, attr):
            return getattr(self, attr)
        return None

    # ------------------------------------------------------------ validation
    def _validate_fit_data(self, X, y=None, lengths=None, sequence_ids=None, reset=True):
        learn = frozenset(self._letters(self.params, "params"))
        self._letters(self.init_params, "init_params")
        # continuing from the fitted parameters (warm start, or online EM after the first chunk)
        continuing = self._is_fitted_for_warm_start() and (self.warm_start or not reset)
        if is_dask_array(X):
            X, emission_input, offsets, bounds = self._validate_dask_X(X, y, lengths, sequence_ids)
        else:
            X, emission_input = self._emission_validate_X(X, reset=reset)
            check_y_unsupervised(y, X.shape[0])
            offsets = check_sequences(X.shape[0], lengths, sequence_ids)
        K = self.n_components
        dirichlet.check_prior(self.startprob_prior, "startprob_prior", (K,))
        dirichlet.check_prior(self.transmat_prior, "transmat_prior", (K, K))
        given = {}
        for letter, init, shape in (("s", self.startprob_init, (K,)), ("t", self.transmat_init, (K, K))):
            value = self._user_value(letter, init)
            if value is not None:
                attr = self._names()[letter]
                name = attr[:-1] + "_init" if init is not None else attr
                given[attr] = dirichlet.check_distribution(value, name, shape)
        density, emission_given = self._emission_check(X, emission_input, continuing, learn)
        given.update(emission_given)
        if is_dask_array(X):
            extras = [(offsets[bounds[i] : bounds[i + 1] + 1] - offsets[bounds[i]],) for i in range(len(bounds) - 1)]
            blocks = DaskBlocks([emission_input], _hmm_chunk, extras)
            (emission_input,) = blocks.arrays  # persisted when they fit in the workers' memory
            if emission_input.ndim == 2:  # the checked values are X's (Gaussian, Poisson): one copy on the cluster
                X = emission_input
        else:
            blocks = Blocks((emission_input, offsets), sequence_bounds(offsets, _rows_per_block(K)), _hmm_sequences)
        return _HMMData(blocks, X, emission_input, offsets, given, learn, float(X.shape[0]), density)

    def _validate_dask_X(self, X, y, lengths, sequence_ids):
        """A dask array of sequences: checked chunk by chunk with the same checks as in memory, never gathered.

        Returns the array rechunked so that no chunk cuts a sequence, the
        emission input (lazy), the sequence offsets and each chunk's sequences.
        """
        whom = f"{type(self).__name__}.fit"
        X = check_dask_array(X, whom=whom, allow_nan=self._allow_nan)
        n_samples = X.shape[0]
        if n_samples < max(2, self.n_components):
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {self.n_components}, "
                f"n_samples = {n_samples}."
            )
        check_y_unsupervised(y, n_samples)
        reset_n_features(self, X.shape[1])
        offsets = check_sequences(n_samples, lengths, gather_labels(sequence_ids))
        X, bounds = row_chunks_on_sequences(X, offsets)
        probe = _emission_input_of_chunk(np.asarray(X[:1].compute()), self)
        emission_input = X.map_blocks(
            _emission_input_of_chunk, self, dtype=probe.dtype, meta=probe[:0],
            **({"drop_axis": 1} if probe.ndim == 1 else {}),
        )
        emission_input.sum().compute()  # one pass: the emission's own value checks raise here, before any work
        return X, emission_input, offsets, bounds

    def fit(self, X, y=None, lengths=None, sequence_ids=None):
        """Estimate the parameters by Baum-Welch (EM), ``n_init`` restarts, the best kept.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Observations, sequences stacked.
        y : Ignored
            Not used (present so Pipeline and GridSearchCV work). A ``y``
            whose length is not n_samples raises: in hmmlearn the second
            positional argument is ``lengths``, here pass ``lengths=``.
        lengths : array-like of int of shape (n_sequences,), default=None
            Length of each sequence; None means one sequence.
        sequence_ids : array-like of shape (n_samples,), default=None
            One label per row, each sequence a contiguous run. Routed by
            metadata routing, so ``GroupKFold(groups=sequence_ids)`` never cuts
            a sequence. Not together with ``lengths``.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, lengths=lengths, sequence_ids=sequence_ids)

    @fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None, lengths=None, sequence_ids=None):
        """One online-EM update on the sequences in X (stepwise EM), for streams of sequences.

        The first call starts from ``init_params`` on its sequences (or from
        the fitted parameters after ``fit``); each call moves a running
        average of the sufficient statistics towards those of its sequences
        with step ``(t + learning_offset) ** -learning_decay`` and
        re-estimates the parameters from it. ``lower_bound_history_`` gets
        each call's log-likelihood per step at the parameters it was given
        (not monotone).

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
            Whole sequences, stacked.
        y : Ignored
        lengths : array-like of int of shape (n_sequences,), default=None
        sequence_ids : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
        """
        reset = not self._is_fitted_for_warm_start()
        data = self._validate_fit_data(X, y, lengths=lengths, sequence_ids=sequence_ids, reset=reset)
        return self._partial_fit_em(data)

    def _recenter_stats(self, stats, old_params, new_params):
        if stats.emission is None:
            return stats
        return stats._replace(emission=self._density().recenter(stats.emission, old_params, new_params))

    # ------------------------------------------------------------ the emission density
    def _emission_validate_X(self, X, reset):
        X = validate_data(self, X, reset=reset, dtype=self._emission_dtype)
        return X, self._emission_input(X)

    def _emission_input(self, X):
        """The emission's own value checks and conversion (identity by default)."""
        return X

    def _density_width(self):
        """What sizes the fitted emission density besides ``n_components``: the last axis of
        ``_width_attr`` (the number of features; of symbols for CategoricalHMM), so that a model whose
        parameters were set by hand, as in hmmlearn, answers too."""
        return np.shape(getattr(self, self._width_attr))[-1]

    def _density(self):
        """The fitted model's emission density (made from the constructor parameters: nothing is stored)."""
        return self._make_density(self._density_width(), frozenset(self._names()))

    def _failure(self, exc):
        return NumericalFailure(self._failure_message.format(exc=exc))

    # ------------------------------------------------------------ EM hooks
    def _initialize(self, data, random_state):
        if is_dask_array(data.X):
            # start from whole sequences gathered at random (the data stay on the cluster)
            (X, emission_input), offsets = sample_sequences(
                [data.X, data.emission_input], data.offsets, _INIT_SAMPLE_ROWS, random_state
            )
            data = data._replace(X=X, emission_input=emission_input, offsets=offsets, blocks=None)
        K = self.n_components
        given = data.given
        params = {}
        if "startprob_" in given:
            params["startprob_"] = given["startprob_"].copy()
        else:
            params["startprob_"] = random_state.dirichlet(np.ones(K))
        if "transmat_" in given:
            params["transmat_"] = given["transmat_"].copy()
        else:
            params["transmat_"] = random_state.dirichlet(np.ones(K), size=K)
        # missing entries (GaussianHMM, GMMHMM) take their column's mean for the start only
        emission, labels = self._emission_initialize(data._replace(X=fill_missing(data.X)), random_state)
        try:
            params.update(data.density.pack(emission))
        except np.linalg.LinAlgError as exc:
            raise self._failure(exc) from None
        if labels is not None:
            # the emission's start clustered the rows: start and transition probabilities from those labels
            # (counts plus one, so no probability starts at an exact zero, which EM would keep forever)
            if "startprob_" not in given:
                params["startprob_"] = _label_counts(labels[data.offsets[:-1]], K)
            if "transmat_" not in given:
                params["transmat_"] = _label_transitions(labels, data.offsets, K)
        return params

    def _e_step_context(self, data, params):
        learn_emission = bool(set(self._emission_names) & data.learn)
        return _HMMContext(params, data.learn, data.density, data.density.context(params), learn_emission)

    def _objective_context(self, data, params):
        return self._e_step_context(data, params)._replace(objective_only=True)

    def _initial_state(self, data, params, random_state):
        """Per block, what its E-steps reuse during the restart (:class:`_BlockWork`), made at the block's first
        E-step; None (no state) for dask arrays (their blocks live on the workers)."""
        if is_dask_array(data.X):
            return None
        return [PENDING_LAYOUT] * len(data.blocks)

    @staticmethod
    def _e_step_block(block, context, state):
        params, density = context.params, context.density
        if state is PENDING_LAYOUT:
            state = _BlockWork(density.layout(block.emission_input), {})
        layout, work = (None, None) if state is None else state
        reuse = {} if layout is None else {"layout": layout}
        # ``frameprob`` when the emission gives probabilities directly (no exponentials), else
        # ``log_frameprob``; ``cache`` keeps what the statistics reuse (a GMM's mixture responsibilities)
        frames, cache = density.frames(block.emission_input, params, context.emission, work=work, **reuse)
        result = forward_backward(
            params["startprob_"],
            params["transmat_"],
            offsets=block.offsets,
            compute_xi="t" in context.learn,
            objective_only=context.objective_only,
            per_step=False,
            work=work,
            **frames,
        )
        loglik = float(result.log_likelihood.sum())
        if not np.isfinite(loglik):
            raise NumericalFailure(
                "a sequence has zero likelihood under the current parameters "
                "(increase the emission priors or regularisation)"
            )
        if context.objective_only:
            return BlockResult(None, loglik, state)
        emission = None
        if context.learn_emission:
            emission = density.accumulate(block.emission_input, result.posteriors, params, context.emission, cache,
                                          **reuse)
        trans = result.xi_sum if "t" in context.learn else None
        return BlockResult(_HMMStats(result.start_sum, trans, emission), loglik, state)

    def _m_step(self, data, stats, params):
        learn = data.learn
        new = dict(params)
        if "s" in learn:
            new["startprob_"] = dirichlet.map_update(stats.start, self.startprob_prior, params["startprob_"])
        if "t" in learn:
            new["transmat_"] = dirichlet.map_update(stats.trans, self.transmat_prior, params["transmat_"])
        if stats.emission is not None:
            try:
                new.update(data.density.pack(data.density.m_step(stats.emission, params)))
            except np.linalg.LinAlgError as exc:  # a covariance EM made singular ends this restart
                raise self._failure(exc) from None
        return new

    def _log_prior(self, data, params):
        learn = data.learn
        total = 0.0
        if "s" in learn:
            total += dirichlet.log_prior(params["startprob_"], self.startprob_prior)
        if "t" in learn:
            total += dirichlet.log_prior(params["transmat_"], self.transmat_prior)
        return total + data.density.log_prior(params)

    def _check_warm_start(self, data, params):
        K = self.n_components
        expected = {"startprob_": (K,), "transmat_": (K, K), **data.density.shapes()}
        check_warm_start_shapes(params, expected)

    def _fitted_params(self):
        params = {"startprob_": self.startprob_, "transmat_": self.transmat_}
        params.update({attr: getattr(self, attr) for attr in self._emission_names.values()})
        return params

    # ------------------------------------------------------------ inference helpers
    def _check_fitted_input(self, X, lengths, sequence_ids):
        check_is_fitted(self)
        X, emission_input = self._emission_validate_X(X, reset=False)
        offsets = check_sequences(X.shape[0], lengths, sequence_ids)
        return emission_input, offsets, self._fitted_params()

    def _frames(self, emission_input, params):
        """Keyword arguments for the kernels at the fitted parameters (``frameprob`` or ``log_frameprob``)."""
        density = self._density()
        return density.frames(emission_input, params, density.context(params))[0]

    @staticmethod
    def _raise_if_impossible(log_likelihood):
        bad = np.flatnonzero(~np.isfinite(log_likelihood))
        if bad.size:
            raise ValueError(
                f"Sequence(s) {bad[:5].tolist()} have zero probability under the model: "
                "their posteriors are undefined."
            )

    @sequencewise("rows", check_sequences)
    def score_samples(self, X, lengths=None, sequence_ids=None):
        """Per-step predictive log-density ``log p(x_t | x_1..t-1)``.

        Unlike hmmlearn's ``score_samples`` (which returns the total and the
        posteriors), this returns one value per row, like scikit-learn's
        density estimators; the posteriors come from :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Observations, sequences stacked.
        lengths : array-like of int of shape (n_sequences,), default=None
            Length of each sequence (hmmlearn's convention); None means one
            sequence.
        sequence_ids : array-like of shape (n_samples,), default=None
            One label per row, each sequence a contiguous run (for
            cross-validation). Not together with ``lengths``.

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
            Sums to the log-likelihood over each sequence; ``-inf`` on
            impossible steps.
        """
        emission_input, offsets, params = self._check_fitted_input(X, lengths, sequence_ids)
        frames = self._frames(emission_input, params)
        result = forward(params["startprob_"], params["transmat_"], offsets=offsets, compute_filtered=False, **frames)
        return result.log_step

    def score(self, X, y=None, lengths=None, sequence_ids=None, sample_weight=None):
        """Mean log-likelihood per time step.

        hmmlearn's ``score`` returns the total log-likelihood; multiply by
        ``n_samples`` to get it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored
            Not used; a ``y`` whose length is not n_samples raises (sequence
            lengths go in ``lengths=``).
        lengths : array-like of int of shape (n_sequences,), default=None
        sequence_ids : array-like of shape (n_samples,), default=None
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the per-step log-densities in the mean (None: equal).
            Accepted so that ``Pipeline.score`` works with metadata routing
            enabled (it always passes ``sample_weight``).

        Returns
        -------
        score : float
            ``log p(X) / n_samples`` (the weighted mean of
            :meth:`score_samples` when ``sample_weight`` is given).
        """
        check_is_fitted(self)
        if y is not None:
            check_y_unsupervised(y, len(X))
        log_density = self.score_samples(X, lengths=lengths, sequence_ids=sequence_ids)
        if sample_weight is None:
            return float(np.mean(log_density))
        weights = check_sample_weight(sample_weight, log_density[:, np.newaxis])
        return float(np.average(log_density, weights=weights))

    @sequencewise(lambda self: self.n_components, check_sequences)
    def predict_proba(self, X, lengths=None, sequence_ids=None):
        """Smoothed state posteriors ``p(z_t = k | x_1..T)`` (forward-backward).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        lengths : array-like of int of shape (n_sequences,), default=None
        sequence_ids : array-like of shape (n_samples,), default=None

        Returns
        -------
        posteriors : ndarray of shape (n_samples, n_components)
        """
        return self._smoothed(X, lengths, sequence_ids)[0].posteriors

    def _smoothed(self, X, lengths, sequence_ids):
        """Forward-backward at the fitted parameters: its result and the density's cache for the same rows."""
        emission_input, offsets, params = self._check_fitted_input(X, lengths, sequence_ids)
        density = self._density()
        frames, cache = density.frames(emission_input, params, density.context(params))
        result = forward_backward(params["startprob_"], params["transmat_"], offsets=offsets, compute_xi=False,
                                  **frames)
        self._raise_if_impossible(result.log_likelihood)
        return result, cache

    @sequencewise(lambda self: self.n_components, check_sequences)
    def filter(self, X, lengths=None, sequence_ids=None):
        """Filtered (causal) state probabilities ``p(z_t = k | x_1..t)``.

        Row ``t`` uses only rows up to ``t`` of its own sequence, so it is
        what an online system would have known at that time.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        lengths : array-like of int of shape (n_sequences,), default=None
        sequence_ids : array-like of shape (n_samples,), default=None

        Returns
        -------
        filtered : ndarray of shape (n_samples, n_components)
        """
        emission_input, offsets, params = self._check_fitted_input(X, lengths, sequence_ids)
        frames = self._frames(emission_input, params)
        result = forward(params["startprob_"], params["transmat_"], offsets=offsets, **frames)
        self._raise_if_impossible(result.log_likelihood)
        return result.filtered

    def decode(self, X, lengths=None, sequence_ids=None, algorithm=None):
        """Most likely states.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        lengths : array-like of int of shape (n_sequences,), default=None
        sequence_ids : array-like of shape (n_samples,), default=None
        algorithm : {"viterbi", "map"}, default=None
            ``"viterbi"``: the jointly most likely path; ``"map"``: the most
            likely state at each step (argmax of :meth:`predict_proba`).
            None uses the ``algorithm`` the estimator was built with.

        Returns
        -------
        log_prob : float
            Viterbi: ``log p(X, z*)`` of the best path summed over sequences
            (as hmmlearn). MAP: ``log p(X)``, the total log-likelihood
            (hmmlearn returns a sum of posterior probabilities there).
        states : ndarray of int of shape (n_samples,)
        """
        algorithm = self.algorithm if algorithm is None else algorithm
        if algorithm not in ("viterbi", "map"):
            raise ValueError(f"algorithm must be 'viterbi' or 'map', got {algorithm!r}.")
        if is_dask_array(X):  # the states lazily, the log-probability (one number per chunk) computed
            states = self._decoded_states(X, lengths=lengths, sequence_ids=sequence_ids, algorithm=algorithm)
            answers = per_chunk(self, self.decode, X, lengths, sequence_ids, check_sequences, algorithm=algorithm)
            return float(sum(log_prob for log_prob, _ in answers)), states
        emission_input, offsets, params = self._check_fitted_input(X, lengths, sequence_ids)
        if algorithm == "viterbi":
            density = self._density()
            log_frameprob = density.log_likelihood(emission_input, params, density.context(params))
            result = viterbi(safe_log(params["startprob_"]), safe_log(params["transmat_"]), log_frameprob, offsets)
            self._raise_if_impossible(result.log_prob)
            return float(result.log_prob.sum()), result.states
        result = self._smoothed(X, lengths, sequence_ids)[0]
        return float(result.log_likelihood.sum()), np.argmax(result.posteriors, axis=1)

    @sequencewise("rows", check_sequences)
    def _decoded_states(self, X, lengths=None, sequence_ids=None, algorithm=None):
        return self.decode(X, lengths=lengths, sequence_ids=sequence_ids, algorithm=algorithm)[1]

    @sequencewise("rows", check_sequences)
    def predict(self, X, lengths=None, sequence_ids=None):
        """Most likely state of each row (``decode`` with the estimator's ``algorithm``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        lengths : array-like of int of shape (n_sequences,), default=None
        sequence_ids : array-like of shape (n_samples,), default=None

        Returns
        -------
        states : ndarray of int of shape (n_samples,)
        """
        return self.decode(X, lengths=lengths, sequence_ids=sequence_ids)[1]

    def forecast(self, X, n_steps=1, lengths=None, sequence_ids=None):
        """State probabilities and expected observations after each sequence's end.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        n_steps : int, default=1
            How many steps ahead.
        lengths : array-like of int of shape (n_sequences,), default=None
        sequence_ids : array-like of shape (n_samples,), default=None

        Returns
        -------
        state_proba : ndarray of shape (n_sequences, n_steps, n_components)
            ``p(z_T+h = k | x_1..T)`` for ``h = 1..n_steps``.
        expected : ndarray of shape (n_sequences, n_steps, n_outputs)
            ``E[x_T+h | x_1..T]``: means for GaussianHMM, rates for
            PoissonHMM, symbol probabilities (``n_outputs = n_symbols_``)
            for CategoricalHMM.
        """
        if not isinstance(n_steps, Integral) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}.")
        if is_dask_array(X):  # one small answer per sequence: computed chunk by chunk, then joined
            answers = per_chunk(self, self.forecast, X, lengths, sequence_ids, check_sequences, n_steps=n_steps)
            return tuple(np.concatenate(parts, axis=0) for parts in zip(*answers))
        emission_input, offsets, params = self._check_fitted_input(X, lengths, sequence_ids)
        frames = self._frames(emission_input, params)
        result = forward(params["startprob_"], params["transmat_"], offsets=offsets, **frames)
        self._raise_if_impossible(result.log_likelihood)
        current = result.filtered[offsets[1:] - 1]  # (n_sequences, K)
        transmat = params["transmat_"]
        state_proba = np.empty((current.shape[0], n_steps, self.n_components))
        for h in range(n_steps):
            current = current @ transmat
            state_proba[:, h] = current
        expected = state_proba @ self._density().expectation(params)
        return state_proba, expected

    def sample(self, n_samples=1, random_state=None, currstate=None):
        """Draw a sequence from the model.

        Parameters
        ----------
        n_samples : int, default=1
            Number of time steps.
        random_state : int, RandomState instance or None, default=None
            None uses the estimator's ``random_state``.
        currstate : int, default=None
            State of the first step (hmmlearn's); None draws it from
            ``startprob_``.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        states : ndarray of int of shape (n_samples,)
        """
        check_is_fitted(self)
        if not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(f"Invalid value for 'n_samples': {n_samples!r}. It must be a positive integer.")
        rng = check_random_state(self.random_state if random_state is None else random_state)
        params = self._fitted_params()
        K = self.n_components
        cdf_start = np.cumsum(params["startprob_"])
        cdf_trans = np.cumsum(params["transmat_"], axis=1)
        u = rng.uniform(size=n_samples)
        states = np.empty(n_samples, dtype=np.int64)
        if currstate is None:
            state = int(np.searchsorted(cdf_start, u[0] * cdf_start[-1], side="right"))
        else:
            state = int(currstate)
        for t in range(n_samples):
            if t > 0:
                row = cdf_trans[state]
                state = int(np.searchsorted(row, u[t] * row[-1], side="right"))
            states[t] = min(state, K - 1)
            state = states[t]
        X = self._density().sample(params, states, rng)
        return X, states

    def get_stationary_distribution(self):
        """The stationary distribution of the hidden chain: ``pi = pi @ transmat_``, ``sum(pi) = 1``.

        Solved as a least-squares problem, so it is exact for an irreducible
        chain; for a chain with several closed classes the answer is one of
        the stationary distributions (hmmlearn's eigenvector has the same
        ambiguity).

        Returns
        -------
        stationary : ndarray of shape (n_components,)
        """
        check_is_fitted(self)
        transmat = np.asarray(self.transmat_, dtype=np.float64)
        K = transmat.shape[0]
        # (T^T - I) pi = 0 together with 1^T pi = 1
        system = np.vstack([transmat.T - np.eye(K), np.ones((1, K))])
        target = np.zeros(K + 1)
        target[-1] = 1.0
        stationary = np.linalg.lstsq(system, target, rcond=None)[0]
        stationary = np.clip(stationary, 0.0, None)
        return stationary / stationary.sum()

    # ------------------------------------------------------------ model selection
    def _n_parameters(self):
        K = self.n_components
        return int((K - 1) + K * (K - 1) + self._density().n_parameters())

    def bic(self, X, lengths=None, sequence_ids=None):
        """Bayesian information criterion ``-2 log p(X) + n_params log(n_samples)`` (lower is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        lengths : array-like of int of shape (n_sequences,), default=None
        sequence_ids : array-like of shape (n_samples,), default=None

        Returns
        -------
        bic : float
        """
        return self._information_criterion(X, lengths, sequence_ids, np.log)

    def aic(self, X, lengths=None, sequence_ids=None):
        """Akaike information criterion ``-2 log p(X) + 2 n_params`` (lower is better; arguments as :meth:`bic`).

        Returns
        -------
        aic : float
        """
        return self._information_criterion(X, lengths, sequence_ids, lambda n_samples: 2.0)

    def _information_criterion(self, X, lengths, sequence_ids, penalty):
        log_density = self.score_samples(X, lengths=lengths, sequence_ids=sequence_ids)
        return float(-2.0 * np.sum(log_density) + penalty(log_density.shape[0]) * self._n_parameters())


SHARED_PARAMS_DOC = """
    startprob_prior : float or array-like of shape (n_components,), default=1.0
        Dirichlet prior on ``startprob_`` (1 = maximum likelihood).
    transmat_prior : float or array-like of shape (n_components, n_components), default=1.0
        Dirichlet prior on each row of ``transmat_`` (1 = maximum likelihood).
    algorithm : {"viterbi", "map"}, default="viterbi"
        Decoder used by :meth:`predict`.
    startprob_init : array-like of shape (n_components,), default=None
        Starting ``startprob_`` (survives ``clone``). hmmlearn's way, setting
        ``startprob_`` on the instance and leaving ``"s"`` out of
        ``init_params``, also works.
    transmat_init : array-like of shape (n_components, n_components), default=None
        Starting ``transmat_``.
    max_iter : int, default=100
        Maximum number of EM iterations (M-steps) per restart (hmmlearn:
        ``n_iter``).
    tol : float, default=1e-4
        Converged when the objective per time step increases by less than
        ``tol`` (hmmlearn's ``tol`` is on the total).
    n_init : int, default=1
        Restarts; the one with the highest objective wins.
    random_state : int, RandomState instance or None, default=None
    warm_start : bool, default=False
        Continue from the fitted parameters on the next ``fit``.
    verbose : int, default=0
    verbose_interval : int, default=10
    n_jobs : int, default=None
        Restarts run in parallel; the result does not depend on it.
    keep_params_history : bool, default=False
        Keep the winning restart's parameters after every iteration in
        ``params_history_``.
    learning_decay : float, default=0.7
        Online EM (:meth:`partial_fit`): update ``t`` has step size
        ``(t + learning_offset) ** -learning_decay`` (LDA's names).
    learning_offset : float, default=10.0
        Online EM: the step size's offset.
"""


def fill_docstring(cls):
    """Put the parameters every HMM shares into ``cls``'s docstring (at ``{shared_parameters}``)."""
    cls.__doc__ = cls.__doc__.replace("    {shared_parameters}\n", SHARED_PARAMS_DOC.lstrip("\n"))
    return cls
