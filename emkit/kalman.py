"""KalmanFilter: filtering, smoothing and EM for linear-Gaussian state-space models.

The model (pykalman's names in brackets)::

    x_0     ~ N(mu_0, P_0)                    [initial_state_mean, initial_state_covariance]
    x_{t+1} = A x_t + b + w_t,   w_t ~ N(0, Q)  [transition_matrices, transition_offsets, transition_covariance]
    y_t     = H x_t + d + v_t,   v_t ~ N(0, R)  [observation_matrices, observation_offsets, observation_covariance]

EM treats the states (and the missing entries of partly observed rows) as
latent. Its M-step is a sequence of closed-form conditional maximisations in
pykalman's order (H, then R given the new H; A, then Q given the new A;
mu_0, then P_0; then b given the new A and d given the new H), so each update
increases the expected complete-data log-likelihood and the exact marginal
log-likelihood never decreases. Each update is a small function below whose
docstring states its formula; in them ``E[.]`` is an expectation under the
smoothed posterior of the previous parameters, ``m_t`` and ``P_t`` are the
smoothed means and covariances, and ``P_{t,t-1} = Cov(x_t, x_{t-1} | y)``.
"""

import warnings
from numbers import Integral
from typing import NamedTuple

import numpy as np
from scipy import linalg
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted

from ._inference.lgssm import kalman_filter, kalman_smoother
from ._validation import (
    Interval,
    StrOptions,
    check_array_param,
    check_sequences,
    check_y_unsupervised,
    validate_data,
)
from .base import EMMixin, NumericalFailure

__all__ = ["KalmanFilter"]

_PARAMS = (
    "transition_matrices",
    "observation_matrices",
    "transition_covariance",
    "observation_covariance",
    "transition_offsets",
    "observation_offsets",
    "initial_state_mean",
    "initial_state_covariance",
)
_DEFAULT_EM_VARS = (
    "transition_covariance",
    "observation_covariance",
    "initial_state_mean",
    "initial_state_covariance",
)
_COVARIANCES = ("transition_covariance", "observation_covariance", "initial_state_covariance")
# number of trailing axes of a time-invariant value; one more means a leading time axis
_BASE_NDIM = {
    "transition_matrices": 2,
    "observation_matrices": 2,
    "transition_covariance": 2,
    "observation_covariance": 2,
    "transition_offsets": 1,
    "observation_offsets": 1,
    "initial_state_mean": 1,
    "initial_state_covariance": 2,
}


# --------------------------------------------------------------------------- M-step updates
def _solve_spd(gram, rhs, name):
    """``rhs @ inv(gram)`` for a symmetric positive-definite ``gram`` (Cholesky solve)."""
    try:
        factor = linalg.cho_factor(gram, lower=True, check_finite=False)
    except linalg.LinAlgError:
        raise NumericalFailure(
            f"the expected state second moment is singular, so {name} cannot be learned "
            "(too little data for this state dimension: fix it by leaving it out of em_vars)"
        ) from None
    return linalg.cho_solve(factor, rhs.T, check_finite=False).T


def _constrain(covariance, covariance_type):
    """Constrained maximiser: the diagonal (``"diag"``) or ``trace / n`` times I (``"spherical"``)."""
    covariance = 0.5 * (covariance + covariance.T)
    if covariance_type == "diag":
        return np.diag(np.diag(covariance))
    if covariance_type == "spherical":
        return np.eye(covariance.shape[0]) * (np.trace(covariance) / covariance.shape[0])
    return covariance


def _at_rows(value, rows, base_ndim):
    """A fixed time-varying value (leading time axis) at ``rows``, or the time-invariant value itself."""
    return value[rows] if value.ndim > base_ndim else value


def _apply(matrices, vectors):
    """``M_t v_t`` for each row ``t``: one shared matrix or one matrix per row."""
    if matrices.ndim == 2:
        return vectors @ matrices.T
    return np.einsum("tij,tj->ti", matrices, vectors)


def _sandwich_sum(matrices, covariance_sum, covariances):
    """``sum_t M_t P_t M_t^T``: from the summed covariances when M is shared."""
    if matrices.ndim == 2:
        return matrices @ covariance_sum @ matrices.T
    return np.einsum("tij,tjk,tlk->il", matrices, covariances, matrices, optimize=True)


