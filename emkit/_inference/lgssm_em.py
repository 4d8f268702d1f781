r"""EM for linear-Gaussian state-space models: one block's statistics and the closed-form M-step.

The model and the kernels' conventions are those of :mod:`emkit._inference.lgssm`::

    x_0     ~ N(mu_0, P_0)
    x_{t+1} = A_t x_t + b_t + w_t,     w_t ~ N(0, Q)
    y_t     = H_t x_t + d_t + v_t,     v_t ~ N(0, R)

EM treats the states (and the missing entries of partly observed rows) as
latent. In the formulas ``E[.]`` is an expectation under the smoothed
posterior at the current parameters, ``m_t``, ``P_t`` are the smoothed means
and covariances, ``P_{t,t-1} = Cov(x_t, x_{t-1} | y)``, ``S`` is the set of
rows with at least one observed entry, and the transition sums run over every
step ``t-1 -> t`` inside a sequence.

**Statistics are residual regressions about the current parameters.** Each of
the three parts of the model is a regression of a residual ``e`` on a
regressor ``x``:

- observation, over the rows in S: ``e_t = y_t - H_t x_t - d_t`` on ``x_t``;
- transition, over the transitions: ``e_t = x_t - A_{t-1} x_{t-1} - b_{t-1}``
  on ``x_{t-1}``;
- initial state, over the sequences: ``e_s = x_{s,0} - mu_0`` (no regressor);

and :class:`RegressionStats` holds, for one block, the sums ``N``, ``sum x``,
``sum E[e]``, ``sum E[x x^T]``, ``sum E[e x^T]`` and ``sum E[e e^T]``. The
residuals use the parameters the E-step ran with, including any fixed
*time-varying* matrix (applied row by row inside the block, which carries its
rows' slices), so every statistic is a plain sum over rows and two blocks add
field by field. Because they are taken about the current fit, the sums stay
small near convergence, and the updates below do not subtract large
second moments from each other (the cancellation that ``sum E[y y^T]`` minus
``H sum E[x y^T]`` would suffer on series with large offsets).

**Updates** (pykalman's order, each a conditional maximisation of the expected
complete-data log-likelihood, so the log-likelihood never decreases): H, then R
given the new H; A, then Q given the new A; mu_0, then P_0 given the new mu_0;
then b given the new A and d given the new H. With ``Delta C`` the change of a
coefficient matrix and ``Delta c`` the change of an offset, a residual about
the new parameters is ``e - Delta C x - Delta c``, which is how every update is
read off the sums.
"""

from typing import NamedTuple

import numpy as np
from scipy import linalg

from .._stats import add_fields, scale_fields

__all__ = [
    "RegressionStats",
    "LGSSMStats",
    "block_statistics",
    "m_step",
    "constrain_covariance",
    "update_observation_matrix",
    "update_observation_covariance",
    "update_transition_matrix",
    "update_transition_covariance",
    "update_initial_state_mean",
    "update_initial_state_covariance",
    "update_transition_offset",
    "update_observation_offset",
]


class RegressionStats(NamedTuple):
    """Sums over a block's rows for one residual regression (see the module docstring).

    All fields are taken about the parameters of the E-step that made them,
    so two blocks of the same E-step add field by field.

    Attributes
    ----------
    count : float
        ``N``, the number of rows (observed rows, transitions or sequences).
    regressor_sum : ndarray of shape (q,)
        ``sum m`` of the regressor's means (q = 0 for the initial state).
    residual_sum : ndarray of shape (p,)
        ``sum E[e]``.
    regressor_outer : ndarray of shape (q, q)
        ``sum E[x x^T]``.
    residual_regressor : ndarray of shape (p, q)
        ``sum E[e x^T]``.
    residual_outer : ndarray of shape (p, p)
        ``sum E[e e^T]``.
    """

    count: np.ndarray
    regressor_sum: np.ndarray
    residual_sum: np.ndarray
    regressor_outer: np.ndarray
    residual_regressor: np.ndarray
    residual_outer: np.ndarray

    add = add_fields
    scale = scale_fields


class LGSSMStats(NamedTuple):
    """One block's statistics: a :class:`RegressionStats` per part, None for a part EM does not learn."""

    observation: RegressionStats
    transition: RegressionStats
    initial: RegressionStats

    add = add_fields
    scale = scale_fields


