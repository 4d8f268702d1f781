"""Forward-backward and Viterbi kernels against brute force over all K^T paths."""

import itertools

import numpy as np
import pytest
from scipy.special import logsumexp

from emkit._inference import hmm as kernels
from emkit._inference._jit import specialized

_NUMPY_MAX_CELLS = kernels._NUMPY_MAX_CELLS  # the size rule, before the fixture overrides it


@pytest.fixture(autouse=True, params=["compiled", "numpy"])
def implementation(request, monkeypatch):
    """Run every test through the compiled kernels and through the numpy path for small inputs."""
    monkeypatch.setattr(kernels, "_NUMPY_MAX_CELLS", -1 if request.param == "compiled" else 10**9)
    return request.param


def _compiled_only(implementation):
    if implementation == "numpy":
        pytest.skip("tests the compiled kernels only (too long or shortcuts the numpy path does not take)")


def _random_model(K, T, rng, scale=3.0):
    startprob = rng.dirichlet(np.ones(K))
    transmat = rng.dirichlet(np.ones(K), size=K)
    log_frameprob = rng.normal(scale=scale, size=(T, K))
    return startprob, transmat, log_frameprob


def _brute_force(startprob, transmat, log_frameprob):
    """All K^T paths: log p(x), smoothed posteriors, xi sum, best path and its log-probability."""
    T, K = log_frameprob.shape
    with np.errstate(divide="ignore"):
        log_start, log_trans = np.log(startprob), np.log(transmat)
    paths = np.array(list(itertools.product(range(K), repeat=T)))
    log_joint = log_start[paths[:, 0]] + log_frameprob[0, paths[:, 0]]
    for t in range(1, T):
        log_joint = log_joint + log_trans[paths[:, t - 1], paths[:, t]] + log_frameprob[t, paths[:, t]]
    log_px = logsumexp(log_joint)
    weights = np.exp(log_joint - log_px)
    posteriors = np.zeros((T, K))
    xi = np.zeros((K, K))
    for t in range(T):
        np.add.at(posteriors[t], paths[:, t], weights)
        if t + 1 < T:
            np.add.at(xi, (paths[:, t], paths[:, t + 1]), weights)
    best = np.argmax(log_joint)
    return log_px, posteriors, xi, paths[best], log_joint[best]


@pytest.mark.parametrize("K, T", [(1, 4), (2, 1), (2, 6), (3, 5), (4, 4)])
def test_forward_backward_matches_brute_force(K, T):
    rng = np.random.RandomState(K * 10 + T)
    startprob, transmat, log_frameprob = _random_model(K, T, rng)
    log_px, posteriors, xi, path, log_best = _brute_force(startprob, transmat, log_frameprob)
    result = kernels.forward_backward(startprob, transmat, log_frameprob)
    np.testing.assert_allclose(result.log_likelihood, [log_px], rtol=1e-12)
    np.testing.assert_allclose(result.posteriors, posteriors, atol=1e-12)
    np.testing.assert_allclose(result.xi_sum, xi, atol=1e-12)
    np.testing.assert_allclose(result.start_sum, posteriors[0], atol=1e-12)
    np.testing.assert_allclose(result.log_step.sum(), log_px, rtol=1e-12)
    filt = kernels.forward(startprob, transmat, log_frameprob)
    np.testing.assert_allclose(filt.log_likelihood, [log_px], rtol=1e-12)
    np.testing.assert_allclose(filt.filtered[-1], posteriors[-1], atol=1e-12)  # last step: filtered = smoothed
    vit = kernels.viterbi(np.log(startprob), np.log(transmat), log_frameprob)
    np.testing.assert_array_equal(vit.states, path)
    np.testing.assert_allclose(vit.log_prob, [log_best], rtol=1e-12)


