"""Forward-backward and Viterbi for hidden Markov models, over plain arrays.

Every kernel takes many sequences at once: rows ``offsets[i]:offsets[i + 1]``
of ``log_frameprob`` are sequence ``i``; one compiled call loops over them, so
many short sequences cost no Python loop per sequence.

Forward-backward runs in normalised-probability form. At each step the
emission log-likelihoods are shifted by their maximum before exponentiating
(``frame[t] = exp(log_frameprob[t] - shift[t])``) and the filtered
distribution is renormalised; the log normalisers are accumulated, so a
sequence of any length neither underflows nor overflows. If a step's
normaliser still underflows (the observation is ~exp(-745) times less likely
under every reachable state than under an unreachable one), that step's shift
is recomputed in log space from the predicted state distribution.

Viterbi is max-plus in log space, with ``-inf`` allowed for forbidden starts
and transitions.

Notation, for one sequence of length ``T`` and ``K`` states:

- ``pred[t] = p(z_t | x_<t)``, ``filtered[t] = p(z_t | x_<=t)``;
- ``c[t] = sum_k pred[t, k] * frame[t, k]``, so that
  ``log p(x_t | x_<t) = shift[t] + log c[t]``;
- scaled backward messages ``beta[T-1] = 1``,
  ``beta[t, i] = sum_j A[i, j] frame[t+1, j] beta[t+1, j] / c[t+1]``;
- smoothed posteriors ``gamma[t] = filtered[t] * beta[t]``;
- expected transitions ``xi[t, i, j] = filtered[t, i] A[i, j] frame[t+1, j] beta[t+1, j] / c[t+1]``.
"""

from typing import NamedTuple

import numpy as np

from ._jit import jit

_TINY = np.finfo(np.float64).tiny  # below this a step's normaliser has lost precision: redo it in log space

__all__ = [
    "ForwardResult",
    "ForwardBackwardResult",
    "ViterbiResult",
    "forward",
    "forward_backward",
    "viterbi",
]


class ForwardResult(NamedTuple):
    """Output of :func:`forward`.

    Attributes
    ----------
    log_likelihood : ndarray of shape (n_sequences,)
        ``log p(x_1..T)`` of each sequence.
    filtered : ndarray of shape (n_samples, n_components)
        Filtered state probabilities ``p(z_t = k | x_1..t)``.
    log_step : ndarray of shape (n_samples,)
        Per-step predictive log-density ``log p(x_t | x_1..t-1)``; sums to
        ``log_likelihood`` over each sequence.
    """

    log_likelihood: np.ndarray
    filtered: np.ndarray
    log_step: np.ndarray


class ForwardBackwardResult(NamedTuple):
    """Output of :func:`forward_backward`.

    Attributes
    ----------
    log_likelihood : ndarray of shape (n_sequences,)
        ``log p(x_1..T)`` of each sequence.
    posteriors : ndarray of shape (n_samples, n_components)
        Smoothed state posteriors ``p(z_t = k | x_1..T)``.
    start_sum : ndarray of shape (n_components,)
        Posteriors of the first step, summed over sequences.
    xi_sum : ndarray of shape (n_components, n_components)
        Expected transition counts ``sum_t p(z_t = i, z_t+1 = j | x)``, summed
        over time steps and sequences.
    log_step : ndarray of shape (n_samples,)
        Per-step predictive log-density ``log p(x_t | x_1..t-1)``.
    """

    log_likelihood: np.ndarray
    posteriors: np.ndarray
    start_sum: np.ndarray
    xi_sum: np.ndarray
    log_step: np.ndarray


class ViterbiResult(NamedTuple):
    """Output of :func:`viterbi`.

    Attributes
    ----------
    log_prob : ndarray of shape (n_sequences,)
        ``log p(x, z*)`` of each sequence's most likely path ``z*``.
    states : ndarray of int64 of shape (n_samples,)
        The most likely state path.
    """

    log_prob: np.ndarray
    states: np.ndarray


