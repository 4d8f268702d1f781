"""The mixture kernels' numpy path (small blocks) and compiled path give the same numbers."""

import numpy as np
import pytest

from emkit import GaussianHMM, GaussianMixture
from emkit._inference import mixture as kernels


def _both(monkeypatch, call):
    """``call()`` on the numpy path, then on the compiled path."""
    monkeypatch.setattr(kernels, "NUMPY_MAX_ROWS", 10**9)
    small = call()
    monkeypatch.setattr(kernels, "NUMPY_MAX_ROWS", -1)
    return small, call()


def _block(rng, n_rows=150, n_features=5, n_components=4, offset=1e6):
    lanes = np.ascontiguousarray(offset + rng.normal(size=(n_features, n_rows)))
    means = offset + rng.normal(size=(n_components, n_features))
    return lanes, means


@pytest.mark.parametrize("full", [True, False])
def test_log_densities_agree(monkeypatch, full):
    rng = np.random.RandomState(0)
    lanes, means = _block(rng)
    K, D = means.shape
    const = rng.normal(size=K)
    if full:
        factors = np.triu(rng.normal(size=(K, D, D))) + 3 * np.eye(D)

        def call():
            out = np.empty((K, lanes.shape[1]))
            kernels.full_log_density(lanes, means, factors, const, out)
            return out
    else:
        scales = rng.uniform(0.5, 2.0, size=(K, D))

        def call():
            out = np.empty((K, lanes.shape[1]))
            kernels.diag_log_density(lanes, means, scales, const, out)
            return out
    small, compiled = _both(monkeypatch, call)
    np.testing.assert_allclose(small, compiled, rtol=1e-12)


def test_square_norms_agree(monkeypatch):
    rng = np.random.RandomState(1)
    whitened = rng.normal(size=(3, 120, 7)).astype(np.float32)
    const = rng.normal(size=3)

    def call():
        out = np.empty((3, 120))
        kernels.square_norms(whitened, const, out)
        return out

    small, compiled = _both(monkeypatch, call)
    np.testing.assert_allclose(small, compiled, rtol=1e-12)


def test_responsibilities_agree_with_weights_flushes_and_empty_rows(monkeypatch):
    rng = np.random.RandomState(2)
    log_prob = rng.normal(scale=300.0, size=(4, 150))  # gaps beyond -700 are flushed to 0
    log_prob[:, 7] = -np.inf  # a row with no density anywhere
    log_prob[2, 9] = -np.inf
    weight = rng.uniform(0.0, 3.0, size=150)
    weight[11] = 0.0

    def call():
        resp = log_prob.copy()
        return kernels.responsibilities(resp, weight), resp

    (norm_a, resp_a), (norm_b, resp_b) = _both(monkeypatch, call)
    np.testing.assert_allclose(norm_a, norm_b, rtol=1e-14)
    np.testing.assert_allclose(resp_a, resp_b, rtol=1e-13, atol=0)
    assert np.all(resp_a[:, 7] == 0.0) and norm_a[7] == -np.inf
    assert np.array_equal(resp_a == 0.0, resp_b == 0.0)  # the same entries flushed


@pytest.mark.parametrize("full", [True, False])
def test_moments_merge_into_running_statistics_alike(monkeypatch, full):
    rng = np.random.RandomState(3)
    lanes, centre = _block(rng, offset=1e7)
    K, D = centre.shape
    resp = rng.dirichlet(np.ones(K), size=lanes.shape[1]).T.copy()
    resp[1] = 0.0  # a component with no mass in this chunk

    def call():
        post = np.array([0.0, 2.0, 5.0, 1.0])  # running statistics from earlier chunks
        first = np.ones((K, D))
        second = np.tile(np.eye(D), (K, 1, 1)) if full else np.ones((K, D))
        (kernels.full_moments if full else kernels.diag_moments)(lanes, resp, centre, post, first, second)
        return post, first, np.triu(second) if full else second

    small, compiled = _both(monkeypatch, call)
    for a, b in zip(small, compiled):
        np.testing.assert_allclose(a, b, rtol=1e-11)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # tol=0: a fixed number of steps
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_small_fits_equal_on_both_paths(monkeypatch, covariance_type):
    rng = np.random.RandomState(4)
    X = np.r_[rng.normal(size=(80, 3)), 1e5 + rng.normal(size=(70, 3))]

    def call():
        gm = GaussianMixture(2, covariance_type=covariance_type, random_state=0, tol=0, max_iter=20).fit(X)
        hmm = GaussianHMM(2, covariance_type=covariance_type, random_state=0, tol=0, max_iter=10).fit(X)
        return gm.means_, gm.covariances_, gm.lower_bound_, hmm.means_, hmm.covars_, hmm.score(X)

    small, compiled = _both(monkeypatch, call)
    for a, b in zip(small, compiled):
        np.testing.assert_allclose(a, b, rtol=1e-9)


