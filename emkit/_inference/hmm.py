"""Forward-backward and Viterbi for hidden Markov models, over plain arrays.

Every kernel takes many sequences at once: rows ``offsets[i]:offsets[i + 1]``
of ``log_frameprob`` are sequence ``i``; one compiled call loops over them, so
many short sequences cost no Python loop per sequence.

Forward-backward runs in probability form. At each step the emission
log-likelihoods are shifted by their maximum before exponentiating
(``frame[t] = exp(log_frameprob[t] - shift[t])``); the forward and backward
messages are normalised lazily (only when their scale falls below 1e-150),
which keeps divisions out of the sequential loop, while the per-step ratios of
their sums give the log normalisers. A sequence's log-likelihood takes no
per-step logarithm: it is the sum of the shifts plus the logarithms of the
few sums divided out (see :func:`_forward_pass`). A sequence of any length
therefore neither underflows nor overflows. If a step's sum still underflows (the
observation is ~exp(-660) times less likely under every reachable state than
under an unreachable one), that step is redone in log space from the
predicted state weights.

Viterbi is max-plus in log space, with ``-inf`` allowed for forbidden starts
and transitions.

Compilation. Each kernel is one compiled function that takes the number of
states as its last argument; :func:`._jit.specialized` compiles it, on first
use, for the state count at hand as a compile-time constant when it is small
(2 to 8: unrolled loops, markedly faster) and once for all larger counts. A
program that only uses 3 states therefore compiles only that.

Small inputs. Calls of at most ``_NUMPY_MAX_CELLS`` rows x max(states, 4)
(1,000 rows of up to 4 states, 500 of 8, 200 of 20) run in numpy and never
touch the compiler: a first fit on a small data set answers at once instead
of waiting seconds for a compilation. Forward-backward is then vectorised over
time: the messages are products of per-step matrices, computed for every
prefix (and suffix) in log2(T) rounds of batched matrix products; where a
step underflows, the same recursions run step by step with numpy instead.
The price is speed once compiled code exists: a numpy forward-backward at the
limit takes ~3-5 ms against ~0.05 ms compiled, so a 100-iteration fit of that
size spends ~0.4 s in it instead of ~0.01 s. Which implementation runs depends on
the input's size alone, never on what happens to be compiled, so a result
never depends on the history of the process; the paths agree to round-off
(tests compare each with brute force and with the others).

Notation, for one sequence of length ``T`` and ``K`` states, with ``A`` the
transition matrix and ``a[t]``, ``b[t]`` the forward and backward messages up to
positive factors:

- ``a[t] = (A^T a[t-1]) * frame[t]`` (``startprob * frame[0]`` at the start);
- ``b[T-1] = 1``, ``b[t] = A (frame[t+1] * b[t+1])``;
- smoothed posteriors ``gamma[t] = a[t] * b[t] / sum(a[t] * b[t])``;
- expected transitions ``xi[t, i, j] = a[t, i] A[i, j] frame[t+1, j] b[t+1, j] / sum(a[t] * b[t])``,
  exact whatever factors the messages carry.
"""

from typing import NamedTuple

import numpy as np

from ._jit import jit, local_array, specialized

_UNDERFLOW = 1e-290  # a step's sum below this would lose precision: redo it in log space
_RESCALE = 1e-150  # lazily normalised messages are rescaled when they fall below this
_FIXED_SIZES = range(2, 9)  # state counts compiled with constant loop bounds (unrolled loops)
# Above those, forward-backward hands the expected transition counts to one BLAS product after the backward
# pass (two extra (T, K) arrays, so only up to this many elements each: 32 MB).
_DEFERRED_MAX_ELEMENTS = 1 << 22
_NO_ROWS = np.zeros((0, 0))
_NO_STEPS = np.zeros(0)  # ``ratio`` when the per-step normalisers are not wanted
_NUMPY_MAX_CELLS = 4000  # calls of at most this many rows x max(states, 4) run in numpy ("Small inputs")
_RESCALE_UP = 1.0  # backward messages never exceed 1 except after a log-space step (frames up to e^700)

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
@jit(reassociate=True)
def _log_space_step(startprob, transmat_t, log_frameprob, from_log, begin, t, alpha, frame, shift):
    """Redo forward step ``t`` whose sum underflowed, shifting by the best reachable state.

    Rewrites ``alpha[t]`` and ``frame[t]``; returns ``(total, new_shift)``
    (``total`` 0 if ``x_t`` is impossible). Kept out of the hot loop, and
    compiled with reassociated sums for every caller, the many-state kernel
    among them (see :func:`._jit.jit`).
    """
    n_components = transmat_t.shape[0]
    best = -np.inf
    for k in range(n_components):
        pred = startprob[k] if t == begin else 0.0
        if t > begin:
            for i in range(n_components):
                pred += alpha[t - 1, i] * transmat_t[k, i]
        alpha[t, k] = pred  # the predicted (unnormalised) state weights, for now
        if pred > 0.0:
            lf = log_frameprob[t, k] if from_log else np.log(frame[t, k]) + shift
            best = max(best, np.log(pred) + lf)
    total = 0.0
    if best > -np.inf:
        for k in range(n_components):
            lf = log_frameprob[t, k] if from_log else np.log(frame[t, k]) + shift
            # unreachable states (pred 0) never matter; keep their frames <= 1
            fr = np.exp(min(lf - best, 700.0 if alpha[t, k] > 0.0 else 0.0))
            frame[t, k] = fr
            alpha[t, k] *= fr
            total += alpha[t, k]
    return total, best


