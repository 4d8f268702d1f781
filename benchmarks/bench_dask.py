"""The price of scale: a GaussianMixture fit on Dask against the same fit in memory, and how it grows.

Run: ``python benchmarks/bench_dask.py`` (add ``--quick`` for a smoke run).

1. 10^6 x 16 rows, K=8, diag, 8 chunks, a LocalCluster of 2 worker processes (one thread each): seconds per
   EM iteration on Dask (data persisted on the workers) and in memory (n_jobs=2: row blocks on 2 threads),
   and their ratio (goal: under 1.5).
2. The same on Dask with the data growing 1x, 4x, 16x (chunks of 125,000 rows; data generated on the
   workers and persisted when they fit): seconds per iteration, which must grow linearly.
3. n_init=4 on Dask: restarts run one after the other; the time against 4 times one restart.

Per-iteration time = (time of a fit with max_iter=12 - time with max_iter=2) / (difference of their n_iter_),
from an explicit start, tol=0 (overlapping components, so EM keeps moving), so validation, persisting and the
start cancel out. Medians of --repeats runs.
"""

import argparse
import json
import os
import platform
import time
import warnings

import numpy as np


def _fit_time(make, X, max_iter):
    model = make(max_iter)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X)
    return time.perf_counter() - started, model


def per_iteration(make, X, repeats):
    _fit_time(make, X, 1)  # warm-up: compiled kernels, the cluster's first tasks
    times = []
    for _ in range(repeats):
        short, first = _fit_time(make, X, 2)
        long, model = _fit_time(make, X, 12)
        times.append((long - short) / max(1, model.n_iter_ - first.n_iter_))
    return float(np.median(times)), model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results", "dask.json"))
    args = parser.parse_args()

    import dask.array as da
    from distributed import Client, LocalCluster

    from emkit import GaussianMixture

    n, d, k = (100_000, 16, 8) if args.quick else (1_000_000, 16, 8)
    repeats = 1 if args.quick else args.repeats
    rng = np.random.RandomState(0)
    means = rng.normal(scale=0.5, size=(k, d))  # overlapping: EM moves for many iterations

    def make(max_iter, n_jobs=None, n_init=1):
        return GaussianMixture(
            k, covariance_type="diag", weights_init=np.full(k, 1.0 / k), means_init=means,
            precisions_init=np.ones((k, d)), tol=0, max_iter=max_iter, n_jobs=n_jobs, n_init=n_init,
        )

    results = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "n": n, "d": d, "k": k}
    X = means[rng.randint(0, k, n)] + rng.normal(size=(n, d))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster):
        memory, _ = per_iteration(lambda m: make(m, n_jobs=2), X, repeats)
        Xd = da.from_array(X, chunks=(n // 8, d))
        on_dask, model = per_iteration(make, Xd, repeats)
        results["per_iteration"] = {"memory_n_jobs_2": memory, "dask_8_chunks": on_dask, "ratio": on_dask / memory}
        print(f"{n} x {d}, K={k}, diag: in memory (n_jobs=2) {memory:.3f} s/iteration, Dask (8 chunks, 2 workers) "
              f"{on_dask:.3f} s/iteration: ratio {on_dask / memory:.2f}")

        growth = {}
        generator = da.random.RandomState(1)
        for factor in (1, 4, 16) if not args.quick else (1, 4):
            rows = n * factor
            Xg = generator.normal(size=(rows, d), chunks=(n // 8, d)) + 2.0
            seconds, _ = per_iteration(make, Xg, 1 if factor > 1 else repeats)
            growth[factor] = seconds
            print(f"  {factor:2d}x ({rows} rows, {Xg.nbytes / 1e9:.2f} GB): {seconds:.3f} s/iteration "
                  f"({seconds / growth[1]:.2f} x the 1x time)")
        results["growth"] = growth

        one, _ = _fit_time(lambda m: make(m), Xd, 12)
        four, _ = _fit_time(lambda m: make(m, n_init=4), Xd, 12)
        results["restarts"] = {"one": one, "four": four, "ratio_to_4x_one": four / (4 * one)}
        print(f"n_init=4 on Dask: {four:.2f} s against 4 x {one:.2f} s for one restart "
              f"(ratio {four / (4 * one):.2f}: restarts one after the other)")

    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump(results, handle, indent=2)
    print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
