"""All data and parameter checks.

This is the only module that imports scikit-learn's private helpers, so that a
change on their side is mended in one place.
"""

import numpy as np
from sklearn.base import _fit_context  # noqa: F401  (re-exported: validates parameters once per fit)
from sklearn.utils._param_validation import Interval, StrOptions  # noqa: F401
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data  # noqa: F401

__all__ = [
    "validate_data",
    "check_is_fitted",
    "check_sample_weight",
    "check_array_param",
    "check_sequences",
    "check_y_unsupervised",
    "Interval",
    "StrOptions",
    "fit_context",
    "check_warm_start_shapes",
    "reset_n_features",
    "dask_sample_weight",
    "store_init_arguments",
]

fit_context = _fit_context


def check_sample_weight(sample_weight, X):
    """Validate ``sample_weight``: finite, non-negative, shape (n_samples,), not all zero.

    Returns None when ``sample_weight`` is None (unweighted), else a float
    array of X's dtype.
    """
    if sample_weight is None:
        return None
    sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype, ensure_non_negative=True)
    if not np.all(np.isfinite(sample_weight)):
        raise ValueError("sample_weight must be finite (found NaN or inf).")
    if sample_weight.sum() <= 0:
        raise ValueError("sample_weight sums to zero: at least one sample needs a positive weight.")
    return sample_weight


def check_array_param(value, name, shape, dtype=np.float64):
    """Validate a user-given parameter array (an ``*_init`` or a prior).

    Parameters
    ----------
    value : array-like
        What the user gave.
    name : str
        The parameter's name, used in the error message.
    shape : tuple of int
        The expected shape.

    Returns
    -------
    array : ndarray of the expected shape and dtype (a copy).
    """
    array = np.array(value, dtype=dtype, copy=True)
    if array.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite (found NaN or inf).")
    return array


def check_y_unsupervised(y, n_samples):
    """``y`` is ignored by unsupervised estimators; catch hmmlearn's positional ``lengths``.

    hmmlearn users write ``fit(X, lengths)``; here the second positional
    argument is ``y`` (so Pipeline and GridSearchCV work), and it is ignored.
    A ``y`` whose length is not ``n_samples`` is almost certainly lengths.
    """
    if y is None:
        return
    n_y = np.asarray(y).shape[0] if np.ndim(y) > 0 else None
    if n_y != n_samples:
        raise ValueError(
            f"y has {n_y} entries but X has {n_samples} rows. y is ignored by this unsupervised "
            "estimator; sequence lengths go in the keyword argument `lengths=` (or `sequence_ids=`)."
        )


