"""Hidden Markov models fitted by Baum-Welch on the shared EM engine.

One core (:class:`_BaseHMM`) holds everything about start and transition
probabilities, sequences, decoding, filtering, forecasting and sampling; an
emission type is one small subclass that provides a handful of ``_emission_*``
hooks (validate X, initialise, log-likelihood, statistics, M-step, log-prior,
parameter count, sampling, per-state expectation).

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
from sklearn.cluster import KMeans
from sklearn.utils import check_random_state

from ._blocks import Blocks, sequence_bounds
from ._dask import (
    DaskBlocks,
    check_dask_array,
    gather_labels,
    is_dask_array,
    per_chunk,
    row_chunks_on_sequences,
    sample_sequences,
    sequencewise,
)
from ._densities import categorical, gaussian, poisson
from ._inference.hmm import forward, forward_backward, viterbi
from ._math import safe_log
from ._stats import add_fields, scale_fields
from ._validation import (
    Interval,
    StrOptions,
    check_array_param,
    check_is_fitted,
    check_sample_weight,
    check_sequences,
    check_warm_start_shapes,
    check_y_unsupervised,
    fit_context,
    reset_n_features,
    validate_data,
)
from .base import BlockResult, EMMixin, NumericalFailure

__all__ = ["GaussianHMM", "CategoricalHMM", "PoissonHMM"]

_SUM_ATOL = 1e-6  # how far a user-given distribution may be from summing to one
_INIT_SAMPLE_ROWS = 20_000  # rows of whole sequences gathered from a dask array to draw a start
_MAX_TABLE_BYTES = 1 << 30  # an inferred CategoricalHMM emission table larger than this is refused


class _HMMData(NamedTuple):
    blocks: Blocks  # of _HMMBlock: whole sequences
    X: np.ndarray  # validated input
    emission_input: np.ndarray  # what the emission hooks consume (row-aligned with X)
    offsets: np.ndarray  # sequence boundaries, (n_sequences + 1,)
    given: dict  # user-given starting values, validated
    learn: frozenset  # letters of the parameters EM learns (``params``, resolved once)
    n_units: float  # time steps


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
    dtype = None if isinstance(estimator, CategoricalHMM) else np.float64
    return estimator._emission_input(np.asarray(chunk, dtype=dtype))


class _HMMContext(NamedTuple):
    """What every block of an E-step needs."""

    params: dict
    learn: frozenset
    emission: object  # the emission's own precomputed values (``_emission_context``)


class _HMMStats(NamedTuple):
    start: np.ndarray  # (K,)
    trans: np.ndarray  # (K, K), None when transitions are not learned
    emission: object  # the emission's NamedTuple of statistics, None when it learns nothing

    add = add_fields
    scale = scale_fields


def _rows_per_block(n_components):
    """Rows of whole sequences grouped into one E-step block (posteriors of about 2 MB)."""
    return max(2048, (1 << 18) // max(1, n_components))


def _dirichlet_map(counts, prior, current):
    """``max(prior - 1 + counts, 0)`` normalised over the last axis, keeping structural zeros.

    Entries that are exactly zero in ``current`` stay zero; a row with no mass
    left keeps its current values (so it stays a distribution).
    """
    numer = np.maximum(np.asarray(prior, dtype=np.float64) - 1.0 + counts, 0.0)
    numer = np.where(current == 0.0, 0.0, numer)
    total = numer.sum(axis=-1, keepdims=True)
    empty = total <= 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        new = numer / total
    return np.where(empty, current, new)


def _dirichlet_log_prior(prob, prior):
    """``sum (alpha - 1) log p`` up to a constant, skipping zero probabilities."""
    alpha = np.broadcast_to(np.asarray(prior, dtype=np.float64), prob.shape)
    mask = (alpha != 1.0) & (prob > 0.0)
    if not np.any(mask):
        return 0.0
    return float(np.sum((alpha[mask] - 1.0) * np.log(prob[mask])))


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


def _check_distribution(value, name, shape):
    """A user-given probability vector or row-stochastic matrix."""
    array = check_array_param(value, name, shape)
    if np.any(array < 0):
        raise ValueError(f"{name} must be non-negative.")
    sums = array.sum(axis=-1)
    if not np.allclose(sums, 1.0, rtol=0.0, atol=_SUM_ATOL):
        what = "must sum to 1" if array.ndim == 1 else "rows must each sum to 1"
        raise ValueError(f"{name} {what}, got sums {np.round(np.atleast_1d(sums), 8).tolist()}.")
    return array


def _check_prior(value, name, shape, minimum=0.0):
    prior = np.asarray(value, dtype=np.float64)
    try:
        prior = np.broadcast_to(prior, shape)
    except ValueError:
        raise ValueError(f"{name} must be a scalar or broadcastable to {tuple(shape)}, got {prior.shape}.") from None
    if not np.all(np.isfinite(prior)) or np.any(prior < minimum):
        raise ValueError(f"{name} must be finite and >= {minimum}.")
    return prior


def _cluster_covariances(X, labels, means, covariance_type, min_covar):
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

    An emission type is one subclass: its constructor, ``_emission_names``
    (hmmlearn letter -> fitted attribute, e.g. ``{"m": "means_"}``),
    ``_parameter_constraints``, and these hooks (``params`` is the parameter
    dict the engine passes around, ``learn`` the set of letters being learned):

    - ``_emission_validate_X(X, reset) -> (X, emission_input)``
    - ``_emission_input(X) -> emission_input`` (the value checks alone, also run on each Dask chunk)
    - ``_emission_check(X, emission_input, continuing) -> dict`` of validated user-given starting values
    - ``_emission_initialize(data, random_state) -> (dict, labels or None)`` (labels of a clustering start
      seed the start and transition probabilities)
    - ``_emission_context(params)`` (optional: values derived once per E-step, e.g. precision factors)
    - ``_emission_log_likelihood(emission_input, params, context) -> (n_samples, n_components)``
    - ``_emission_frameprob(emission_input, params, context)`` (optional: probabilities, saves exponentials)
    - ``_emission_accumulate(emission_input, posteriors, params, context) -> stats`` (additive, with ``add``)
    - ``_emission_m_step(stats, params, learn) -> dict``
    - ``_emission_log_prior(params, learn) -> float``
    - ``_emission_fitted_params() -> dict``, ``_emission_n_parameters() -> int``
    - ``_emission_sample(params, states, rng) -> X``, ``_emission_expectation(params) -> (n_components, n_outputs)``
    """

    _emission_names = {}

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
        _check_prior(self.startprob_prior, "startprob_prior", (K,))
        _check_prior(self.transmat_prior, "transmat_prior", (K, K))
        given = {}
        for letter, init, shape in (("s", self.startprob_init, (K,)), ("t", self.transmat_init, (K, K))):
            value = self._user_value(letter, init)
            if value is not None:
                attr = self._names()[letter]
                name = attr[:-1] + "_init" if init is not None else attr
                given[attr] = _check_distribution(value, name, shape)
        given.update(self._emission_check(X, emission_input, continuing))
        if is_dask_array(X):
            extras = [(offsets[bounds[i] : bounds[i + 1] + 1] - offsets[bounds[i]],) for i in range(len(bounds) - 1)]
            blocks = DaskBlocks([emission_input], _hmm_chunk, extras)
            (emission_input,) = blocks.arrays  # persisted when they fit in the workers' memory
            if emission_input.ndim == 2:  # the checked values are X's (Gaussian, Poisson): one copy on the cluster
                X = emission_input
        else:
            blocks = Blocks((emission_input, offsets), sequence_bounds(offsets, _rows_per_block(K)), _hmm_sequences)
        return _HMMData(blocks, X, emission_input, offsets, given, learn, float(X.shape[0]))

    def _validate_dask_X(self, X, y, lengths, sequence_ids):
        """A dask array of sequences: checked chunk by chunk with the same checks as in memory, never gathered.

        Returns the array rechunked so that no chunk cuts a sequence, the
        emission input (lazy), the sequence offsets and each chunk's sequences.
        """
        whom = f"{type(self).__name__}.fit"
        X = check_dask_array(X, whom=whom)
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
        return stats._replace(emission=self._emission_recenter(stats.emission, old_params, new_params))

    def _emission_recenter(self, stats, old_params, new_params):
        """Emission statistics taken about ``old_params`` moved to ``new_params`` (identity unless centred)."""
        return stats

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
        emission, labels = self._emission_initialize(data, random_state)
        params.update(emission)
        if labels is not None:
            # the emission's start clustered the rows: start and transition probabilities from those labels
            # (counts plus one, so no probability starts at an exact zero, which EM would keep forever)
            if "startprob_" not in given:
                params["startprob_"] = _label_counts(labels[data.offsets[:-1]], K)
            if "transmat_" not in given:
                params["transmat_"] = _label_transitions(labels, data.offsets, K)
        return params

    def _frames(self, emission_input, params, emission_context=None):
        """Keyword arguments for the kernels: ``frameprob`` when the emission gives probabilities
        directly (no exponentials needed), else ``log_frameprob``."""
        if emission_context is None:
            emission_context = self._emission_context(params)
        frameprob = self._emission_frameprob(emission_input, params, emission_context)
        if frameprob is not None:
            return {"frameprob": frameprob, "overwrite_frameprob": True}  # a fresh array: no copy needed
        return {"log_frameprob": self._emission_log_likelihood(emission_input, params, emission_context)}

    def _emission_frameprob(self, emission_input, params, emission_context):
        """Emission probabilities ``p(x_t | z_t = k)`` when cheap and safe to give directly, else None."""
        return None

    def _e_step_context(self, data, params):
        return _HMMContext(params, data.learn, self._emission_context(params))

    def _e_step_block(self, block, context, state):
        params = context.params
        result = forward_backward(
            params["startprob_"],
            params["transmat_"],
            offsets=block.offsets,
            compute_xi="t" in context.learn,
            **self._frames(block.emission_input, params, context.emission),
        )
        loglik = float(result.log_likelihood.sum())
        if not np.isfinite(loglik):
            raise NumericalFailure(
                "a sequence has zero likelihood under the current parameters "
                "(increase the emission priors or regularisation)"
            )
        emission = None
        if set(self._emission_names) & context.learn:
            emission = self._emission_accumulate(block.emission_input, result.posteriors, params, context.emission)
        trans = result.xi_sum if "t" in context.learn else None
        return BlockResult(_HMMStats(result.start_sum, trans, emission), loglik)

    def _m_step(self, data, stats, params):
        learn = data.learn
        new = dict(params)
        if "s" in learn:
            new["startprob_"] = _dirichlet_map(stats.start, self.startprob_prior, params["startprob_"])
        if "t" in learn:
            new["transmat_"] = _dirichlet_map(stats.trans, self.transmat_prior, params["transmat_"])
        if stats.emission is not None:
            new.update(self._emission_m_step(stats.emission, params, learn))
        return new

    def _log_prior(self, data, params):
        learn = data.learn
        total = 0.0
        if "s" in learn:
            total += _dirichlet_log_prior(params["startprob_"], self.startprob_prior)
        if "t" in learn:
            total += _dirichlet_log_prior(params["transmat_"], self.transmat_prior)
        return total + self._emission_log_prior(params, learn)

    def _emission_context(self, params):
        """Values derived from the emission parameters once per E-step (None by default)."""
        return None

    def _check_warm_start(self, data, params):
        K = self.n_components
        expected = {"startprob_": (K,), "transmat_": (K, K), **self._emission_shapes(data)}
        check_warm_start_shapes(params, expected)

    def _fitted_params(self):
        params = {"startprob_": self.startprob_, "transmat_": self.transmat_}
        params.update(self._emission_fitted_params())
        return params

    # ------------------------------------------------------------ inference helpers
    def _check_fitted_input(self, X, lengths, sequence_ids):
        check_is_fitted(self)
        X, emission_input = self._emission_validate_X(X, reset=False)
        offsets = check_sequences(X.shape[0], lengths, sequence_ids)
        params = self._fitted_params()
        return emission_input, offsets, params

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
        emission_input, offsets, params = self._check_fitted_input(X, lengths, sequence_ids)
        frames = self._frames(emission_input, params)
        result = forward_backward(
            params["startprob_"], params["transmat_"], offsets=offsets, compute_xi=False, **frames
        )
        self._raise_if_impossible(result.log_likelihood)
        return result.posteriors

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
            log_frameprob = self._emission_log_likelihood(emission_input, params, self._emission_context(params))
            result = viterbi(safe_log(params["startprob_"]), safe_log(params["transmat_"]), log_frameprob, offsets)
            self._raise_if_impossible(result.log_prob)
            return float(result.log_prob.sum()), result.states
        frames = self._frames(emission_input, params)
        result = forward_backward(
            params["startprob_"], params["transmat_"], offsets=offsets, compute_xi=False, **frames
        )
        self._raise_if_impossible(result.log_likelihood)
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
        expected = state_proba @ self._emission_expectation(params)
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
        X = self._emission_sample(params, states, rng)
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
        return int((K - 1) + K * (K - 1) + self._emission_n_parameters())

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
        log_density = self.score_samples(X, lengths=lengths, sequence_ids=sequence_ids)
        return float(-2.0 * np.sum(log_density) + self._n_parameters() * np.log(log_density.shape[0]))

    def aic(self, X, lengths=None, sequence_ids=None):
        """Akaike information criterion ``-2 log p(X) + 2 n_params`` (lower is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        lengths : array-like of int of shape (n_sequences,), default=None
        sequence_ids : array-like of shape (n_samples,), default=None

        Returns
        -------
        aic : float
        """
        log_density = self.score_samples(X, lengths=lengths, sequence_ids=sequence_ids)
        return float(-2.0 * np.sum(log_density) + 2.0 * self._n_parameters())