@pytest.mark.parametrize("shape", [(1, 1), (3, 1), (1000, 1), (1000, 3), (1000, 4), (1000, 5), (1000, 64), (1, 1000),
                                   (3, 1000), (4, 1000), (5, 1000), (64, 1000), (6, 5), (5, 6)])
def test_transpose_in_either_loop_order_is_the_transpose(shape):
    # the copy loop runs along the short side or the long one by shape: every order is the plain transpose
    source = np.random.RandomState(sum(shape)).normal(size=shape)
    for kernel in (kernels._transpose_into, kernels._transpose_into.py_func):
        target = np.full(shape[::-1], np.nan)
        kernel(source, target)
        np.testing.assert_array_equal(target, source.T)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("full", [True, False])
@pytest.mark.parametrize(("K", "D"), [(3, 6), (9, 2)])  # both loop orders of the transposes in and out
def test_compiled_chunk_loops_equal_the_kernels_chunk_by_chunk(full, dtype, K, D):
    # log_density_rows and moments_rows run the chunk loop inside one compiled call: bit for bit the
    # kernels on each chunk's lanes (a short last chunk included)
    rng = np.random.RandomState(5)
    chunk, n = 128, 128 * 3 + 37
    X = (1e4 + rng.normal(size=(n, D))).astype(dtype)
    means = 1e4 + rng.normal(size=(K, D))
    const = rng.normal(size=K)
    factor = np.triu(rng.normal(size=(K, D, D))) + 3 * np.eye(D) if full else rng.uniform(0.5, 2.0, size=(K, D))
    weights = rng.dirichlet(np.ones(K), size=n)
    weights[:chunk, 1] = 0.0  # a component with no mass in the first chunk
    out = np.empty((n, K))
    kernels.log_density_rows(X, means, factor, const, out, chunk)
    stats = (np.zeros(K), np.zeros((K, D)), np.zeros((K, D, D) if full else (K, D)))
    kernels.moments_rows(X, weights, means, *stats, chunk)
    expected = np.empty((n, K))
    again = (np.zeros(K), np.zeros((K, D)), np.zeros((K, D, D) if full else (K, D)))
    for start in range(0, n, chunk):
        lanes = np.ascontiguousarray(X[start : start + chunk].T, dtype=np.float64)
        dens = np.empty((K, lanes.shape[1]))
        density = kernels.full_log_density if full else kernels.diag_log_density
        density(lanes, means, factor, const, dens, numpy=False)
        expected[start : start + chunk] = dens.T
        moments = kernels.full_moments if full else kernels.diag_moments
        moments(lanes, np.ascontiguousarray(weights[start : start + chunk].T), means, *again, numpy=False)
    np.testing.assert_array_equal(out, expected)
    for a, b in zip(stats, again):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_inputs_of_many_chunks_take_the_compiled_loop_with_the_same_numbers(monkeypatch, covariance_type):
    # above _COMPILED_LOOP_CHUNKS chunks the chunk loop is compiled; below it runs in Python: bit for bit the same
    from emkit._densities import gaussian

    rng = np.random.RandomState(6)
    X = 50.0 + rng.normal(size=(3000, 4))
    means = 50.0 + rng.normal(size=(3, 4))
    covariances = {"full": np.tile(np.eye(4), (3, 1, 1)), "tied": np.eye(4), "diag": np.ones((3, 4)),
                   "spherical": np.ones(3)}[covariance_type]
    prec_chol = gaussian.precisions_cholesky(covariances, covariance_type)
    posteriors = rng.dirichlet(np.ones(3), size=3000)
    results = []
    for limit in (0, 10**6):  # compiled loop, Python loop
        monkeypatch.setattr(gaussian, "_COMPILED_LOOP_CHUNKS", limit)
        results.append((gaussian.log_likelihood(X, means, prec_chol, covariance_type),
                        *gaussian.accumulate(X, posteriors, means, covariance_type)))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