def _offset_outer(offsets, means):
    """``sum_t c_t m_t^T`` for a shared or per-row offset ``c``."""
    if offsets.ndim == 1:
        return np.outer(offsets, means.sum(axis=0))
    return offsets.T @ means


def update_observation_matrix(stats, observation_offsets):
    r"""Observation matrix H given the offsets d_t.

    .. math:: H = \Big(\sum_{t \in S} E[y_t x_t^T] - d_t m_t^T\Big)\Big(\sum_{t \in S} E[x_t x_t^T]\Big)^{-1}

    over the rows S with at least one observed entry (missing entries of a row
    are imputed under the posterior).
    """
    d = _at_rows(observation_offsets, stats["obs_rows"], 1)
    cross = stats["obs_yx"] - _offset_outer(d, stats["obs_means"])
    return _solve_spd(stats["obs_xx"], cross, "observation_matrices")


def update_observation_covariance(stats, observation_matrices, observation_offsets, covariance_type):
    r"""Observation covariance R given H_t and d_t.

    .. math:: R = \frac{1}{|S|} \sum_{t \in S} E[(y_t - H_t x_t - d_t)(y_t - H_t x_t - d_t)^T]

    Each term is ``e_t e_t^T + H_t P_t H_t^T`` with ``e_t = y_t - H_t m_t - d_t``
    for a fully observed row, plus the posterior covariance of the imputed
    entries for a partly observed one. ``"diag"`` keeps the diagonal and
    ``"spherical"`` the mean variance (the constrained maximisers).
    """
    rows = stats["obs_rows"]
    H = _at_rows(observation_matrices, rows, 2)
    d = _at_rows(observation_offsets, rows, 1)
    resid = stats["obs_y"] - _apply(H, stats["obs_means"]) - d
    covariances = stats["covs"][rows] if H.ndim == 3 else None
    total = resid.T @ resid + _sandwich_sum(H, stats["obs_P"], covariances)
    for t, G, N in stats["partial"]:
        Ht = observation_matrices[t] if observation_matrices.ndim == 3 else observation_matrices
        HG = Ht - G
        P = stats["covs"][t]
        total += HG @ P @ HG.T - Ht @ P @ Ht.T + N
    return _constrain(total / stats["n_obs"], covariance_type)


def update_observation_offset(stats, observation_matrices):
    r"""Observation offset d given H_t: :math:`d = \frac{1}{|S|}\sum_{t \in S} (E[y_t] - H_t m_t)`."""
    H = _at_rows(observation_matrices, stats["obs_rows"], 2)
    return (stats["obs_y"] - _apply(H, stats["obs_means"])).sum(axis=0) / stats["n_obs"]


def update_transition_matrix(stats, transition_offsets):
    r"""Transition matrix A given the offsets b_t.

    .. math:: A = \Big(\sum_t P_{t,t-1} + m_t m_{t-1}^T - b_{t-1} m_{t-1}^T\Big)
              \Big(\sum_t E[x_{t-1} x_{t-1}^T]\Big)^{-1}

    over all transitions ``t-1 -> t`` within sequences.
    """
    b = _at_rows(transition_offsets, stats["prev_rows"], 1)
    cross = stats["pair"] + stats["next_means"].T @ stats["prev_means"] - _offset_outer(b, stats["prev_means"])
    gram = stats["prev_P"] + stats["prev_means"].T @ stats["prev_means"]
    return _solve_spd(gram, cross, "transition_matrices")


def update_transition_covariance(stats, transition_matrices, transition_offsets, covariance_type):
    r"""Transition covariance Q given A_t and b_t.

    .. math:: Q = \frac{1}{N} \sum_t e_t e_t^T + P_t - P_{t,t-1} A_{t-1}^T - A_{t-1} P_{t,t-1}^T
              + A_{t-1} P_{t-1} A_{t-1}^T, \quad e_t = m_t - A_{t-1} m_{t-1} - b_{t-1}

    over the N transitions; ``"diag"`` and ``"spherical"`` as for R.
    """
    prev_rows = stats["prev_rows"]
    A = _at_rows(transition_matrices, prev_rows, 2)
    b = _at_rows(transition_offsets, prev_rows, 1)
    resid = stats["next_means"] - _apply(A, stats["prev_means"]) - b
    if A.ndim == 2:
        pair_at = stats["pair"] @ A.T
        spread = A @ stats["prev_P"] @ A.T
    else:
        pair_at = np.einsum("tij,tkj->ik", stats["pairs"][stats["next_rows"]], A)
        spread = _sandwich_sum(A, None, stats["covs"][prev_rows])
    total = resid.T @ resid + stats["next_P"] - pair_at - pair_at.T + spread
    return _constrain(total / stats["n_trans"], covariance_type)