# --------------------------------------------------------------------------- statistics of one block
def _at(value, rows):
    """A kernel-layout value (leading axis 1 or T) at ``rows``: one shared value, or one per row."""
    return value[0] if value.shape[0] == 1 else value[rows]


def _apply(matrices, vectors):
    """``M_t v_t`` for each row: one shared matrix, or one matrix per row."""
    if matrices.ndim == 2:
        return vectors @ matrices.T
    return np.einsum("tij,tj->ti", matrices, vectors)


def _sum_product(matrices, covariances, covariance_sum):
    """``sum_t M_t P_t``."""
    if matrices.ndim == 2:
        return matrices @ covariance_sum
    return np.einsum("tij,tjk->ik", matrices, covariances, optimize=True)


def _sum_sandwich(matrices, covariances, covariance_sum):
    """``sum_t M_t P_t M_t^T``."""
    if matrices.ndim == 2:
        return matrices @ covariance_sum @ matrices.T
    return np.einsum("tij,tjk,tlk->il", matrices, covariances, matrices, optimize=True)


def _sum_cross(covariances, covariance_sum, matrices):
    """``sum_t C_t M_t^T``."""
    if matrices.ndim == 2:
        return covariance_sum @ matrices.T
    return np.einsum("tij,tkj->ik", covariances, matrices, optimize=True)


def _regression(residuals, regressors, residual_cov_sum, cross_cov_sum, regressor_cov_sum):
    """RegressionStats from per-row residual and regressor means plus the summed posterior covariances."""
    return RegressionStats(
        np.float64(residuals.shape[0]),
        regressors.sum(axis=0),
        residuals.sum(axis=0),
        regressors.T @ regressors + regressor_cov_sum,
        residuals.T @ regressors + cross_cov_sum,
        residuals.T @ residuals + residual_cov_sum,
    )


def _partial_row(y, missing, mean, cov, H, d, R):
    """``(E[e], Cov(e, x), Cov(e))`` of the observation residual of a partly observed row.

    Given the state and the observed entries ``o``, the missing entries ``u``
    are Gaussian: ``y_u = d_u + H_u x + K (y_o - d_o - H_o x) + eps`` with
    ``K = R_uo R_oo^{-1}`` and ``Cov(eps) = R_uu - K R_ou``. So the residual is
    ``e = L e_o + eps`` with ``e_o = y_o - H_o x - d_o`` and ``L`` stacking the
    identity (observed rows) and ``K`` (missing rows).
    """
    observed = ~missing
    factor = linalg.cho_factor(R[np.ix_(observed, observed)], lower=True, check_finite=False)
    gain = linalg.cho_solve(factor, R[np.ix_(observed, missing)], check_finite=False).T
    lift = np.zeros((y.shape[0], int(observed.sum())))
    lift[observed] = np.eye(lift.shape[1])
    lift[missing] = gain
    lifted_H = lift @ H[observed]  # L H_o
    residual = lift @ (y[observed] - H[observed] @ mean - d[observed])
    noise = np.zeros_like(R)
    noise[np.ix_(missing, missing)] = R[np.ix_(missing, missing)] - gain @ R[np.ix_(observed, missing)]
    return residual, -lifted_H @ cov, lifted_H @ cov @ lifted_H.T + noise


def _rows(mask):
    """The rows where ``mask`` holds: a slice when that is every row (views, no copies), else indices."""
    return slice(None) if mask.all() else np.flatnonzero(mask)


def _covariance_sum(covariances, total, rows, excluded):
    """``sum_t P_t`` over ``rows``: the block's total minus the few ``excluded`` rows (no copy of the rest)."""
    if isinstance(rows, slice):
        return total
    return total - covariances[excluded].sum(axis=0)