def test_filtered_matches_brute_force_on_prefixes():
    rng = np.random.RandomState(3)
    startprob, transmat, log_frameprob = _random_model(3, 5, rng)
    filtered = kernels.forward(startprob, transmat, log_frameprob).filtered
    for t in range(5):
        _, posteriors, _, _, _ = _brute_force(startprob, transmat, log_frameprob[: t + 1])
        np.testing.assert_allclose(filtered[t], posteriors[-1], atol=1e-12)


def test_structural_zeros_stay_zero():
    rng = np.random.RandomState(4)
    startprob = np.array([1.0, 0.0, 0.0])
    transmat = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])  # left-right
    log_frameprob = rng.normal(size=(6, 3))
    log_px, posteriors, xi, path, log_best = _brute_force(startprob, transmat, log_frameprob)
    result = kernels.forward_backward(startprob, transmat, log_frameprob)
    np.testing.assert_allclose(result.log_likelihood, [log_px], rtol=1e-12)
    np.testing.assert_allclose(result.posteriors, posteriors, atol=1e-12)
    assert result.xi_sum[1, 0] == 0 and result.xi_sum[2, 0] == 0 and result.xi_sum[0, 2] == 0
    with np.errstate(divide="ignore"):
        vit = kernels.viterbi(np.log(startprob), np.log(transmat), log_frameprob)
    np.testing.assert_array_equal(vit.states, path)


def test_many_sequences_equal_one_call_per_sequence():
    rng = np.random.RandomState(5)
    lengths = [1, 7, 3, 12, 2]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    startprob, transmat, log_frameprob = _random_model(3, offsets[-1], rng)
    joint = kernels.forward_backward(startprob, transmat, log_frameprob, offsets)
    joint_vit = kernels.viterbi(np.log(startprob), np.log(transmat), log_frameprob, offsets)
    xi = np.zeros((3, 3))
    start = np.zeros(3)
    for i, (a, b) in enumerate(zip(offsets[:-1], offsets[1:])):
        single = kernels.forward_backward(startprob, transmat, log_frameprob[a:b])
        np.testing.assert_allclose(joint.log_likelihood[i], single.log_likelihood[0], rtol=1e-13)
        np.testing.assert_allclose(joint.posteriors[a:b], single.posteriors, atol=1e-14)
        xi += single.xi_sum
        start += single.start_sum
        vit = kernels.viterbi(np.log(startprob), np.log(transmat), log_frameprob[a:b])
        np.testing.assert_array_equal(joint_vit.states[a:b], vit.states)
    np.testing.assert_allclose(joint.xi_sum, xi, atol=1e-12)
    np.testing.assert_allclose(joint.start_sum, start, atol=1e-13)