def update_transition_offset(stats, transition_matrices):
    r"""Transition offset b given A_t: :math:`b = \frac{1}{N}\sum_t (m_t - A_{t-1} m_{t-1})`."""
    A = _at_rows(transition_matrices, stats["prev_rows"], 2)
    return (stats["next_means"] - _apply(A, stats["prev_means"])).sum(axis=0) / stats["n_trans"]


def update_initial_state_mean(stats):
    r"""Initial mean: :math:`\mu_0 = \frac{1}{S}\sum_s m_{s,0}`, the mean over sequences of the first smoothed state."""
    return stats["first_means"].mean(axis=0)


def update_initial_state_covariance(stats, initial_state_mean):
    r"""Initial covariance given mu_0.

    .. math:: P_0 = \frac{1}{S}\sum_s P_{s,0} + (m_{s,0} - \mu_0)(m_{s,0} - \mu_0)^T

    (pykalman's update for one sequence).
    """
    resid = stats["first_means"] - initial_state_mean
    total = stats["first_P"] + resid.T @ resid
    total = total / resid.shape[0]
    return 0.5 * (total + total.T)


# --------------------------------------------------------------------------- helpers
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


def _check_covariance(value, name):
    value = 0.5 * (value + np.swapaxes(value, -1, -2))
    for matrix in value.reshape(-1, value.shape[-2], value.shape[-1]):
        if not _is_positive_definite(matrix):
            raise ValueError(f"{name} must be positive definite.")
    return value


