"""Gaussian mixture models fitted by EM (maximum likelihood or MAP)."""

from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.utils import check_random_state

from ._blocks import Blocks, row_bounds
from ._dask import DaskBlocks, check_dask_array, is_dask_array, rowwise, sample_rows
from ._densities import gaussian
from ._inference.mixture import normalize_log_rows
from ._math import safe_log
from ._validation import (
    Interval,
    StrOptions,
    check_array_param,
    check_is_fitted,
    check_sample_weight,
    check_warm_start_shapes,
    dask_sample_weight,
    fit_context,
    reset_n_features,
    validate_data,
)
from .base import BlockResult, EMMixin, NumericalFailure

__all__ = ["GaussianMixture"]

# rows gathered from a dask array to draw a k-means (or random) start
_INIT_SAMPLE_ROWS = 20_000


class _MixtureData(NamedTuple):
    blocks: Blocks  # of _MixtureBlock
    X: np.ndarray
    sample_weight: np.ndarray  # None when unweighted
    n_units: float


class _MixtureBlock(NamedTuple):
    X: np.ndarray
    sample_weight: np.ndarray  # None when unweighted


def _mixture_rows(source, start, stop):
    X, sample_weight = source
    return _MixtureBlock(X[start:stop], None if sample_weight is None else sample_weight[start:stop])


def _mixture_chunk(X, sample_weight):
    """A block made on a Dask worker from one row chunk (and its weights)."""
    return _MixtureBlock(np.ascontiguousarray(X), None if sample_weight is None else np.asarray(sample_weight))


class _MixtureContext(NamedTuple):
    """What every block of an E-step needs."""

    log_weights: np.ndarray
    means: np.ndarray
    precisions_cholesky: np.ndarray
    covariance_type: str