def test_long_sequence_stays_finite(implementation):
    _compiled_only(implementation)
    rng = np.random.RandomState(6)
    T = 1_000_000
    startprob, transmat, _ = _random_model(3, 1, rng)
    # large, very unequal emission log-likelihoods: raw probabilities would underflow at once
    log_frameprob = rng.normal(loc=-500.0, scale=200.0, size=(T, 3))
    result = kernels.forward_backward(startprob, transmat, log_frameprob)
    assert np.isfinite(result.log_likelihood).all()
    assert np.isfinite(result.posteriors).all()
    np.testing.assert_allclose(result.posteriors.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(result.xi_sum.sum(), T - 1, rtol=1e-9)
    np.testing.assert_allclose(result.log_step.sum(), result.log_likelihood[0], rtol=1e-9)
    vit = kernels.viterbi(np.log(startprob), np.log(transmat), log_frameprob)
    assert np.isfinite(vit.log_prob).all()


def test_underflowing_step_is_redone_in_log_space():
    # state 1 is unreachable after step 0 and fits x_1 ~1e-400 times better than reachable state 0
    startprob = np.array([1.0, 0.0])
    transmat = np.array([[1.0, 0.0], [0.0, 1.0]])
    log_frameprob = np.array([[0.0, 0.0], [-1000.0, 0.0], [-1.0, -2.0]])
    log_px, posteriors, xi, _, _ = _brute_force(startprob, transmat, log_frameprob)
    result = kernels.forward_backward(startprob, transmat, log_frameprob)
    np.testing.assert_allclose(result.log_likelihood, [log_px], rtol=1e-12)
    np.testing.assert_allclose(result.posteriors, posteriors, atol=1e-12)
    np.testing.assert_allclose(result.xi_sum, xi, atol=1e-12)


def test_impossible_sequence_gives_minus_inf_and_no_nan():
    startprob = np.array([1.0, 0.0])
    transmat = np.eye(2)
    log_frameprob = np.array([[0.0, 0.0], [-np.inf, 0.0]])
    result = kernels.forward_backward(startprob, transmat, log_frameprob)
    assert result.log_likelihood[0] == -np.inf
    assert not np.isnan(result.posteriors).any() and not np.isnan(result.xi_sum).any()
    np.testing.assert_array_equal(result.posteriors, 0.0)
    # an impossible sequence among possible ones leaves the others untouched
    offsets = np.array([0, 2, 5])
    joined = np.r_[log_frameprob, [[0.0, -1.0], [-2.0, 0.0], [-1.0, -1.0]]]
    both = kernels.forward_backward(startprob, transmat, joined, offsets)
    alone = kernels.forward_backward(startprob, transmat, joined[2:])
    np.testing.assert_array_equal(both.posteriors[:2], 0.0)
    np.testing.assert_allclose(both.posteriors[2:], alone.posteriors, rtol=1e-14)
    np.testing.assert_allclose(both.log_likelihood, [-np.inf, alone.log_likelihood[0]], rtol=1e-14)
    np.testing.assert_allclose(both.xi_sum, alone.xi_sum, rtol=1e-14)


@pytest.mark.parametrize("shift_row", [0, 2, 4])
def test_shifting_a_row_only_shifts_the_log_likelihood(shift_row):
    rng = np.random.RandomState(7)
    startprob, transmat, log_frameprob = _random_model(3, 6, rng)
    shifted = log_frameprob.copy()
    shifted[shift_row] += 123.4
    a = kernels.forward_backward(startprob, transmat, log_frameprob)
    b = kernels.forward_backward(startprob, transmat, shifted)
    np.testing.assert_allclose(b.log_likelihood - a.log_likelihood, [123.4], rtol=1e-12)
    np.testing.assert_allclose(b.posteriors, a.posteriors, atol=1e-13)
    np.testing.assert_allclose(b.xi_sum, a.xi_sum, atol=1e-13)
    va = kernels.viterbi(np.log(startprob), np.log(transmat), log_frameprob)
    vb = kernels.viterbi(np.log(startprob), np.log(transmat), shifted)
    np.testing.assert_array_equal(va.states, vb.states)


def _kernel_args(startprob, transmat, log_frameprob, offsets):
    """Arguments of the three compiled kernels, built as the public wrappers build them."""
    T, K = log_frameprob.shape
    log_fp, frame, shifts, from_log = kernels._frames(log_frameprob, None, False)
    transmat_t = np.ascontiguousarray(transmat.T)
    S = len(offsets) - 1
    forward = (startprob, transmat_t, log_fp, frame, shifts, from_log, offsets, True, np.empty((T, K)), np.empty(T),
               np.empty(S), K)
    forward_backward = (startprob, transmat, transmat_t, log_fp, frame.copy(), shifts.copy(), from_log, offsets, True,
                        True, np.empty((T, K)), np.empty(T), np.empty(S), np.zeros(K), np.zeros((K, K)),
                        np.zeros((0, 0)), np.zeros((0, 0)), K)
    with np.errstate(divide="ignore"):
        log_startprob, log_transmat_t = np.log(startprob), np.ascontiguousarray(np.log(transmat).T)
    viterbi = (log_startprob, log_transmat_t, log_frameprob, offsets, np.empty((T, K)), np.empty(T, dtype=np.int64),
               np.empty(len(offsets) - 1), K)
    return {kernels._forward_kernel: forward, kernels._forward_backward_kernel: forward_backward,
            kernels._viterbi_kernel: viterbi}


def _copy(args):
    return tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)


