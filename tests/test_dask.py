"""emkit on Dask: fits where the data lie, lazy predictions, restarts and searches on a cluster, online EM.

A real ``distributed.LocalCluster`` (2 worker processes, one thread each) is started once for the module.
"""

import gc
import os
import pickle
import signal
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from emkit import (  # noqa: E402
    GMMHMM,
    BernoulliMixture,
    CategoricalHMM,
    GaussianHMM,
    GaussianMixture,
    PoissonHMM,
    PoissonMixture,
)
from emkit.base import _AFTER_ITERATION  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cluster's own start-up chatter
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit="600MB"
        )
        client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def _quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return function(*args, **kwargs)


def _relative(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), np.finfo(float).tiny)


def _assert_no_dask_inside(model):
    for name, value in vars(model).items():
        assert type(value).__module__.split(".")[0] not in ("dask", "distributed"), name
    pickle.loads(pickle.dumps(model))


def _cluster_holds_nothing(client, timeout=30.0):
    """True once no worker holds data and the scheduler has nothing in memory or running.

    Releases travel asynchronously, so wait a little for them. (A forgotten key can linger in the scheduler's
    table in the "released" state, which holds no memory; only live states count.)
    """
    import time

    live = ("memory", "processing", "waiting", "queued", "no-worker")

    def scheduler_live(dask_scheduler):
        return sorted(str(ts.key)[:60] + " " + ts.state for ts in dask_scheduler.tasks.values() if ts.state in live)

    deadline = time.monotonic() + timeout
    while True:
        gc.collect()
        held = client.run_on_scheduler(scheduler_live)
        stored = sum(client.run(lambda dask_worker: len(dask_worker.data)).values())
        if not held and stored == 0:
            return True
        if time.monotonic() > deadline:
            print("the cluster still holds", held[:10], f"and {stored} values on the workers")
            return False
        time.sleep(0.1)


# ---------------------------------------------------------------- data
def _mixture(n=6000, seed=0):
    rng = np.random.RandomState(seed)
    labels = rng.rand(n) < 0.4
    return np.where(labels[:, None], rng.normal(3.0, 0.7, (n, 3)), rng.normal(0.0, 1.0, (n, 3)))


_STARTS = {
    "full": np.tile(np.eye(3), (2, 1, 1)),
    "tied": np.eye(3),
    "diag": np.ones((2, 3)),
    "spherical": np.ones(2),
}


def _explicit_mixture(covariance_type, **kw):
    return GaussianMixture(
        2, covariance_type=covariance_type, weights_init=[0.5, 0.5], means_init=[[0.5] * 3, [2.0] * 3],
        precisions_init=_STARTS[covariance_type], tol=0, max_iter=15, **kw,
    )


def _sequences(seed=0):
    rng = np.random.RandomState(seed)
    lengths = rng.randint(20, 120, 80)
    states = np.cumsum(rng.rand(lengths.sum()) < 0.05) % 2
    return states, lengths, rng


# ---------------------------------------------------------------- equal to the fit in memory
@pytest.mark.parametrize("chunks", [1000, 1700, 6000])
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_mixture_on_dask_equals_the_fit_in_memory(client, covariance_type, chunks):
    X = _mixture()
    reference = _quiet(_explicit_mixture(covariance_type).fit, X)
    model = _quiet(_explicit_mixture(covariance_type).fit, da.from_array(X, chunks=(chunks, 3)))
    for name in ("weights_", "means_", "covariances_"):
        assert _relative(getattr(model, name), getattr(reference, name)) <= 1e-10, name
    # with tol=0 a run stops where round-off first makes a step flat, which the chunking may move by an iteration
    common = min(len(model.lower_bound_history_), len(reference.lower_bound_history_))
    assert common >= 5
    np.testing.assert_allclose(model.lower_bound_history_[:common], reference.lower_bound_history_[:common], rtol=1e-10)
    _assert_no_dask_inside(model)
    assert _cluster_holds_nothing(client)


def test_weighted_mixture_on_dask_equals_the_fit_in_memory(client):
    X = _mixture()
    weights = np.random.RandomState(1).randint(0, 4, len(X)).astype(float)
    reference = _quiet(_explicit_mixture("full").fit, X, sample_weight=weights)
    for sample_weight in (weights, da.from_array(weights, chunks=2500)):
        model = _quiet(_explicit_mixture("full").fit, da.from_array(X, chunks=(1500, 3)), sample_weight=sample_weight)
        assert _relative(model.means_, reference.means_) <= 1e-10


