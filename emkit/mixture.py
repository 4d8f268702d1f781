"""Mixture models fitted by EM: one core, a component density per family.

:class:`_BaseMixture` holds everything a finite mixture needs whatever its
components are (validation, starts, the E-step block, the weights' M-step,
priors, inference, sampling, model selection, online EM, Dask); a family is a
small class that says which density object (:mod:`emkit._densities`) its
components are and which starting values and priors it takes.
"""

from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.utils import check_random_state

from ._blocks import Blocks, row_bounds
from ._dask import DaskBlocks, check_dask_array, is_dask_array, rowwise, sample_rows
from ._densities import bernoulli, dirichlet, gaussian, gaussian_missing, poisson
from ._densities.base import PENDING_LAYOUT, Density
from ._inference.mixture import normalize_log_rows
from ._math import fill_missing, safe_log
from ._validation import (
    Interval,
    StrOptions,
    check_is_fitted,
    check_sample_weight,
    check_warm_start_shapes,
    dask_sample_weight,
    fit_context,
    reset_n_features,
    store_init_arguments,
    validate_data,
)
from .base import BlockResult, EMMixin, NumericalFailure

__all__ = ["GaussianMixture", "BernoulliMixture", "PoissonMixture"]

# rows gathered from a dask array to draw a k-means (or random) start
_INIT_SAMPLE_ROWS = 20_000
# rows per E-step block of the families without a shape-dependent block size
_ROWS_PER_BLOCK = 8192


class _MixtureData(NamedTuple):
    blocks: Blocks  # of _MixtureBlock
    X: np.ndarray  # validated (and, for the family, converted) rows
    sample_weight: np.ndarray  # None when unweighted
    n_units: float
    density: object  # the component density, hyperparameters resolved (emkit._densities)
    given: dict  # user-given starting values, validated


class _MixtureBlock(NamedTuple):
    X: np.ndarray
    sample_weight: np.ndarray  # None when unweighted


def _mixture_rows(source, start, stop):
    X, sample_weight = source
    return _MixtureBlock(X[start:stop], None if sample_weight is None else sample_weight[start:stop])


def _mixture_chunk(X, sample_weight):
    """A block made on a Dask worker from one row chunk (and its weights)."""
    return _MixtureBlock(np.ascontiguousarray(X), None if sample_weight is None else np.asarray(sample_weight))


def _checked_chunk(chunk, density):
    """The density's own value checks and conversion of one row chunk, on its worker."""
    return density.check_input(np.asarray(chunk, dtype=np.float64))


class _MixtureContext(NamedTuple):
    """What every block of an E-step needs (small: sent once per E-step to wherever blocks run)."""

    density: object
    log_weights: np.ndarray
    params: dict
    component: object  # the density's own per-E-step values (``density.context``)


_SHARED_PARAMS_DOC = """
    tol : float, default=1e-3
        Converged when the per-sample objective increases by less than
        ``tol`` (and did not decrease beyond round-off).
    max_iter : int, default=100
        Maximum number of M-steps per restart.
    n_init : int, default=1
        Number of restarts; the one with the highest objective wins.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        How the starting responsibilities are drawn (as scikit-learn's
        GaussianMixture); the start is the M-step from them.
    weights_init : array-like of shape (n_components,), default=None
        Starting mixing weights.
    random_state : int, RandomState instance or None, default=None
        Seeds the restarts (one seed per restart is drawn up front).
    warm_start : bool, default=False
        Continue from the fitted parameters on the next ``fit`` (one restart).
    verbose : int, default=0
        Print progress (1: restarts, 2: also the objective every
        ``verbose_interval`` iterations).
    verbose_interval : int, default=10
        Iterations between progress lines.
    n_jobs : int, default=None
        With ``n_init > 1``, restarts run in parallel through joblib; with one
        restart, the E-step's row blocks run on ``n_jobs`` threads. ``None``
        means 1. The result does not depend on it.
    keep_params_history : bool, default=False
        Keep the parameters after every iteration in ``params_history_``.
    weights_prior : float or array-like of shape (n_components,), default=None
        Dirichlet concentration on the mixing weights; ``None`` (or 1) is
        a flat prior. The MAP weights are
        ``max(N_k + alpha_k - 1, 0) / sum_j max(N_j + alpha_j - 1, 0)``.
    learning_decay : float, default=0.7
        Online EM (:meth:`partial_fit`): the step size of update ``t`` is
        ``(t + learning_offset) ** -learning_decay`` (LDA's names); in
        [0.5, 1] for convergence.
    learning_offset : float, default=10.0
        Online EM: the step size's offset (larger: smaller early steps).
"""