@jit(inline=True)
def _forward_pass(startprob, transmat_t, log_frameprob, from_log, begin, end, alpha, frame, ratio, shifts, n_components):
    """Forward recursion over rows begin:end, lazily normalised; returns ``log p(x_begin..end-1) - sum(shifts)``.

    ``frame[t] = exp(log p(x_t | z_t) - shifts[t])`` comes precomputed.
    Writes ``alpha[t]`` proportional to ``p(z_t | x_<=t)`` (rescaled to sum
    to one only when its sum falls below ``_RESCALE``, so the sequential
    loop carries no division). When ``ratio`` has rows, also writes
    ``ratio[t] = sum(alpha[t]) / sum(fed)`` where ``fed`` is the vector
    propagated from step ``t - 1``, so that ``log p(x_t | x_<t) = shifts[t] +
    log(ratio[t])``. The sequence's log-likelihood needs no per-step
    logarithm: the ratios' product telescopes to the product of the sums at
    the rescaled steps and at the last one, so it is the sum of the shifts
    plus the logarithms of those few sums, which this returns (the caller
    adds the shifts by numpy's pairwise sum, which keeps a long sequence's
    log-likelihood exact to about 1e-16 where a running sum loses digits).
    A step whose sum underflows is redone in log space (from
    ``log_frameprob`` when ``from_log``, else from ``log(frame)``), updating
    ``frame[t]`` and ``shifts[t]``. An impossible sequence gets ``-inf``, and
    its rows ``alpha[begin:end]`` are zero.
    Inlined into its callers, so that ``n_components`` can be a compile-time
    constant there; the message of the previous step is then carried in
    registers (:func:`._jit.local_array`), not reloaded from ``alpha``.
    """
    prev = local_array(n_components)  # alpha[t - 1]
    cur = local_array(n_components)  # alpha[t]
    per_step = ratio.shape[0] > 0
    fed = 1.0
    log_scale = 0.0  # the logarithms of the sums divided out at rescaled steps
    for t in range(begin, end):
        shift = shifts[t]
        total = 0.0
        for k in range(n_components):
            if t == begin:
                p = startprob[k]
            else:
                p = 0.0
                for i in range(n_components):
                    p += prev[i] * transmat_t[k, i]
            p *= frame[t, k]
            cur[k] = p
            total += p
        if not total >= _UNDERFLOW:
            # redone from alpha[t - 1] as stored; rewrites alpha[t]
            total, shift = _log_space_step(
                startprob, transmat_t, log_frameprob, from_log, begin, t, alpha, frame, shift
            )
            if not total > 0.0:
                # x_t is impossible under the model
                for r in range(t, end):
                    shifts[r] = -np.inf
                    if per_step:
                        ratio[r] = 1.0
                    for k in range(n_components):
                        frame[r, k] = 0.0
                for r in range(begin, end):
                    for k in range(n_components):
                        alpha[r, k] = 0.0
                return -np.inf
            for k in range(n_components):
                cur[k] = alpha[t, k]
        if per_step:
            ratio[t] = total / fed
        shifts[t] = shift
        if total < _RESCALE:
            log_scale += np.log(total)
            inv = 1.0 / total
            for k in range(n_components):
                cur[k] *= inv
            fed = 1.0
        else:
            fed = total
        for k in range(n_components):
            alpha[t, k] = cur[k]
            prev[k] = cur[k]
    return log_scale + np.log(fed)


@jit(inline=True)
def _normalize_rows(a, begin, end):
    """Rows ``begin:end`` of ``a`` scaled to sum to one (rows summing to 0 left alone). Inlined: the
    reassociating kernel for many states calls it too (see :func:`._jit.jit`)."""
    for t in range(begin, end):
        total = 0.0
        for k in range(a.shape[1]):
            total += a[t, k]
        if total > 0.0:
            inv = 1.0 / total
            for k in range(a.shape[1]):
                a[t, k] *= inv


@jit
def _forward_kernel(startprob, transmat_t, log_frameprob, frame, shifts, from_log, offsets, normalize, filtered, ratio,
                    log_likelihood, n_components):
    """Forward pass over every sequence; writes ``filtered``, ``ratio``, ``shifts`` and, in ``log_likelihood``,
    each sequence's log-likelihood but the sum of its shifts (see :func:`_forward_pass`)."""
    for s in range(offsets.shape[0] - 1):
        begin, end = offsets[s], offsets[s + 1]
        log_likelihood[s] = _forward_pass(
            startprob, transmat_t, log_frameprob, from_log, begin, end, filtered, frame, ratio, shifts, n_components
        )
        if normalize:
            _normalize_rows(filtered, begin, end)