@pytest.mark.parametrize("family", ["bernoulli", "poisson"])
def test_binary_and_count_mixtures_on_dask_equal_the_fit_in_memory(client, family):
    rng = np.random.RandomState(0)
    labels = rng.rand(6000) < 0.4
    if family == "bernoulli":  # raw values, binarised chunk by chunk on the workers
        X = rng.normal(size=(6000, 4)) + np.where(labels[:, None], 1.0, -1.0) * [1.0, 1.0, -1.0, 0.0]
        estimator = BernoulliMixture(2, means_init=[[0.4, 0.4, 0.6, 0.5], [0.6, 0.6, 0.4, 0.5]])
    else:
        X = rng.poisson(np.where(labels[:, None], [6.0, 1.0, 3.0], [1.0, 5.0, 3.0])).astype(float)
        estimator = PoissonMixture(2, lambdas_init=[[2.0, 2.0, 3.0], [4.0, 3.0, 3.0]])
    estimator.set_params(weights_init=[0.5, 0.5], tol=0, max_iter=10)
    reference = _quiet(estimator.fit, X)
    model = _quiet(clone_of(estimator).fit, da.from_array(X, chunks=(1700, X.shape[1])))
    for name, value in reference._fitted_params().items():
        assert _relative(model._fitted_params()[name], value) <= 1e-10, name
    lazy = model.predict_proba(da.from_array(X, chunks=(2500, X.shape[1])))
    assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(lazy.compute(), reference.predict_proba(X), rtol=1e-9, atol=1e-12)
    _assert_no_dask_inside(model)
    assert _cluster_holds_nothing(client)
    if family == "poisson":
        with pytest.raises(ValueError, match="Negative values"):
            PoissonMixture(2).fit(da.from_array(-X, chunks=(1700, 3)))


def clone_of(estimator):
    return type(estimator)(**estimator.get_params())


def _hmm_cases(states, lengths, rng):
    n = lengths.sum()
    gaussian = rng.normal(size=(n, 2)) + 3.0 * states[:, None]
    symbols = ((states + (rng.rand(n) < 0.2)) % 3)[:, None]
    counts = rng.poisson(np.where(states[:, None] == 1, 5.0, 1.0), size=(n, 2)).astype(float)
    start = {"startprob_init": [0.5, 0.5], "transmat_init": [[0.9, 0.1], [0.2, 0.8]], "init_params": ""}
    return [
        (GaussianHMM(2, means_init=[[0, 0], [2, 2]], covars_init=np.ones((2, 2)), **start), gaussian),
        (CategoricalHMM(2, emissionprob_init=[[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]], **start), symbols),
        (PoissonHMM(2, lambdas_init=[[1.5, 1.5], [3.0, 3.0]], **start), counts),
        (GMMHMM(2, n_mix=2, weights_init=np.full((2, 2), 0.5), means_init=[[[0, 0], [1, 1]], [[2, 2], [4, 4]]],
                covars_init=np.ones((2, 2, 2)), **start), gaussian),
    ]


@pytest.mark.parametrize("case", [0, 1, 2, 3])
def test_hmm_on_dask_equals_the_fit_in_memory_whatever_the_chunks(client, case):
    states, lengths, rng = _sequences()
    estimator, X = _hmm_cases(states, lengths, rng)[case]
    estimator.set_params(tol=0, max_iter=10, keep_params_history=True)
    reference = _quiet(estimator.fit, X, lengths=lengths)
    for chunks in (977, 2500):  # neither falls on sequence boundaries: rechunked so none is cut
        model = _quiet(type(estimator)(**estimator.get_params()).fit, da.from_array(X, chunks=(chunks, X.shape[1])),
                       lengths=lengths)
        # with tol=0 a fit stops at its first decrease within round-off; the blocks' sums differ in the last bits
        # from the fit in memory, so one may stop an iteration earlier: compare after the same iterations
        n_iter = min(model.n_iter_, reference.n_iter_)
        assert n_iter >= 8
        for name, value in reference.params_history_[n_iter].items():
            assert _relative(model.params_history_[n_iter][name], value) <= 1e-10, name
        _assert_no_dask_inside(model)
    assert _cluster_holds_nothing(client)