def _outputs(args):
    return [a for a in args if isinstance(a, np.ndarray)]


@pytest.mark.parametrize("K", [3, 10])
def test_compiled_equals_py_func(K, implementation):
    if implementation == "numpy":
        pytest.skip("compares the compiled kernels only")
    rng = np.random.RandomState(8)
    offsets = np.array([0, 4, 9, 10], dtype=np.int64)
    startprob, transmat, log_frameprob = _random_model(K, 10, rng)
    for kernel, args in _kernel_args(startprob, transmat, log_frameprob, offsets).items():
        compiled, python = _copy(args), _copy(args)
        kernels._run(kernel, *compiled)
        kernel.py_func(*python)
        for c, p in zip(_outputs(compiled), _outputs(python)):
            np.testing.assert_allclose(c, p, rtol=1e-13, atol=1e-15)
    shifted, shifts = np.empty_like(log_frameprob), np.empty(log_frameprob.shape[0])
    again, shifts_again = np.empty_like(log_frameprob), np.empty(log_frameprob.shape[0])
    log_frameprob[2] = -np.inf  # an impossible step: shift 0
    kernels._shift_rows(log_frameprob, shifted, shifts)
    kernels._shift_rows.py_func(log_frameprob, again, shifts_again)
    np.testing.assert_array_equal(shifts, shifts_again)
    np.testing.assert_array_equal(shifted, again)
    expected = np.where(np.isfinite(log_frameprob.max(axis=1)), log_frameprob.max(axis=1), 0.0)
    np.testing.assert_array_equal(shifts, expected)
    np.testing.assert_array_equal(shifted, log_frameprob - expected[:, None])


def test_fixed_size_path_equals_general_path(implementation):
    if implementation == "numpy":
        pytest.skip("compares the compiled kernels only")
    rng = np.random.RandomState(11)
    offsets = np.array([0, 20, 50], dtype=np.int64)
    startprob, transmat, log_frameprob = _random_model(4, 50, rng)
    for kernel, args in _kernel_args(startprob, transmat, log_frameprob, offsets).items():
        fixed, general = _copy(args), _copy(args)
        specialized(kernel, fixed, constant=True)(*fixed)
        specialized(kernel, general)(*general)
        for a, b in zip(_outputs(fixed), _outputs(general)):  # same operations in the same order
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("K", [1, 2, 3, 5, 9])
def test_numpy_path_equals_compiled_path(K, implementation, monkeypatch):
    if implementation == "numpy":
        pytest.skip("compares both paths in one test")
    rng = np.random.RandomState(12 + K)
    offsets = np.array([0, 1, 30, 34, 120], dtype=np.int64)
    startprob, transmat, log_frameprob = _random_model(K, 120, rng, scale=20.0)
    if K > 1:
        transmat[0, 1:] = 0.0  # state 0 absorbing: lazily normalised messages then underflow together
    transmat /= transmat.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        log_startprob, log_transmat = np.log(startprob), np.log(transmat)
    results = {}
    for name, max_rows in [("compiled", -1), ("numpy", 10**9)]:
        monkeypatch.setattr(kernels, "_NUMPY_MAX_CELLS", max_rows)
        results[name] = (
            kernels.forward_backward(startprob, transmat, log_frameprob, offsets),
            kernels.forward_backward(startprob, transmat, offsets=offsets, frameprob=np.exp(log_frameprob / 10)),
            kernels.forward(startprob, transmat, log_frameprob, offsets),
            kernels.viterbi(log_startprob, log_transmat, log_frameprob, offsets),
        )
    for compiled, numpy_path in zip(results["compiled"], results["numpy"]):
        for a, b in zip(compiled, numpy_path):
            if a.dtype == np.int64:
                np.testing.assert_array_equal(a, b)
            else:
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("K", [1, 2, 3, 5, 9])
def test_scan_over_time_equals_the_step_by_step_recursions(K, implementation):
    if implementation == "compiled":
        pytest.skip("compares the two numpy recursions")
    rng = np.random.RandomState(40 + K)
    lengths = np.array([1, 37, 2, 64, 1, 19])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for scale in (1.0, 8.0, 40.0):
        startprob, transmat, log_frameprob = _random_model(K, lengths.sum(), rng, scale=scale)
        log_frameprob, frame, shifts, from_log = kernels._frames(log_frameprob, None, False)
        filtered, log_step, possible = kernels._numpy_forward(
            startprob, transmat, log_frameprob, frame.copy(), shifts, from_log, offsets
        )
        posteriors, outer = kernels._numpy_backward(transmat, frame, offsets, filtered, possible, True)
        scanned = kernels._scan_forward(startprob, transmat, frame, shifts, offsets)
        smoothed = kernels._scan_backward(transmat, frame, offsets, scanned[0], True)
        for a, b in zip((filtered, log_step, posteriors, outer), (*scanned, *smoothed)):
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)