class GaussianMixture(EMMixin, DensityMixin, BaseEstimator):
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
    tol : float, default=1e-3
        Converged when the per-sample objective increases by less than
        ``tol`` (and did not decrease beyond round-off).
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance after each M-step, so that
        covariances stay positive definite.
    max_iter : int, default=100
        Maximum number of M-steps per restart.
    n_init : int, default=1
        Number of restarts; the one with the highest objective wins.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        How the starting responsibilities are drawn.
    weights_init : array-like of shape (n_components,), default=None
        Starting mixing weights.
    means_init : array-like of shape (n_components, n_features), default=None
        Starting means.
    precisions_init : array-like, default=None
        Starting precision matrices (inverse covariances), shaped like
        ``covariances_`` for ``covariance_type``.
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
        means 1. The result does not depend on it (beyond BLAS's last bits).
    keep_params_history : bool, default=False
        Keep the parameters after every iteration in ``params_history_``.
    weights_prior : float or array-like of shape (n_components,), default=None
        Dirichlet concentration on the mixing weights; ``None`` (or 1) is
        a flat prior. The MAP weights are
        ``(N_k + alpha_k - 1) / (N + sum(alpha) - K)``.
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
    learning_decay : float, default=0.7
        Online EM (:meth:`partial_fit`): the step size of update ``t`` is
        ``(t + learning_offset) ** -learning_decay`` (LDA's names); in
        [0.5, 1] for convergence.
    learning_offset : float, default=10.0
        Online EM: the step size's offset (larger: smaller early steps).

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        Mixing weights.
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

    _parameter_constraints = {
        **EMMixin._em_parameter_constraints,
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions(set(gaussian.COVARIANCE_TYPES))],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "init_params": [StrOptions({"kmeans", "random", "random_from_data", "k-means++"})],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "weights_prior": [Interval(Real, 0.0, None, closed="neither"), "array-like", None],
        "means_prior": ["array-like", None],
        "means_weight": [Interval(Real, 0.0, None, closed="left"), "array-like", None],
        "covars_prior": [Interval(Real, 0.0, None, closed="left"), "array-like", None],
        "covars_weight": [Interval(Real, 0.0, None, closed="left"), None],
        "learning_decay": [Interval(Real, 0.5, 1.0, closed="both")],
        "learning_offset": [Interval(Real, 1.0, None, closed="left")],
    }

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        n_jobs=None,
        keep_params_history=False,
        weights_prior=None,
        means_prior=None,
        means_weight=None,
        covars_prior=None,
        covars_weight=None,
        learning_decay=0.7,
        learning_offset=10.0,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_jobs = n_jobs
        self.keep_params_history = keep_params_history
        self.weights_prior = weights_prior
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None, sample_weight=None):
        """Estimate the parameters by EM (``n_init`` restarts, the best kept).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; float32 input is computed in float32.
        y : Ignored
            Not used, present for API consistency.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample; integer weights give the
            same fit as repeating rows.

        Returns
        -------
        self : GaussianMixture
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
        self : GaussianMixture
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

    def _validate_fit_data(self, X, y=None, sample_weight=None, reset=True):
        if is_dask_array(X):
            return self._validate_dask_fit_data(X, sample_weight)
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2, reset=reset)
        if X.shape[0] < self.n_components:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {self.n_components}, "
                f"n_samples = {X.shape[0]}"
            )
        sample_weight = check_sample_weight(sample_weight, X)
        n_units = float(X.shape[0]) if sample_weight is None else float(sample_weight.sum())
        self._check_init_and_priors(X.shape[1])
        step = gaussian.block_size(self.n_components, X.shape[1], self.covariance_type, X.dtype)
        blocks = Blocks((X, sample_weight), row_bounds(X.shape[0], step), _mixture_rows)
        return _MixtureData(blocks, X, sample_weight, n_units)

    def _validate_dask_fit_data(self, X, sample_weight):
        """The same checks on a dask array, without gathering it (see :mod:`emkit._dask`)."""
        whom = f"{type(self).__name__}.fit"
        X = check_dask_array(X, whom=whom)
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        n_samples = X.shape[0]
        if n_samples < max(2, self.n_components):
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {self.n_components}, "
                f"n_samples = {n_samples}"
            )
        reset_n_features(self, X.shape[1])
        if sample_weight is not None:
            sample_weight = dask_sample_weight(sample_weight, X, whom)
            n_units = float(sample_weight.sum().compute())
            if not n_units > 0:
                raise ValueError("sample_weight sums to zero: at least one sample needs a positive weight.")
        else:
            n_units = float(n_samples)
        self._check_init_and_priors(X.shape[1])
        blocks = DaskBlocks([X, sample_weight], _mixture_chunk)
        X, sample_weight = blocks.arrays  # persisted when they fit in the workers' memory
        return _MixtureData(blocks, X, sample_weight, n_units)

    def _check_init_and_priors(self, n_features):
        n_components = self.n_components
        if self.weights_init is not None:
            weights = check_array_param(self.weights_init, "weights_init", (n_components,))
            if np.any(weights < 0) or np.any(weights > 1):
                raise ValueError("weights_init must lie in [0, 1].")
            if not np.isclose(weights.sum(), 1.0, rtol=0, atol=1e-6):
                raise ValueError(f"weights_init must sum to 1, got {weights.sum():.8f}.")
        # shapes and values of the Gaussian parameters: one table, shared with GaussianHMM
        shape_args = (self.covariance_type, n_components, n_features)
        if self.means_init is not None:
            gaussian.check_parameter(self.means_init, "means", *shape_args, label="means_init")
        if self.precisions_init is not None:
            gaussian.check_parameter(self.precisions_init, "precisions", *shape_args, label="precisions_init")
        if self.weights_prior is not None:
            alpha = np.broadcast_to(np.asarray(self.weights_prior, dtype=np.float64), (n_components,))
            if np.any(alpha <= 0) or not np.all(np.isfinite(alpha)):
                raise ValueError("weights_prior must be positive and finite.")
        for name in ("means_prior", "means_weight", "covars_prior"):
            if getattr(self, name) is not None:
                gaussian.check_parameter(getattr(self, name), name, *shape_args)

    # ------------------------------------------------------------------ priors
    def _prior_kwargs(self, n_features):
        covars_prior = 0.0 if self.covars_prior is None else np.asarray(self.covars_prior, dtype=np.float64)
        if self.covariance_type == "spherical" and np.ndim(covars_prior) == 1:
            covars_prior = np.repeat(covars_prior[:, np.newaxis], n_features, axis=1)
        return {
            "means_prior": 0.0 if self.means_prior is None else np.asarray(self.means_prior, dtype=np.float64),
            "means_weight": 0.0 if self.means_weight is None else np.asarray(self.means_weight, dtype=np.float64),
            "covars_prior": covars_prior,
            "covars_weight": self.covars_weight,
        }

    def _log_prior(self, data, params):
        total = 0.0
        if self.weights_prior is not None:
            alpha = np.broadcast_to(np.asarray(self.weights_prior, dtype=np.float64), (self.n_components,))
            with np.errstate(invalid="ignore"):
                terms = (alpha - 1.0) * safe_log(params["weights_"].astype(np.float64))
            total += float(np.sum(np.where(alpha == 1.0, 0.0, terms)))
        if self.means_weight is not None or self.covars_prior is not None or self.covars_weight is not None:
            total += gaussian.log_prior(
                params["means_"],
                params["covariances_"],
                self.covariance_type,
                **self._prior_kwargs(params["means_"].shape[1]),
            )
        return total

    # ------------------------------------------------------------------ EM hooks
    def _initialize(self, data, random_state):
        X, sample_weight = data.X, data.sample_weight
        n_components = self.n_components
        given_all = self.weights_init is not None and self.means_init is not None and self.precisions_init is not None
        if is_dask_array(X) and not given_all:
            # the data stay on the cluster: random_from_data gathers its rows, the other starts a sample
            if self.init_params == "random_from_data":
                n_rows = X.shape[0]
                rows = random_state.choice(n_rows, size=n_components, replace=False)  # as in memory
                X, sample_weight = sample_rows(X, n_components, random_state, sample_weight, index=rows)
            else:
                n_sample = max(_INIT_SAMPLE_ROWS, 20 * n_components)
                X, sample_weight = sample_rows(X, n_sample, random_state, sample_weight)
        n_samples = X.shape[0]
        dtype = X.dtype
        if given_all:
            resp = None
        elif self.init_params == "kmeans":
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
            if is_dask_array(data.X):  # the chosen rows, gathered in order
                indices = np.arange(n_components)
            else:
                indices = random_state.choice(n_samples, size=n_components, replace=False)
            resp[indices, np.arange(n_components)] = 1
        else:  # k-means++
            resp = np.zeros((n_samples, n_components), dtype=X.dtype)
            _, indices = kmeans_plusplus(X, n_components, random_state=random_state, sample_weight=sample_weight)
            resp[indices, np.arange(n_components)] = 1

        if resp is not None:
            weighted = resp if sample_weight is None else resp * sample_weight[:, np.newaxis]
            # centre the moments on the data's mean: the start is then as accurate as later steps
            center = np.tile(np.average(X, axis=0, weights=sample_weight), (n_components, 1))
            stats = gaussian.accumulate(X, weighted, center, self.covariance_type)
            means, covariances = gaussian.m_step(
                stats, center, self.covariance_type, reg_covar=self.reg_covar, **self._prior_kwargs(X.shape[1])
            )
            nk = stats.post + 10 * np.finfo(np.float64).eps
            weights = nk / nk.sum()
        if self.weights_init is not None:
            weights = np.asarray(self.weights_init, dtype=np.float64)
        if self.means_init is not None:
            means = np.asarray(self.means_init, dtype=np.float64)
        if self.precisions_init is not None:
            covariances = gaussian.covariances_from_precisions(
                np.asarray(self.precisions_init, dtype=np.float64), self.covariance_type
            )
        return self._pack(weights, means, covariances, dtype)

    def _pack(self, weights, means, covariances, dtype):
        try:
            prec_chol = gaussian.precisions_cholesky(covariances, self.covariance_type)
        except np.linalg.LinAlgError as exc:
            raise NumericalFailure(
                f"Fitting the mixture model failed because some components have ill-defined empirical "
                f"covariance ({exc}). Increase reg_covar, lower n_components, or scale the input data."
            ) from None
        return {
            "weights_": weights.astype(dtype),
            "means_": means.astype(dtype),
            "covariances_": covariances.astype(dtype),
            "precisions_cholesky_": prec_chol.astype(dtype),
        }

    def _e_step_context(self, data, params):
        return _MixtureContext(
            safe_log(params["weights_"]), params["means_"], params["precisions_cholesky_"], self.covariance_type
        )

    @staticmethod
    def _e_step_block(block, context, state):
        # densities, responsibilities and statistics of the block's rows in one pass (chunked inside, so a
        # large block -- a Dask chunk -- keeps its temporaries small)
        stats, log_likelihood = gaussian.mixture_block(
            block.X, block.sample_weight, context.log_weights, context.means, context.precisions_cholesky,
            context.covariance_type,
        )
        return BlockResult(stats, log_likelihood)

    def _m_step(self, data, stats, params):
        means_old = params["means_"].astype(np.float64)
        means, covariances = gaussian.m_step(
            stats,
            means_old,
            self.covariance_type,
            reg_covar=self.reg_covar,
            **self._prior_kwargs(means_old.shape[1]),
        )
        nk = stats.post + 10 * np.finfo(np.float64).eps
        if self.weights_prior is None:
            weights = nk / nk.sum()
        else:
            alpha = np.broadcast_to(np.asarray(self.weights_prior, dtype=np.float64), nk.shape)
            weights = np.maximum(nk + alpha - 1.0, 0.0)
            weights /= weights.sum()
        return self._pack(weights, means, covariances, data.X.dtype)

    def _m_step_slack(self, data, stats, params):
        """What adding ``reg_covar`` after the exact covariance update may cost the objective."""
        n_features = params["means_"].shape[1]
        nk = stats.post + 10 * np.finfo(np.float64).eps
        counts = nk + gaussian.prior_count(self.covariance_type, n_features, self.covars_weight)
        return gaussian.regularization_slack(
            params["covariances_"], self.covariance_type, self.reg_covar, counts, n_features
        )

    def _objective_dtype(self, data):
        return data.X.dtype

    def _check_warm_start(self, data, params):
        K, n_features = self.n_components, data.X.shape[1]
        expected = {
            "weights_": (K,),
            "means_": (K, n_features),
            "covariances_": gaussian.parameter_shapes("covariances", self.covariance_type, K, n_features)[0],
        }
        check_warm_start_shapes(params, expected)

    def _recenter_stats(self, stats, old_params, new_params):
        return gaussian.recenter(stats, old_params["means_"], new_params["means_"], self.covariance_type)

    def _fitted_params(self):
        return {
            "weights_": self.weights_,
            "means_": self.means_,
            "covariances_": self.covariances_,
            "precisions_cholesky_": self.precisions_cholesky_,
        }

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

    # ------------------------------------------------------------------ inference
    def _estimate_weighted_log_prob(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        log_prob = gaussian.log_likelihood(X, self.means_, self.precisions_cholesky_, self.covariance_type)
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
        X = gaussian.sample(self.means_, self.covariances_, self.covariance_type, labels, rng)
        return X, labels

    def _n_parameters(self):
        n_features = self.means_.shape[1]
        return gaussian.n_parameters(self.n_components, n_features, self.covariance_type) + self.n_components - 1

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