def _observation_statistics(X, means, covariances, total, H, d, R):
    missing = np.isnan(X)
    n_missing = missing.sum(axis=1)
    full = _rows(n_missing == 0)
    H_full = _at(H, full)
    if H_full.ndim == 2:  # a shared H needs only the summed covariances
        full_covs = None
        cov_sum = _covariance_sum(covariances, total, full, n_missing > 0)
    else:
        full_covs = covariances[full]
        cov_sum = full_covs.sum(axis=0)
    residuals = X[full] - _apply(H_full, means[full]) - _at(d, full)
    stats = _regression(
        residuals,
        means[full],
        _sum_sandwich(H_full, full_covs, cov_sum),
        -_sum_product(H_full, full_covs, cov_sum),
        cov_sum,
    )
    partial = np.flatnonzero((n_missing > 0) & (n_missing < X.shape[1]))
    if partial.size == 0:
        return stats
    residuals = np.empty((partial.size, X.shape[1]))
    cross = np.zeros((X.shape[1], means.shape[1]))
    outer = np.zeros((X.shape[1], X.shape[1]))
    for i, t in enumerate(partial):
        residuals[i], row_cross, row_outer = _partial_row(
            X[t], missing[t], means[t], covariances[t], _at(H, t), _at(d, t), _at(R, t)
        )
        cross += row_cross
        outer += row_outer
    return stats.add(_regression(residuals, means[partial], outer, cross, covariances[partial].sum(axis=0)))


def _transition_statistics(offsets, means, covariances, total, pairwise, A, b):
    if offsets.shape[0] == 2:  # one sequence: transitions are rows 1.. from rows ..-1 (views)
        following, previous = slice(1, None), slice(0, -1)
    else:
        is_first = np.zeros(means.shape[0], dtype=bool)
        is_first[offsets[:-1]] = True
        following = np.flatnonzero(~is_first)
        previous = following - 1
    A_rows = _at(A, previous)
    if A_rows.ndim == 2:  # a shared A needs only sums (the pairwise covariance is zero at first rows)
        previous_covs = pairs = None
        previous_sum = total - covariances[offsets[1:] - 1].sum(axis=0)
        following_sum = total - covariances[offsets[:-1]].sum(axis=0)
        pair_sum = pairwise.sum(axis=0)
    else:
        previous_covs, pairs = covariances[previous], pairwise[following]
        previous_sum, pair_sum = previous_covs.sum(axis=0), pairs.sum(axis=0)
        following_sum = covariances[following].sum(axis=0)
    pair_A = _sum_cross(pairs, pair_sum, A_rows)  # sum P_{t,t-1} A^T
    residuals = means[following] - _apply(A_rows, means[previous]) - _at(b, previous)
    return _regression(
        residuals,
        means[previous],
        following_sum - pair_A - pair_A.T + _sum_sandwich(A_rows, previous_covs, previous_sum),
        pair_sum - _sum_product(A_rows, previous_covs, previous_sum),
        previous_sum,
    )


def _initial_statistics(offsets, means, covariances, mu0):
    first = offsets[:-1]
    no_regressor = np.zeros((first.shape[0], 0))
    n = means.shape[1]
    return _regression(
        means[first] - mu0, no_regressor, covariances[first].sum(axis=0), np.zeros((n, 0)), np.zeros((0, 0))
    )


def block_statistics(
    X, offsets, means, covariances, pairwise, A, b, H, d, R, mu0, *, observation=True, transition=True, initial=True
):
    """Expected sufficient statistics of one block of whole sequences.

    Parameters
    ----------
    X : ndarray of shape (T, m)
        The block's observations (NaN = missing).
    offsets : ndarray of int of shape (n_sequences + 1,)
        Its sequences' boundaries, from 0.
    means, covariances : ndarray of shape (T, n), (T, n, n)
        Smoothed moments at the current parameters.
    pairwise : ndarray of shape (T, n, n)
        ``Cov(x_t, x_{t-1} | y)`` (unused at each sequence's first row).
    A, b, H, d, R : ndarray
        The current parameters in kernel layout (a leading axis of length 1,
        or T for a fixed time-varying value: the block's own rows).
    mu0 : ndarray of shape (n,)
        The current initial state mean.
    observation, transition, initial : bool
        Which parts to compute (the others are None).

    Returns
    -------
    LGSSMStats
    """
    total = covariances.sum(axis=0)
    return LGSSMStats(
        _observation_statistics(X, means, covariances, total, H, d, R) if observation else None,
        _transition_statistics(offsets, means, covariances, total, pairwise, A, b) if transition else None,
        _initial_statistics(offsets, means, covariances, mu0) if initial else None,
    )


# --------------------------------------------------------------------------- M-step
def _solve_spd(gram, rhs, name):
    """``rhs @ inv(gram)`` for a symmetric positive-definite ``gram`` (Cholesky solve)."""
    try:
        factor = linalg.cho_factor(gram, lower=True, check_finite=False)
    except linalg.LinAlgError:
        raise np.linalg.LinAlgError(
            f"the expected state second moment is singular, so {name} cannot be learned"
        ) from None
    return linalg.cho_solve(factor, rhs.T, check_finite=False).T