def _run(kernel, *args):
    """Call a compiled kernel through the one dispatcher; the last argument is ``n_components``."""
    specialized(kernel, args, constant=args[-1] in _FIXED_SIZES)(*args)


def _log_steps(ratio, shifts):
    """Per-step log normalisers ``shift + log(ratio)``, in ``ratio``'s memory."""
    log_step = np.log(ratio, out=ratio)  # no fresh array of n_samples (a page-faulted one costs more than the log)
    log_step += shifts
    return log_step


@jit
def _shift_rows(a, shifted, shifts):
    """``shifts[t]`` = the maximum of row ``t`` (0 for an all ``-inf`` row), ``shifted[t] = a[t] - shifts[t]``.

    One pass instead of a row maximum then numpy's broadcast subtraction, whose
    inner loop runs over a row of a few states (three times slower at K=3).
    """
    for t in range(a.shape[0]):
        m = a[t, 0]
        for k in range(1, a.shape[1]):
            m = max(m, a[t, k])
        m = m if m > -np.inf else 0.0  # an all -inf row gives zero frames (impossible step)
        shifts[t] = m
        for k in range(a.shape[1]):
            shifted[t, k] = a[t, k] - m


def _buffer(work, name, shape):
    """An uninitialised float64 array: ``work[name]`` when the caller keeps one of that shape across calls (a fresh
    array of tens of megabytes costs its page faults at every call), else a new one (kept there for the next)."""
    if work is None:
        return np.empty(shape)
    array = work.get(name)
    if array is None or array.shape != shape:
        array = work[name] = np.empty(shape)
    return array


def _frames(log_frameprob, frameprob, overwrite, work=None, shifted=None):
    """(log_frameprob, frame, shifts, from_log) for the kernels; exactly one input is given.

    From log-likelihoods, ``frame = exp(log_frameprob - row max)`` is computed
    here in one vectorised pass (numpy's SIMD exponential), and ``shifts``
    holds the row maxima; from probabilities the shifts are zero. ``shifted``
    = ``(log_frameprob - row max, row max)`` when the caller computed them
    with ``log_frameprob``; the first is then exponentiated in place.
    """
    if (log_frameprob is None) == (frameprob is None):
        raise ValueError("Give exactly one of log_frameprob and frameprob.")
    if frameprob is not None:
        # the kernels rescale underflowing steps of the buffer in place
        if overwrite:
            frame = np.ascontiguousarray(frameprob, dtype=np.float64)
        else:
            frame = np.array(frameprob, dtype=np.float64, order="C", copy=True)
        if frame.ndim != 2:
            raise ValueError(f"frameprob must be 2-D, got shape {frame.shape}.")
        return np.zeros((1, frame.shape[1])), frame, np.zeros(frame.shape[0]), False
    log_frameprob = np.ascontiguousarray(log_frameprob, dtype=np.float64)
    if log_frameprob.ndim != 2:
        raise ValueError(f"log_frameprob must be 2-D, got shape {log_frameprob.shape}.")
    if shifted is not None:
        frame, shifts = shifted
        if frame.shape != log_frameprob.shape or shifts.shape != log_frameprob.shape[:1]:
            raise ValueError("shifted must be (log_frameprob minus each row's maximum, the maxima).")
        np.exp(frame, out=frame)
        return log_frameprob, frame, shifts, True
    if _numpy_path(*log_frameprob.shape):
        shifts = np.max(log_frameprob, axis=1) if log_frameprob.size else np.zeros(log_frameprob.shape[0])
        shifts[~(shifts > -np.inf)] = 0.0  # an all -inf row gives zero frames (impossible step)
        frame = np.subtract(log_frameprob, shifts[:, np.newaxis])
    else:
        frame = _buffer(work, "frame", log_frameprob.shape)
        shifts = _buffer(work, "shifts", log_frameprob.shape[:1])
        _shift_rows(log_frameprob, frame, shifts)
    np.exp(frame, out=frame)
    return log_frameprob, frame, shifts, True


# ------------------------------------------------------------- small inputs in numpy
def _numpy_path(n_samples, n_components):
    """Whether a call runs in numpy (see "Small inputs" in the module docstring): its size alone decides."""
    return n_samples * max(n_components, 4) <= _NUMPY_MAX_CELLS


def _numpy_log_space_step(predicted, log_frameprob, frame, shift, from_log, t):
    """:func:`_log_space_step` for the numpy path: rewrites ``frame[t]``; returns ``(p, total, new_shift)``."""
    with np.errstate(divide="ignore"):
        lf = log_frameprob[t] if from_log else np.log(frame[t]) + shift
        log_predicted = np.log(predicted)
    reachable = predicted > 0.0
    best = np.max(np.where(reachable, log_predicted + lf, -np.inf))
    if not best > -np.inf:
        return predicted, 0.0, best
    # unreachable states (predicted 0) never matter; keep their frames <= 1
    frame[t] = np.exp(np.minimum(lf - best, np.where(reachable, 700.0, 0.0)))
    p = predicted * frame[t]
    return p, p.sum(), best


