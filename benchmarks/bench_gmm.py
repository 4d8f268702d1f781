"""GaussianMixture: emkit vs scikit-learn on the same data and the same start, in one process.

Workload (issue 2): n=200,000 samples, 16 features, 16 components, 20 EM iterations from the same
explicit start, covariance types full and diag (emkit with n_jobs=None, and with n_jobs=2, which
spreads one restart's row blocks over two threads); then n_init=4 restarts (tol=0, max_iter=20, so both do
the same work) with emkit's n_jobs=2 against scikit-learn's serial restarts. Reports the median
seconds per iteration over repeats (emkit and scikit-learn alternate), the ratio, the final lower
bound of each, and peak resident memory above the starting level (the process and its workers,
sampled from /proc). numba's compile warm-up is excluded (one tiny fit first).

Run: python benchmarks/bench_gmm.py [--repeats 3] [--n-samples 200000]
"""

import argparse
import os
import platform
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

sys.path.insert(0, os.path.dirname(__file__))
from _memory import PeakMemory  # noqa: E402

from emkit import GaussianMixture  # noqa: E402


def make_data(n_samples, n_features, n_components, seed=0):
    rng = np.random.RandomState(seed)
    centers = rng.normal(scale=3.0, size=(n_components, n_features))
    scales = rng.uniform(0.5, 1.5, size=(n_components, n_features))
    labels = rng.randint(n_components, size=n_samples)
    return centers[labels] + rng.normal(size=(n_samples, n_features)) * scales[labels]


def start_for(X, n_components, covariance_type):
    """An explicit start both libraries accept: scikit-learn after one iteration on a subset."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = SkGaussianMixture(n_components, covariance_type=covariance_type, max_iter=1, tol=0, random_state=0)
        ref.fit(X[:20000])
    return {"weights_init": ref.weights_, "means_init": ref.means_, "precisions_init": ref.precisions_}


def timed_fit(cls, X, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            model = cls(**kwargs).fit(X)
            seconds = time.perf_counter() - t0
    return model, seconds, mem.increase


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-samples", type=int, default=200_000)
    parser.add_argument("--n-features", type=int, default=16)
    parser.add_argument("--n-components", type=int, default=16)
    parser.add_argument("--n-iter", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n, d, k, n_iter = args.n_samples, args.n_features, args.n_components, args.n_iter
    X = make_data(n, d, k)
    print(f"# GaussianMixture: n={n}, D={d}, K={k}, {n_iter} iterations, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")

    # compile warm-up (excluded from the timings)
    timed_fit(GaussianMixture, X[:500], n_components=2, max_iter=1, tol=0)

    for covariance_type in ["full", "diag"]:
        start = start_for(X, k, covariance_type)
        common = dict(n_components=k, covariance_type=covariance_type, tol=0, max_iter=n_iter, **start)
        variants = {
            "emkit": (GaussianMixture, {}),
            "emkit n_jobs=2": (GaussianMixture, {"n_jobs": 2}),  # one restart: row blocks on 2 threads
            "sklearn": (SkGaussianMixture, {}),
        }
        times = {name: [] for name in variants}
        mems = {name: [] for name in variants}
        bounds = {}
        for _ in range(args.repeats):
            for name, (cls, extra) in variants.items():
                model, seconds, mem = timed_fit(cls, X, **common, **extra)
                times[name].append(seconds / n_iter)
                mems[name].append(mem)
                bounds[name] = model.score(X)  # all: mean log-likelihood of the returned parameters
        theirs = np.median(times["sklearn"])
        print(f"{covariance_type:5s} per iteration: scikit-learn {theirs * 1e3:7.1f} ms")
        for name in ("emkit", "emkit n_jobs=2"):
            ours = np.median(times[name])
            print(f"      {name:15s} {ours * 1e3:7.1f} ms   speed-up {theirs / ours:5.2f}x   "
                  f"mean log-likelihood {bounds[name]:.10f} (scikit-learn's differs by "
                  f"{abs(bounds[name] - bounds['sklearn']):.1e})   peak memory above start {max(mems[name]):6.1f} MiB")
        print(f"      scikit-learn peak memory above start {max(mems['sklearn']):6.1f} MiB")

    # restarts: n_init=4, tol=0, max_iter=n_iter; emkit in parallel (n_jobs=2), scikit-learn serially
    restarts = dict(n_components=k, covariance_type="full", tol=0, max_iter=n_iter, n_init=4, random_state=0,
                    init_params="random_from_data")
    timed_fit(GaussianMixture, X[:500], n_components=2, max_iter=1, tol=0, n_init=2, n_jobs=2)  # warm the workers
    times = {"emkit": [], "sklearn": []}
    mems = {"emkit": [], "sklearn": []}
    for _ in range(max(1, args.repeats - 1)):
        _, seconds, mem = timed_fit(GaussianMixture, X, n_jobs=2, **restarts)
        times["emkit"].append(seconds)
        mems["emkit"].append(mem)
        _, seconds, mem = timed_fit(SkGaussianMixture, X, **restarts)
        times["sklearn"].append(seconds)
        mems["sklearn"].append(mem)
    ours, theirs = np.median(times["emkit"]), np.median(times["sklearn"])
    print(f"n_init=4 end to end: emkit (n_jobs=2) {ours:6.2f} s   scikit-learn (serial) {theirs:6.2f} s"
          f"   speed-up {theirs / ours:5.2f}x")
    print(f"      peak memory above start (process + workers): emkit {max(mems['emkit']):7.1f} MiB   "
          f"scikit-learn {max(mems['sklearn']):7.1f} MiB")


if __name__ == "__main__":
    main()