_SHARED_PARAMS_DOC = """
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


# ====================================================================== Gaussian
class GaussianHMM(_BaseHMM):
    """Hidden Markov model with Gaussian emissions.

    hmmlearn's ``GaussianHMM`` names, defaults and priors, fitted by emkit's
    EM engine (restarts, ``n_jobs``, per-step stopping rule) with compiled
    forward-backward and Viterbi kernels.

    Parameters
    ----------
    n_components : int, default=1
        Number of hidden states.
    covariance_type : {"diag", "full", "tied", "spherical"}, default="diag"
        ``covars_`` shapes: diag (n_components, n_features), full
        (n_components, n_features, n_features), tied (n_features, n_features),
        spherical (n_components,). hmmlearn's ``covars_`` getter expands to
        full matrices; here ``covars_`` is compact (as scikit-learn's
        ``covariances_``).
    min_covar : float, default=1e-3
        Added to the diagonal of the data covariance that initialises
        ``covars_`` (as hmmlearn).
    means_prior, means_weight : float or array-like, default=0
        Normal prior on the means: centre and precision weight (0 = off).
    covars_prior : float or array-like, default=1e-2
        Inverse-gamma / inverse-Wishart scale of the covariance prior. A scalar
        means ``covars_prior * I`` for full and tied (hmmlearn adds a scalar
        to every entry of the matrix instead).
    covars_weight : float, default=1
        Its degrees of freedom (hmmlearn's convention).
    params : str or tuple of str, default="stmc"
        What EM learns: letters s (startprob), t (transmat), m (means), c
        (covars), or a tuple of attribute names.
    init_params : str or tuple of str, default="stmc"
        What is initialised from the data (the rest must be given).
    means_init : array-like of shape (n_components, n_features), default=None
        Starting means.
    covars_init : array-like, default=None
        Starting covariances, compact shape for ``covariance_type``.
    {shared_parameters}
    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
    transmat_ : ndarray of shape (n_components, n_components)
    means_ : ndarray of shape (n_components, n_features)
    covars_ : ndarray
        Compact covariances (see ``covariance_type``).
    n_features_in_ : int
    converged_, n_iter_, lower_bound_, lower_bound_history_, restarts_
        Set by the EM engine (see :class:`emkit.base.EMMixin`).

    Examples
    --------
    >>> import numpy as np
    >>> from emkit.hmm import GaussianHMM
    >>> rng = np.random.RandomState(0)
    >>> states = np.repeat([0, 1, 0, 1], 50)
    >>> X = rng.normal(size=(200, 1)) + 5.0 * states[:, None]
    >>> model = GaussianHMM(n_components=2, random_state=0).fit(X)
    >>> bool(np.allclose(np.sort(model.means_[:, 0]), [0.0, 5.0], atol=0.3))
    True
    >>> agree = np.mean(model.predict(X) == states)
    >>> bool(agree > 0.99 or agree < 0.01)
    True
    """

    _emission_names = {"m": "means_", "c": "covars_"}

    _parameter_constraints = {
        **_BaseHMM._hmm_parameter_constraints,
        "covariance_type": [StrOptions(set(gaussian.COVARIANCE_TYPES))],
        "min_covar": [Interval(Real, 0, None, closed="left")],
        "means_prior": ["array-like", Real],
        "means_weight": ["array-like", Real],
        "covars_prior": ["array-like", Real],
        "covars_weight": [Real],
        "means_init": ["array-like", None],
        "covars_init": ["array-like", None],
    }

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="diag",
        min_covar=1e-3,
        startprob_prior=1.0,
        transmat_prior=1.0,
        means_prior=0,
        means_weight=0,
        covars_prior=1e-2,
        covars_weight=1,
        algorithm="viterbi",
        params="stmc",
        init_params="stmc",
        startprob_init=None,
        transmat_init=None,
        means_init=None,
        covars_init=None,
        max_iter=100,
        tol=1e-4,
        n_init=1,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        n_jobs=None,
        keep_params_history=False,
        learning_decay=0.7,
        learning_offset=10.0,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.min_covar = min_covar
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight
        self.algorithm = algorithm
        self.params = params
        self.init_params = init_params
        self.startprob_init = startprob_init
        self.transmat_init = transmat_init
        self.means_init = means_init
        self.covars_init = covars_init
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_jobs = n_jobs
        self.keep_params_history = keep_params_history
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset

    # ------------------------------------------------------------ emission hooks
    def _emission_validate_X(self, X, reset):
        X = validate_data(self, X, reset=reset, dtype=np.float64, ensure_min_samples=2 if reset else 1)
        if reset and X.shape[0] < self.n_components:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {self.n_components}, "
                f"n_samples = {X.shape[0]}."
            )
        return X, self._emission_input(X)

    def _emission_input(self, X):
        return X

    def _emission_shapes(self, data):
        n_features = data.X.shape[1]
        shape = gaussian.parameter_shapes("covariances", self.covariance_type, self.n_components, n_features)[0]
        return {"means_": (self.n_components, n_features), "covars_": shape}

    def _prior_kwargs(self, n_features):
        K = self.n_components
        means_prior = np.asarray(self.means_prior, dtype=np.float64)
        means_weight = np.asarray(self.means_weight, dtype=np.float64)
        covars_prior = np.asarray(self.covars_prior, dtype=np.float64)
        if self.covariance_type == "spherical" and covars_prior.ndim == 1:
            covars_prior = np.repeat(covars_prior[:, np.newaxis], n_features, axis=1)
        return {
            "means_prior": np.broadcast_to(means_prior, (K, n_features)) if means_prior.ndim else means_prior,
            "means_weight": means_weight,
            "covars_prior": covars_prior,
            "covars_weight": float(self.covars_weight),
        }

    def _emission_check(self, X, emission_input, continuing):
        # shapes and values of the Gaussian parameters: one table, shared with GaussianMixture
        shape_args = (self.covariance_type, self.n_components, X.shape[1])
        for name in ("means_weight", "means_prior", "covars_prior"):
            gaussian.check_parameter(getattr(self, name), name, *shape_args)
        given = {}
        value = self._user_value("m", self.means_init)
        if value is not None:
            given["means_"] = gaussian.check_parameter(value, "means", *shape_args, label="means_init")
        value = self._user_value("c", self.covars_init)
        if value is not None:
            given["covars_"] = gaussian.check_parameter(value, "covariances", *shape_args, label="covars_init")
        return given

    def _pack(self, means, covars):
        try:  # a covariance EM made singular ends this restart (the engine drops it)
            gaussian.precisions_cholesky(covars, self.covariance_type)
        except np.linalg.LinAlgError as exc:
            raise NumericalFailure(
                f"a state's covariance is no longer positive definite ({exc}); increase covars_prior "
                "(or min_covar), or lower n_components"
            ) from None
        return {"means_": means, "covars_": covars}

    def _emission_initialize(self, data, random_state):
        X = data.X
        K = self.n_components
        given = data.given
        labels = None
        if "means_" in given:
            means = given["means_"].copy()
        else:
            kmeans = KMeans(n_clusters=K, n_init=1, random_state=random_state).fit(X)
            means, labels = kmeans.cluster_centers_, kmeans.labels_
        if "covars_" in given:
            covars = given["covars_"].copy()
        elif labels is not None:
            # each state starts with the spread of its own k-means cluster, not that of all the data
            # (a shared, wide start lets well-separated states merge)
            covars = _cluster_covariances(X, labels, means, self.covariance_type, self.min_covar)
        else:
            cv = np.atleast_2d(np.cov(X.T)) + self.min_covar * np.eye(X.shape[1])
            covars = {
                "full": lambda: np.tile(cv, (K, 1, 1)),
                "tied": lambda: cv,
                "diag": lambda: np.tile(np.diag(cv), (K, 1)),
                "spherical": lambda: np.full(K, np.diag(cv).mean()),
            }[self.covariance_type]()
        return self._pack(means, covars), labels

    def _emission_context(self, params):
        return gaussian.precisions_cholesky(params["covars_"], self.covariance_type)

    def _emission_recenter(self, stats, old_params, new_params):
        return gaussian.recenter(stats, old_params["means_"], new_params["means_"], self.covariance_type)

    def _emission_log_likelihood(self, X, params, prec_chol):
        return gaussian.log_likelihood(X, params["means_"], prec_chol, self.covariance_type)

    def _emission_accumulate(self, X, posteriors, params, prec_chol):
        return gaussian.accumulate(X, posteriors, params["means_"], self.covariance_type)

    def _emission_m_step(self, stats, params, learn):
        means_old = params["means_"]
        covars_old = params["covars_"]
        means, covars = gaussian.m_step(
            stats,
            means_old,
            self.covariance_type,
            means=means_old,
            covariances=covars_old,
            learn_means="m" in learn,
            learn_covars="c" in learn,
            **self._prior_kwargs(means_old.shape[1]),
        )
        # a state with no posterior mass keeps its parameters (generalised EM: Q does not decrease)
        empty = stats.post <= 1e-10
        if np.any(empty):
            means = np.where(empty[:, np.newaxis], means_old, means)
            if "c" in learn and self.covariance_type != "tied":
                covars = covars.copy()
                covars[empty] = covars_old[empty]
        return self._pack(means, covars)

    def _emission_log_prior(self, params, learn):
        if not ({"m", "c"} & learn):
            return 0.0
        kwargs = self._prior_kwargs(params["means_"].shape[1])
        if "m" not in learn:
            kwargs["means_weight"] = 0.0
        if "c" not in learn:
            kwargs["covars_prior"] = 0.0
            kwargs["covars_weight"] = None
        return gaussian.log_prior(params["means_"], params["covars_"], self.covariance_type, **kwargs)

    def _emission_fitted_params(self):
        return {"means_": self.means_, "covars_": self.covars_}

    def _emission_n_parameters(self):
        return gaussian.n_parameters(self.n_components, self.n_features_in_, self.covariance_type)

    def _emission_sample(self, params, states, rng):
        return gaussian.sample(params["means_"], params["covars_"], self.covariance_type, states, rng)

    def _emission_expectation(self, params):
        return params["means_"]


# ====================================================================== categorical
class CategoricalHMM(_BaseHMM):
    """Hidden Markov model with categorical emissions (one integer symbol per step).

    Parameters
    ----------
    n_components : int, default=1
        Number of hidden states.
    n_features : int, default=None
        Number of symbols (hmmlearn's name); None infers ``max(X) + 1`` at
        fit. Never overwritten: the count used is ``n_symbols_``.
    emissionprob_prior : float or array-like of shape (n_components, n_symbols), default=1.0
        Dirichlet prior on each row of ``emissionprob_`` (1 = maximum likelihood).
    params : str or tuple of str, default="ste"
        What EM learns: letters s, t, e (emissionprob).
    init_params : str or tuple of str, default="ste"
        What is initialised (the rest must be given).
    emissionprob_init : array-like of shape (n_components, n_symbols), default=None
        Starting emission probabilities.
    {shared_parameters}
    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
    transmat_ : ndarray of shape (n_components, n_components)
    emissionprob_ : ndarray of shape (n_components, n_symbols)
    n_symbols_ : int
        Number of symbols used (``n_features`` if given, else inferred at fit).
    n_features_in_ : int
        Always 1: X is one column of symbols.

    Examples
    --------
    >>> import numpy as np
    >>> from emkit.hmm import CategoricalHMM
    >>> X = np.array([[0], [0], [1], [2], [2], [2], [0], [1]])
    >>> model = CategoricalHMM(n_components=2, random_state=0).fit(X)
    >>> model.emissionprob_.shape
    (2, 3)
    >>> model.predict(X).shape
    (8,)
    """

    _emission_names = {"e": "emissionprob_"}

    _parameter_constraints = {
        **_BaseHMM._hmm_parameter_constraints,
        "n_features": [Interval(Integral, 1, None, closed="left"), None],
        "emissionprob_prior": [Interval(Real, 0, None, closed="left"), "array-like"],
        "emissionprob_init": ["array-like", None],
    }

    def __init__(
        self,
        n_components=1,
        *,
        n_features=None,
        startprob_prior=1.0,
        transmat_prior=1.0,
        emissionprob_prior=1.0,
        algorithm="viterbi",
        params="ste",
        init_params="ste",
        startprob_init=None,
        transmat_init=None,
        emissionprob_init=None,
        max_iter=100,
        tol=1e-4,
        n_init=1,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        n_jobs=None,
        keep_params_history=False,
        learning_decay=0.7,
        learning_offset=10.0,
    ):
        self.n_components = n_components
        self.n_features = n_features
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.emissionprob_prior = emissionprob_prior
        self.algorithm = algorithm
        self.params = params
        self.init_params = init_params
        self.startprob_init = startprob_init
        self.transmat_init = transmat_init
        self.emissionprob_init = emissionprob_init
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_jobs = n_jobs
        self.keep_params_history = keep_params_history
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True
        tags.input_tags.positive_only = True
        return tags

    def _emission_validate_X(self, X, reset):
        X = validate_data(self, X, reset=reset, dtype=None)
        symbols = self._emission_input(X)
        if not reset:
            n_symbols = np.shape(self.emissionprob_)[1]
            if symbols.size and symbols.max() >= n_symbols:
                raise ValueError(
                    f"Largest symbol is {symbols.max()} but the model only emits symbols up to {n_symbols - 1}."
                )
        return X, symbols

    def _emission_input(self, X):
        """Check one column of integer symbols (any numeric dtype); return them as int64."""
        if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
            raise ValueError(f"CategoricalHMM expects numeric integer symbols, got dtype {X.dtype}.")
        if X.shape[1] != 1:
            raise ValueError(
                f"CategoricalHMM expects X of shape (n_samples, 1): one column of integer symbols; got "
                f"{X.shape[1]} columns."
            )
        if np.any(X < 0):
            raise ValueError("Negative values in data passed to CategoricalHMM: symbols must be integers >= 0.")
        if not np.issubdtype(X.dtype, np.integer) and np.any(X != np.floor(X)):
            raise ValueError("CategoricalHMM expects integer symbols, found non-integral values.")
        if X.size and X.max() >= 2**53:
            raise ValueError(
                f"CategoricalHMM: symbol {X.max():.6g} is too large; symbols are the integers 0 .. n_features - 1 "
                "(encode raw ids first, e.g. with sklearn.preprocessing.OrdinalEncoder)."
            )
        return X[:, 0].astype(np.int64)

    def _emission_check(self, X, symbols, continuing):
        K = self.n_components
        init = self._user_value("e", self.emissionprob_init)
        n_seen = int(symbols.max()) + 1
        if self.n_features is not None:
            n_symbols = int(self.n_features)
        elif init is not None:
            n_symbols = int(np.shape(init)[-1])
        elif continuing:
            n_symbols = max(n_seen, int(np.shape(self.emissionprob_)[-1]))  # continue with the fitted symbols
        else:
            n_symbols = n_seen
            table_bytes = 8 * K * n_symbols
            if table_bytes > _MAX_TABLE_BYTES:
                raise ValueError(
                    f"CategoricalHMM: the largest symbol is {n_seen - 1}, so the emission table would have "
                    f"{n_symbols} columns per state ({table_bytes / 2**30:.1f} GiB): symbols are the integers "
                    "0 .. n_features - 1, and column j of emissionprob_ is symbol j. Raw ids (zip codes, user ids) "
                    "should be encoded first, e.g. with sklearn.preprocessing.OrdinalEncoder; or give n_features "
                    "if the table really is that large."
                )
        if n_seen > n_symbols:
            raise ValueError(
                f"Largest symbol is {n_seen - 1} but the model only emits symbols up to {n_symbols - 1} "
                "(n_features)."
            )
        self.n_symbols_ = n_symbols
        _check_prior(self.emissionprob_prior, "emissionprob_prior", (K, n_symbols))
        given = {}
        if init is not None:
            name = "emissionprob_init" if self.emissionprob_init is not None else "emissionprob_"
            given["emissionprob_"] = _check_distribution(init, name, (K, n_symbols))
        return given

    def _emission_shapes(self, data):
        return {"emissionprob_": (self.n_components, self.n_symbols_)}

    def _emission_initialize(self, data, random_state):
        if "emissionprob_" in data.given:
            return {"emissionprob_": data.given["emissionprob_"].copy()}, None
        prob = random_state.uniform(size=(self.n_components, self.n_symbols_))
        return {"emissionprob_": prob / prob.sum(axis=1, keepdims=True)}, None

    def _emission_log_likelihood(self, symbols, params, context):
        return categorical.log_likelihood(symbols, params["emissionprob_"])

    def _emission_frameprob(self, symbols, params, context):
        return categorical.likelihood(symbols, params["emissionprob_"])

    def _emission_accumulate(self, symbols, posteriors, params, context):
        return categorical.accumulate(symbols, posteriors, params["emissionprob_"].shape[1])

    def _emission_m_step(self, stats, params, learn):
        return {"emissionprob_": categorical.m_step(stats, params["emissionprob_"], self.emissionprob_prior)}

    def _emission_log_prior(self, params, learn):
        if "e" not in learn:
            return 0.0
        return categorical.log_prior(params["emissionprob_"], self.emissionprob_prior)

    def _emission_fitted_params(self):
        return {"emissionprob_": self.emissionprob_}

    def _emission_n_parameters(self):
        return categorical.n_parameters(self.n_components, np.shape(self.emissionprob_)[1])

    def _emission_sample(self, params, states, rng):
        return categorical.sample(params["emissionprob_"], states, rng)

    def _emission_expectation(self, params):
        return params["emissionprob_"]


# ====================================================================== Poisson
class PoissonHMM(_BaseHMM):
    """Hidden Markov model with independent Poisson emissions (a vector of counts per step).

    X holds non-negative counts, one column per count variable (negative
    values raise). Non-integral values are accepted and scored with
    ``lgamma(x + 1)`` in place of ``log x!`` (a quasi-likelihood; the M-step,
    a weighted mean, is the same).

    Parameters
    ----------
    n_components : int, default=1
        Number of hidden states.
    lambdas_prior, lambdas_weight : float or array-like broadcastable to (n_components, n_features), default=0
        Gamma prior on the rates: the M-step is
        ``(lambdas_prior + sum r x) / (lambdas_weight + N_k)`` (0, 0 =
        maximum likelihood). hmmlearn uses the total count of all states in
        place of ``N_k`` there; with its default 0, 0 both agree.
    params : str or tuple of str, default="stl"
        What EM learns: letters s, t, l (lambdas).
    init_params : str or tuple of str, default="stl"
        What is initialised (the rest must be given).
    lambdas_init : array-like of shape (n_components, n_features), default=None
        Starting rates.
    {shared_parameters}
    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
    transmat_ : ndarray of shape (n_components, n_components)
    lambdas_ : ndarray of shape (n_components, n_features)
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from emkit.hmm import PoissonHMM
    >>> rng = np.random.RandomState(0)
    >>> states = np.repeat([0, 1, 0, 1], 50)
    >>> X = rng.poisson(np.where(states == 0, 2.0, 20.0))[:, None]
    >>> model = PoissonHMM(n_components=2, random_state=0).fit(X)
    >>> np.round(np.sort(model.lambdas_[:, 0]))
    array([ 2., 20.])
    """

    _emission_names = {"l": "lambdas_"}

    _parameter_constraints = {
        **_BaseHMM._hmm_parameter_constraints,
        "lambdas_prior": [Interval(Real, 0, None, closed="left"), "array-like"],
        "lambdas_weight": [Interval(Real, 0, None, closed="left"), "array-like"],
        "lambdas_init": ["array-like", None],
    }

    def __init__(
        self,
        n_components=1,
        *,
        startprob_prior=1.0,
        transmat_prior=1.0,
        lambdas_prior=0.0,
        lambdas_weight=0.0,
        algorithm="viterbi",
        params="stl",
        init_params="stl",
        startprob_init=None,
        transmat_init=None,
        lambdas_init=None,
        max_iter=100,
        tol=1e-4,
        n_init=1,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        n_jobs=None,
        keep_params_history=False,
        learning_decay=0.7,
        learning_offset=10.0,
    ):
        self.n_components = n_components
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.lambdas_prior = lambdas_prior
        self.lambdas_weight = lambdas_weight
        self.algorithm = algorithm
        self.params = params
        self.init_params = init_params
        self.startprob_init = startprob_init
        self.transmat_init = transmat_init
        self.lambdas_init = lambdas_init
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_jobs = n_jobs
        self.keep_params_history = keep_params_history
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        return tags

    def _emission_validate_X(self, X, reset):
        X = validate_data(self, X, reset=reset, dtype=np.float64)
        return X, self._emission_input(X)

    def _emission_input(self, X):
        if np.any(X < 0):
            raise ValueError("Negative values in data passed to PoissonHMM: counts must be >= 0.")
        return X

    def _emission_check(self, X, emission_input, continuing):
        shape = (self.n_components, X.shape[1])
        _check_prior(self.lambdas_prior, "lambdas_prior", shape)
        _check_prior(self.lambdas_weight, "lambdas_weight", shape)
        value = self._user_value("l", self.lambdas_init)
        if value is None:
            return {}
        name = "lambdas_init" if self.lambdas_init is not None else "lambdas_"
        lambdas = check_array_param(value, name, shape)
        if np.any(lambdas < 0):
            raise ValueError(f"{name} must be non-negative.")
        return {"lambdas_": lambdas}

    def _emission_shapes(self, data):
        return {"lambdas_": (self.n_components, data.X.shape[1])}

    def _emission_initialize(self, data, random_state):
        if "lambdas_" in data.given:
            return {"lambdas_": data.given["lambdas_"].copy()}, None
        X = data.X
        shape = (self.n_components, X.shape[1])
        mean, var = X.mean(), X.var()
        if mean > 0 and var > 0:
            # method of moments for a Gamma over all counts (hmmlearn's start)
            return {"lambdas_": random_state.gamma(shape=mean**2 / var, scale=var / mean, size=shape)}, None
        return {"lambdas_": np.full(shape, mean)}, None

    def _emission_log_likelihood(self, X, params, context):
        return poisson.log_likelihood(X, params["lambdas_"])

    def _emission_accumulate(self, X, posteriors, params, context):
        return poisson.accumulate(X, posteriors)

    def _emission_m_step(self, stats, params, learn):
        return {"lambdas_": poisson.m_step(stats, params["lambdas_"], self.lambdas_prior, self.lambdas_weight)}

    def _emission_log_prior(self, params, learn):
        if "l" not in learn:
            return 0.0
        return poisson.log_prior(params["lambdas_"], self.lambdas_prior, self.lambdas_weight)

    def _emission_fitted_params(self):
        return {"lambdas_": self.lambdas_}

    def _emission_n_parameters(self):
        return poisson.n_parameters(self.n_components, self.n_features_in_)

    def _emission_sample(self, params, states, rng):
        return poisson.sample(params["lambdas_"], states, rng)

    def _emission_expectation(self, params):
        return params["lambdas_"]


for _cls in (GaussianHMM, CategoricalHMM, PoissonHMM):
    _cls.__doc__ = _cls.__doc__.replace("    {shared_parameters}\n", _SHARED_PARAMS_DOC.lstrip("\n"))
del _cls