def test_scan_hands_underflowing_steps_to_the_step_by_step_path(implementation, monkeypatch):
    # state 1 is unreachable; at step 3 the observation is exp(-800) times less likely under state 0, so the
    # shifted frame of the reachable state underflows: the step must be redone in log space
    startprob, transmat = np.array([1.0, 0.0]), np.array([[1.0, 0.0], [0.5, 0.5]])
    log_frameprob = np.zeros((6, 2))
    log_frameprob[3] = [-800.0, 0.0]
    log_frameprob, frame, shifts, _ = kernels._frames(log_frameprob, None, False)
    assert kernels._scan_forward(startprob, transmat, frame, shifts, np.array([0, 6])) is None
    results = {}
    for name, max_cells in [("compiled", -1), ("numpy", 10**9)]:
        monkeypatch.setattr(kernels, "_NUMPY_MAX_CELLS", max_cells)
        results[name] = kernels.forward_backward(startprob, transmat, log_frameprob)
    for a, b in zip(results["compiled"], results["numpy"]):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-13)
    assert results["numpy"].log_likelihood[0] == pytest.approx(-800.0)


def test_numpy_path_budget_scales_with_the_number_of_states(implementation, monkeypatch):
    if implementation == "numpy":
        pytest.skip("checks the size rule once")
    monkeypatch.setattr(kernels, "_NUMPY_MAX_CELLS", _NUMPY_MAX_CELLS)  # the fixture's override undone
    assert kernels._numpy_path(1000, 2) and kernels._numpy_path(1000, 4) and not kernels._numpy_path(1001, 4)
    assert kernels._numpy_path(500, 8) and not kernels._numpy_path(501, 8)
    assert kernels._numpy_path(200, 20) and not kernels._numpy_path(201, 20)


def _log_space_forward(startprob, transmat, log_frameprob, offsets):
    """Exact oracle: the forward recursion in log space (logsumexp per step), in long double."""
    from scipy.special import logsumexp

    log_trans = np.log(transmat.astype(np.longdouble))
    out = []
    for begin, end in zip(offsets[:-1], offsets[1:]):
        log_alpha = np.log(startprob.astype(np.longdouble)) + log_frameprob[begin]
        for t in range(begin + 1, end):
            log_alpha = logsumexp(log_alpha[:, None] + log_trans, axis=0) + log_frameprob[t]
        out.append(logsumexp(log_alpha))
    return np.array(out, dtype=np.longdouble)