def test_hmm_methods_on_dask_are_lazy_chunked_like_the_input_and_equal(client):
    states, lengths, rng = _sequences()
    estimator, X = _hmm_cases(states, lengths, rng)[0]
    model = _quiet(estimator.set_params(max_iter=5).fit, X, lengths=lengths)
    Xd = da.from_array(X, chunks=(1200, 2))
    for method in ("predict", "predict_proba", "score_samples", "filter"):
        lazy = getattr(model, method)(Xd, lengths=lengths)
        assert isinstance(lazy, da.Array)
        expected = getattr(model, method)(X, lengths=lengths)
        np.testing.assert_allclose(lazy.compute(), expected, rtol=1e-12, atol=1e-300)
        assert sum(lazy.chunks[0]) == len(X)
    log_prob, states_lazy = model.decode(Xd, lengths=lengths)
    reference_log_prob, reference_states = model.decode(X, lengths=lengths)
    assert isinstance(states_lazy, da.Array) and np.array_equal(states_lazy.compute(), reference_states)
    np.testing.assert_allclose(log_prob, reference_log_prob, rtol=1e-12)
    np.testing.assert_allclose(model.score(Xd, lengths=lengths), model.score(X, lengths=lengths), rtol=1e-12)
    for ours, theirs in zip(model.forecast(Xd, 3, lengths=lengths), model.forecast(X, 3, lengths=lengths)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_mixture_methods_on_dask_are_lazy_chunked_like_the_input(client):
    X = _mixture()
    model = _quiet(_explicit_mixture("diag").fit, X)
    Xd = da.from_array(X, chunks=(1300, 3))
    for method in ("predict", "predict_proba", "score_samples"):
        lazy = getattr(model, method)(Xd)
        assert isinstance(lazy, da.Array) and lazy.chunks[0] == Xd.chunks[0]
        np.testing.assert_allclose(lazy.compute(), getattr(model, method)(X), rtol=1e-12)
    assert isinstance(model.score(Xd), float) and isinstance(model.bic(Xd), float)
    np.testing.assert_allclose(model.bic(Xd), model.bic(X), rtol=1e-12)
    labels = _quiet(_explicit_mixture("diag").fit_predict, Xd)
    assert isinstance(labels, da.Array) and np.array_equal(labels.compute(), model.predict(X))


def test_random_starts_on_dask_need_no_gathering_and_find_the_clusters(client):
    X = _mixture(20000)
    Xd = da.from_array(X, chunks=(4000, 3))
    for init_params in ("kmeans", "k-means++", "random_from_data"):
        model = _quiet(GaussianMixture(2, init_params=init_params, random_state=0).fit, Xd)
        np.testing.assert_allclose(np.sort(model.means_[:, 0]), [0.0, 3.0], atol=0.1)
    # random_from_data draws its rows exactly as in memory
    a = _quiet(GaussianMixture(2, init_params="random_from_data", random_state=3, max_iter=3).fit, X)
    b = _quiet(GaussianMixture(2, init_params="random_from_data", random_state=3, max_iter=3).fit, Xd)
    assert _relative(b.means_, a.means_) <= 1e-10


# ---------------------------------------------------------------- scale, faults and memory
def test_fit_on_data_larger_than_the_workers_memory_keeps_the_client_flat(client):
    """1.8 GB generated lazily, three times each worker's memory limit: recomputed chunk by chunk, never held."""
    import psutil

    process = psutil.Process()
    X = da.random.RandomState(0).normal(size=(56_250_000, 4), chunks=(1_250_000, 4))
    assert X.nbytes >= 3 * 600e6
    before = process.memory_info().rss
    model = GaussianMixture(
        2, covariance_type="diag", weights_init=[0.5, 0.5], means_init=[[-1.0] * 4, [1.0] * 4],
        precisions_init=np.ones((2, 4)), max_iter=2, tol=0,
    )
    _quiet(model.fit, X)
    grown = process.memory_info().rss - before
    assert grown < 100e6, f"the client grew by {grown / 1e6:.0f} MB"
    np.testing.assert_allclose(model.means_.mean(axis=0), 0.0, atol=0.01)
    assert _cluster_holds_nothing(client)


def test_a_worker_killed_mid_fit_does_not_change_the_result(client):
    X = _mixture(12000)
    reference = _quiet(_explicit_mixture("full").fit, X)
    pids = list(client.run(os.getpid).values())

    def kill_a_worker(iteration):
        if iteration == 4:
            os.kill(pids[0], signal.SIGKILL)  # not a graceful retire: its chunks are lost, Dask recomputes them

    token = _AFTER_ITERATION.set(kill_a_worker)
    try:
        model = _quiet(_explicit_mixture("full").fit, da.from_array(X, chunks=(2000, 3)))
    finally:
        _AFTER_ITERATION.reset(token)
    assert _relative(model.means_, reference.means_) <= 1e-10
    client.wait_for_workers(2, timeout=60)


def test_the_cluster_is_freed_when_a_fit_raises(client):
    X = da.from_array(_mixture(), chunks=(1500, 3))

    def fail(iteration):
        raise RuntimeError("stop here")

    token = _AFTER_ITERATION.set(fail)
    try:
        with pytest.raises(RuntimeError, match="stop here"):
            _explicit_mixture("diag").fit(X)
    finally:
        _AFTER_ITERATION.reset(token)
    assert _cluster_holds_nothing(client)


# ---------------------------------------------------------------- restarts and searches through joblib's Dask backend
def test_restarts_and_grid_search_under_the_dask_backend_equal_the_local_run(client):
    from joblib import parallel_backend
    from sklearn.model_selection import GridSearchCV

    X = _mixture(3000)
    local = GaussianMixture(2, n_init=4, random_state=0).fit(X)
    search_local = GridSearchCV(GaussianMixture(random_state=0), {"n_components": [1, 2, 3]}, cv=3).fit(X)
    with parallel_backend("dask"):
        remote = GaussianMixture(2, n_init=4, random_state=0).fit(X)
        search_remote = GridSearchCV(GaussianMixture(random_state=0), {"n_components": [1, 2, 3]}, cv=3).fit(X)
    np.testing.assert_allclose(remote.means_, local.means_, rtol=1e-10)
    assert [r["seed"] for r in remote.restarts_] == [r["seed"] for r in local.restarts_]
    assert search_remote.best_params_ == search_local.best_params_
    np.testing.assert_allclose(search_remote.cv_results_["mean_test_score"], search_local.cv_results_["mean_test_score"],
                               rtol=1e-10)


# ---------------------------------------------------------------- bad input
def test_unknown_chunk_sizes_are_a_clear_error(client):
    X = da.from_array(_mixture(), chunks=(1000, 3))
    unknown = X[X[:, 0] > -100]  # boolean indexing: chunk sizes unknown
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        GaussianMixture(2).fit(unknown)


def test_chunks_of_mixed_dtypes_are_a_clear_error(client):
    import dask

    parts = [
        da.from_delayed(dask.delayed(np.ones)((50, 2), dtype=np.float64), (50, 2), dtype=np.float64),
        da.from_delayed(dask.delayed(np.ones)((50, 2), dtype=np.float32), (50, 2), dtype=np.float64),
    ]
    with pytest.raises(ValueError, match="different dtypes"):
        GaussianMixture(2).fit(da.concatenate(parts))


def test_infinity_in_a_chunk_is_a_clear_error(client):
    X = _mixture()
    X[4321, 1] = np.inf  # NaN means missing for GaussianHMM; infinity is never data
    with pytest.raises(ValueError, match="infinity"):
        GaussianHMM(2).fit(da.from_array(X, chunks=(1000, 3)))


def test_nan_in_a_chunk_is_a_clear_error_where_it_cannot_mean_missing(client):
    X = np.abs(np.round(_mixture()))
    X[4321, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        PoissonHMM(2).fit(da.from_array(X, chunks=(1000, 3)))


# ---------------------------------------------------------------- online EM
def test_partial_fit_over_100_chunks_reaches_the_batch_score():
    rng = np.random.RandomState(0)
    means = np.array([[0.0, 0.0], [4.0, 1.0], [-3.0, 5.0], [2.0, -4.0]])
    X = means[rng.randint(0, 4, 10**6)] + rng.normal(size=(10**6, 2)) * np.array([1.0, 0.6])
    batch = GaussianMixture(4, random_state=0).fit(X)
    online = GaussianMixture(4, random_state=0)
    for chunk in np.array_split(X, 100):
        online.partial_fit(chunk)
    assert online.n_iter_ == 100 and len(online.lower_bound_history_) == 100
    assert online.score(X) >= batch.score(X) - 0.02


def test_hmm_partial_fit_over_chunks_of_sequences_reaches_the_batch_score():
    states, lengths, rng = _sequences(1)
    X = rng.normal(size=(lengths.sum(), 2)) + 3.0 * states[:, None]
    batch = _quiet(GaussianHMM(2, random_state=0).fit, X, lengths=lengths)
    online = GaussianHMM(2, random_state=0)
    offsets = np.r_[0, np.cumsum(lengths)]
    for part in np.array_split(np.arange(len(lengths)), 16):
        online.partial_fit(X[offsets[part[0]] : offsets[part[-1] + 1]], lengths=lengths[part])
    assert online.score(X, lengths=lengths) >= batch.score(X, lengths=lengths) - 0.02


# ---------------------------------------------------------------- KalmanFilter
def test_kalman_on_dask_equals_the_fit_in_memory_and_answers_lazily(client):
    from emkit import KalmanFilter

    rng = np.random.RandomState(0)
    lengths = rng.randint(50, 150, 40)
    n = lengths.sum()
    states = np.cumsum(rng.normal(scale=0.3, size=(n, 2)), axis=0)
    X = states @ np.array([[1.0, 0.2, 0.0], [0.0, 1.0, 0.5]]) + rng.normal(scale=0.5, size=(n, 3))
    X[rng.rand(n) < 0.05, 1] = np.nan  # missing entries stay missing on the cluster
    make = lambda: KalmanFilter(n_dim_state=2, em_vars="all", max_iter=8, tol=0, random_state=0)  # noqa: E731
    reference = _quiet(make().fit, X, lengths=lengths)
    Xd = da.from_array(X, chunks=(1111, 3))
    model = _quiet(make().fit, Xd, lengths=lengths)
    for name, value in reference._fitted_params().items():
        assert _relative(model._fitted_params()[name], value) <= 1e-10, name
    _assert_no_dask_inside(model)
    means, covariances = model.smooth(Xd, lengths=lengths)
    assert isinstance(means, da.Array) and isinstance(covariances, da.Array)
    np.testing.assert_allclose(means.compute(), reference.smooth(X, lengths=lengths)[0], rtol=1e-9, atol=1e-12)
    assert isinstance(model.transform(Xd, lengths=lengths), da.Array)
    np.testing.assert_allclose(model.score(Xd, lengths=lengths), reference.score(X, lengths=lengths), rtol=1e-12)
    assert _cluster_holds_nothing(client)


def test_the_scaling_example_runs_as_written(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "scaling_example.py"
    spec = importlib.util.spec_from_file_location("scaling_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a second cluster's start-up chatter
        mixture, hmm, online = module.main()
    np.testing.assert_allclose(np.sort(mixture.means_[:, 0]), [0.0, 4.0], atol=0.01)
    np.testing.assert_allclose(np.sort(hmm.means_[:, 0]), [0.0, 3.0], atol=0.05)
    np.testing.assert_allclose(np.sort(online.means_[:, 0]), [0.0, 4.0], atol=0.05)
    assert "cluster sizes:" in capsys.readouterr().out


# ---------------------------------------------------------------- LatentDirichletAllocation
@pytest.mark.parametrize("sparse_chunks", [False, True])
def test_lda_on_dask_equals_the_fit_in_memory(client, sparse_chunks):
    import scipy.sparse as sp

    from emkit import LatentDirichletAllocation

    rng = np.random.RandomState(0)
    topics = rng.dirichlet(np.full(60, 0.1), 4)
    X = np.vstack([rng.multinomial(60, m @ topics) for m in rng.dirichlet(np.full(4, 0.3), 500)]).astype(float)
    reference = LatentDirichletAllocation(4, max_iter=6, random_state=0).fit(X)
    Xd = da.from_array(X, chunks=(130, 60))
    if sparse_chunks:
        Xd = Xd.map_blocks(sp.csr_matrix, meta=sp.csr_matrix((0, 0)))
    model = LatentDirichletAllocation(4, max_iter=6, random_state=0).fit(Xd)
    assert _relative(model.components_, reference.components_) <= 1e-10
    np.testing.assert_allclose(model.lower_bound_history_, reference.lower_bound_history_, rtol=1e-10)
    _assert_no_dask_inside(model)
    lazy = model.transform(Xd)
    assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(lazy.compute(), reference.transform(X), rtol=1e-9)
    np.testing.assert_allclose(model.perplexity(Xd), reference.perplexity(X), rtol=1e-10)
    with pytest.raises(ValueError, match="learning_method='batch'"):
        LatentDirichletAllocation(4, learning_method="online").fit(Xd)
    assert _cluster_holds_nothing(client)