_SHARED_ATTRIBUTES_DOC = """
    weights_ : ndarray of shape (n_components,)
        Mixing weights.
    converged_ : bool
        Whether the winning restart converged.
    n_iter_ : int
        M-steps done by the winning restart.
    lower_bound_ : float
        Objective (mean log-likelihood per sample, plus the log-prior per
        sample when priors are on) of the returned parameters.
    lower_bound_history_ : ndarray, one entry per iteration
        The objective after each M-step of the winning restart.
    restarts_ : list of dict
        Seed, objective, iterations and convergence of every restart.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of str, one entry per feature
        Names of features seen during ``fit`` (only when X has string
        column names).
"""


class _BaseMixture(EMMixin, DensityMixin, BaseEstimator):
    """The core of every emkit mixture: ``p(x) = sum_k weights_[k] p_k(x)`` with ``p_k`` from a density object.

    A family subclass provides its constructor (explicit keyword arguments,
    scikit-learn's rule), ``_parameter_constraints`` and:

    - ``_make_density(n_features, dtype)``: its density object
      (:mod:`emkit._densities`), hyperparameters resolved;
    - ``_given_params(density)``: validated user-given starting values of the
      components, keyed by attribute name (the weights are the core's);
    - optionally ``_dtypes`` (accepted input dtypes, float64 by default),
      ``_block_rows(n_features)``, ``_failure_message``, ``_after_fit``.
    """

    _dtypes = np.float64
    _positive_only = False  # the scikit-learn tag: the family's data are non-negative (counts)
    _allow_nan = False  # NaN marks a missing entry, marginalised exactly (GaussianMixture)
    # what a restart that fails numerically reports ({exc}: what failed); it names the knob that helps
    _failure_message = "a component's parameters became invalid ({exc}); lower n_components or check the data."

    _mixture_parameter_constraints = {
        **EMMixin._em_parameter_constraints,
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "init_params": [StrOptions({"kmeans", "random", "random_from_data", "k-means++"})],
        "weights_init": ["array-like", None],
        "weights_prior": [Interval(Real, 0.0, None, closed="neither"), "array-like", None],
        "learning_decay": [Interval(Real, 0.5, 1.0, closed="both")],
        "learning_offset": [Interval(Real, 1.0, None, closed="left")],
    }

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None, sample_weight=None):
        """Estimate the parameters by EM (``n_init`` restarts, the best kept).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data (or a dask array: fitted where its chunks live).
            GaussianMixture computes float32 input in float32.
        y : Ignored
            Not used, present for API consistency.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample; integer weights give the
            same fit as repeating rows.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight=sample_weight)

    @fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None, sample_weight=None):
        """One online-EM update on the chunk X (stepwise EM), for streams and data read chunk by chunk.

        The first call starts from ``init_params`` on its chunk (or from the
        fitted parameters after ``fit``); each call moves a running average
        of the sufficient statistics towards the chunk's with step
        ``(t + learning_offset) ** -learning_decay`` and re-estimates the
        parameters from it. ``lower_bound_history_`` gets the chunk's mean
        log-likelihood at the parameters it was given (not monotone).

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
            One chunk of data.
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
        """
        data = self._validate_fit_data(X, sample_weight=sample_weight, reset=not self._is_fitted_for_warm_start())
        return self._partial_fit_em(data)

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return the most probable component of every training sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self.fit(X, sample_weight=sample_weight).predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = self._positive_only
        tags.input_tags.allow_nan = self._allow_nan
        return tags

    # ------------------------------------------------------------------ validation
    def _block_rows(self, n_features):
        """Rows per E-step block (a function of the shape alone, never of n_jobs)."""
        return _ROWS_PER_BLOCK

    def _validate_fit_data(self, X, y=None, sample_weight=None, reset=True):
        if is_dask_array(X):
            return self._validate_dask_fit_data(X, sample_weight)
        X = validate_data(self, X, dtype=self._dtypes, ensure_min_samples=2, reset=reset, **self._finite())
        self._check_n_samples(X.shape[0])
        density = self._make_density(X.shape[1], X.dtype)
        X = density.check_input(X)
        sample_weight = check_sample_weight(sample_weight, X)
        if self._allow_nan and np.isnan(X).any():
            # rows are exchangeable: sorted once by missing pattern, every block holds long runs of one pattern
            # (one factorisation per run, see emkit._densities.gaussian_missing.pattern_order)
            order = gaussian_missing.pattern_order(X)
            X = X[order]
            sample_weight = None if sample_weight is None else sample_weight[order]
        n_units = float(X.shape[0]) if sample_weight is None else float(sample_weight.sum())
        given = self._check_given(density)
        blocks = Blocks((X, sample_weight), row_bounds(X.shape[0], self._block_rows(X.shape[1])), _mixture_rows)
        return _MixtureData(blocks, X, sample_weight, n_units, density, given)

    def _finite(self):
        """``validate_data``'s finiteness option: NaN allowed (missing) where the family marginalises it."""
        return {"ensure_all_finite": "allow-nan"} if self._allow_nan else {}

    def _check_n_samples(self, n_samples):
        if n_samples < max(2, self.n_components):
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {self.n_components}, "
                f"n_samples = {n_samples}"
            )

    def _validate_dask_fit_data(self, X, sample_weight):
        """The same checks on a dask array, without gathering it (see :mod:`emkit._dask`)."""
        whom = f"{type(self).__name__}.fit"
        X = check_dask_array(X, whom=whom, allow_nan=self._allow_nan)
        if X.dtype not in np.atleast_1d(self._dtypes):
            X = X.astype(np.float64)
        self._check_n_samples(X.shape[0])
        reset_n_features(self, X.shape[1])
        density = self._make_density(X.shape[1], X.dtype)
        if type(density).check_input is not Density.check_input:
            # the family's own value checks and conversion (counts, binarisation), chunk by chunk on the workers
            X = X.map_blocks(_checked_chunk, density, dtype=np.float64)
            X.sum().compute()  # one pass: the checks raise here, before any work
        if sample_weight is not None:
            sample_weight = dask_sample_weight(sample_weight, X, whom)
            n_units = float(sample_weight.sum().compute())
            if not n_units > 0:
                raise ValueError("sample_weight sums to zero: at least one sample needs a positive weight.")
        else:
            n_units = float(X.shape[0])
        given = self._check_given(density)
        blocks = DaskBlocks([X, sample_weight], _mixture_chunk)
        X, sample_weight = blocks.arrays  # persisted when they fit in the workers' memory
        return _MixtureData(blocks, X, sample_weight, n_units, density, given)

    def _check_given(self, density):
        given = {}
        if self.weights_init is not None:
            given["weights_"] = dirichlet.check_distribution(self.weights_init, "weights_init", (self.n_components,))
        if self.weights_prior is not None:
            dirichlet.check_prior(self.weights_prior, "weights_prior", (self.n_components,), strict=True)
        given.update(self._given_params(density))
        return given

    def _failure(self, exc):
        return NumericalFailure(self._failure_message.format(exc=exc))

    def _pack(self, density, weights, component, dtype):
        try:
            component = density.pack(component)
        except np.linalg.LinAlgError as exc:
            raise self._failure(exc) from None
        return {"weights_": np.asarray(weights).astype(dtype), **component}

    # ------------------------------------------------------------------ EM hooks
    def _initialize(self, data, random_state):
        X, sample_weight, density, given = data.X, data.sample_weight, data.density, data.given
        n_components = self.n_components
        # a start needs every parameter the density names (derived ones, like precision factors, are packed)
        given_all = "weights_" in given and all(name in given for name in density.names.values())
        if is_dask_array(X) and not given_all:
            # the data stay on the cluster: random_from_data gathers its rows, the other starts a sample
            if self.init_params == "random_from_data":
                rows = random_state.choice(X.shape[0], size=n_components, replace=False)  # as in memory
                X, sample_weight = sample_rows(X, n_components, random_state, sample_weight, index=rows)
            else:
                n_sample = max(_INIT_SAMPLE_ROWS, 20 * n_components)
                X, sample_weight = sample_rows(X, n_sample, random_state, sample_weight)
        dtype = X.dtype
        weights, component = None, {}
        if not given_all:
            # the start is the M-step from drawn responsibilities (scikit-learn's), then the given values;
            # missing entries take their column's mean for the start only (EM then marginalises them exactly)
            X = fill_missing(X)
            resp = self._initial_responsibilities(X, sample_weight, random_state, is_dask_array(data.X))
            weighted = resp if sample_weight is None else resp * sample_weight[:, np.newaxis]
            centre = density.initial_centre(X, sample_weight)
            stats = density.accumulate(X, weighted, centre, None)
            try:
                component = density.initial_m_step(stats, centre)
            except np.linalg.LinAlgError as exc:
                raise self._failure(exc) from None
            nk = density.post(stats) + 10 * np.finfo(np.float64).eps
            weights = nk / nk.sum()
        weights = given.get("weights_", weights)
        component.update({name: value for name, value in given.items() if name != "weights_"})
        return self._pack(density, weights, component, dtype)

    def _initial_responsibilities(self, X, sample_weight, random_state, gathered_in_order):
        n_samples, n_components = X.shape[0], self.n_components
        if self.init_params == "kmeans":
            labels = (
                KMeans(n_clusters=n_components, n_init=1, random_state=random_state)
                .fit(X, sample_weight=sample_weight)
                .labels_
            )
            resp = np.zeros((n_samples, n_components), dtype=X.dtype)
            resp[np.arange(n_samples), labels] = 1
        elif self.init_params == "random":
            resp = random_state.uniform(size=(n_samples, n_components)).astype(X.dtype, copy=False)
            resp /= resp.sum(axis=1)[:, np.newaxis]
        elif self.init_params == "random_from_data":
            resp = np.zeros((n_samples, n_components), dtype=X.dtype)
            if gathered_in_order:  # the chosen rows of a dask array, gathered in order
                indices = np.arange(n_components)
            else:
                indices = random_state.choice(n_samples, size=n_components, replace=False)
            resp[indices, np.arange(n_components)] = 1
        else:  # k-means++
            resp = np.zeros((n_samples, n_components), dtype=X.dtype)
            _, indices = kmeans_plusplus(X, n_components, random_state=random_state, sample_weight=sample_weight)
            resp[indices, np.arange(n_components)] = 1
        return resp

    def _e_step_context(self, data, params):
        density = data.density
        return _MixtureContext(density, safe_log(params["weights_"]), params, density.context(params))

    def _initial_state(self, data, params, random_state):
        """Per block, what the component density reuses at every E-step of the restart (``density.layout``:
        where the entries are missing), made at the block's first E-step; None (no state) for data without NaN
        and for dask arrays."""
        if not self._allow_nan or is_dask_array(data.X) or not np.isnan(data.X).any():
            return None
        return [PENDING_LAYOUT] * len(data.blocks)

    @staticmethod
    def _e_step_block(block, context, state):
        density = context.density
        layout = density.layout(block.X) if state is PENDING_LAYOUT else state
        stats, log_likelihood = density.mixture_block(
            block.X, block.sample_weight, context.log_weights, context.params, context.component,
            **({} if layout is None else {"layout": layout})
        )
        return BlockResult(stats, log_likelihood, layout)

    def _m_step(self, data, stats, params):
        density = data.density
        try:
            component = density.m_step(stats, params)
        except np.linalg.LinAlgError as exc:
            raise self._failure(exc) from None
        nk = density.post(stats) + 10 * np.finfo(np.float64).eps
        prior = 1.0 if self.weights_prior is None else self.weights_prior
        weights = dirichlet.map_update(nk, prior, params["weights_"])
        return self._pack(density, weights, component, data.X.dtype)

    def _m_step_slack(self, data, stats, params):
        return data.density.slack(stats, params)

    def _log_prior(self, data, params):
        total = 0.0
        if self.weights_prior is not None:
            total += dirichlet.log_prior(params["weights_"], self.weights_prior)
        return total + data.density.log_prior(params)

    def _objective_dtype(self, data):
        return data.X.dtype

    def _check_warm_start(self, data, params):
        check_warm_start_shapes(params, {"weights_": (self.n_components,), **data.density.shapes()})

    def _recenter_stats(self, stats, old_params, new_params):
        return self._make_density(self.n_features_in_, np.float64).recenter(stats, old_params, new_params)

    def _fitted_params(self):
        names = self._make_density(self.n_features_in_, np.float64).param_names()
        return {"weights_": self.weights_, **{name: getattr(self, name) for name in names}}

    # ------------------------------------------------------------------ inference
    def _estimate_weighted_log_prob(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=self._dtypes, **self._finite())
        density = self._make_density(X.shape[1], X.dtype)
        params = self._fitted_params()
        log_prob = density.log_likelihood(density.check_input(X), params, density.context(params))
        log_prob += safe_log(self.weights_)
        return log_prob

    @rowwise("rows")
    def score_samples(self, X):
        """Log-density of every sample under the fitted mixture.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
            ``log p(x_n)``.
        """
        return logsumexp(self._estimate_weighted_log_prob(X), axis=1)

    def score(self, X, y=None):
        """Mean log-likelihood per sample (higher is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored

        Returns
        -------
        log_likelihood : float
        """
        return float(np.mean(self.score_samples(X)))

    @rowwise(lambda self: self.n_components)
    def predict_proba(self, X):
        """Posterior probability of each component for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
            ``p(z_n = k | x_n)``.
        """
        log_prob = np.ascontiguousarray(self._estimate_weighted_log_prob(X))
        normalize_log_rows(log_prob)
        return log_prob

    @rowwise("rows")
    def predict(self, X):
        """Most probable component of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self._estimate_weighted_log_prob(X).argmax(axis=1)

    def sample(self, n_samples=1, random_state=None):
        """Draw samples from the fitted mixture.

        Parameters
        ----------
        n_samples : int, default=1
        random_state : int, RandomState instance or None, default=None
            None uses the estimator's ``random_state``.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        labels : ndarray of shape (n_samples,)
            The component each sample was drawn from (sorted, as in
            scikit-learn).
        """
        check_is_fitted(self)
        if not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(f"Invalid value for 'n_samples': {n_samples}. It must be a positive integer.")
        rng = check_random_state(self.random_state if random_state is None else random_state)
        counts = rng.multinomial(n_samples, self.weights_.astype(np.float64) / self.weights_.sum())
        labels = np.repeat(np.arange(self.n_components), counts)
        density = self._make_density(self.n_features_in_, np.float64)
        return density.sample(self._fitted_params(), labels, rng), labels

    def _n_parameters(self):
        return self._make_density(self.n_features_in_, np.float64).n_parameters() + self.n_components - 1

    def bic(self, X):
        """Bayesian information criterion on X (lower is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        bic : float
        """
        n_samples = np.shape(X)[0]
        return float(-2 * self.score(X) * n_samples + self._n_parameters() * np.log(n_samples))

    def aic(self, X):
        """Akaike information criterion on X (lower is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        aic : float
        """
        n_samples = np.shape(X)[0]
        return float(-2 * self.score(X) * n_samples + 2 * self._n_parameters())


# ====================================================================== Gaussian
class GaussianMixture(_BaseMixture):
    """Gaussian mixture model fitted by EM: a drop-in for scikit-learn's ``GaussianMixture``.

    Same constructor names, defaults and fitted attributes as
    :class:`sklearn.mixture.GaussianMixture`, plus parallel restarts
    (``n_jobs``), weighted fitting (``fit(X, sample_weight=...)``), MAP
    estimation with conjugate priors, an honest stopping rule and the
    objective's history.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        Each component's covariance: its own full matrix, one matrix shared
        by all, a diagonal, or a single variance.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance after each M-step, so that
        covariances stay positive definite.
    means_init : array-like of shape (n_components, n_features), default=None
        Starting means.
    precisions_init : array-like, default=None
        Starting precision matrices (inverse covariances), shaped like
        ``covariances_`` for ``covariance_type``.
    means_prior : array-like of shape (n_features,) or (n_components, n_features), default=None
        Prior mean ``m0`` of the component means (0 when None).
    means_weight : float or array-like of shape (n_components,), default=None
        Pseudo-count ``kappa`` of the mean prior; ``None`` or 0 switches it off.
    covars_prior : float or array-like, default=None
        Scale ``Psi`` of the (inverse-Wishart / inverse-gamma) covariance
        prior: a scalar (times identity), a (D, D) matrix for full/tied or a
        (D,) / (K, D) array for diag. ``None`` switches it off.
    covars_weight : float, default=None
        Degrees of freedom ``nu`` of the covariance prior (hmmlearn's
        convention: the denominator gains ``max(nu - D, 0)`` for full/tied,
        ``max(nu - 1, 0)`` for diag/spherical). ``None``: no extra count.
    {shared_parameters}
    Attributes
    ----------
    means_ : ndarray of shape (n_components, n_features)
        Component means.
    covariances_ : ndarray
        (n_components, n_features, n_features) if full, (n_features,
        n_features) if tied, (n_components, n_features) if diag,
        (n_components,) if spherical.
    precisions_ : ndarray
        Inverses of ``covariances_``, same shape.
    precisions_cholesky_ : ndarray
        Cholesky factors of the precisions, same shape (scikit-learn's
        convention).
    {shared_attributes}
    See Also
    --------
    sklearn.mixture.GaussianMixture : the estimator this one replaces.

    Notes
    -----
    Differences from scikit-learn: ``lower_bound_`` belongs to the returned
    parameters (scikit-learn's belongs to the parameters before its last
    M-step); convergence requires ``-eps <= change < tol``, so a decrease is
    reported instead of passing as convergence; a restart that fails
    numerically is dropped instead of aborting the fit.

    Examples
    --------
    >>> import numpy as np
    >>> from emkit import GaussianMixture
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> np.round(np.sort(gm.means_[:, 0]), 3)
    array([ 1., 10.])
    >>> gm.predict([[0, 0], [12, 3]]) != gm.predict([[12, 3], [0, 0]])
    array([ True,  True])
    """

    _dtypes = [np.float64, np.float32]
    _allow_nan = True
    _failure_message = (
        "Fitting the mixture model failed because some components have ill-defined empirical covariance ({exc}). "
        "Increase reg_covar, lower n_components, or scale the input data."
    )

    _parameter_constraints = {
        **_BaseMixture._mixture_parameter_constraints,
        "covariance_type": [StrOptions(set(gaussian.COVARIANCE_TYPES))],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "means_prior": ["array-like", None],
        "means_weight": [Interval(Real, 0.0, None, closed="left"), "array-like", None],
        "covars_prior": [Interval(Real, 0.0, None, closed="left"), "array-like", None],
        "covars_weight": [Interval(Real, 0.0, None, closed="left"), None],
    }

    def __init__(self, n_components=1, *, covariance_type="full", tol=1e-3, reg_covar=1e-6, max_iter=100, n_init=1,
                 init_params="kmeans", weights_init=None, means_init=None, precisions_init=None,
                 random_state=None, warm_start=False, verbose=0, verbose_interval=10, n_jobs=None,
                 keep_params_history=False, weights_prior=None, means_prior=None, means_weight=None,
                 covars_prior=None, covars_weight=None, learning_decay=0.7, learning_offset=10.0):
        store_init_arguments(self, locals())

    def _make_density(self, n_features, dtype):
        return gaussian.Gaussian(
            self.covariance_type, self.n_components, n_features, precisions_name="precisions_cholesky_", dtype=dtype,
            reg_covar=self.reg_covar, means_prior=self.means_prior, means_weight=self.means_weight,
            covars_prior=self.covars_prior, covars_weight=self.covars_weight,
        )

    def _block_rows(self, n_features):
        return gaussian.block_size(self.n_components, n_features, self.covariance_type)

    def _given_params(self, density):
        # shapes and values of the Gaussian parameters: one table, shared with GaussianHMM
        given = {}
        if self.means_init is not None:
            given["means_"] = density.check(self.means_init, "means", label="means_init")
        if self.precisions_init is not None:
            precisions = density.check(self.precisions_init, "precisions", label="precisions_init")
            given["covariances_"] = gaussian.covariances_from_precisions(precisions, self.covariance_type)
        for name in ("means_prior", "means_weight", "covars_prior"):
            if getattr(self, name) is not None:
                density.check(getattr(self, name), name)
        return given

    @property
    def lower_bounds_(self):
        """The objective before each M-step of the winning restart, shape ``(n_iter_,)`` (scikit-learn >= 1.7).

        scikit-learn's ``lower_bounds_[i]`` is the lower bound computed before its
        M-step ``i + 1``; here that is the objective of the start followed by
        ``lower_bound_history_`` without its last entry.
        """
        return np.r_[self.initial_lower_bound_, self.lower_bound_history_[:-1]][: self.n_iter_]

    def _after_fit(self, data, params):
        self.precisions_ = gaussian.precisions_from_cholesky(self.precisions_cholesky_, self.covariance_type)


# ====================================================================== Bernoulli
class BernoulliMixture(_BaseMixture):
    """Mixture of independent Bernoulli distributions (latent class analysis) fitted by EM.

    Each sample is a vector of binary values (survey answers, presence of
    words, active features) drawn from one of ``n_components`` profiles:
    component ``k`` gives each feature ``d`` a one with probability
    ``means_[k, d]``, independently of the others. Data that are not binary
    are binarised first, as scikit-learn's :class:`~sklearn.naive_bayes.BernoulliNB`
    does (``x > binarize``).

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    binarize : float or None, default=0.0
        Threshold: a value above it is a one. None means the data are
        already binary (every entry 0 or 1; anything else raises).
    means_prior : float or array-like of shape (2,), default=None
        Beta prior ``(a, b)`` on every probability (a float: ``a = b``), for
        MAP estimation: ``means_[k, d] = (s_kd + a - 1) / (N_k + a + b - 2)``
        with ``s_kd`` the expected ones (``a = b = 2`` is Laplace
        smoothing). None: maximum likelihood, where a probability can reach
        exactly 0 or 1 (and new data with the other value then have
        probability zero under that component).
    means_init : array-like of shape (n_components, n_features), default=None
        Starting probabilities.
    {shared_parameters}
    Attributes
    ----------
    means_ : ndarray of shape (n_components, n_features)
        Probability of a one for each component and feature.
    {shared_attributes}
    Examples
    --------
    >>> import numpy as np
    >>> from emkit import BernoulliMixture
    >>> rng = np.random.RandomState(0)
    >>> profiles = np.array([[0.9, 0.9, 0.1, 0.1], [0.1, 0.2, 0.9, 0.8]])
    >>> labels = rng.randint(2, size=500)
    >>> X = (rng.uniform(size=(500, 4)) < profiles[labels]).astype(int)
    >>> model = BernoulliMixture(2, random_state=0).fit(X)
    >>> np.round(model.means_[np.argsort(model.means_[:, 0])], 1)
    array([[0.1, 0.2, 0.9, 0.8],
           [0.9, 0.9, 0.1, 0.1]])
    """

    _parameter_constraints = {
        **_BaseMixture._mixture_parameter_constraints,
        "binarize": [Real, None],
        "means_prior": [Interval(Real, 0.0, None, closed="neither"), "array-like", None],
        "means_init": ["array-like", None],
    }

    def __init__(self, n_components=1, *, binarize=0.0, means_prior=None, tol=1e-3, max_iter=100, n_init=1,
                 init_params="kmeans", weights_init=None, means_init=None, random_state=None, warm_start=False,
                 verbose=0, verbose_interval=10, n_jobs=None, keep_params_history=False, weights_prior=None,
                 learning_decay=0.7, learning_offset=10.0):
        store_init_arguments(self, locals())

    def _make_density(self, n_features, dtype):
        return bernoulli.Bernoulli(self.n_components, n_features, binarize=self.binarize,
                                   means_prior=self.means_prior)

    def _block_rows(self, n_features):
        return max(1024, (1 << 18) // max(1, self.n_components + n_features))

    def _given_params(self, density):
        if self.means_init is None:
            return {}
        return {"means_": density.check(self.means_init, "means", label="means_init")}


# ====================================================================== Poisson
class PoissonMixture(_BaseMixture):
    """Mixture of independent Poisson distributions (count data) fitted by EM.

    Each sample is a vector of counts (events per day, reads per gene, visits
    per page) drawn from one of ``n_components`` profiles: component ``k``
    gives feature ``d`` a Poisson count with rate ``lambdas_[k, d]``,
    independently of the others. Non-integral values are scored with
    ``lgamma(x + 1)`` in place of ``log x!`` (as PoissonHMM does).

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    lambdas_prior, lambdas_weight : float or array-like broadcastable to (n_components, n_features), default=0
        Gamma prior on the rates, as PoissonHMM's: the M-step is
        ``(lambdas_prior + sum_n r_nk x_n) / (lambdas_weight + N_k)``
        (0, 0: maximum likelihood).
    lambdas_init : array-like of shape (n_components, n_features), default=None
        Starting rates.
    {shared_parameters}
    Attributes
    ----------
    lambdas_ : ndarray of shape (n_components, n_features)
        Poisson rate of each component and feature.
    {shared_attributes}
    Examples
    --------
    >>> import numpy as np
    >>> from emkit import PoissonMixture
    >>> rng = np.random.RandomState(0)
    >>> rates = np.array([[1.0, 10.0], [8.0, 2.0]])
    >>> X = rng.poisson(rates[rng.randint(2, size=600)])
    >>> model = PoissonMixture(2, random_state=0).fit(X)
    >>> np.round(model.lambdas_[np.argsort(model.lambdas_[:, 0])])
    array([[ 1., 10.],
           [ 8.,  2.]])
    """

    _parameter_constraints = {
        **_BaseMixture._mixture_parameter_constraints,
        **poisson.PARAMETER_CONSTRAINTS,
    }
    _positive_only = True

    def __init__(self, n_components=1, *, lambdas_prior=0.0, lambdas_weight=0.0, tol=1e-3, max_iter=100, n_init=1,
                 init_params="kmeans", weights_init=None, lambdas_init=None, random_state=None, warm_start=False,
                 verbose=0, verbose_interval=10, n_jobs=None, keep_params_history=False, weights_prior=None,
                 learning_decay=0.7, learning_offset=10.0):
        store_init_arguments(self, locals())

    def _make_density(self, n_features, dtype):
        return poisson.Poisson(self.n_components, n_features, lambdas_prior=self.lambdas_prior,
                               lambdas_weight=self.lambdas_weight, owner="PoissonMixture")

    def _block_rows(self, n_features):
        return max(1024, (1 << 18) // max(1, self.n_components + n_features))

    def _given_params(self, density):
        if self.lambdas_init is None:
            return {}
        return {"lambdas_": density.check(self.lambdas_init, "lambdas", label="lambdas_init")}


for _cls in (GaussianMixture, BernoulliMixture, PoissonMixture):
    _cls.__doc__ = _cls.__doc__.replace("    {shared_parameters}\n", _SHARED_PARAMS_DOC.lstrip("\n")).replace(
        "    {shared_attributes}\n", _SHARED_ATTRIBUTES_DOC.lstrip("\n")
    )
del _cls
