"""KalmanFilter: filtering, smoothing and EM for linear-Gaussian state-space models.

The model (pykalman's names in brackets)::

    x_0     ~ N(mu_0, P_0)                    [initial_state_mean, initial_state_covariance]
    x_{t+1} = A x_t + b + w_t,   w_t ~ N(0, Q)  [transition_matrices, transition_offsets, transition_covariance]
    y_t     = H x_t + d + v_t,   v_t ~ N(0, R)  [observation_matrices, observation_offsets, observation_covariance]

This module holds the estimator only: the filter and smoother are compiled
kernels (:mod:`emkit._inference.lgssm`), EM's sufficient statistics and
closed-form updates sit next to them (:mod:`emkit._inference.lgssm_em`), and
the constructor values are read and checked in the validation layer
(:mod:`emkit._kalman_params`).
"""

from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
from scipy import linalg
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array

from ._blocks import Blocks, sequence_bounds
from ._dask import DaskBlocks, check_dask_array, gather_labels, is_dask_array, row_chunks_on_sequences
from ._inference.lgssm import kalman_filter, kalman_smoother
from ._inference.lgssm_em import block_statistics, constrain_covariance, m_step
from ._kalman_params import (
    BASE_NDIM,
    COVARIANCES,
    INITIAL_PARAMS,
    OBSERVATION_PARAMS,
    PARAMS,
    TRANSITION_PARAMS,
    is_specified,
    kernel_args,
    kernel_layout,
    observation_dimension,
    read_value,
    resolve_em_vars,
    resolve_params,
    state_dimension,
)
from ._validation import (
    Interval,
    StrOptions,
    check_array_param,
    check_is_fitted,
    check_sequences,
    check_y_unsupervised,
    fit_context,
    reset_n_features,
    validate_data,
)
from .base import BlockResult, EMMixin, NumericalFailure

__all__ = ["KalmanFilter"]

_COLLAPSE_RTOL = 1e-8  # a learned covariance this small relative to the data's scale is collapsing


class _KalmanData(NamedTuple):
    """Validated data and everything a fit or an ``em`` call resolved once."""

    blocks: Blocks  # of _KalmanBlock: whole sequences
    X: np.ndarray  # observations, NaN = missing
    offsets: np.ndarray  # sequence boundaries, (n_sequences + 1,)
    n_units: float  # time steps (missing rows included)
    given: dict  # constructor values for these data, pykalman's defaults filled in (names without "_")
    unset: frozenset  # names the user left None (restarts perturb these when learned)
    varying: frozenset  # names with a leading time axis: fixed, carried by the blocks row by row
    learn: frozenset  # em_vars of this call
    covariance_types: dict  # {"transition_covariance": ..., "observation_covariance": ...}
    n_dim_state: int
    n_dim_obs: int


class _KalmanBlock(NamedTuple):
    X: np.ndarray  # the block's rows
    offsets: np.ndarray  # its sequences' boundaries, from 0
    varying: dict  # its rows of each fixed time-varying parameter (kernel layout)


def _kalman_sequences(source, first, last):
    X, offsets, varying = source
    begin, end = offsets[first], offsets[last]
    return _KalmanBlock(
        None if X is None else X[begin:end],
        offsets[first : last + 1] - begin,
        {name: value[begin:end] for name, value in varying.items()},
    )


def _kalman_chunk(X, offsets, varying):
    """A block made on a Dask worker from one chunk of whole sequences."""
    return _KalmanBlock(np.asarray(X, dtype=np.float64), offsets, varying)


class _KalmanContext(NamedTuple):
    """What every block of an E-step needs."""

    fixed: dict  # the time-invariant parameters in kernel layout
    parts: tuple  # (observation, transition, initial): which statistics EM needs
    objective_only: bool = False  # the log-likelihood alone (the filter; no smoother, no statistics)