def _numpy_forward(startprob, transmat, log_frameprob, frame, shifts, from_log, offsets):
    """Forward recursion in numpy, normalised at every step; returns ``(filtered, log_step, possible)``.

    Rewrites ``frame`` where a step is redone in log space, like the kernel.
    """
    filtered = np.zeros(frame.shape)
    log_step = np.empty(frame.shape[0])
    possible = np.ones(offsets.shape[0] - 1, dtype=bool)
    for s in range(offsets.shape[0] - 1):
        begin, end = offsets[s], offsets[s + 1]
        for t in range(begin, end):
            predicted = startprob if t == begin else filtered[t - 1] @ transmat
            p = predicted * frame[t]
            total, shift = p.sum(), shifts[t]
            if not total >= _UNDERFLOW:
                p, total, shift = _numpy_log_space_step(predicted, log_frameprob, frame, shift, from_log, t)
                if not total > 0.0:  # x_t is impossible under the model
                    filtered[begin:end] = 0.0
                    frame[t:end] = 0.0
                    log_step[t:end] = -np.inf
                    possible[s] = False
                    break
            filtered[t] = p / total
            log_step[t] = shift + np.log(total)
    return filtered, log_step, possible


def _numpy_backward(transmat, frame, offsets, filtered, possible, compute_xi):
    """Backward recursion in numpy from the normalised filtered probabilities; returns ``(posteriors, outer)``."""
    posteriors = np.zeros(frame.shape)
    n_components = frame.shape[1]
    outer = np.zeros((n_components, n_components))
    weighted = np.zeros(frame.shape)  # frame[t] * beta[t], the backward message fed from step t
    scaled = np.zeros(frame.shape)  # filtered[t] / norm_t
    for s in np.flatnonzero(possible):
        begin, end = offsets[s], offsets[s + 1]
        posteriors[end - 1] = filtered[end - 1]
        beta = np.ones(n_components)
        for t in range(end - 2, begin - 1, -1):
            weighted[t + 1] = frame[t + 1] * beta
            beta = transmat @ weighted[t + 1]
            joint = filtered[t] * beta
            norm = joint.sum()
            posteriors[t] = joint / norm
            scaled[t] = filtered[t] / norm
            beta /= beta.max()
        if compute_xi and end - begin > 1:
            outer += scaled[begin:end - 1].T @ weighted[begin + 1:end]
    return posteriors, outer


def _numpy_viterbi(log_startprob, log_transmat, log_frameprob, offsets):
    """Viterbi in numpy, one vector operation per step; same ties (lowest state index) as the kernel."""
    delta = np.empty(log_frameprob.shape)
    states = np.empty(log_frameprob.shape[0], dtype=np.int64)
    log_prob = np.empty(offsets.shape[0] - 1)
    for s in range(offsets.shape[0] - 1):
        begin, end = offsets[s], offsets[s + 1]
        delta[begin] = log_startprob + log_frameprob[begin]
        for t in range(begin + 1, end):
            delta[t] = np.max(delta[t - 1][:, np.newaxis] + log_transmat, axis=0) + log_frameprob[t]
        arg = int(np.argmax(delta[end - 1]))
        log_prob[s] = delta[end - 1, arg]
        states[end - 1] = arg
        for t in range(end - 1, begin, -1):
            arg = int(np.argmax(delta[t - 1] + log_transmat[:, arg]))
            states[t - 1] = arg
    return log_prob, states


def _scan(products, starts):
    """Every prefix product of each segment of a stack of matrices, in place, each scaled to a maximum of 1.

    Row ``t`` of ``products`` (n, K, K) becomes ``products[starts[t]] @ ... @ products[t]`` up to a positive
    factor, in ``ceil(log2(segment length))`` rounds of batched products (a Hillis-Steele scan). Every
    entry is a sum of non-negative terms, so the relative error grows with the number of rounds, not
    with the length. An all-zero product stays zero (callers check for it).
    """
    index = np.arange(products.shape[0])
    shift = 1
    while True:
        rows = np.flatnonzero(index - shift >= starts)
        if rows.size == 0:
            return products
        joined = products[rows - shift] @ products[rows]
        scale = joined.max(axis=(1, 2))
        scale[~(scale > 0.0)] = 1.0
        joined /= scale[:, np.newaxis, np.newaxis]
        products[rows] = joined
        shift *= 2


