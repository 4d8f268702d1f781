"""KalmanFilter's parameters: names, pykalman's defaults and readings, shapes and checks.

Part of the validation layer (it imports numpy only). :mod:`emkit.kalman`
resolves the constructor's eight values here once per call, so that the
estimator and the EM hooks only ever see checked float64 arrays of known
shapes:

- a value's *base* shape is ``(n, n)``, ``(m, n)``, ``(m, m)``, ``(n,)`` or
  ``(m,)`` (n = state dimension, m = observation dimension); one more leading
  axis makes a transition or observation value time-varying (one entry per
  row, or pykalman's ``n_timesteps - 1`` transition entries);
- scalars and short values are read as pykalman reads them: a matrix value is
  ``atleast_2d`` (``0.98`` is ``[[0.98]]``, ``[1, 0]`` is ``[[1, 0]]``) and a
  vector value ``atleast_1d``, so scalar parameters mean a 1-D state and
  observation;
- ``None`` is pykalman's default: identity matrices (``eye(m, n)`` for the
  observation matrix), zero offsets and initial mean.

The dimensions come from the values themselves (every value that fixes one
must agree), then from ``n_dim_state`` / ``n_dim_obs``, then from the data.
"""

import numpy as np

__all__ = [
    "PARAMS",
    "DEFAULT_EM_VARS",
    "COVARIANCES",
    "BASE_NDIM",
    "TRANSITION_PARAMS",
    "OBSERVATION_PARAMS",
    "INITIAL_PARAMS",
    "read_value",
    "resolve_em_vars",
    "state_dimension",
    "observation_dimension",
    "resolve_params",
    "is_specified",
    "kernel_layout",
    "kernel_args",
]

PARAMS = (
    "transition_matrices",
    "observation_matrices",
    "transition_covariance",
    "observation_covariance",
    "transition_offsets",
    "observation_offsets",
    "initial_state_mean",
    "initial_state_covariance",
)
DEFAULT_EM_VARS = (
    "transition_covariance",
    "observation_covariance",
    "initial_state_mean",
    "initial_state_covariance",
)
COVARIANCES = ("transition_covariance", "observation_covariance", "initial_state_covariance")
TRANSITION_PARAMS = ("transition_matrices", "transition_covariance", "transition_offsets")
OBSERVATION_PARAMS = ("observation_matrices", "observation_covariance", "observation_offsets")
INITIAL_PARAMS = ("initial_state_mean", "initial_state_covariance")
# number of axes of a time-invariant value; one more is a leading time axis
BASE_NDIM = {
    "transition_matrices": 2,
    "observation_matrices": 2,
    "transition_covariance": 2,
    "observation_covariance": 2,
    "transition_offsets": 1,
    "observation_offsets": 1,
    "initial_state_mean": 1,
    "initial_state_covariance": 2,
}
# the order the kernels in emkit._inference.lgssm take the parameters in
_KERNEL_ORDER = (
    "transition_matrices",
    "transition_offsets",
    "transition_covariance",
    "observation_matrices",
    "observation_offsets",
    "observation_covariance",
    "initial_state_mean",
    "initial_state_covariance",
)
# (parameter, axis) pairs that fix the state dimension, and the observation dimension (as pykalman reads them)
_STATE_AXES = (
    ("transition_matrices", -2),
    ("transition_offsets", -1),
    ("transition_covariance", -2),
    ("initial_state_mean", -1),
    ("initial_state_covariance", -2),
    ("observation_matrices", -1),
)
_OBSERVATION_AXES = (
    ("observation_matrices", -2),
    ("observation_offsets", -1),
    ("observation_covariance", -2),
)