def _check_inputs(startprob, transmat, log_frameprob, offsets):
    startprob = np.ascontiguousarray(startprob, dtype=np.float64)
    transmat = np.ascontiguousarray(transmat, dtype=np.float64)
    log_frameprob = np.ascontiguousarray(log_frameprob, dtype=np.float64)
    n_samples, n_components = log_frameprob.shape
    if offsets is None:
        offsets = np.array([0, n_samples], dtype=np.int64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if startprob.shape != (n_components,):
        raise ValueError(f"startprob must have shape ({n_components},), got {startprob.shape}.")
    if transmat.shape != (n_components, n_components):
        raise ValueError(f"transmat must have shape ({n_components}, {n_components}), got {transmat.shape}.")
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != n_samples:
        raise ValueError("offsets must be 1-D, start at 0 and end at n_samples.")
    if np.any(np.diff(offsets) <= 0):
        raise ValueError("offsets must be strictly increasing (no empty sequence).")
    return startprob, transmat, log_frameprob, offsets


# ---------------------------------------------------------------- forward pass
@jit
def _forward_pass(startprob, transmat, log_frameprob, from_log, begin, end, filtered, frame, scale, log_step):
    """Forward recursion over rows begin:end; writes filtered, frame, scale, log_step.

    With ``from_log`` the shifted frame probabilities are computed from
    ``log_frameprob``; otherwise ``frame`` already holds probabilities (shift 0)
    and is rescaled in place on the rare steps that underflow.
    Returns the sequence's log-likelihood (``-inf`` if impossible).
    """
    n_components = startprob.shape[0]
    pred = np.empty(n_components)
    loglik = 0.0
    for t in range(begin, end):
        if t == begin:
            for k in range(n_components):
                pred[k] = startprob[k]
        else:
            # pred = filtered[t - 1] @ transmat, as a sum of scaled rows (vectorises over k)
            for k in range(n_components):
                pred[k] = 0.0
            for i in range(n_components):
                f = filtered[t - 1, i]
                for k in range(n_components):
                    pred[k] += f * transmat[i, k]
        total = 0.0
        if from_log:
            shift = log_frameprob[t, 0]
            for k in range(1, n_components):
                shift = max(shift, log_frameprob[t, k])
            if shift > -np.inf:
                for k in range(n_components):
                    frame[t, k] = np.exp(log_frameprob[t, k] - shift)
        else:
            shift = 0.0
        for k in range(n_components):
            total += pred[k] * frame[t, k]
        if not total >= _TINY and shift > -np.inf:
            # underflow: shift by the best reachable state instead (log space)
            best = -np.inf
            for k in range(n_components):
                if pred[k] > 0.0:
                    lf = log_frameprob[t, k] if from_log else np.log(frame[t, k])
                    v = np.log(pred[k]) + lf
                    if v > best:
                        best = v
            total = 0.0
            if best > -np.inf:
                for k in range(n_components):
                    lf = log_frameprob[t, k] if from_log else np.log(frame[t, k])
                    # unreachable states (pred 0) never matter; keep their frames <= 1
                    fr = np.exp(min(lf - best, 700.0 if pred[k] > 0.0 else 0.0))
                    frame[t, k] = fr
                    total += pred[k] * fr
            shift = best
        if not total > 0.0:
            # x_t is impossible under the model: -inf likelihood
            for s in range(t, end):
                log_step[s] = -np.inf
                scale[s] = 1.0
                for k in range(n_components):
                    filtered[s, k] = 0.0
                    frame[s, k] = 0.0
            return -np.inf
        inv = 1.0 / total
        for k in range(n_components):
            filtered[t, k] = pred[k] * frame[t, k] * inv
        scale[t] = total
        step = shift + np.log(total)
        log_step[t] = step
        loglik += step
    return loglik


@jit
def _forward_kernel(startprob, transmat, log_frameprob, frame, from_log, offsets):
    n_samples, n_components = frame.shape
    n_sequences = offsets.shape[0] - 1
    filtered = np.empty((n_samples, n_components))
    scale = np.empty(n_samples)
    log_step = np.empty(n_samples)
    loglik = np.empty(n_sequences)
    for s in range(n_sequences):
        loglik[s] = _forward_pass(
            startprob, transmat, log_frameprob, from_log, offsets[s], offsets[s + 1], filtered, frame, scale, log_step
        )
    return loglik, filtered, log_step


def _frames(log_frameprob, frameprob):
    """(log_frameprob, frame buffer, from_log) for the kernels; exactly one input is given."""
    if (log_frameprob is None) == (frameprob is None):
        raise ValueError("Give exactly one of log_frameprob and frameprob.")
    if frameprob is not None:
        frame = np.array(frameprob, dtype=np.float64, order="C", copy=True)  # rescaled in place on underflow
        if frame.ndim != 2:
            raise ValueError(f"frameprob must be 2-D, got shape {frame.shape}.")
        return np.zeros((1, frame.shape[1])), frame, False
    log_frameprob = np.ascontiguousarray(log_frameprob, dtype=np.float64)
    if log_frameprob.ndim != 2:
        raise ValueError(f"log_frameprob must be 2-D, got shape {log_frameprob.shape}.")
    return log_frameprob, np.empty_like(log_frameprob), True


def forward(startprob, transmat, log_frameprob=None, offsets=None, *, frameprob=None):
    """Filtered state probabilities and per-step log normalisers.

    Parameters
    ----------
    startprob : ndarray of shape (n_components,)
        Initial state distribution.
    transmat : ndarray of shape (n_components, n_components)
        Transition probabilities, ``transmat[i, j] = p(z_t+1 = j | z_t = i)``.
    log_frameprob : ndarray of shape (n_samples, n_components)
        Emission log-likelihoods ``log p(x_t | z_t = k)``.
    offsets : ndarray of int of shape (n_sequences + 1,), optional
        Sequence boundaries; None means one sequence.
    frameprob : ndarray of shape (n_samples, n_components), optional
        The emission probabilities themselves, instead of ``log_frameprob``
        (saves the exponentials when they are known, e.g. categorical
        emissions; steps that underflow are still redone in log space).

    Returns
    -------
    ForwardResult
    """
    log_frameprob, frame, from_log = _frames(log_frameprob, frameprob)
    startprob, transmat, _, offsets = _check_inputs(startprob, transmat, frame, offsets)
    return ForwardResult(*_forward_kernel(startprob, transmat, log_frameprob, frame, from_log, offsets))


# -------------------------------------------------------- forward-backward pass
@jit
def _forward_backward_kernel(startprob, transmat, log_frameprob, frame, from_log, offsets, compute_xi):
    n_samples, n_components = frame.shape
    n_sequences = offsets.shape[0] - 1
    posteriors = np.empty((n_samples, n_components))  # holds filtered, then smoothed
    scale = np.empty(n_samples)
    log_step = np.empty(n_samples)
    loglik = np.empty(n_sequences)
    start_sum = np.zeros(n_components)
    # outer[i, j] = sum_t filtered[t, i] * weighted[t + 1, j]; xi_sum = transmat * outer
    outer = np.zeros((n_components, n_components))
    transmat_t = np.ascontiguousarray(transmat.T)
    beta = np.empty(n_components)
    weighted = np.empty(n_components)
    for s in range(n_sequences):
        begin = offsets[s]
        end = offsets[s + 1]
        ll = _forward_pass(
            startprob, transmat, log_frameprob, from_log, begin, end, posteriors, frame, scale, log_step
        )
        loglik[s] = ll
        if not ll > -np.inf:
            continue  # posteriors of an impossible sequence are left at zero
        for k in range(n_components):
            beta[k] = 1.0
        # last step: gamma = filtered (beta = 1), already in place
        for t in range(end - 2, begin - 1, -1):
            inv = 1.0 / scale[t + 1]
            for j in range(n_components):
                weighted[j] = frame[t + 1, j] * beta[j] * inv
            # beta = transmat @ weighted, as a sum of scaled columns (vectorises over i)
            for i in range(n_components):
                beta[i] = 0.0
            for j in range(n_components):
                w = weighted[j]
                for i in range(n_components):
                    beta[i] += transmat_t[j, i] * w
            for i in range(n_components):
                if posteriors[t, i] == 0.0:
                    beta[i] = 0.0  # exact: such a state has no mass now and passes none back
            if compute_xi:
                for i in range(n_components):
                    f = posteriors[t, i]
                    for j in range(n_components):
                        outer[i, j] += f * weighted[j]
            norm = 0.0
            for k in range(n_components):
                g = posteriors[t, k] * beta[k]
                posteriors[t, k] = g
                norm += g
            inv_norm = 1.0 / norm
            for k in range(n_components):
                posteriors[t, k] *= inv_norm
        for k in range(n_components):
            start_sum[k] += posteriors[begin, k]
    xi_sum = transmat * outer
    return loglik, posteriors, start_sum, xi_sum, log_step


def forward_backward(startprob, transmat, log_frameprob=None, offsets=None, compute_xi=True, *, frameprob=None):
    """Smoothed state posteriors and expected transition counts.

    Parameters
    ----------
    startprob : ndarray of shape (n_components,)
        Initial state distribution.
    transmat : ndarray of shape (n_components, n_components)
        Transition probabilities, ``transmat[i, j] = p(z_t+1 = j | z_t = i)``.
    log_frameprob : ndarray of shape (n_samples, n_components)
        Emission log-likelihoods ``log p(x_t | z_t = k)``.
    offsets : ndarray of int of shape (n_sequences + 1,), optional
        Sequence boundaries; None means one sequence.
    compute_xi : bool, default=True
        Whether to accumulate ``xi_sum`` (zeros otherwise).
    frameprob : ndarray of shape (n_samples, n_components), optional
        The emission probabilities instead of ``log_frameprob`` (see
        :func:`forward`).

    Returns
    -------
    ForwardBackwardResult
        A sequence with zero likelihood gets ``log_likelihood = -inf`` and
        all-zero posteriors.
    """
    log_frameprob, frame, from_log = _frames(log_frameprob, frameprob)
    startprob, transmat, _, offsets = _check_inputs(startprob, transmat, frame, offsets)
    return ForwardBackwardResult(
        *_forward_backward_kernel(startprob, transmat, log_frameprob, frame, from_log, offsets, bool(compute_xi))
    )


# --------------------------------------------------------------------- Viterbi
@jit
def _viterbi_kernel(log_startprob, log_transmat, log_frameprob, offsets):
    n_samples, n_components = log_frameprob.shape
    n_sequences = offsets.shape[0] - 1
    states = np.empty(n_samples, dtype=np.int64)
    backpointer = np.empty((n_samples, n_components), dtype=np.int64)
    log_prob = np.empty(n_sequences)
    delta = np.empty(n_components)
    new_delta = np.empty(n_components)
    for s in range(n_sequences):
        begin = offsets[s]
        end = offsets[s + 1]
        for k in range(n_components):
            delta[k] = log_startprob[k] + log_frameprob[begin, k]
        for t in range(begin + 1, end):
            for j in range(n_components):
                best = -np.inf
                arg = 0
                for i in range(n_components):
                    v = delta[i] + log_transmat[i, j]
                    if v > best:
                        best = v
                        arg = i
                new_delta[j] = best + log_frameprob[t, j]
                backpointer[t, j] = arg
            for k in range(n_components):
                delta[k] = new_delta[k]
        best = -np.inf
        arg = 0
        for k in range(n_components):
            if delta[k] > best:
                best = delta[k]
                arg = k
        log_prob[s] = best
        states[end - 1] = arg
        for t in range(end - 1, begin, -1):
            arg = backpointer[t, arg]
            states[t - 1] = arg
    return log_prob, states


def viterbi(log_startprob, log_transmat, log_frameprob, offsets=None):
    """Most likely state path of each sequence (max-plus in log space).

    Parameters
    ----------
    log_startprob : ndarray of shape (n_components,)
        Log initial state distribution (``-inf`` for forbidden starts).
    log_transmat : ndarray of shape (n_components, n_components)
        Log transition probabilities (``-inf`` for forbidden transitions).
    log_frameprob : ndarray of shape (n_samples, n_components)
        Emission log-likelihoods ``log p(x_t | z_t = k)``.
    offsets : ndarray of int of shape (n_sequences + 1,), optional
        Sequence boundaries; None means one sequence.

    Returns
    -------
    ViterbiResult
        Ties go to the lowest state index.
    """
    log_startprob, log_transmat, log_frameprob, offsets = _check_inputs(
        log_startprob, log_transmat, log_frameprob, offsets
    )
    return ViterbiResult(*_viterbi_kernel(log_startprob, log_transmat, log_frameprob, offsets))