@pytest.mark.parametrize("K", [3, 10])
def test_log_likelihood_without_per_step_logarithms_is_exact(K, implementation):
    # the kernels take the log-likelihood from the sums divided out at the (rare) rescaled steps, not from a
    # logarithm per step; long sequences rescale hundreds of times
    rng = np.random.RandomState(40 + K)
    offsets = np.array([0, 1, 900, 4000], dtype=np.int64)
    startprob, transmat, log_frameprob = _random_model(K, 4000, rng, scale=4.0)
    log_frameprob -= 30.0  # every step's sum far below one: the messages shrink fast
    full = kernels.forward_backward(startprob, transmat, log_frameprob, offsets)
    quick = kernels.forward_backward(startprob, transmat, log_frameprob, offsets, per_step=False)
    assert quick.log_step is None
    np.testing.assert_array_equal(quick.log_likelihood, full.log_likelihood)
    np.testing.assert_array_equal(quick.posteriors, full.posteriors)
    exact = _log_space_forward(startprob, transmat, log_frameprob, offsets)
    error = np.abs(full.log_likelihood - exact) / np.abs(exact)
    assert error.max() < 1e-15, error
    np.testing.assert_allclose(np.add.reduceat(full.log_step, offsets[:-1]), full.log_likelihood, rtol=1e-13)
    forward = kernels.forward(startprob, transmat, log_frameprob, offsets)
    np.testing.assert_array_equal(forward.log_likelihood, full.log_likelihood)


@pytest.mark.parametrize("K", [3, 10])
def test_objective_only_gives_the_full_pass_log_likelihoods_bit_for_bit(K, implementation):
    rng = np.random.RandomState(30 + K)
    offsets = np.array([0, 1, 700, 1200, 5000], dtype=np.int64)
    startprob, transmat, log_frameprob = _random_model(K, 5000, rng, scale=5.0)
    full = kernels.forward_backward(startprob, transmat, log_frameprob, offsets)
    alone = kernels.forward_backward(startprob, transmat, log_frameprob, offsets, objective_only=True)
    np.testing.assert_array_equal(alone.log_likelihood, full.log_likelihood)
    np.testing.assert_array_equal(alone.log_step, full.log_step)
    assert alone.posteriors is None and alone.xi_sum is None


@pytest.mark.parametrize("K", [3, 10])
def test_work_buffers_kept_by_the_caller_are_reused_with_the_same_numbers(K, implementation):
    _compiled_only(implementation)
    rng = np.random.RandomState(50 + K)
    offsets = np.array([0, 1, 2500, 6000], dtype=np.int64)
    work = {}
    for scale in (5.0, 40.0):  # two calls with other numbers write over the same buffers
        startprob, transmat, log_frameprob = _random_model(K, 6000, rng, scale=scale)
        fresh = kernels.forward_backward(startprob, transmat, log_frameprob, offsets)
        kept = kernels.forward_backward(startprob, transmat, log_frameprob, offsets, work=work)
        for a, b in zip(kept, fresh):
            np.testing.assert_array_equal(a, b)
        assert kept.posteriors is work["posteriors"] and set(work) == {"frame", "shifts", "posteriors", "ratio"}


def test_wrapper_checks_shapes():
    startprob, transmat, log_frameprob = _random_model(3, 5, np.random.RandomState(9))
    with pytest.raises(ValueError, match="transmat must have shape"):
        kernels.forward_backward(startprob, transmat[:2], log_frameprob)
    with pytest.raises(ValueError, match="offsets"):
        kernels.forward_backward(startprob, transmat, log_frameprob, np.array([0, 3]))
    with pytest.raises(ValueError, match="no empty sequence"):
        kernels.forward_backward(startprob, transmat, log_frameprob, np.array([0, 3, 3, 5]))


def test_frameprob_input_matches_log_input():
    rng = np.random.RandomState(10)
    offsets = np.array([0, 3, 8], dtype=np.int64)
    startprob, transmat, log_frameprob = _random_model(3, 8, rng)
    a = kernels.forward_backward(startprob, transmat, log_frameprob, offsets)
    frameprob = np.exp(log_frameprob)
    b = kernels.forward_backward(startprob, transmat, offsets=offsets, frameprob=frameprob)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(frameprob, np.exp(log_frameprob))  # input untouched
    f = kernels.forward(startprob, transmat, offsets=offsets, frameprob=frameprob)
    np.testing.assert_allclose(f.log_likelihood, a.log_likelihood, rtol=1e-12)
    g = kernels.forward(startprob, transmat, offsets=offsets, frameprob=frameprob, compute_filtered=False)
    np.testing.assert_array_equal(g.log_step, f.log_step)
    np.testing.assert_allclose(g.filtered / g.filtered.sum(axis=1, keepdims=True), f.filtered, rtol=1e-12)
    with pytest.raises(ValueError, match="exactly one"):
        kernels.forward(startprob, transmat, log_frameprob, frameprob=frameprob)