def _coefficient_step(stats, name):
    """``Delta C = (sum E[e x^T]) (sum E[x x^T])^{-1}``: the least-squares change of the coefficients."""
    return _solve_spd(stats.regressor_outer, stats.residual_regressor, name)


def _offset_step(stats, coefficient_step=None):
    """``Delta c = (sum E[e] - Delta C sum m) / N``."""
    total = stats.residual_sum
    if coefficient_step is not None:
        total = total - coefficient_step @ stats.regressor_sum
    return total / stats.count


def _residual_second_moment(stats, coefficient_step=None, offset_step=None):
    """``(1/N) sum E[(e - Delta C x - Delta c)(e - Delta C x - Delta c)^T]``, expanded over the sums."""
    total = stats.residual_outer
    residual_sum = stats.residual_sum
    if coefficient_step is not None:
        shift = coefficient_step @ stats.residual_regressor.T
        total = total - shift - shift.T + coefficient_step @ stats.regressor_outer @ coefficient_step.T
        residual_sum = residual_sum - coefficient_step @ stats.regressor_sum
    if offset_step is not None:
        shift = np.outer(offset_step, residual_sum)
        total = total - shift - shift.T + stats.count * np.outer(offset_step, offset_step)
    return total / stats.count


def constrain_covariance(covariance, covariance_type):
    """The maximiser over a covariance structure, from the unconstrained maximiser.

    ``"full"``: the symmetrised matrix; ``"diag"``: its diagonal;
    ``"spherical"``: ``trace / p`` times the identity (the expected
    log-likelihood's maximisers over those sets).
    """
    covariance = 0.5 * (covariance + covariance.T)
    if covariance_type == "diag":
        return np.diag(np.diag(covariance))
    if covariance_type == "spherical":
        return np.eye(covariance.shape[0]) * (np.trace(covariance) / covariance.shape[0])
    return covariance


def update_observation_matrix(stats, observation_matrix):
    r"""Observation matrix given the current offsets d_t.

    .. math:: H' = \Big(\sum_{t \in S} E[(y_t - d_t) x_t^T]\Big)\Big(\sum_{t \in S} E[x_t x_t^T]\Big)^{-1}
              = H + \Big(\sum_{t \in S} E[e_t x_t^T]\Big)\Big(\sum_{t \in S} E[x_t x_t^T]\Big)^{-1}

    with ``e_t = y_t - H x_t - d_t`` (missing entries of a row imputed under
    the posterior). Returns ``(H', H' - H)``, each of shape (m, n).
    """
    change = _coefficient_step(stats, "observation_matrices")
    return observation_matrix + change, change


def update_observation_covariance(stats, matrix_change, covariance_type):
    r"""Observation covariance given the new H (and the current d_t).

    .. math:: R' = \frac{1}{|S|}\sum_{t \in S} E[(y_t - H' x_t - d_t)(y_t - H' x_t - d_t)^T],
              \quad y_t - H' x_t - d_t = e_t - \Delta H\, x_t

    then constrained to ``covariance_type`` (:func:`constrain_covariance`).
    ``matrix_change`` is ``H' - H`` (None when H is not learned).
    """
    return constrain_covariance(_residual_second_moment(stats, matrix_change), covariance_type)


def update_transition_matrix(stats, transition_matrix):
    r"""Transition matrix given the current offsets b_t.

    .. math:: A' = \Big(\sum_t P_{t,t-1} + m_t m_{t-1}^T - b_{t-1} m_{t-1}^T\Big)
              \Big(\sum_t P_{t-1} + m_{t-1} m_{t-1}^T\Big)^{-1}
              = A + \Big(\sum_t E[e_t x_{t-1}^T]\Big)\Big(\sum_t E[x_{t-1} x_{t-1}^T]\Big)^{-1}

    with ``e_t = x_t - A x_{t-1} - b_{t-1}``. Returns ``(A', A' - A)``, each of shape (n, n).
    """
    change = _coefficient_step(stats, "transition_matrices")
    return transition_matrix + change, change