def read_value(value, name):
    """One user-given value as a fresh float64 array, read as pykalman reads it.

    A matrix parameter is ``atleast_2d`` (a scalar is a 1 x 1 matrix, a 1-D
    value one row) and a vector parameter ``atleast_1d``.

    Parameters
    ----------
    value : array-like or scalar
    name : str
        The parameter's name (one of :data:`PARAMS`), for the rule and the messages.

    Returns
    -------
    array : ndarray of float64
    """
    try:
        array = np.array(value, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of numbers: {exc}") from None
    return np.atleast_2d(array) if BASE_NDIM[name] == 2 else np.atleast_1d(array)


def resolve_em_vars(em_vars):
    """``em_vars`` as a frozenset of parameter names.

    Parameters
    ----------
    em_vars : None, "all" or iterable of str
        None is pykalman's default set (:data:`DEFAULT_EM_VARS`).

    Returns
    -------
    frozenset of str
    """
    if em_vars is None:
        return frozenset(DEFAULT_EM_VARS)
    if isinstance(em_vars, str):
        if em_vars == "all":
            return frozenset(PARAMS)
        raise ValueError(f"em_vars must be 'all' or a list of parameter names, got {em_vars!r}.")
    names = list(em_vars)
    unknown = sorted({str(v) for v in names} - set(PARAMS))
    if unknown or not all(isinstance(v, str) for v in names):
        raise ValueError(f"em_vars names unknown parameters {unknown}; choose from {list(PARAMS)}.")
    return frozenset(names)


def _candidates(values, axes):
    found = []
    for name, axis in axes:
        if values.get(name) is not None:
            found.append((name, read_value(values[name], name).shape[axis]))
    return found


def _agree(candidates, what):
    sizes = {size for _, size in candidates}
    if len(sizes) > 1:
        raise ValueError(
            f"the parameters disagree on the {what} dimension: "
            + ", ".join(f"{name} gives {size}" for name, size in candidates)
        )
    return candidates[0][1] if candidates else None


def state_dimension(values, n_dim_state=None, n_dim_obs=None):
    """The state dimension the values fix, else ``n_dim_state``, else ``n_dim_obs`` (may be None).

    Parameters
    ----------
    values : dict
        The constructor values by name (None when not given).
    n_dim_state : int or None
        The constructor's ``n_dim_state``.
    n_dim_obs : int or None
        The observation dimension, when known: emkit's default state
        dimension when nothing else fixes it.

    Returns
    -------
    int or None
    """
    candidates = _candidates(values, _STATE_AXES)
    if n_dim_state is not None:
        candidates.append(("n_dim_state", int(n_dim_state)))
    size = _agree(candidates, "state")
    return n_dim_obs if size is None else size


def observation_dimension(values, n_dim_obs=None):
    """The observation dimension the observation values fix, else ``n_dim_obs`` (None when neither does).

    ``values`` are the constructor values by name, ``n_dim_obs`` the constructor's.
    """
    candidates = _candidates(values, _OBSERVATION_AXES)
    if n_dim_obs is not None:
        candidates.append(("n_dim_obs", int(n_dim_obs)))
    return _agree(candidates, "observation")


def is_specified(values, n_dim_state=None, n_dim_obs=None):
    """Whether the values define a complete model without fitting (pykalman's usage).

    True when ``transition_matrices``, ``transition_covariance`` and
    ``observation_covariance`` are given, and ``observation_matrices`` is
    given or implied as the identity by equal state and observation
    dimensions. Offsets and the initial state default as in pykalman.

    Parameters
    ----------
    values : dict
        The constructor values by name.
    n_dim_state, n_dim_obs : int or None
        The constructor's dimensions.

    Returns
    -------
    bool
    """
    needed = ("transition_matrices", "transition_covariance", "observation_covariance")
    if any(values.get(name) is None for name in needed):
        return False
    if values.get("observation_matrices") is not None:
        return True
    return state_dimension(values, n_dim_state) == observation_dimension(values, n_dim_obs)


def _check_covariance(array, name):
    scale = max(1.0, float(np.abs(array).max()))
    if not np.allclose(array, np.swapaxes(array, -1, -2), rtol=0, atol=1e-10 * scale):
        raise ValueError(f"{name} must be symmetric.")
    array = 0.5 * (array + np.swapaxes(array, -1, -2))
    for matrix in array.reshape(-1, array.shape[-2], array.shape[-1]):
        try:
            np.linalg.cholesky(matrix)
        except np.linalg.LinAlgError:
            raise ValueError(f"{name} must be positive definite.") from None
    return array


def resolve_params(values, n_dim_obs, n_timesteps=None, n_dim_state=None, declared_n_dim_obs=None):
    """The eight parameters, checked, with pykalman's defaults for the values left None.

    Parameters
    ----------
    values : dict
        The constructor values by name (None = pykalman's default).
    n_dim_obs : int
        The observation dimension (columns of X).
    n_timesteps : int, optional
        Rows of X. A time-varying value (a leading time axis of length
        n_timesteps, or n_timesteps - 1 for the transition parameters, as in
        pykalman) is accepted only when this is given; the shorter one is
        padded by repeating its last entry (never used: it would map the last
        row onward).
    n_dim_state : int, optional
        The constructor's ``n_dim_state``.
    declared_n_dim_obs : int, optional
        The constructor's ``n_dim_obs``: must equal ``n_dim_obs``.

    Returns
    -------
    params : dict of ndarray
        Fresh float64 arrays by name; covariances symmetric positive definite.
    """
    if declared_n_dim_obs is not None and declared_n_dim_obs != n_dim_obs:
        raise ValueError(f"n_dim_obs={declared_n_dim_obs} but X has {n_dim_obs} columns.")
    n, m = state_dimension(values, n_dim_state, n_dim_obs), n_dim_obs
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
    params = {}
    for name in PARAMS:
        shape = shapes[name]
        if values.get(name) is None:
            params[name] = np.eye(*shape) if len(shape) == 2 else np.zeros(shape)
            continue
        array = read_value(values[name], name)
        time_varying = array.ndim == len(shape) + 1 and name not in INITIAL_PARAMS
        if time_varying and n_timesteps is None:
            raise ValueError(f"{name} is time-varying (shape {array.shape}); give this step's value.")
        if time_varying:
            lengths = (n_timesteps,) if name in OBSERVATION_PARAMS else (n_timesteps - 1, n_timesteps)
            if array.shape[1:] != shape or array.shape[0] not in lengths:
                raise ValueError(
                    f"{name} must have shape {shape} or ({n_timesteps}, {', '.join(map(str, shape))}), "
                    f"got {array.shape}."
                )
            if array.shape[0] == n_timesteps - 1:
                array = np.concatenate([array, array[-1:]], axis=0)
        elif array.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {array.shape}.")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} must be finite (found NaN or inf).")
        if name in COVARIANCES:
            array = _check_covariance(array, name)
        params[name] = array
    return params


def kernel_layout(name, value):
    """A parameter as the kernels take it: a leading time axis of length 1 (time-invariant) or T.

    The initial state's mean and covariance have no time axis.
    """
    if name in INITIAL_PARAMS or value.ndim > BASE_NDIM[name]:
        return value
    return value[np.newaxis]


def kernel_args(params):
    """``(A, b, Q, H, d, R, mu0, P0)`` for :func:`emkit._inference.lgssm.kalman_filter` from a dict by name."""
    return [kernel_layout(name, params[name]) for name in _KERNEL_ORDER]