def test_tiny_frame_probabilities_are_redone_in_log_space():
    startprob = np.array([0.5, 0.5])
    transmat = np.array([[0.9, 0.1], [0.2, 0.8]])
    frameprob = np.array([[0.3, 0.7], [1e-320, 3e-321], [0.4, 0.1], [1e-310, 0.0]])
    with np.errstate(divide="ignore"):
        log_frameprob = np.log(frameprob)
    log_px, posteriors, xi, _, _ = _brute_force(startprob, transmat, log_frameprob)
    for result in (kernels.forward_backward(startprob, transmat, frameprob=frameprob),
                   kernels.forward_backward(startprob, transmat, log_frameprob)):
        np.testing.assert_allclose(result.log_likelihood, [log_px], rtol=1e-10)
        np.testing.assert_allclose(result.posteriors, posteriors, atol=1e-10)
        np.testing.assert_allclose(result.xi_sum, xi, atol=1e-10)


def test_log_space_step_with_a_nearly_unreachable_best_state():
    # at step 1 only state 1 (predicted weight 1e-300) explains x_1; its frame is rescaled by ~e^690
    startprob = np.array([1.0, 1e-300])
    transmat = np.array([[0.99, 0.01], [0.3, 0.7]])
    log_frameprob = np.array([[0.0, 0.0], [-1000.0, 0.0], [-0.5, -1.0], [-2.0, -0.1]])
    log_px, posteriors, xi, _, _ = _brute_force(startprob, transmat, log_frameprob)
    result = kernels.forward_backward(startprob, transmat, log_frameprob)
    np.testing.assert_allclose(result.log_likelihood, [log_px], rtol=1e-10)
    np.testing.assert_allclose(result.posteriors, posteriors, atol=1e-10)
    np.testing.assert_allclose(result.xi_sum, xi, atol=1e-10)
    assert np.isfinite(result.log_step).all()


@pytest.mark.parametrize("K", [5, 8, 9, 12])  # fixed-size compiled paths (<= 8) and the general one
def test_matches_hmmlearn_kernels_for_larger_state_counts(K):
    _hmmc = pytest.importorskip("hmmlearn._hmmc")
    rng = np.random.RandomState(K)
    startprob, transmat, log_frameprob = _random_model(K, 300, rng)
    offsets = np.array([0, 120, 300])
    result = kernels.forward_backward(startprob, transmat, log_frameprob, offsets)
    forward_only = kernels.forward(startprob, transmat, log_frameprob, offsets)
    vit = kernels.viterbi(np.log(startprob), np.log(transmat), log_frameprob, offsets)
    xi = np.zeros((K, K))
    for i, (a, b) in enumerate(zip(offsets[:-1], offsets[1:])):
        ll, fwd = _hmmc.forward_log(startprob, transmat, log_frameprob[a:b])
        bwd = _hmmc.backward_log(startprob, transmat, log_frameprob[a:b])
        posteriors = np.exp(fwd + bwd - ll)
        xi += np.exp(_hmmc.compute_log_xi_sum(fwd, transmat, bwd, log_frameprob[a:b]))
        np.testing.assert_allclose(result.log_likelihood[i], ll, rtol=1e-12)
        np.testing.assert_allclose(forward_only.log_likelihood[i], ll, rtol=1e-12)
        np.testing.assert_allclose(result.posteriors[a:b], posteriors, atol=1e-10)
        np.testing.assert_allclose(forward_only.filtered[a:b], np.exp(fwd - logsumexp(fwd, axis=1, keepdims=True)),
                                   atol=1e-10)
        vit_ll, path = _hmmc.viterbi(startprob, transmat, log_frameprob[a:b])
        np.testing.assert_array_equal(vit.states[a:b], path)
        np.testing.assert_allclose(vit.log_prob[i], vit_ll, rtol=1e-12)
    np.testing.assert_allclose(result.xi_sum, xi, rtol=1e-9, atol=1e-10)