def check_sequences(n_samples, lengths=None, sequence_ids=None):
    """Turn ``lengths`` or ``sequence_ids`` into sequence offsets.

    Parameters
    ----------
    n_samples : int
        Number of rows of X.
    lengths : array-like of int of shape (n_sequences,), optional
        hmmlearn's convention: one positive length per sequence, summing to
        ``n_samples``.
    sequence_ids : array-like of shape (n_samples,), optional
        One label per row; each sequence must be one contiguous run of rows.

    Returns
    -------
    offsets : ndarray of int64 of shape (n_sequences + 1,)
        Sequence ``i`` is rows ``offsets[i]:offsets[i + 1]``.
    """
    if lengths is not None and sequence_ids is not None:
        raise ValueError("Give either lengths or sequence_ids, not both.")
    if sequence_ids is not None:
        ids = np.asarray(sequence_ids)
        if ids.ndim != 1 or ids.shape[0] != n_samples:
            raise ValueError(
                f"sequence_ids must have one label per row of X: expected shape ({n_samples},), got {ids.shape}."
            )
        if n_samples == 0:
            return np.zeros(1, dtype=np.int64)
        starts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
        boundaries = np.concatenate([[0], starts, [n_samples]]).astype(np.int64)
        labels = ids[boundaries[:-1]]
        if len(np.unique(labels)) != len(labels):
            raise ValueError(
                "sequence_ids: each sequence must be one contiguous run of rows, but a label appears "
                "in more than one run. Sort the rows by sequence (keeping time order within each)."
            )
        return boundaries
    if lengths is None:
        return np.array([0, n_samples], dtype=np.int64)
    lengths_arr = np.asarray(lengths)
    if lengths_arr.ndim != 1:
        raise ValueError(f"lengths must be 1-D, got shape {lengths_arr.shape}.")
    if lengths_arr.size == 0:
        raise ValueError("lengths is empty.")
    if not np.issubdtype(lengths_arr.dtype, np.integer):
        if not np.all(np.isfinite(lengths_arr)) or np.any(lengths_arr != np.round(lengths_arr)):
            raise ValueError("lengths must be integers.")
    lengths_arr = lengths_arr.astype(np.int64)
    if np.any(lengths_arr <= 0):
        raise ValueError(f"lengths must all be positive, got {lengths_arr[lengths_arr <= 0][:5].tolist()}.")
    total = int(lengths_arr.sum())
    if total != n_samples:
        raise ValueError(f"lengths sum to {total} but X has {n_samples} rows; they must add up.")
    return np.concatenate([[0], np.cumsum(lengths_arr)]).astype(np.int64)


def check_warm_start_shapes(params, expected):
    """Refuse a warm start whose fitted parameters no longer fit the data or the hyperparameters.

    Parameters
    ----------
    params : dict
        The fitted parameters (``_fitted_params()``).
    expected : dict
        ``{name: shape}`` this fit needs.

    Raises
    ------
    ValueError
        Naming every parameter whose shape differs, and what to do.
    """
    wrong = [
        f"{name} has shape {np.shape(params[name])} but this fit needs {tuple(shape)}"
        for name, shape in expected.items()
        if np.shape(params[name]) != tuple(shape)
    ]
    if wrong:
        raise ValueError(
            f"warm_start=True cannot continue from the fitted model: {'; '.join(wrong)} (the data or "
            "n_components / covariance_type changed since the last fit). Fit with warm_start=False."
        )


def reset_n_features(estimator, n_features):
    """What ``validate_data(reset=True)`` records, for input it cannot read (a dask array)."""
    estimator.n_features_in_ = int(n_features)
    if hasattr(estimator, "feature_names_in_"):
        del estimator.feature_names_in_


def dask_sample_weight(sample_weight, X, whom):
    """``sample_weight`` for a dask array X: a dask array with X's row chunks, checked lazily-once.

    Accepts a numpy array (checked here) or a dask array (checked in one pass
    over its chunks).
    """
    import dask.array as da

    from ._dask import check_dask_array, is_dask_array

    if is_dask_array(sample_weight):
        if sample_weight.ndim != 1 or sample_weight.shape[0] != X.shape[0]:
            raise ValueError(f"{whom}: sample_weight must have shape ({X.shape[0]},), got {sample_weight.shape}.")
        weights = sample_weight.astype(X.dtype).rechunk((X.chunks[0],))
        check_dask_array(weights[:, None], name="sample_weight", non_negative=True, whom=whom)
        return weights
    weights = np.asarray(sample_weight, dtype=X.dtype)
    if weights.shape != (X.shape[0],):
        raise ValueError(f"{whom}: sample_weight must have shape ({X.shape[0]},), got {weights.shape}.")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError("sample_weight must be finite and non-negative.")
    return da.from_array(weights, chunks=(X.chunks[0],))


def store_init_arguments(estimator, arguments):
    """What a scikit-learn ``__init__`` does: every keyword argument stored under its own name, nothing else.

    Call it first thing in ``__init__`` as ``store_init_arguments(self, locals())``: the explicit signature
    (which ``get_params`` and ``clone`` read) stays the one source of the names.
    """
    for name, value in arguments.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)