def update_transition_covariance(stats, matrix_change, covariance_type):
    r"""Transition covariance given the new A (and the current b_t).

    .. math:: Q' = \frac{1}{N}\sum_t E[(x_t - A' x_{t-1} - b_{t-1})(\cdot)^T],
              \quad x_t - A' x_{t-1} - b_{t-1} = e_t - \Delta A\, x_{t-1}

    over the N transitions, then constrained to ``covariance_type``.
    ``matrix_change`` is ``A' - A`` (None when A is not learned).
    """
    return constrain_covariance(_residual_second_moment(stats, matrix_change), covariance_type)


def update_initial_state_mean(stats, initial_state_mean):
    r"""Initial state mean: :math:`\mu_0' = \frac{1}{S}\sum_s m_{s,0} = \mu_0 + \frac{1}{S}\sum_s (m_{s,0} - \mu_0)`.

    Returns ``(mu_0', mu_0' - mu_0)``, each of shape (n,).
    """
    change = _offset_step(stats)
    return initial_state_mean + change, change


def update_initial_state_covariance(stats, mean_change):
    r"""Initial state covariance given the new mu_0.

    .. math:: P_0' = \frac{1}{S}\sum_s P_{s,0} + (m_{s,0} - \mu_0')(m_{s,0} - \mu_0')^T

    (pykalman's update, averaged over sequences). ``mean_change`` is
    ``mu_0' - mu_0`` (None when mu_0 is not learned).
    """
    covariance = _residual_second_moment(stats, None, mean_change)
    return 0.5 * (covariance + covariance.T)


def update_transition_offset(stats, transition_offset, matrix_change):
    r"""Transition offset given the new A: :math:`b' = \frac{1}{N}\sum_t (m_t - A' m_{t-1})
    = b + \frac{1}{N}\sum_t (E[e_t] - \Delta A\, m_{t-1})`."""
    return transition_offset + _offset_step(stats, matrix_change)


def update_observation_offset(stats, observation_offset, matrix_change):
    r"""Observation offset given the new H: :math:`d' = \frac{1}{|S|}\sum_{t \in S} (E[y_t] - H' m_t)
    = d + \frac{1}{|S|}\sum_{t \in S} (E[e_t] - \Delta H\, m_t)`."""
    return observation_offset + _offset_step(stats, matrix_change)


def m_step(stats, params, learn, transition_covariance_type="full", observation_covariance_type="full"):
    """New parameters from summed statistics, in pykalman's order.

    Parameters
    ----------
    stats : LGSSMStats
        Summed over all blocks (parts EM does not learn may be None).
    params : dict of ndarray
        The current parameters by pykalman's names (without the trailing
        underscore); the learned ones are time-invariant.
    learn : set of str
        The names EM learns.
    transition_covariance_type, observation_covariance_type : {"full", "diag", "spherical"}
        Structures of a learned Q and R.

    Returns
    -------
    dict of ndarray
        A new dict: learned values updated, the others passed through.

    Raises
    ------
    numpy.linalg.LinAlgError
        If a second moment that a matrix update inverts is singular.
    """
    new = dict(params)
    changes = {}  # H' - H and A' - A (None when not learned)
    for matrix, covariance, part, covariance_type, update_matrix, update_covariance in (
        ("observation_matrices", "observation_covariance", stats.observation, observation_covariance_type,
         update_observation_matrix, update_observation_covariance),
        ("transition_matrices", "transition_covariance", stats.transition, transition_covariance_type,
         update_transition_matrix, update_transition_covariance),
    ):  # H, then R given the new H; A, then Q given the new A
        changes[matrix] = None
        if matrix in learn:
            new[matrix], changes[matrix] = update_matrix(part, params[matrix])
        if covariance in learn:
            new[covariance] = update_covariance(part, changes[matrix], covariance_type)
    mean_change = None
    if "initial_state_mean" in learn:
        new["initial_state_mean"], mean_change = update_initial_state_mean(stats.initial, params["initial_state_mean"])
    if "initial_state_covariance" in learn:
        new["initial_state_covariance"] = update_initial_state_covariance(stats.initial, mean_change)
    if "transition_offsets" in learn:
        new["transition_offsets"] = update_transition_offset(
            stats.transition, params["transition_offsets"], changes["transition_matrices"]
        )
    if "observation_offsets" in learn:
        new["observation_offsets"] = update_observation_offset(
            stats.observation, params["observation_offsets"], changes["observation_matrices"]
        )
    return new