def test_deferred_transition_counts_equal_the_in_loop_sum(monkeypatch):
    """Many states: the expected transition counts from one matrix product after the pass, as from the loop."""
    rng = np.random.RandomState(11)
    offsets = np.array([0, 300, 301, 700, 1000], dtype=np.int64)  # a one-step sequence among them
    startprob, transmat, log_frameprob = _random_model(12, 1000, rng)
    deferred = kernels.forward_backward(startprob, transmat, log_frameprob, offsets)
    monkeypatch.setattr(kernels, "_DEFERRED_MAX_ELEMENTS", 0)
    in_loop = kernels.forward_backward(startprob, transmat, log_frameprob, offsets)
    np.testing.assert_allclose(deferred.xi_sum, in_loop.xi_sum, rtol=1e-12)
    np.testing.assert_array_equal(deferred.posteriors, in_loop.posteriors)
    np.testing.assert_array_equal(deferred.log_likelihood, in_loop.log_likelihood)


@pytest.mark.parametrize("K", [9, 12, 30])
def test_reassociated_kernel_for_many_states_agrees_with_the_strict_one(K):
    rng = np.random.RandomState(20 + K)
    offsets = np.array([0, 1, 150, 400], dtype=np.int64)
    startprob, transmat, log_frameprob = _random_model(K, 400, rng, scale=20.0)
    args = _kernel_args(startprob, transmat, log_frameprob, offsets)[kernels._forward_backward_kernel]
    strict, reassociated = _copy(args), _copy(args)
    kernels._run(kernels._forward_backward_kernel, *strict)
    kernels._run(kernels._forward_backward_kernel_many, *reassociated)
    for a, b in zip(_outputs(strict), _outputs(reassociated)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-300)


def test_local_array_on_the_stack_for_a_constant_length_else_on_the_heap():
    from emkit._inference._jit import jit, local_array

    @jit
    def squares(values, n):
        work = local_array(n)
        for i in range(n):
            work[i] = values[i] * values[i]
        total = 0.0
        for i in range(n):
            total += work[i]
        return total

    values = np.arange(1.0, 6.0)
    expected = float(np.sum(values**2))
    assert specialized(squares, (values, 5), constant=True)(values, 5) == expected  # a stack array
    assert specialized(squares, (values, 5))(values, 5) == expected  # np.empty
    assert squares.py_func(values, 5) == expected


def test_precomputed_row_maxima_give_the_same_pass(implementation):
    # shifted=(log_frameprob - row max, row max), as the Gaussian density computes them in one pass
    rng = np.random.RandomState(9)
    offsets = np.array([0, 700, 1500], dtype=np.int64)
    startprob, transmat, log_frameprob = _random_model(3, 1500, rng, scale=30.0)
    shifts = log_frameprob.max(axis=1)
    shifted = (log_frameprob - shifts[:, None], shifts)
    plain = kernels.forward_backward(startprob, transmat, log_frameprob, offsets)
    given = kernels.forward_backward(startprob, transmat, log_frameprob, offsets, shifted=(shifted[0], shifts.copy()))
    for a, b in zip(plain, given):
        np.testing.assert_array_equal(a, b)
    shifted = (log_frameprob - shifts[:, None], shifts.copy())  # both were overwritten (frames; redone steps)
    forward = kernels.forward(startprob, transmat, log_frameprob, offsets, shifted=shifted)
    np.testing.assert_array_equal(forward.log_likelihood, plain.log_likelihood)
    with pytest.raises(ValueError, match="shifted"):
        kernels.forward(startprob, transmat, log_frameprob, offsets, shifted=(shifted[0][1:], shifts))