def _scan_forward(startprob, transmat, frame, shifts, offsets):
    """Forward recursion vectorised over time: ``(filtered, log_step)``, or None if a step underflows.

    ``a[t] = a[t-1] @ M_t`` with ``M_t = transmat * frame[t]`` (columns scaled), so the forward
    messages are prefix products (:func:`_scan`); each sequence's first matrix repeats
    ``startprob * frame[begin]`` in every row, so row 0 of a prefix is ``a[t]``. The per-step
    normalisers are then computed from the normalised ``a[t-1]`` exactly as the step-by-step
    recursion computes them. A step whose sum falls below ``_UNDERFLOW`` (where that recursion
    switches to log space, or the sequence is impossible) returns None: the caller runs the
    step-by-step path.
    """
    lengths = np.diff(offsets)
    begins = offsets[:-1]
    products = transmat[np.newaxis] * frame[:, np.newaxis, :]
    products[begins] = (startprob * frame[begins])[:, np.newaxis, :]
    alpha = _scan(products, np.repeat(begins, lengths))[:, 0, :]
    predicted = np.empty(frame.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        predicted[1:] = (alpha[:-1] / alpha[:-1].sum(axis=1)[:, np.newaxis]) @ transmat
        predicted[begins] = startprob
        p = predicted * frame
        total = p.sum(axis=1)
    if not np.all(total >= _UNDERFLOW):
        return None
    return p / total[:, np.newaxis], shifts + np.log(total)


def _scan_backward(transmat, frame, offsets, filtered, compute_xi):
    """Backward recursion vectorised over time: ``(posteriors, outer)`` as :func:`_numpy_backward`, or None.

    ``b[t] = M_{t+1} b[t+1]``: suffix products, computed as prefix products of the transposed
    matrices in reverse order (each sequence's last step contributes a matrix of ones, so row 0 of a
    product is ``b[t]``). Returns None where a step's normaliser falls below ``_UNDERFLOW``.
    """
    n_samples = frame.shape[0]
    ends = offsets[1:]
    products = np.empty((n_samples, transmat.shape[0], transmat.shape[0]))
    products[:-1] = transmat.T[np.newaxis] * frame[1:, :, np.newaxis]
    products[ends - 1] = 1.0
    starts = (n_samples - np.repeat(ends, np.diff(offsets)))[::-1]
    beta = _scan(products[::-1].copy(), starts)[::-1, 0, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        weighted = frame * (beta / beta.max(axis=1)[:, np.newaxis])  # frame[t] * b[t], scaled per step
        joint = np.empty(frame.shape)
        joint[:-1] = filtered[:-1] * (weighted[1:] @ transmat.T)
        joint[ends - 1] = filtered[ends - 1]
        norm = joint.sum(axis=1)
    if not np.all(norm >= _UNDERFLOW):
        return None
    posteriors = joint / norm[:, np.newaxis]
    outer = np.zeros((transmat.shape[0], transmat.shape[0]))
    if compute_xi:
        inner = np.ones(n_samples, dtype=bool)
        inner[ends - 1] = False  # a sequence's last step has no successor
        scaled = filtered[:-1][inner[:-1]] / norm[:-1][inner[:-1], np.newaxis]
        outer = scaled.T @ weighted[1:][inner[:-1]]
    return posteriors, outer


def _numpy_forward_backward(startprob, transmat, log_frameprob, frame, shifts, from_log, offsets, backward,
                            compute_xi=False):
    """The numpy path: ``(filtered, log_step, posteriors, outer)`` (the last two None without ``backward``).

    Vectorised over time (:func:`_scan_forward`, :func:`_scan_backward`); where a step underflows, the
    step-by-step recursions (which redo such forward steps in log space) answer instead. The forward
    pass does not depend on whether the backward one follows, so the log-likelihoods never do.
    """
    scanned = _scan_forward(startprob, transmat, frame, shifts, offsets)
    if scanned is None:
        filtered, log_step, possible = _numpy_forward(startprob, transmat, log_frameprob, frame, shifts, from_log,
                                                      offsets)
    else:
        (filtered, log_step), possible = scanned, np.ones(offsets.shape[0] - 1, dtype=bool)
    if not backward:
        return filtered, log_step, None, None
    smoothed = None if scanned is None else _scan_backward(transmat, frame, offsets, filtered, compute_xi)
    if smoothed is None:
        smoothed = _numpy_backward(transmat, frame, offsets, filtered, possible, compute_xi)
    return (filtered, log_step, *smoothed)


def forward(
    startprob,
    transmat,
    log_frameprob=None,
    offsets=None,
    *,
    frameprob=None,
    overwrite_frameprob=False,
    compute_filtered=True,
    shifted=None,
):
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
    overwrite_frameprob : bool, default=False
        Let the kernel rescale ``frameprob`` in place (saves a copy when the
        caller does not need it afterwards).
    compute_filtered : bool, default=True
        False skips the final normalisation of the filtered probabilities
        (``filtered`` then holds them up to a positive factor per row), for
        callers that only need the log-likelihoods.
    shifted : tuple of (ndarray of shape (n_samples, n_components), ndarray of shape (n_samples,)), optional
        ``(log_frameprob - m[:, None], m)`` with ``m`` the row maxima (0 for
        a row of ``-inf``), when the caller computed them together with
        ``log_frameprob`` (one pass instead of two; the Gaussian density
        does, :func:`emkit._densities.gaussian.log_likelihood_shifted`).
        Both are overwritten: the first with the exponentials, the second
        where a step is redone in log space.

    Returns
    -------
    ForwardResult
    """
    log_frameprob, frame, shifts, from_log = _frames(log_frameprob, frameprob, overwrite_frameprob, shifted=shifted)
    startprob, transmat, _, offsets = _check_inputs(startprob, transmat, frame, offsets)
    n_samples, n_components = frame.shape
    if _numpy_path(n_samples, n_components):
        filtered, log_step, _, _ = _numpy_forward_backward(
            startprob, transmat, log_frameprob, frame, shifts, from_log, offsets, backward=False
        )
        return ForwardResult(np.add.reduceat(log_step, offsets[:-1]), filtered, log_step)
    filtered = np.empty((n_samples, n_components))
    ratio = np.empty(n_samples)
    log_likelihood = np.empty(offsets.shape[0] - 1)
    _run(_forward_kernel, startprob, np.ascontiguousarray(transmat.T), log_frameprob, frame, shifts, from_log, offsets,
         bool(compute_filtered), filtered, ratio, log_likelihood, n_components)
    log_likelihood += np.add.reduceat(shifts, offsets[:-1])
    return ForwardResult(log_likelihood, filtered, _log_steps(ratio, shifts))


# -------------------------------------------------------- forward-backward pass
@jit(inline=True)
def _renormalize_step(posteriors, t, alpha_t, new_beta, weighted, largest):
    """Redo backward step ``t`` whose ``sum(alpha_t * beta_t)`` underflowed; returns the new sum.

    Both messages are normalised lazily, so each may be as small as
    ``_RESCALE`` and their product can underflow. Normalising ``alpha_t`` to
    sum one and ``beta_t`` (with ``weighted``, which it is linear in) to a
    largest entry of one leaves the posteriors and ``xi`` unchanged. Inlined,
    so that the caller's message arrays stay in registers (see
    :func:`_forward_pass`).
    """
    total = 0.0
    for k in range(alpha_t.shape[0]):
        total += alpha_t[k]
    inv_total = 1.0 / total
    inv_largest = 1.0 / largest
    norm = 0.0
    for k in range(alpha_t.shape[0]):
        alpha_t[k] *= inv_total
        new_beta[k] *= inv_largest
        weighted[k] *= inv_largest
        g = alpha_t[k] * new_beta[k]
        posteriors[t, k] = g
        norm += g
    return norm


@jit(inline=True)
def _forward_backward_sequence(startprob, transmat, transmat_t, log_frameprob, frame, shifts, from_log, begin, end,
                               posteriors, ratio, compute_xi, backward, outer, coef, wts, n_components):
    """Forward then backward pass over rows begin:end; returns :func:`_forward_pass`'s value.

    Smoothed posteriors land in ``posteriors``.
    Adds this sequence's ``sum_t alpha_t,i weighted_t+1,j / norm_t`` to
    ``outer``, or, when ``coef`` has rows (deferred), writes the two factors
    of each step to ``coef[t]`` and ``wts[t]`` for one matrix product after
    the pass. The messages are local arrays (in registers for a constant
    ``n_components``, see :func:`_forward_pass`). Without ``backward`` only
    the forward pass runs (``posteriors`` then holds its messages).
    """
    log_likelihood = _forward_pass(
        startprob, transmat_t, log_frameprob, from_log, begin, end, posteriors, frame, ratio, shifts, n_components
    )
    if log_likelihood == -np.inf or not backward:
        return log_likelihood  # posteriors of an impossible sequence are left at zero
    _normalize_rows(posteriors, end - 1, end)  # last step: smoothed = filtered
    beta, new_beta = local_array(n_components), local_array(n_components)
    weighted, alpha_t = local_array(n_components), local_array(n_components)
    for k in range(n_components):
        beta[k] = 1.0
    # the running ``outer`` in a local array over the sequence (the same sums, without a store and reload of
    # every entry per step); written back after the pass
    deferred = coef.shape[0] > 0
    running = local_array(n_components * n_components)
    if compute_xi and not deferred:
        for i in range(n_components):
            for j in range(n_components):
                running[i * n_components + j] = outer[i, j]
    for t in range(end - 2, begin - 1, -1):
        # unnormalised backward message: beta_t = A (frame_t+1 * beta_t+1), rescaled only when tiny
        for j in range(n_components):
            weighted[j] = frame[t + 1, j] * beta[j]
        norm = 0.0
        largest = 0.0
        for i in range(n_components):
            acc = 0.0
            for j in range(n_components):
                acc += transmat[i, j] * weighted[j]
            new_beta[i] = acc
            largest = max(largest, acc)
            a = posteriors[t, i]
            alpha_t[i] = a
            g = a * acc
            posteriors[t, i] = g
            norm += g
        if not norm >= _UNDERFLOW:
            norm = _renormalize_step(posteriors, t, alpha_t, new_beta, weighted, largest)
            largest = 1.0
        inv_norm = 1.0 / norm
        for k in range(n_components):
            posteriors[t, k] *= inv_norm
        if compute_xi and deferred:  # sum_t coef[t]^T wts[t] is one GEMM after the pass
            for k in range(n_components):
                coef[t, k] = alpha_t[k] * inv_norm
                wts[t, k] = weighted[k]
        elif compute_xi:
            # xi_t(i, j) = alpha_t,i A_ij weighted_j / norm (exact whatever the scaling)
            for i in range(n_components):
                c = alpha_t[i] * inv_norm
                for j in range(n_components):
                    running[i * n_components + j] += c * weighted[j]
        if largest < _RESCALE or largest > _RESCALE_UP:
            inv = 1.0 / largest
            for k in range(n_components):
                beta[k] = new_beta[k] * inv
        else:
            for k in range(n_components):
                beta[k] = new_beta[k]
    if compute_xi and not deferred:
        for i in range(n_components):
            for j in range(n_components):
                outer[i, j] = running[i * n_components + j]
    return log_likelihood


@jit(inline=True)
def _forward_backward_sequences(startprob, transmat, transmat_t, log_frameprob, frame, shifts, from_log, offsets,
                                compute_xi, backward, posteriors, ratio, log_likelihood, start_sum, outer, coef, wts,
                                n_components):
    """The body of both forward-backward kernels (inlined, so each compiles it with its own flags)."""
    for s in range(offsets.shape[0] - 1):
        begin, end = offsets[s], offsets[s + 1]
        log_likelihood[s] = _forward_backward_sequence(
            startprob, transmat, transmat_t, log_frameprob, frame, shifts, from_log, begin, end, posteriors, ratio,
            compute_xi, backward, outer, coef, wts, n_components,
        )
        for k in range(n_components):
            start_sum[k] += posteriors[begin, k]


@jit
def _forward_backward_kernel(startprob, transmat, transmat_t, log_frameprob, frame, shifts, from_log, offsets,
                             compute_xi, backward, posteriors, ratio, log_likelihood, start_sum, outer, coef, wts,
                             n_components):
    """Forward-backward over every sequence.

    Writes ``posteriors``, ``ratio`` (when it has rows), ``shifts`` and, in
    ``log_likelihood``, each sequence's log-likelihood but the sum of its
    shifts (:func:`_forward_pass`); adds the first steps' posteriors to
    ``start_sum`` and ``sum_t alpha_t,i weighted_t+1,j / norm_t`` to
    ``outer`` (so that ``xi_sum = transmat * outer``).
    """
    _forward_backward_sequences(
        startprob, transmat, transmat_t, log_frameprob, frame, shifts, from_log, offsets, compute_xi, backward,
        posteriors, ratio, log_likelihood, start_sum, outer, coef, wts, n_components,
    )


@jit(reassociate=True)
def _forward_backward_kernel_many(startprob, transmat, transmat_t, log_frameprob, frame, shifts, from_log, offsets,
                                  compute_xi, backward, posteriors, ratio, log_likelihood, start_sum, outer, coef, wts,
                                  n_components):
    """:func:`_forward_backward_kernel` for more than eight states, with its sums reassociated.

    The K-term sums of the forward and backward steps then vectorise (about
    2x faster at 50 states); their last bits depend on the order LLVM picks.
    Up to eight states the loops are unrolled anyway and keep their order.
    """
    _forward_backward_sequences(
        startprob, transmat, transmat_t, log_frameprob, frame, shifts, from_log, offsets, compute_xi, backward,
        posteriors, ratio, log_likelihood, start_sum, outer, coef, wts, n_components,
    )


def forward_backward(
    startprob, transmat, log_frameprob=None, offsets=None, compute_xi=True, *, frameprob=None, overwrite_frameprob=False,
    objective_only=False, per_step=True, work=None, shifted=None,
):
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
    overwrite_frameprob : bool, default=False
        See :func:`forward`.
    objective_only : bool, default=False
        Run the forward pass alone: ``log_likelihood`` and ``log_step`` only
        (the other fields are None). Unlike :func:`forward`, it runs the
        same compiled code as the full pass (no other kernel to compile) and
        gives the same log-likelihoods to the last bit.
    per_step : bool, default=True
        Whether to return ``log_step`` (False: it is None, which saves a
        logarithm per step; EM's E-steps only need the sequences'
        log-likelihoods, which never take one).
    work : dict, optional
        Work arrays kept by the caller from one call to the next (an EM
        restart's per-block state): the frames, posteriors and per-step
        normalisers are written into them when their shapes fit, instead of
        into fresh arrays. The result's ``posteriors`` and ``log_step`` are
        then views of those buffers, valid until the next call with them.
    shifted : tuple of two ndarrays, optional
        See :func:`forward`.

    Returns
    -------
    ForwardBackwardResult
        A sequence with zero likelihood gets ``log_likelihood = -inf`` and
        all-zero posteriors.
    """
    log_frameprob, frame, shifts, from_log = _frames(log_frameprob, frameprob, overwrite_frameprob, work, shifted)
    startprob, transmat, _, offsets = _check_inputs(startprob, transmat, frame, offsets)
    n_samples, n_components = frame.shape
    if _numpy_path(n_samples, n_components):
        _, log_step, posteriors, outer = _numpy_forward_backward(
            startprob, transmat, log_frameprob, frame, shifts, from_log, offsets, backward=not objective_only,
            compute_xi=bool(compute_xi)
        )
        log_likelihood = np.add.reduceat(log_step, offsets[:-1])
        log_step = log_step if per_step else None
        if objective_only:
            return ForwardBackwardResult(log_likelihood, None, None, None, log_step)
        start_sum = posteriors[offsets[:-1]].sum(axis=0)
        return ForwardBackwardResult(log_likelihood, posteriors, start_sum, transmat * outer, log_step)
    posteriors = _buffer(work, "posteriors", (n_samples, n_components))  # holds alpha, then smoothed posteriors
    ratio = _buffer(work, "ratio", (n_samples,)) if per_step else _NO_STEPS
    log_likelihood = np.empty(offsets.shape[0] - 1)
    start_sum = np.zeros(n_components)
    outer = np.zeros((n_components, n_components))
    # Many states: the K x K outer product of every step leaves the sequential loop for one matrix product
    # (BLAS) after it; zero rows (each sequence's last step) add nothing.
    compute_xi = bool(compute_xi) and not objective_only
    deferred = compute_xi and n_components > _FIXED_SIZES[-1] and n_samples * n_components <= _DEFERRED_MAX_ELEMENTS
    coef, wts = (np.zeros((n_samples, n_components)) for _ in range(2)) if deferred else (_NO_ROWS, _NO_ROWS)
    kernel = _forward_backward_kernel if n_components in _FIXED_SIZES else _forward_backward_kernel_many
    _run(kernel, startprob, transmat, np.ascontiguousarray(transmat.T), log_frameprob, frame, shifts,
         from_log, offsets, compute_xi, not objective_only, posteriors, ratio, log_likelihood, start_sum, outer, coef,
         wts, n_components)
    if deferred:
        outer += coef.T @ wts
    log_likelihood += np.add.reduceat(shifts, offsets[:-1])
    log_step = _log_steps(ratio, shifts) if per_step else None
    if objective_only:
        return ForwardBackwardResult(log_likelihood, None, None, None, log_step)
    return ForwardBackwardResult(log_likelihood, posteriors, start_sum, transmat * outer, log_step)


# --------------------------------------------------------------------- Viterbi
@jit(inline=True)
def _viterbi_sequence(log_startprob, log_transmat_t, log_frameprob, begin, end, delta, states, n_components):
    """Best path of rows begin:end; returns its log-probability.

    ``delta[t, j]`` = best log-probability of a path ending in ``j`` at ``t``;
    the path is recovered by recomputing one argmax per step (no backpointer
    table, so the forward loop is a branch-free max). Ties go to the lowest
    state index.
    """
    for k in range(n_components):
        delta[begin, k] = log_startprob[k] + log_frameprob[begin, k]
    for t in range(begin + 1, end):
        for j in range(n_components):
            best = -np.inf
            for i in range(n_components):
                best = max(best, delta[t - 1, i] + log_transmat_t[j, i])
            delta[t, j] = best + log_frameprob[t, j]
    best = -np.inf
    arg = 0
    for k in range(n_components):
        if delta[end - 1, k] > best:
            best = delta[end - 1, k]
            arg = k
    log_prob = best
    states[end - 1] = arg
    for t in range(end - 1, begin, -1):
        best = -np.inf
        prev = 0
        for i in range(n_components):
            v = delta[t - 1, i] + log_transmat_t[arg, i]
            if v > best:
                best = v
                prev = i
        arg = prev
        states[t - 1] = arg
    return log_prob


@jit
def _viterbi_kernel(log_startprob, log_transmat_t, log_frameprob, offsets, delta, states, log_prob, n_components):
    """Viterbi over every sequence; writes ``states`` and ``log_prob`` (``delta`` is scratch)."""
    for s in range(offsets.shape[0] - 1):
        log_prob[s] = _viterbi_sequence(
            log_startprob, log_transmat_t, log_frameprob, offsets[s], offsets[s + 1], delta, states, n_components
        )


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
    n_samples, n_components = log_frameprob.shape
    if _numpy_path(n_samples, n_components):
        return ViterbiResult(*_numpy_viterbi(log_startprob, log_transmat, log_frameprob, offsets))
    states = np.empty(n_samples, dtype=np.int64)
    log_prob = np.empty(offsets.shape[0] - 1)
    _run(_viterbi_kernel, log_startprob, np.ascontiguousarray(log_transmat.T), log_frameprob, offsets,
         np.empty((n_samples, n_components)), states, log_prob, n_components)
    return ViterbiResult(log_prob, states)