def _rows_per_block(n_dim_state):
    """Rows of whole sequences per E-step block (smoother output of about 10 MB)."""
    return max(2048, (1 << 18) // (n_dim_state * n_dim_state + n_dim_state))


def _as_masked_nan(X):
    """pykalman users pass masked arrays: masked entries become NaN (missing)."""
    if isinstance(X, np.ma.MaskedArray):
        return np.ma.filled(X.astype(np.float64), np.nan)
    return X


def _is_positive_definite(matrix):
    try:
        np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        return False
    return True


def _has_structure(covariance, covariance_type):
    return np.array_equal(covariance, constrain_covariance(covariance, covariance_type))


class KalmanFilter(ClassNamePrefixFeaturesOutMixin, TransformerMixin, EMMixin, BaseEstimator):
    """Linear-Gaussian state-space model: Kalman filter, RTS smoother and EM.

    pykalman's names and defaults: constructor values are starting values
    for what ``em_vars`` learns and fixed values for the rest; ``None`` means
    pykalman's default (identity matrices, zero offsets). Learned and fixed
    values land in the same names with a trailing underscore
    (``transition_covariance_``, ...). Scalars are read as pykalman reads
    them (``transition_matrices=0.98`` is a 1-D state).

    A model whose ``transition_matrices``, ``transition_covariance`` and
    ``observation_covariance`` are given, and ``observation_matrices`` too
    unless the state and observation dimensions are equal, counts as fitted:
    every method answers without ``fit``, as pykalman's model does.

    Parameters
    ----------
    transition_matrices : array-like of shape (n_dim_state, n_dim_state), default=None
        A. A leading time axis (length n_timesteps - 1 or n_timesteps, as in
        pykalman) makes it time-varying; EM keeps time-varying values fixed
        (it learns time-invariant parameters only). None: identity.
    observation_matrices : array-like of shape (n_dim_obs, n_dim_state), default=None
        H (pykalman's C). A leading time axis of length n_timesteps makes it
        time-varying (fixed in EM). None: ``eye(n_dim_obs, n_dim_state)``.
    transition_covariance : array-like of shape (n_dim_state, n_dim_state), default=None
        Q, symmetric positive definite. None: identity. The transition and
        observation parameters below take a leading time axis as above.
    observation_covariance : array-like of shape (n_dim_obs, n_dim_obs), default=None
        R, symmetric positive definite. None: identity.
    transition_offsets : array-like of shape (n_dim_state,), default=None
        b. None: zeros.
    observation_offsets : array-like of shape (n_dim_obs,), default=None
        d. None: zeros.
    initial_state_mean : array-like of shape (n_dim_state,), default=None
        mu_0, the mean of every sequence's first state. None: zeros.
    initial_state_covariance : array-like of shape (n_dim_state, n_dim_state), default=None
        P_0. None: identity.
    n_dim_state : int, default=None
        State dimension, when no matrix above fixes it. None: taken from the
        given matrices, else equal to ``n_dim_obs`` (pykalman's default of 1
        for a 1-D series).
    n_dim_obs : int, default=None
        Observation dimension; must equal the number of columns of X.
    em_vars : "all" or sequence of str, default=None
        Parameters EM learns; None means pykalman's default
        ``("transition_covariance", "observation_covariance",
        "initial_state_mean", "initial_state_covariance")``.
    transition_covariance_type : {"full", "diag", "spherical"}, default="full"
        Structure EM keeps for a learned Q (its starting value is projected
        onto that structure: its diagonal, or its mean variance times I).
    observation_covariance_type : {"full", "diag", "spherical"}, default="full"
        Structure EM keeps for a learned R.
    transform_method : {"smooth", "filter"}, default="smooth"
        What ``transform`` returns: smoothed state means, or filtered ones for
        causal use.
    max_iter : int, default=100
        Maximum number of EM iterations (M-steps) of ``fit``.
    tol : float, default=1e-4
        Stop when the log-likelihood per time step rises by less than this.
    n_init : int, default=1
        Number of EM runs. With more than one, every run starts from the
        given values with the learned parameters the user left as None drawn
        at random around pykalman's defaults; the best run is kept.
    random_state : int, RandomState instance or None, default=None
        Seeds the restarts and ``sample``.
    warm_start : bool, default=False
        ``fit`` starts from the fitted parameters of the previous ``fit`` or
        ``em`` (one run).
    verbose : int, default=0
        Print progress.
    verbose_interval : int, default=10
        Iterations between progress lines.
    n_jobs : int, default=None
        Restarts run in parallel (``n_init > 1``); with one run, blocks of
        whole sequences run on ``n_jobs`` threads.
    keep_params_history : bool, default=False
        Keep the parameters after every iteration in ``params_history_``.

    Attributes
    ----------
    transition_matrices_, observation_matrices_, transition_covariance_, \
observation_covariance_, transition_offsets_, observation_offsets_, \
initial_state_mean_, initial_state_covariance_ : ndarray
        Fitted (or fixed) parameters, full matrices (fixed time-varying
        values keep their time axis, padded to one entry per row).
    n_dim_state_ : int
        State dimension.
    converged_, n_iter_, lower_bound_, lower_bound_history_, restarts_
        Set by the EM engine for the last ``fit`` or ``em`` call;
        ``lower_bound_`` is the log-likelihood per time step of the returned
        parameters.
    n_features_in_ : int
        Number of observed dimensions.

    See Also
    --------
    pykalman.KalmanFilter : the peer this class replaces; ``fit`` runs EM to
        convergence, :meth:`em` is pykalman's fixed number of iterations from
        the current parameters, ``score`` is per time step
        (:meth:`loglikelihood` is pykalman's total).

    Examples
    --------
    >>> import numpy as np
    >>> from emkit import KalmanFilter
    >>> truth = KalmanFilter(transition_matrices=0.9, transition_covariance=0.5, observation_covariance=2.0)
    >>> states, X = truth.sample(2000, random_state=0)
    >>> model = KalmanFilter(transition_matrices=0.9, em_vars=["transition_covariance",
    ...                      "observation_covariance"]).fit(X)
    >>> bool(abs(model.transition_covariance_[0, 0] - 0.5) < 0.15)
    True
    >>> means, covariances = model.smooth(X)
    >>> means.shape, covariances.shape
    ((2000, 1), (2000, 1, 1))

    pykalman's loop: each ``em`` call continues from the current parameters.

    >>> kf = KalmanFilter(transition_matrices=0.9)
    >>> log_likelihoods = []
    >>> for _ in range(3):
    ...     kf = kf.em(X, n_iter=1)
    ...     log_likelihoods.append(kf.loglikelihood(X))
    >>> bool(log_likelihoods[0] < log_likelihoods[1] < log_likelihoods[2]), kf.n_iter_
    (True, 1)
    """

    _parameter_constraints = {
        **EMMixin._em_parameter_constraints,
        **{name: ["array-like", Real, None] for name in PARAMS},  # a scalar: a 1-D state or observation
        "n_dim_state": [Interval(Integral, 1, None, closed="left"), None],
        "n_dim_obs": [Interval(Integral, 1, None, closed="left"), None],
        "em_vars": [StrOptions({"all"}), list, tuple, set, frozenset, None],
        "transition_covariance_type": [StrOptions({"full", "diag", "spherical"})],
        "observation_covariance_type": [StrOptions({"full", "diag", "spherical"})],
        "transform_method": [StrOptions({"smooth", "filter"})],
    }

    def __init__(
        self,
        transition_matrices=None,
        observation_matrices=None,
        transition_covariance=None,
        observation_covariance=None,
        transition_offsets=None,
        observation_offsets=None,
        initial_state_mean=None,
        initial_state_covariance=None,
        n_dim_state=None,
        n_dim_obs=None,
        em_vars=None,
        transition_covariance_type="full",
        observation_covariance_type="full",
        transform_method="smooth",
        max_iter=100,
        tol=1e-4,
        n_init=1,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        n_jobs=None,
        keep_params_history=False,
    ):
        self.transition_matrices = transition_matrices
        self.observation_matrices = observation_matrices
        self.transition_covariance = transition_covariance
        self.observation_covariance = observation_covariance
        self.transition_offsets = transition_offsets
        self.observation_offsets = observation_offsets
        self.initial_state_mean = initial_state_mean
        self.initial_state_covariance = initial_state_covariance
        self.n_dim_state = n_dim_state
        self.n_dim_obs = n_dim_obs
        self.em_vars = em_vars
        self.transition_covariance_type = transition_covariance_type
        self.observation_covariance_type = observation_covariance_type
        self.transform_method = transform_method
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_jobs = n_jobs
        self.keep_params_history = keep_params_history

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        try:  # a model with its system matrices given answers without fit
            tags.requires_fit = not is_specified(self._constructor_values(), self.n_dim_state, self.n_dim_obs)
        except ValueError:  # inconsistent values: fit will say what is wrong
            tags.requires_fit = True
        return tags

    def __sklearn_is_fitted__(self):
        """Fitted, or every system matrix given (pykalman's use without ``fit``)."""
        return self._has_fitted_params() or is_specified(self._constructor_values(), self.n_dim_state, self.n_dim_obs)

    # ------------------------------------------------------------------ parameters
    def _constructor_values(self):
        return {name: getattr(self, name) for name in PARAMS}

    def _has_fitted_params(self):
        return hasattr(self, "transition_matrices_")

    def _fitted_params(self):
        return {name + "_": getattr(self, name + "_").copy() for name in PARAMS}

    def _known_n_dim_obs(self, observation_matrix=None, observation=None):
        """n_dim_obs without X: fitted, declared, fixed by the observation parameters, else pykalman's 1."""
        if self._has_fitted_params():
            return self.n_features_in_
        m = observation_dimension(self._constructor_values(), self.n_dim_obs)
        if m is None and observation_matrix is not None:
            m = read_value(observation_matrix, "observation_matrices").shape[-2]
        if m is None and observation is not None:
            m = np.size(observation)
        return 1 if m is None else m

    def _current_params(self, n_dim_obs, n_timesteps=None):
        """Fitted parameters when fitted, else the constructor's (pykalman's use without fit)."""
        if self._has_fitted_params():
            return {name: getattr(self, name + "_") for name in PARAMS}
        return resolve_params(
            self._constructor_values(), n_dim_obs, n_timesteps, self.n_dim_state, declared_n_dim_obs=self.n_dim_obs
        )

    # ------------------------------------------------------------------ data
    def _check_X(self, X, series=False):
        """X as float64 (NaN = missing) for inference; ``series``: a 1-D X is one column (pykalman's)."""
        X = _as_masked_nan(X)
        if series and np.ndim(X) == 1:
            X = np.asarray(X)[:, np.newaxis]
        if self._has_fitted_params():
            return validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=False)
        return check_array(X, dtype=np.float64, ensure_all_finite="allow-nan")

    def _fit_data(self, X, y, lengths, sequence_ids, em_vars, series=False):
        """Validate X and resolve every hyperparameter of one fit or em call (writes nothing).

        Returns
        -------
        data : _KalmanData
        raw : array-like
            X as given (masked entries as NaN), for scikit-learn's feature bookkeeping.
        """
        learn = resolve_em_vars(em_vars)
        on_dask = is_dask_array(X)
        if on_dask:  # checked chunk by chunk, never gathered
            raw = X[:, None] if series and X.ndim == 1 else X
            X = check_dask_array(raw, allow_nan=True, whom=f"{type(self).__name__}.fit").astype(np.float64)
        else:
            raw = _as_masked_nan(X)
            if series and np.ndim(raw) == 1:
                raw = np.asarray(raw)[:, np.newaxis]
            X = check_array(raw, dtype=np.float64, ensure_all_finite="allow-nan")
        n_timesteps, n_dim_obs = X.shape
        check_y_unsupervised(None if y is None else np.asarray(y), n_timesteps)  # array-likes without len()
        offsets = check_sequences(n_timesteps, lengths, gather_labels(sequence_ids))
        values = self._constructor_values()
        given = resolve_params(values, n_dim_obs, n_timesteps, self.n_dim_state, declared_n_dim_obs=self.n_dim_obs)
        varying = frozenset(name for name in PARAMS if given[name].ndim > BASE_NDIM[name])
        if learn & varying:
            raise ValueError(
                f"{sorted(learn & varying)} have a leading time axis, but EM learns time-invariant parameters "
                "only: leave them out of em_vars (fixed time-varying values are fine) or give single values."
            )
        if bool(np.all(np.isnan(X))):
            raise ValueError(
                "X has no observed value (every entry is NaN or masked): EM has nothing to learn from. "
                "Missing entries are fine, but some must be observed."
            )
        learned_transitions = sorted(learn & set(TRANSITION_PARAMS))
        if learned_transitions and np.all(np.diff(offsets) < 2):
            what = "Found n_samples=1 time step" if n_timesteps == 1 else "No sequence has two time steps"
            raise ValueError(
                f"{what}: EM learns {learned_transitions} from transitions between consecutive time steps, and "
                "there are none. Give them as fixed values and leave them out of em_vars, or pass longer sequences."
            )
        n_dim_state = given["initial_state_mean"].shape[0]
        varying_rows = {name: given[name] for name in varying}
        if on_dask:
            X, bounds = row_chunks_on_sequences(X, offsets)
            extras = []
            for i in range(len(bounds) - 1):
                block = _kalman_sequences((None, offsets, varying_rows), bounds[i], bounds[i + 1])
                extras.append((block.offsets, block.varying))
            blocks = DaskBlocks([X], _kalman_chunk, extras)
            (X,) = blocks.arrays  # persisted when they fit in the workers' memory
        else:
            bounds = sequence_bounds(offsets, _rows_per_block(n_dim_state))
            blocks = Blocks((X, offsets, varying_rows), bounds, _kalman_sequences)
        data = _KalmanData(
            blocks,
            X,
            offsets,
            float(n_timesteps),
            given,
            frozenset(name for name in PARAMS if values[name] is None),
            varying,
            learn,
            {
                "transition_covariance": self.transition_covariance_type,
                "observation_covariance": self.observation_covariance_type,
            },
            n_dim_state,
            n_dim_obs,
        )
        return data, raw

    def _record_features(self, raw):
        """Set ``n_features_in_`` (and feature names) once the call is known to go ahead."""
        if is_dask_array(raw):
            reset_n_features(self, raw.shape[1])
        else:
            validate_data(self, raw, dtype=np.float64, ensure_all_finite="allow-nan", reset=True)

    def _validate_fit_data(self, X, y=None, lengths=None, sequence_ids=None):
        data, raw = self._fit_data(X, y, lengths, sequence_ids, self.em_vars)
        if self.warm_start and self._is_fitted_for_warm_start():
            self._check_warm_start(data, self._fitted_params())  # before anything on the estimator changes
        self._record_features(raw)
        return data

    def _check_warm_start(self, data, params):
        """A start from fitted ``params`` must fit the data and hyperparameters of this call."""
        fitted_m = params["observation_matrices_"].shape[-2]
        fitted_n = params["initial_state_mean_"].shape[0]
        problems = []
        if fitted_m != data.n_dim_obs:
            problems.append(f"X has {data.n_dim_obs} columns, but the fitted parameters observe {fitted_m}")
        if fitted_n != data.n_dim_state:
            problems.append(
                f"the fitted parameters have a {fitted_n}-dimensional state, but n_dim_state and the constructor "
                f"values now give {data.n_dim_state}"
            )
        for name in PARAMS if not problems else ():
            value = params[name + "_"]
            if name in data.varying and not np.array_equal(value, data.given[name]):
                problems.append(
                    f"{name} is time-varying (fixed) and {name}_ is not the constructor's value for these "
                    f"{int(data.n_units)} time steps"
                )
            elif name not in data.varying and value.ndim != BASE_NDIM[name]:
                problems.append(f"{name}_ is time-varying but the constructor's {name} no longer is")
        for name, covariance_type in data.covariance_types.items():
            if not problems and name in data.learn and not _has_structure(params[name + "_"], covariance_type):
                problems.append(f"{name}_ is not {covariance_type} but {name}_type={covariance_type!r}")
        if problems:
            raise ValueError(
                f"warm_start=True (or em) cannot continue from the fitted model: {'; '.join(problems)}. "
                "Fit with warm_start=False (or a clone) to start afresh."
            )

    # ------------------------------------------------------------------ EM hooks
    def _project_learned(self, data, params):
        """EM climbs from a point of the constrained set: project the learned Q and R onto their structure."""
        for name, covariance_type in data.covariance_types.items():
            if name in data.learn:
                params[name] = constrain_covariance(params[name], covariance_type)
        return params

    def _initialize(self, data, random_state):
        params = {name: value.copy() for name, value in data.given.items()}
        if self.n_init > 1:
            n, m = data.n_dim_state, data.n_dim_obs
            for name in PARAMS:  # a fixed order (not the set's), so every process draws the same
                if name not in data.learn or name not in data.unset:
                    continue
                if name in COVARIANCES:
                    size = params[name].shape[-1]
                    params[name] = np.eye(size) * np.exp(random_state.uniform(np.log(0.1), np.log(10.0)))
                elif name == "transition_matrices":
                    params[name] = np.eye(n) + 0.1 * random_state.standard_normal((n, n))
                elif name == "observation_matrices":
                    params[name] = np.eye(m, n) + 0.1 * random_state.standard_normal((m, n))
                else:
                    params[name] = params[name] + 0.1 * random_state.standard_normal(params[name].shape)
        params = self._project_learned(data, params)
        return {name + "_": value for name, value in params.items()}

    def _e_step_context(self, data, params):
        fixed = {name: kernel_layout(name, params[name + "_"]) for name in PARAMS if name not in data.varying}
        parts = tuple(bool(data.learn & set(names)) for names in (OBSERVATION_PARAMS, TRANSITION_PARAMS, INITIAL_PARAMS))
        return _KalmanContext(fixed, parts)

    def _objective_context(self, data, params):
        return self._e_step_context(data, params)._replace(objective_only=True)

    def _e_step_block(self, block, context, state):
        A, b, Q, H, d, R, mu0, P0 = kernel_args({**context.fixed, **block.varying})
        try:
            # the filter gives the log-likelihood (the smoother runs the same filter first: the same bits)
            runner = kalman_filter if context.objective_only else kalman_smoother
            result = runner(block.X, block.offsets, A, b, Q, H, d, R, mu0, P0)
        except np.linalg.LinAlgError as exc:
            raise NumericalFailure(
                f"{exc}: the parameters became numerically degenerate; standardize X (e.g. StandardScaler) "
                "or learn fewer parameters (em_vars)"
            ) from None
        if context.objective_only:
            return BlockResult(None, result.log_likelihood)
        observation, transition, initial = context.parts
        stats = block_statistics(
            block.X,
            block.offsets,
            result.smoothed_means,
            result.smoothed_covariances,
            result.pairwise_covariances,
            A,
            b,
            H,
            d,
            R,
            mu0,
            observation=observation,
            transition=transition,
            initial=initial,
        )
        return BlockResult(stats, result.log_likelihood)

    def _m_step(self, data, stats, params):
        current = {name: params[name + "_"] for name in PARAMS}
        types = data.covariance_types
        try:
            new = m_step(
                stats, current, data.learn, types["transition_covariance"], types["observation_covariance"]
            )
        except np.linalg.LinAlgError as exc:
            raise NumericalFailure(
                f"{exc} (too little data for this state dimension): fix it by leaving it out of em_vars"
            ) from None
        for name in sorted(data.learn):
            if not np.all(np.isfinite(new[name])):
                raise NumericalFailure(f"the M-step produced a non-finite {name}; leave it out of em_vars")
            if name in COVARIANCES and not _is_positive_definite(new[name]):
                raise NumericalFailure(
                    f"the learned {name} is singular (the data cannot identify it: too few time steps, or "
                    "a perfect fit); fix it by leaving it out of em_vars or constrain it with *_covariance_type"
                )
        return {name + "_": value for name, value in new.items()}

    def _after_fit(self, data, params):
        self.n_dim_state_ = data.n_dim_state

    def _convergence_message(self, data, run):
        observed = data.X[~np.isnan(data.X)]
        scale = max(1.0, float(np.max(observed**2)))
        collapsing = []
        for name in COVARIANCES:
            if name in data.learn:
                smallest = float(np.linalg.eigvalsh(run.params[name + "_"]).min())
                if smallest <= _COLLAPSE_RTOL * scale:
                    collapsing.append(f"{name}_ (smallest eigenvalue {smallest:.3g})")
        if not collapsing:
            return super()._convergence_message(data, run)
        named = collapsing[0] if len(collapsing) == 1 else ", ".join(collapsing[:-1]) + " and " + collapsing[-1]
        return (
            f"KalmanFilter: EM did not converge in {run.n_iter} iterations because the learned {named} "
            "keep shrinking towards zero: the likelihood grows without bound as a noise variance vanishes, as "
            "it does on a constant or perfectly predictable series. A larger max_iter does not help: fix the "
            "covariance(s) named here (e.g. observation_covariance=...) and leave them out of em_vars."
        )

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None, lengths=None, sequence_ids=None):
        """Learn the parameters named in ``em_vars`` by EM (to convergence, ``n_init`` runs).

        Starts from the constructor values, or from the fitted parameters with
        ``warm_start=True``.

        Parameters
        ----------
        X : array-like of shape (n_timesteps, n_dim_obs)
            Observations; NaN entries (or masked entries of a masked array)
            are missing.
        y : None
            Ignored (sequence lengths go in ``lengths``).
        lengths : array-like of int, default=None
            Lengths of the sequences stacked in X.
        sequence_ids : array-like of shape (n_timesteps,), default=None
            One label per row instead of ``lengths``.

        Returns
        -------
        self : KalmanFilter
        """
        return self._fit(X, y, lengths=lengths, sequence_ids=sequence_ids)

    @fit_context(prefer_skip_nested_validation=True)
    def em(self, X, y=None, n_iter=10, em_vars=None, lengths=None, sequence_ids=None):
        """pykalman's ``em``: exactly ``n_iter`` EM iterations from the current parameters.

        Continues from the fitted parameters (of an earlier ``fit`` or
        ``em``), or from the constructor values when the model is not fitted,
        as pykalman's ``em`` does, so ``for i in range(n): kf = kf.em(X,
        n_iter=1)`` climbs. No convergence test and no ConvergenceWarning (the
        call asked for exactly that many); ``n_iter_``, ``converged_``
        (False) and ``lower_bound_history_`` describe this call. No
        constructor parameter changes: the results are in the ``*_``
        attributes. A learned Q or R that does not have its
        ``*_covariance_type`` structure is projected onto it first, as in
        ``fit``.

        Parameters
        ----------
        X : array-like of shape (n_timesteps, n_dim_obs) or (n_timesteps,)
            Observations (NaN or masked = missing); a 1-D X is one observed
            dimension, as in pykalman.
        y : None
            Ignored.
        n_iter : int, default=10
            Number of EM iterations (pykalman's default).
        em_vars : "all" or sequence of str, default=None
            What this call learns; None: the constructor's ``em_vars``.
        lengths, sequence_ids : see :meth:`fit`.

        Returns
        -------
        self : KalmanFilter
        """
        if isinstance(n_iter, bool) or not isinstance(n_iter, Integral) or n_iter < 0:
            raise ValueError(f"n_iter must be a non-negative integer, got {n_iter!r}.")
        data, raw = self._fit_data(
            X, y, lengths, sequence_ids, self.em_vars if em_vars is None else em_vars, series=True
        )
        if self._has_fitted_params():
            start = self._fitted_params()
        else:
            start = {name + "_": value.copy() for name, value in data.given.items()}
        plain = self._project_learned(data, {name: start[name + "_"] for name in PARAMS})
        start = {name + "_": value for name, value in plain.items()}
        self._check_warm_start(data, start)  # before anything on the estimator changes
        self._record_features(raw)
        self._fit_em(data, start=start, max_iter=int(n_iter), fixed_iterations=True)
        return self

    # ------------------------------------------------------------------ inference
    def _run(self, X, lengths, sequence_ids, smooth, require_fit, series=False):
        if require_fit:
            check_is_fitted(self)
        if is_dask_array(X):
            return self._run_on_dask(X, lengths, sequence_ids, smooth, series)
        X = self._check_X(X, series=series)
        offsets = check_sequences(X.shape[0], lengths, sequence_ids)
        params = self._current_params(X.shape[1], X.shape[0])
        runner = kalman_smoother if smooth else kalman_filter
        try:
            return runner(X, offsets, *kernel_args(params)), offsets, params
        except np.linalg.LinAlgError as exc:
            raise ValueError(f"Kalman filtering failed: {exc}.") from None

    def _run_on_dask(self, X, lengths, sequence_ids, smooth, series):
        """The filter (or smoother) chunk by chunk of whole sequences: a result whose arrays are lazy."""
        import dask
        import dask.array as da

        if series and X.ndim == 1:
            X = X[:, None]
        n_features = getattr(self, "n_features_in_", None)
        X = check_dask_array(X, allow_nan=True, n_features=n_features, whom=type(self).__name__, check_values=False)
        offsets = check_sequences(X.shape[0], lengths, gather_labels(sequence_ids))
        params = self._current_params(X.shape[1])  # time-varying values need the rows in memory: refused here
        X, bounds = row_chunks_on_sequences(X, offsets)
        runner = dask.delayed(kalman_smoother if smooth else kalman_filter, pure=True)
        args = kernel_args(params)
        results = [
            runner(chunk, offsets[bounds[i] : bounds[i + 1] + 1] - offsets[bounds[i]], *args)
            for i, chunk in enumerate(X.astype(np.float64).to_delayed().ravel())
        ]
        probe = (kalman_smoother if smooth else kalman_filter)(np.zeros((2, X.shape[1])), np.array([0, 2]), *args)
        fields = {}
        for name, value in probe._asdict().items():
            if name == "log_likelihood":
                total = dask.delayed(np.sum)([r.log_likelihood for r in results])
                fields[name] = da.from_delayed(total, shape=(), dtype=np.float64)
            elif name == "steady":
                fields[name] = value  # a per-sequence flag of the filter's own, not a per-row output
            else:
                pieces = [
                    da.from_delayed(getattr(r, name), shape=(size,) + value.shape[1:], dtype=value.dtype)
                    for r, size in zip(results, X.chunks[0])
                ]
                fields[name] = da.concatenate(pieces, axis=0)
        return type(probe)(**fields), offsets, params

    def filter(self, X, lengths=None, sequence_ids=None):
        """Filtered state moments ``p(x_t | y_1..t)``.

        Parameters
        ----------
        X : array-like of shape (n_timesteps, n_dim_obs) or (n_timesteps,)
            Observations (NaN = missing); a 1-D X is one observed dimension,
            as in pykalman.
        lengths, sequence_ids : see :meth:`fit`.

        Returns
        -------
        means : ndarray of shape (n_timesteps, n_dim_state)
        covariances : ndarray of shape (n_timesteps, n_dim_state, n_dim_state)
        """
        result = self._run(X, lengths, sequence_ids, smooth=False, require_fit=False, series=True)[0]
        return result.filtered_means, result.filtered_covariances

    def smooth(self, X, lengths=None, sequence_ids=None):
        """RTS-smoothed state moments ``p(x_t | y_1..T)``.

        Parameters
        ----------
        X : array-like of shape (n_timesteps, n_dim_obs) or (n_timesteps,)
            Observations (NaN = missing); a 1-D X is one observed dimension,
            as in pykalman.
        lengths, sequence_ids : see :meth:`fit`.

        Returns
        -------
        means : ndarray of shape (n_timesteps, n_dim_state)
        covariances : ndarray of shape (n_timesteps, n_dim_state, n_dim_state)
        """
        result = self._run(X, lengths, sequence_ids, smooth=True, require_fit=False, series=True)[0]
        return result.smoothed_means, result.smoothed_covariances

    def transform(self, X, lengths=None, sequence_ids=None):
        """Smoothed state means (filtered ones with ``transform_method="filter"``).

        Parameters
        ----------
        X : array-like of shape (n_timesteps, n_dim_obs)
            Observations (NaN = missing).
        lengths, sequence_ids : see :meth:`fit`.

        Returns
        -------
        states : ndarray of shape (n_timesteps, n_dim_state)
        """
        smooth = self.transform_method == "smooth"
        result = self._run(X, lengths, sequence_ids, smooth=smooth, require_fit=True)[0]
        return result.smoothed_means if smooth else result.filtered_means

    def fit_transform(self, X, y=None, lengths=None, sequence_ids=None):
        """Fit, then transform the same data.

        Parameters
        ----------
        X : array-like of shape (n_timesteps, n_dim_obs)
        y : None
            Ignored.
        lengths, sequence_ids : see :meth:`fit`.

        Returns
        -------
        states : ndarray of shape (n_timesteps, n_dim_state)
        """
        return self.fit(X, y, lengths=lengths, sequence_ids=sequence_ids).transform(
            X, lengths=lengths, sequence_ids=sequence_ids
        )

    @property
    def _n_features_out(self):
        if hasattr(self, "n_dim_state_"):
            return self.n_dim_state_
        if not self.__sklearn_is_fitted__():
            raise AttributeError("_n_features_out")
        values = self._constructor_values()
        return state_dimension(values, self.n_dim_state, observation_dimension(values, self.n_dim_obs))

    def score_samples(self, X, lengths=None, sequence_ids=None):
        """Per-step predictive log-density ``log p(y_t | y_<t)`` of the observed entries.

        Parameters
        ----------
        X : array-like of shape (n_timesteps, n_dim_obs)
        lengths, sequence_ids : see :meth:`fit`.

        Returns
        -------
        log_density : ndarray of shape (n_timesteps,)
            0 for a wholly missing row.
        """
        return self._run(X, lengths, sequence_ids, smooth=False, require_fit=True)[0].step_log_likelihoods

    def score(self, X, y=None, lengths=None, sequence_ids=None):
        """Mean log-likelihood per time step (pykalman's ``loglikelihood`` is the total).

        Parameters
        ----------
        X : array-like of shape (n_timesteps, n_dim_obs)
        y : None
            Ignored.
        lengths, sequence_ids : see :meth:`fit`.

        Returns
        -------
        score : float
        """
        result = self._run(X, lengths, sequence_ids, smooth=False, require_fit=True)[0]
        check_y_unsupervised(None if y is None else np.asarray(y), result.step_log_likelihoods.shape[0])
        return float(result.log_likelihood) / result.step_log_likelihoods.shape[0]

    def loglikelihood(self, X, lengths=None, sequence_ids=None):
        """Total log-likelihood of X (pykalman's ``loglikelihood``; ``score`` is per time step).

        Parameters
        ----------
        X : array-like of shape (n_timesteps, n_dim_obs) or (n_timesteps,)
            Observations (NaN = missing); a 1-D X is one observed dimension.
        lengths, sequence_ids : see :meth:`fit`.

        Returns
        -------
        log_likelihood : float
        """
        return float(self._run(X, lengths, sequence_ids, smooth=False, require_fit=False, series=True)[0].log_likelihood)

    def filter_update(
        self,
        filtered_state_mean,
        filtered_state_covariance,
        observation=None,
        transition_matrix=None,
        transition_offset=None,
        transition_covariance=None,
        observation_matrix=None,
        observation_offset=None,
        observation_covariance=None,
    ):
        """One online step: predict from the filtered moments at t, then correct with y_{t+1}.

        Parameters
        ----------
        filtered_state_mean : array-like of shape (n_dim_state,)
        filtered_state_covariance : array-like of shape (n_dim_state, n_dim_state)
        observation : array-like of shape (n_dim_obs,), default=None
            None, NaN or masked entries are missing (a scalar for a 1-D
            observation).
        transition_matrix, transition_offset, transition_covariance, \
observation_matrix, observation_offset, observation_covariance : array-like, default=None
            Override the model's values for this step (scalars as in the
            constructor).

        Returns
        -------
        mean : ndarray of shape (n_dim_state,)
        covariance : ndarray of shape (n_dim_state, n_dim_state)
        """
        m = self._known_n_dim_obs(observation_matrix, observation)
        params = dict(self._current_params(m))
        overrides = {
            "transition_matrices": ("transition_matrix", transition_matrix),
            "transition_offsets": ("transition_offset", transition_offset),
            "transition_covariance": ("transition_covariance", transition_covariance),
            "observation_matrices": ("observation_matrix", observation_matrix),
            "observation_offsets": ("observation_offset", observation_offset),
            "observation_covariance": ("observation_covariance", observation_covariance),
        }
        for name, (argument, value) in overrides.items():
            if value is not None:
                override = read_value(value, name)
                expected = params[name].shape[-BASE_NDIM[name] :]
                if override.shape != expected:
                    raise ValueError(f"{argument} must have shape {expected}, got {override.shape}.")
                params[name] = override
        for name in PARAMS:
            if params[name].ndim != BASE_NDIM[name]:
                raise ValueError(f"{name} is time-varying; give this step's value to filter_update.")
        n = params["initial_state_mean"].shape[0]
        mean = check_array_param(np.atleast_1d(filtered_state_mean), "filtered_state_mean", (n,))
        cov = check_array_param(np.atleast_2d(filtered_state_covariance), "filtered_state_covariance", (n, n))
        if observation is None:
            y = np.full((1, m), np.nan)
        else:
            y = np.atleast_1d(np.asarray(_as_masked_nan(np.ma.asarray(observation)), dtype=np.float64))
            if y.ndim != 1 or y.shape[0] != m:
                raise ValueError(
                    f"observation has shape {y.shape}, but the model observes {m} dimension(s): pass one "
                    f"observation of shape ({m},) (NaN or masked entries are missing, None for no observation)."
                )
            y = y[np.newaxis]
        A, b, Q = params["transition_matrices"], params["transition_offsets"], params["transition_covariance"]
        predicted = dict(params, initial_state_mean=A @ mean + b, initial_state_covariance=A @ cov @ A.T + Q)
        try:
            result = kalman_filter(y, [0, 1], *kernel_args(predicted))
        except np.linalg.LinAlgError as exc:
            raise ValueError(f"Kalman filtering failed: {exc}.") from None
        return result.filtered_means[0], result.filtered_covariances[0]

    def forecast(self, X, n_steps, lengths=None, sequence_ids=None):
        """Predicted observation moments for the ``n_steps`` rows after each sequence's end.

        Parameters
        ----------
        X : array-like of shape (n_timesteps, n_dim_obs)
            Observations (NaN = missing).
        n_steps : int
            Horizon.
        lengths, sequence_ids : see :meth:`fit`.

        Returns
        -------
        means : ndarray of shape (n_sequences * n_steps, n_dim_obs)
            ``E[y_{T+h} | y_1..T]`` for h = 1..n_steps, one block per sequence
            in order (one sequence: shape (n_steps, n_dim_obs)).
        covariances : ndarray of shape (n_sequences * n_steps, n_dim_obs, n_dim_obs)
        """
        if not isinstance(n_steps, Integral) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}.")
        result, offsets, params = self._run(X, lengths, sequence_ids, smooth=False, require_fit=True)
        for name in PARAMS:
            if params[name].ndim > BASE_NDIM[name]:
                raise ValueError(f"forecast needs time-invariant parameters; {name}_ is time-varying.")
        A, b, Q = params["transition_matrices"], params["transition_offsets"], params["transition_covariance"]
        H, d, R = params["observation_matrices"], params["observation_offsets"], params["observation_covariance"]
        ends = offsets[1:] - 1
        last_means, last_covariances = result.filtered_means[ends], result.filtered_covariances[ends]
        if is_dask_array(last_means):  # one small moment per sequence: gathered
            import dask

            last_means, last_covariances = dask.compute(last_means, last_covariances)
        means, covs = [], []
        for mean, cov in zip(last_means, last_covariances):
            for _ in range(n_steps):
                mean = A @ mean + b
                cov = A @ cov @ A.T + Q
                cov = 0.5 * (cov + cov.T)
                means.append(H @ mean + d)
                obs_cov = H @ cov @ H.T + R
                covs.append(0.5 * (obs_cov + obs_cov.T))
        return np.array(means), np.array(covs)

    def sample(self, n_timesteps, random_state=None, initial_state=None):
        """Draw one sequence of states and observations.

        Parameters
        ----------
        n_timesteps : int
            Length of the sequence.
        random_state : int, RandomState instance or None, default=None
            None uses the estimator's ``random_state``.
        initial_state : array-like of shape (n_dim_state,), default=None
            First state; None draws it from N(mu_0, P_0). (pykalman takes it
            second: pass it by name.)

        Returns
        -------
        states : ndarray of shape (n_timesteps, n_dim_state)
        observations : ndarray of shape (n_timesteps, n_dim_obs)
        """
        if not isinstance(n_timesteps, Integral) or n_timesteps < 1:
            raise ValueError(f"n_timesteps must be a positive integer, got {n_timesteps!r}.")
        m = self._known_n_dim_obs()
        params = self._current_params(m, n_timesteps)
        rng = check_random_state(self.random_state if random_state is None else random_state)
        A, b, Q, H, d, R, mu0, P0 = kernel_args(params)
        n = mu0.shape[0]

        def at(array, t):
            return array[t if array.shape[0] > 1 else 0]

        def draw(cov):
            return linalg.cholesky(cov, lower=True) @ rng.standard_normal(cov.shape[0])

        states = np.zeros((n_timesteps, n))
        observations = np.zeros((n_timesteps, m))
        if initial_state is None:
            states[0] = mu0 + draw(P0)
        else:
            states[0] = check_array_param(np.atleast_1d(initial_state), "initial_state", (n,))
        for t in range(n_timesteps):
            if t > 0:
                states[t] = at(A, t - 1) @ states[t - 1] + at(b, t - 1) + draw(at(Q, t - 1))
            observations[t] = at(H, t) @ states[t] + at(d, t) + draw(at(R, t))
        return states, observations