class KalmanFilter(ClassNamePrefixFeaturesOutMixin, TransformerMixin, EMMixin, BaseEstimator):
    """Linear-Gaussian state-space model: Kalman filter, RTS smoother and EM.

    pykalman's names and defaults: constructor values are starting values
    for what ``em_vars`` learns and fixed values for the rest; ``None`` means
    pykalman's default (identity matrices, zero offsets). Learned and fixed
    values land in the same names with a trailing underscore
    (``transition_covariance_``, ...).

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
        Maximum number of EM iterations (M-steps).
    tol : float, default=1e-4
        Stop when the log-likelihood per time step rises by less than this.
    n_init : int, default=1
        Number of EM runs. With more than one, every run starts from the
        given values with the learned parameters the user left as None drawn
        at random around pykalman's defaults; the best run is kept.
    random_state : int, RandomState instance or None, default=None
        Seeds the restarts and ``sample``.
    warm_start : bool, default=False
        Start from the fitted parameters of a previous ``fit``.
    verbose : int, default=0
        Print progress.
    verbose_interval : int, default=10
        Iterations between progress lines.
    n_jobs : int, default=None
        Restarts run in parallel (``n_init > 1``).
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
        Set by the EM engine; ``lower_bound_`` is the log-likelihood per time
        step of the returned parameters.
    n_features_in_ : int
        Number of observed dimensions.

    See Also
    --------
    pykalman.KalmanFilter : the peer this class replaces; ``fit`` is its
        ``em`` (also available as :meth:`em`), ``score`` is per time step
        (:meth:`loglikelihood` is pykalman's total).

    Examples
    --------
    >>> import numpy as np
    >>> from emkit import KalmanFilter
    >>> truth = KalmanFilter(transition_matrices=[[0.9]], transition_covariance=[[0.5]],
    ...                      observation_covariance=[[2.0]], n_dim_obs=1)
    >>> states, X = truth.sample(2000, random_state=0)
    >>> model = KalmanFilter(transition_matrices=[[0.9]], em_vars=["transition_covariance",
    ...                      "observation_covariance"]).fit(X)
    >>> bool(abs(model.transition_covariance_[0, 0] - 0.5) < 0.15)
    True
    >>> means, covariances = model.smooth(X)
    >>> means.shape, covariances.shape
    ((2000, 1), (2000, 1, 1))
    """

    _parameter_constraints = {
        **EMMixin._em_parameter_constraints,
        **{name: ["array-like", None] for name in _PARAMS},
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
        return tags

    # ------------------------------------------------------------------ parameters
    def _em_var_set(self):
        if self.em_vars is None:
            return frozenset(_DEFAULT_EM_VARS)
        if isinstance(self.em_vars, str):
            if self.em_vars == "all":
                return frozenset(_PARAMS)
            raise ValueError(f"em_vars must be 'all' or a list of parameter names, got {self.em_vars!r}.")
        names = list(self.em_vars)
        unknown = sorted({str(v) for v in names} - set(_PARAMS))
        if unknown or not all(isinstance(v, str) for v in names):
            raise ValueError(f"em_vars names unknown parameters {unknown}; choose from {list(_PARAMS)}.")
        return frozenset(names)

    def _n_dim_state(self, n_dim_obs):
        candidates = []
        for name, axis in (
            ("transition_matrices", -2),
            ("transition_offsets", -1),
            ("transition_covariance", -2),
            ("initial_state_mean", -1),
            ("initial_state_covariance", -2),
            ("observation_matrices", -1),
        ):
            value = getattr(self, name)
            if value is not None:
                shape = np.shape(value)
                if len(shape) < _BASE_NDIM[name]:
                    raise ValueError(
                        f"{name} must have {_BASE_NDIM[name]} dimensions (plus an optional leading time "
                        f"axis), got shape {shape}."
                    )
                candidates.append((name, shape[axis]))
        if self.n_dim_state is not None:
            candidates.append(("n_dim_state", self.n_dim_state))
        if not candidates:
            return n_dim_obs
        sizes = {size for _, size in candidates}
        if len(sizes) > 1:
            raise ValueError(
                "the parameters disagree on the state dimension: "
                + ", ".join(f"{name} gives {size}" for name, size in candidates)
            )
        return candidates[0][1]

    def _given_params(self, n_dim_obs, n_timesteps=None):
        """Constructor values checked, with pykalman's defaults for None.

        Returns a dict keyed by parameter name (no underscore). Time-varying
        values (a leading time axis of length n_timesteps, or n_timesteps - 1
        for the transition parameters, padded here to n_timesteps) are
        accepted only when ``n_timesteps`` is given.
        """
        if self.n_dim_obs is not None and self.n_dim_obs != n_dim_obs:
            raise ValueError(f"n_dim_obs={self.n_dim_obs} but X has {n_dim_obs} columns.")
        n, m = self._n_dim_state(n_dim_obs), n_dim_obs
        shapes = {
            "transition_matrices": (n, n),
            "observation_matrices": (m, n),
            "transition_covariance": (n, n),
            "observation_covariance": (m, m),
            "transition_offsets": (n,),
            "observation_offsets": (m,),
            "initial_state_mean": (n,),
            "initial_state_covariance": (n, n),
        }
        defaults = {
            "transition_matrices": np.eye(n),
            "observation_matrices": np.eye(m, n),
            "transition_covariance": np.eye(n),
            "observation_covariance": np.eye(m),
            "transition_offsets": np.zeros(n),
            "observation_offsets": np.zeros(m),
            "initial_state_mean": np.zeros(n),
            "initial_state_covariance": np.eye(n),
        }
        params = {}
        for name in _PARAMS:
            value = getattr(self, name)
            if value is None:
                params[name] = defaults[name]
                continue
            array = np.array(value, dtype=np.float64, copy=True)
            shape = shapes[name]
            time_varying = array.ndim == len(shape) + 1 and name not in (
                "initial_state_mean",
                "initial_state_covariance",
            )
            if time_varying and n_timesteps is None:
                raise ValueError(f"{name} is time-varying (shape {array.shape}); give this step's value.")
            if time_varying:
                ok_lengths = (n_timesteps,) if name.startswith("observation") else (n_timesteps - 1, n_timesteps)
                if array.shape[1:] != shape or array.shape[0] not in ok_lengths:
                    raise ValueError(
                        f"{name} must have shape {shape} or ({n_timesteps}, {', '.join(map(str, shape))}), "
                        f"got {array.shape}."
                    )
                if array.shape[0] == n_timesteps - 1:  # pykalman's T - 1 transitions: pad the unused last
                    array = np.concatenate([array, array[-1:]], axis=0)
            elif array.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {array.shape}.")
            if not np.all(np.isfinite(array)):
                raise ValueError(f"{name} must be finite (found NaN or inf).")
            if name in _COVARIANCES:
                scale = max(1.0, float(np.abs(array).max()))
                if not np.allclose(array, np.swapaxes(array, -1, -2), rtol=0, atol=1e-10 * scale):
                    raise ValueError(f"{name} must be symmetric.")
                array = _check_covariance(array, name)
            params[name] = array
        return params

    def _fitted_params(self):
        return {name + "_": getattr(self, name + "_").copy() for name in _PARAMS}

    def _known_n_dim_obs(self, observation_matrix=None, observation=None):
        """n_dim_obs without X: fitted, given, read off the observation parameters, else pykalman's 1."""
        if hasattr(self, "n_features_in_"):
            return self.n_features_in_
        if self.n_dim_obs is not None:
            return self.n_dim_obs
        for value, axis in (
            (observation_matrix, -2),
            (self.observation_matrices, -2),
            (self.observation_offsets, -1),
            (self.observation_covariance, -1),
        ):
            if value is not None:
                return np.shape(value)[axis]
        return 1 if observation is None else np.size(observation)

    def _current_params(self, n_dim_obs, n_timesteps=None):
        """Fitted parameters when fitted, else the constructor's (pykalman's use without fit)."""
        if hasattr(self, "transition_matrices_"):
            return {name: getattr(self, name + "_") for name in _PARAMS}
        return self._given_params(n_dim_obs, n_timesteps)

    # ------------------------------------------------------------------ data
    def _validate_X(self, X, reset):
        X = _as_masked_nan(X)
        if reset:
            return validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=True)
        if hasattr(self, "n_features_in_"):
            return validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=False)
        return check_array(X, dtype=np.float64, ensure_all_finite="allow-nan")

    def _validate_fit_data(self, X, y=None, lengths=None, sequence_ids=None):
        X = self._validate_X(X, reset=True)
        check_y_unsupervised(None if y is None else np.asarray(y), X.shape[0])  # array-likes without len()
        offsets = check_sequences(X.shape[0], lengths, sequence_ids)
        return _KalmanData(X, offsets, X.shape[0])

    @staticmethod
    def _kernel_args(params):
        """Parameters as the kernels take them: a leading time axis of length 1 or n_timesteps."""
        args = []
        for name in (
            "transition_matrices",
            "transition_offsets",
            "transition_covariance",
            "observation_matrices",
            "observation_offsets",
            "observation_covariance",
        ):
            value = params[name]
            args.append(value[np.newaxis] if value.ndim == _BASE_NDIM[name] else value)
        args.append(params["initial_state_mean"])
        args.append(params["initial_state_covariance"])
        return args

    # ------------------------------------------------------------------ EM hooks
    def _initialize(self, data, random_state):
        params = self._given_params(data.X.shape[1], data.X.shape[0])
        learned = self._em_var_set()
        if self.n_init > 1:
            n, m = params["initial_state_mean"].shape[0], data.X.shape[1]
            for name in _PARAMS:  # a fixed order (not the set's), so every process draws the same
                if name not in learned or getattr(self, name) is not None:
                    continue
                if name in _COVARIANCES:
                    size = params[name].shape[-1]
                    params[name] = np.eye(size) * np.exp(random_state.uniform(np.log(0.1), np.log(10.0)))
                elif name == "transition_matrices":
                    params[name] = np.eye(n) + 0.1 * random_state.standard_normal((n, n))
                elif name == "observation_matrices":
                    params[name] = np.eye(m, n) + 0.1 * random_state.standard_normal((m, n))
                else:
                    params[name] = params[name] + 0.1 * random_state.standard_normal(params[name].shape)
        # EM only climbs from a point of the constrained set: project learned starting covariances onto it
        for name, covariance_type in (
            ("transition_covariance", self.transition_covariance_type),
            ("observation_covariance", self.observation_covariance_type),
        ):
            if name in learned:
                params[name] = _constrain(params[name], covariance_type)
        return {name + "_": value for name, value in params.items()}

    def _e_step(self, data, params):
        plain = {name: params[name + "_"] for name in _PARAMS}
        try:
            result = kalman_smoother(data.X, data.offsets, *self._kernel_args(plain))
        except np.linalg.LinAlgError as exc:
            raise NumericalFailure(
                f"{exc}: the parameters became numerically degenerate; standardize X (e.g. StandardScaler) "
                "or learn fewer parameters (em_vars)"
            ) from None
        stats = _sufficient_statistics(data, result, plain)
        return stats, result.log_likelihood

    def _m_step(self, data, stats, params):
        learned = self._em_var_set()
        new = {name: params[name + "_"].copy() for name in _PARAMS}
        H, d = new["observation_matrices"], new["observation_offsets"]
        A, b = new["transition_matrices"], new["transition_offsets"]
        if stats["n_obs"] > 0:
            if "observation_matrices" in learned:
                H = new["observation_matrices"] = update_observation_matrix(stats, d)
            if "observation_covariance" in learned:
                new["observation_covariance"] = update_observation_covariance(
                    stats, H, d, self.observation_covariance_type
                )
        if stats["n_trans"] > 0:
            if "transition_matrices" in learned:
                A = new["transition_matrices"] = update_transition_matrix(stats, b)
            if "transition_covariance" in learned:
                new["transition_covariance"] = update_transition_covariance(
                    stats, A, b, self.transition_covariance_type
                )
        if "initial_state_mean" in learned:
            new["initial_state_mean"] = update_initial_state_mean(stats)
        if "initial_state_covariance" in learned:
            new["initial_state_covariance"] = update_initial_state_covariance(stats, new["initial_state_mean"])
        if stats["n_trans"] > 0 and "transition_offsets" in learned:
            new["transition_offsets"] = update_transition_offset(stats, A)
        if stats["n_obs"] > 0 and "observation_offsets" in learned:
            new["observation_offsets"] = update_observation_offset(stats, H)
        for name in _PARAMS:
            if not np.all(np.isfinite(new[name])):
                raise NumericalFailure(f"the M-step produced a non-finite {name}; leave it out of em_vars")
        for name in _COVARIANCES:
            if name in learned and not _is_positive_definite(new[name]):
                raise NumericalFailure(
                    f"the learned {name} is singular (the data cannot identify it: too few time steps, or "
                    "a perfect fit); fix it by leaving it out of em_vars or constrain it with *_covariance_type"
                )
        return {name + "_": value for name, value in new.items()}

    def _after_fit(self, data, params):
        self.n_dim_state_ = params["initial_state_mean_"].shape[0]

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None, lengths=None, sequence_ids=None):
        """Learn the parameters named in ``em_vars`` by EM.

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
        self._validate_params()
        learned = self._em_var_set()
        data = self._validate_fit_data(X, y, lengths=lengths, sequence_ids=sequence_ids)
        given = self._given_params(data.X.shape[1], data.X.shape[0])
        time_varying = sorted(name for name in learned if given[name].ndim > _BASE_NDIM[name])
        if time_varying:
            raise ValueError(
                f"{time_varying} have a leading time axis, but EM learns time-invariant parameters only: "
                "leave them out of em_vars (fixed time-varying values are fine) or give single values."
            )
        if data.n_units < 2 and self.max_iter > 0 and learned:
            raise ValueError("Found n_samples=1 time step: EM needs at least 2 to learn the parameters.")
        self._fit_em(data)
        return self

    def em(self, X, y=None, n_iter=None, em_vars=None, lengths=None, sequence_ids=None):
        """pykalman's name for :meth:`fit`.

        Parameters
        ----------
        X : array-like of shape (n_timesteps, n_dim_obs)
            Observations (NaN = missing).
        y : None
            Ignored.
        n_iter : int, default=None
            When given, run exactly this many EM iterations (pykalman's
            meaning; no convergence test or warning). None: ``max_iter`` and
            ``tol`` as in ``fit``.
        em_vars : "all" or sequence of str, default=None
            When given, overrides the constructor's ``em_vars`` for this call.
        lengths, sequence_ids : see :meth:`fit`.

        Returns
        -------
        self : KalmanFilter
        """
        saved = {"max_iter": self.max_iter, "em_vars": self.em_vars}
        try:
            if em_vars is not None:
                self.em_vars = em_vars
            if n_iter is not None:
                self.max_iter = n_iter
                self._fixed_iterations = True
            with warnings.catch_warnings():
                if n_iter is not None:  # exactly n_iter iterations were asked for
                    warnings.simplefilter("ignore", ConvergenceWarning)
                self.fit(X, y, lengths=lengths, sequence_ids=sequence_ids)
        finally:
            for key, value in saved.items():
                setattr(self, key, value)
            self.__dict__.pop("_fixed_iterations", None)
        return self

    def _is_converged(self, data, history, change):
        return change < self.tol and not getattr(self, "_fixed_iterations", False)

    # ------------------------------------------------------------------ inference
    def _run(self, X, lengths, sequence_ids, smooth, require_fit):
        if require_fit:
            check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        offsets = check_sequences(X.shape[0], lengths, sequence_ids)
        params = self._current_params(X.shape[1], X.shape[0])
        runner = kalman_smoother if smooth else kalman_filter
        try:
            return runner(X, offsets, *self._kernel_args(params)), offsets, params
        except np.linalg.LinAlgError as exc:
            raise ValueError(f"Kalman filtering failed: {exc}.") from None

    def filter(self, X, lengths=None, sequence_ids=None):
        """Filtered state moments ``p(x_t | y_1..t)``.

        Parameters
        ----------
        X : array-like of shape (n_timesteps, n_dim_obs)
            Observations (NaN = missing).
        lengths, sequence_ids : see :meth:`fit`.

        Returns
        -------
        means : ndarray of shape (n_timesteps, n_dim_state)
        covariances : ndarray of shape (n_timesteps, n_dim_state, n_dim_state)
        """
        result = self._run(X, lengths, sequence_ids, smooth=False, require_fit=False)[0]
        return result.filtered_means, result.filtered_covariances

    def smooth(self, X, lengths=None, sequence_ids=None):
        """RTS-smoothed state moments ``p(x_t | y_1..T)``.

        Parameters
        ----------
        X : array-like of shape (n_timesteps, n_dim_obs)
            Observations (NaN = missing).
        lengths, sequence_ids : see :meth:`fit`.

        Returns
        -------
        means : ndarray of shape (n_timesteps, n_dim_state)
        covariances : ndarray of shape (n_timesteps, n_dim_state, n_dim_state)
        """
        result = self._run(X, lengths, sequence_ids, smooth=True, require_fit=False)[0]
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
        return self.n_dim_state_

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
        return result.log_likelihood / result.step_log_likelihoods.shape[0]

    def loglikelihood(self, X, lengths=None, sequence_ids=None):
        """Total log-likelihood of X (pykalman's ``loglikelihood``; ``score`` is per time step).

        Parameters
        ----------
        X : array-like of shape (n_timesteps, n_dim_obs)
        lengths, sequence_ids : see :meth:`fit`.

        Returns
        -------
        log_likelihood : float
        """
        return self._run(X, lengths, sequence_ids, smooth=False, require_fit=False)[0].log_likelihood

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
            None, NaN or masked entries are missing.
        transition_matrix, transition_offset, transition_covariance, \
observation_matrix, observation_offset, observation_covariance : array-like, default=None
            Override the model's values for this step.

        Returns
        -------
        mean : ndarray of shape (n_dim_state,)
        covariance : ndarray of shape (n_dim_state, n_dim_state)
        """
        m = self._known_n_dim_obs(observation_matrix, observation)
        params = self._current_params(m)
        overrides = {
            "transition_matrices": transition_matrix,
            "transition_offsets": transition_offset,
            "transition_covariance": transition_covariance,
            "observation_matrices": observation_matrix,
            "observation_offsets": observation_offset,
            "observation_covariance": observation_covariance,
        }
        params = dict(params)
        for name, value in overrides.items():
            if value is not None:
                params[name] = np.asarray(value, dtype=np.float64)
        for name in _PARAMS:
            if params[name].ndim != _BASE_NDIM[name]:
                raise ValueError(f"{name} is time-varying; give this step's value to filter_update.")
        mean = np.asarray(filtered_state_mean, dtype=np.float64)
        cov = np.asarray(filtered_state_covariance, dtype=np.float64)
        if observation is None:
            y = np.full((1, m), np.nan)
        else:
            y = np.asarray(_as_masked_nan(np.ma.asarray(observation)), dtype=np.float64).reshape(1, -1)
        A, b, Q = params["transition_matrices"], params["transition_offsets"], params["transition_covariance"]
        predicted = dict(params, initial_state_mean=A @ mean + b, initial_state_covariance=A @ cov @ A.T + Q)
        result = kalman_filter(y, [0, 1], *self._kernel_args(predicted))
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
        for name in _PARAMS:
            if params[name].ndim > _BASE_NDIM[name]:
                raise ValueError(f"forecast needs time-invariant parameters; {name}_ is time-varying.")
        A, b, Q = params["transition_matrices"], params["transition_offsets"], params["transition_covariance"]
        H, d, R = params["observation_matrices"], params["observation_offsets"], params["observation_covariance"]
        means, covs = [], []
        for end in offsets[1:] - 1:
            mean, cov = result.filtered_means[end], result.filtered_covariances[end]
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
        args = self._kernel_args(params)
        A, b, Q, H, d, R, mu0, P0 = args
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
            states[0] = check_array_param(initial_state, "initial_state", (n,))
        for t in range(n_timesteps):
            if t > 0:
                states[t] = at(A, t - 1) @ states[t - 1] + at(b, t - 1) + draw(at(Q, t - 1))
            observations[t] = at(H, t) @ states[t] + at(d, t) + draw(at(R, t))
        return states, observations


class _KalmanData(NamedTuple):
    """Validated data: observations (NaN = missing), sequence offsets, number of time steps."""

    X: np.ndarray
    offsets: np.ndarray
    n_units: int


def _sufficient_statistics(data, result, params):
    """Posterior quantities the M-step updates need (see each update's formula).

    Observation side, over rows with at least one observed entry: expected
    observations (missing entries imputed from the observed ones of the same
    row), smoothed means and summed covariances, and for each partly observed
    row ``(t, G, N)`` from ``y_t | x_t, y_obs = G x_t + g + noise(N)``.
    Transition side: means before/after each transition, summed covariances
    and lag-one cross-covariances. Initial side: first smoothed moments of
    each sequence. The per-row covariances are kept (not copied) for fixed
    time-varying matrices.
    """
    X, offsets = data.X, data.offsets
    means, covs, pairs = result.smoothed_means, result.smoothed_covariances, result.pairwise_covariances
    first = offsets[:-1]
    is_first = np.zeros(X.shape[0], dtype=bool)
    is_first[first] = True
    is_last = np.zeros(X.shape[0], dtype=bool)
    is_last[offsets[1:] - 1] = True

    missing = np.isnan(X)
    n_missing = missing.sum(axis=1)
    observed_rows = np.flatnonzero(n_missing < X.shape[1])
    partial_rows = np.flatnonzero((n_missing < X.shape[1]) & (n_missing > 0))
    expected_y = np.where(missing, 0.0, X)
    partial = []
    yx_correction = np.zeros((X.shape[1], means.shape[1]))
    for t in partial_rows:
        H, d, R = (
            value[t] if value.ndim > base else value
            for value, base in (
                (params["observation_matrices"], 2),
                (params["observation_offsets"], 1),
                (params["observation_covariance"], 2),
            )
        )
        miss = missing[t]
        obs = ~miss
        factor = linalg.cho_factor(R[np.ix_(obs, obs)], lower=True, check_finite=False)
        gain = linalg.cho_solve(factor, R[np.ix_(obs, miss)], check_finite=False).T  # R_mo R_oo^{-1}
        G = np.zeros_like(H)
        G[miss] = H[miss] - gain @ H[obs]
        g = np.where(miss, 0.0, X[t])
        g[miss] = d[miss] + gain @ (X[t, obs] - d[obs])
        N = np.zeros_like(R)
        N[np.ix_(miss, miss)] = R[np.ix_(miss, miss)] - gain @ R[np.ix_(obs, miss)]
        expected_y[t] = G @ means[t] + g
        yx_correction += G @ covs[t]
        partial.append((t, G, N))

    obs_means = means[observed_rows]
    obs_y = expected_y[observed_rows]
    prev_rows = np.flatnonzero(~is_last)
    next_rows = np.flatnonzero(~is_first)
    obs_P = covs[observed_rows].sum(axis=0)
    return {
        "covs": covs,
        "pairs": pairs,
        "obs_rows": observed_rows,
        "prev_rows": prev_rows,
        "next_rows": next_rows,
        "n_obs": observed_rows.shape[0],
        "obs_y": obs_y,
        "obs_means": obs_means,
        "obs_P": obs_P,
        "obs_xx": obs_P + obs_means.T @ obs_means,
        "obs_yx": obs_y.T @ obs_means + yx_correction,
        "partial": partial,
        "n_trans": next_rows.shape[0],
        "prev_means": means[prev_rows],
        "next_means": means[next_rows],
        "prev_P": covs[prev_rows].sum(axis=0),
        "next_P": covs[next_rows].sum(axis=0),
        "pair": pairs[next_rows].sum(axis=0),
        "first_means": means[first],
        "first_P": covs[first].sum(axis=0),
    }
