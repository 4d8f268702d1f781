"""Gaussian densities on a grid of shapes: emkit against scikit-learn and hmmlearn (issue 9).

Run from the repository root (one command, about 10 minutes on 2 cores)::

    PYTHONPATH=. python benchmarks/bench_gaussian_grid.py [--repeats 3] [--only gmm|hmm]
        [--cells 0,2] [--json benchmarks/results/gaussian_grid.json]

GaussianMixture (emkit vs scikit-learn), every covariance type in ``--types``
(default full and diag) and both float64 and float32, on the shapes of issue 9:

=========  ====  ===  ====
n          D     K
=========  ====  ===  ====
200,000    2     3
200,000    32    5
100,000    64    8
200,000    16    16
50,000     8     64
=========  ====  ===  ====

Data: Gaussian clusters with random centres (scale 3) and per-feature scales
(0.5 to 1.5). Both libraries start from the same explicit parameters
(scikit-learn's after one iteration on the first 20,000 rows) and run
``tol=0, max_iter=N``: the same N M-steps. Both evaluate N + 1 E-steps (emkit
the objective of the start, scikit-learn a final one for the labels). Reported:
median milliseconds per iteration (fit time / N) over repeats, the libraries
alternating; the ratio scikit-learn / emkit, for emkit's default
(``n_jobs=None``: its compiled kernels on one core, while scikit-learn's BLAS
uses the default threads) and for ``n_jobs=2`` (one restart's row blocks on
two threads); the final ``score(X)`` of emkit and its difference to
scikit-learn's.

GaussianHMM, diag (emkit vs hmmlearn's ``implementation="scaling"`` and
``"log"``): one sequence of 1,000,000 steps with K=3, D=1; one of 100,000 with
K=20, D=4; 2,000 sequences of 100 steps with K=4, D=2; one of 50,000 with
K=50, D=2. Same explicit start (``init_params=""``), N EM iterations
(``tol=0`` / ``tol=-inf``), then the final total log-likelihood of each.

BLAS runs with the machine's default number of threads (printed), unless
``--blas-threads N`` limits it (for a machine shared with other jobs, where
idle-spinning BLAS threads distort the timings). numba's compile (or cache
load) is done in a warm-up outside the timings. Results go to a JSON file
(``--json``) and a table on stdout.
"""

import argparse
import json
import logging
import os
import platform
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from threadpoolctl import threadpool_info, threadpool_limits

from emkit import GaussianMixture
from emkit.hmm import GaussianHMM

GMM_CELLS = [(200_000, 2, 3), (200_000, 32, 5), (100_000, 64, 8), (200_000, 16, 16), (50_000, 8, 64)]
HMM_CELLS = [
    {"lengths": [1_000_000], "K": 3, "D": 1},
    {"lengths": [100_000], "K": 20, "D": 4},
    {"lengths": [100] * 2000, "K": 4, "D": 2},
    {"lengths": [50_000], "K": 50, "D": 2},
]


def mixture_data(n_samples, n_features, n_components, seed=0):
    rng = np.random.RandomState(seed)
    centers = rng.normal(scale=3.0, size=(n_components, n_features))
    scales = rng.uniform(0.5, 1.5, size=(n_components, n_features))
    labels = rng.randint(n_components, size=n_samples)
    return centers[labels] + rng.normal(size=(n_samples, n_features)) * scales[labels]


def mixture_start(X, n_components, covariance_type):
    """scikit-learn's parameters after one iteration on the first 20,000 rows."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = SkGaussianMixture(n_components, covariance_type=covariance_type, max_iter=1, tol=0, random_state=0)
        ref.fit(X[:20000])
    return {"weights_init": ref.weights_, "means_init": ref.means_, "precisions_init": ref.precisions_}


def _median_ms(values):
    return float(np.median(values) * 1e3)


def run_gmm(cell, covariance_type, dtype, n_iter, repeats):
    n, d, k = cell
    X64 = mixture_data(n, d, k)
    start = mixture_start(X64, k, covariance_type)
    X = X64.astype(dtype)
    common = dict(n_components=k, covariance_type=covariance_type, tol=0, max_iter=n_iter, **start)
    contenders = {
        "emkit": (GaussianMixture, {}),
        "emkit_n_jobs2": (GaussianMixture, {"n_jobs": 2}),  # one restart: its row blocks on two threads
        "sklearn": (SkGaussianMixture, {}),
    }
    times = {name: [] for name in contenders}
    scores = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        GaussianMixture(**{**common, "max_iter": 1}).fit(X[:2000])  # warm-up: compile or load numba's cache
        for _ in range(repeats):
            for name, (cls, extra) in contenders.items():  # alternate the libraries
                t0 = time.perf_counter()
                model = cls(**common, **extra).fit(X)
                times[name].append((time.perf_counter() - t0) / n_iter)
                scores[name] = float(model.score(X))
    ours, theirs = _median_ms(times["emkit"]), _median_ms(times["sklearn"])
    ours2 = _median_ms(times["emkit_n_jobs2"])
    return {
        "model": "GaussianMixture",
        "n_samples": n,
        "n_features": d,
        "n_components": k,
        "covariance_type": covariance_type,
        "dtype": np.dtype(dtype).name,
        "n_iter": n_iter,
        "repeats": repeats,
        "emkit_ms_per_iter": ours,
        "emkit_n_jobs2_ms_per_iter": ours2,
        "sklearn_ms_per_iter": theirs,
        "speedup": theirs / ours,
        "speedup_n_jobs2": theirs / ours2,
        "emkit_score": scores["emkit"],
        "emkit_n_jobs2_score": scores["emkit_n_jobs2"],
        "sklearn_score": scores["sklearn"],
        "score_difference": abs(scores["emkit"] - scores["sklearn"]),
    }


def hmm_data(lengths, n_components, n_features, seed=0):
    rng = np.random.RandomState(seed)
    K = n_components
    transmat = 0.8 * np.eye(K) + 0.2 * rng.dirichlet(np.ones(K), size=K)
    means = rng.normal(scale=2.0, size=(K, n_features))
    n = int(np.sum(lengths))
    # states: a Markov chain per sequence (vectorised over sequences by stepping all at once)
    states = np.empty(n, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    cdf = np.cumsum(transmat, axis=1)
    for begin, length in zip(starts, lengths):
        u = rng.uniform(size=length)
        z = rng.randint(K)
        for t in range(length):
            states[begin + t] = z
            z = min(int(np.searchsorted(cdf[z], u[t])), K - 1)
    X = means[states] + rng.normal(size=(n, n_features))
    start = {
        "startprob": np.full(K, 1.0 / K),
        "transmat": rng.dirichlet(np.ones(K) * 5, size=K),
        "means": X[rng.choice(n, K, replace=False)],
        "covars": np.ones((K, n_features)),
    }
    return X, start


def run_hmm(cell, n_iter, repeats):
    from hmmlearn import hmm as hl

    lengths, K, D = cell["lengths"], cell["K"], cell["D"]
    X, start = hmm_data(lengths, K, D)

    def ours():
        return GaussianHMM(K, covariance_type="diag", init_params="", max_iter=n_iter, tol=0.0,
                           startprob_init=start["startprob"], transmat_init=start["transmat"],
                           means_init=start["means"], covars_init=start["covars"])

    def theirs(implementation):
        model = hl.GaussianHMM(K, covariance_type="diag", init_params="", n_iter=n_iter, tol=-np.inf,
                               implementation=implementation)
        model.startprob_, model.transmat_ = start["startprob"].copy(), start["transmat"].copy()
        model.means_, model.covars_ = start["means"].copy(), start["covars"].copy()
        return model

    contenders = {
        "emkit": (ours, lambda m: m.fit(X, lengths=lengths), lambda m: m.score(X, lengths=lengths) * len(X)),
        "hmmlearn_scaling": (lambda: theirs("scaling"), lambda m: m.fit(X, lengths), lambda m: m.score(X, lengths)),
        "hmmlearn_log": (lambda: theirs("log"), lambda m: m.fit(X, lengths), lambda m: m.score(X, lengths)),
    }
    times = {name: [] for name in contenders}
    totals = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours().set_params(max_iter=1).fit(X[:1000])  # warm-up: compile or load numba's cache
        for _ in range(repeats):
            for name, (make, fit, score) in contenders.items():  # alternate the libraries
                model = make()
                t0 = time.perf_counter()
                fit(model)
                times[name].append((time.perf_counter() - t0) / n_iter)
                totals[name] = float(score(model))
    ms = {name: _median_ms(values) for name, values in times.items()}
    return {
        "model": "GaussianHMM",
        "covariance_type": "diag",
        "n_samples": len(X),
        "n_sequences": len(lengths),
        "n_features": D,
        "n_components": K,
        "n_iter": n_iter,
        "repeats": repeats,
        "emkit_ms_per_iter": ms["emkit"],
        "hmmlearn_scaling_ms_per_iter": ms["hmmlearn_scaling"],
        "hmmlearn_log_ms_per_iter": ms["hmmlearn_log"],
        "speedup_vs_scaling": ms["hmmlearn_scaling"] / ms["emkit"],
        "speedup_vs_log": ms["hmmlearn_log"] / ms["emkit"],
        "emkit_total_loglik": totals["emkit"],
        "hmmlearn_scaling_total_loglik": totals["hmmlearn_scaling"],
        "hmmlearn_log_total_loglik": totals["hmmlearn_log"],
        "relative_loglik_difference": abs(totals["emkit"] / totals["hmmlearn_scaling"] - 1.0),
    }


def machine():
    blas = [
        {"api": info["internal_api"], "threads": info["num_threads"], "architecture": info.get("architecture")}
        for info in threadpool_info()
    ]
    import hmmlearn
    import numba
    import scipy
    import sklearn

    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "scikit-learn": sklearn.__version__,
        "hmmlearn": hmmlearn.__version__,
        "threadpools": blas,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gmm-iter", type=int, default=10)
    parser.add_argument("--hmm-iter", type=int, default=5)
    parser.add_argument("--only", choices=["gmm", "hmm"], default=None)
    parser.add_argument("--types", default="full,diag", help="GaussianMixture covariance types, comma-separated")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--cells", default=None, help="indices of the GaussianMixture cells to run (e.g. 0,2)")
    parser.add_argument("--hmm-cells", default=None, help="indices of the GaussianHMM cells to run")
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results", "gaussian_grid.json"))
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="limit BLAS (and OpenMP) threads; default: the machine's default, not limited")
    args = parser.parse_args()
    logging.getLogger("hmmlearn").setLevel(logging.ERROR)
    if args.blas_threads is not None:
        with threadpool_limits(args.blas_threads):
            run_all(args)
    else:
        run_all(args)


def run_all(args):
    info = machine()
    info["blas_threads_limit"] = args.blas_threads
    print(f"# {info['date_utc']} UTC, {info['cpu_count']} cores, load {info['load_average']}, "
          f"python {info['python']}, numpy {info['numpy']}, scikit-learn {info['scikit-learn']}, "
          f"hmmlearn {info['hmmlearn']}")
    limit = "default, not limited" if args.blas_threads is None else f"limited to {args.blas_threads}"
    print(f"# threads ({limit}): " + ", ".join(f"{b['api']}={b['threads']}" for b in info["threadpools"]))
    results = []
    if args.only in (None, "gmm"):
        cells = GMM_CELLS if args.cells is None else [GMM_CELLS[int(i)] for i in args.cells.split(",")]
        print(f"\n## GaussianMixture, {args.gmm_iter} iterations from the same start, ms per iteration "
              f"(median of {args.repeats})")
        print(f"{'n':>8s} {'D':>3s} {'K':>3s} {'type':>9s} {'dtype':>7s} {'sklearn':>9s} {'emkit':>8s} "
              f"{'speed-up':>8s} {'n_jobs=2':>8s} {'speed-up':>8s}  {'score(X) emkit':>18s}  {'|diff|':>8s}")
        for cell in cells:
            for dtype in args.dtypes.split(","):
                for covariance_type in args.types.split(","):
                    r = run_gmm(cell, covariance_type, np.dtype(dtype), args.gmm_iter, args.repeats)
                    results.append(r)
                    print(f"{r['n_samples']:8d} {r['n_features']:3d} {r['n_components']:3d} {covariance_type:>9s} "
                          f"{r['dtype']:>7s} {r['sklearn_ms_per_iter']:9.1f} {r['emkit_ms_per_iter']:8.1f} "
                          f"{r['speedup']:7.2f}x {r['emkit_n_jobs2_ms_per_iter']:8.1f} {r['speedup_n_jobs2']:7.2f}x  "
                          f"{r['emkit_score']:18.12f}  {r['score_difference']:8.1e}",
                          flush=True)
    if args.only in (None, "hmm"):
        cells = HMM_CELLS if args.hmm_cells is None else [HMM_CELLS[int(i)] for i in args.hmm_cells.split(",")]
        print(f"\n## GaussianHMM diag, {args.hmm_iter} iterations from the same start, ms per iteration "
              f"(median of {args.repeats})")
        print(f"{'T':>8s} {'seqs':>5s} {'K':>3s} {'D':>3s} {'log':>9s} {'scaling':>9s} {'emkit':>8s} "
              f"{'vs log':>7s} {'vs scal':>7s}  {'rel. loglik diff':>16s}")
        for cell in cells:
            r = run_hmm(cell, args.hmm_iter, args.repeats)
            results.append(r)
            print(f"{r['n_samples']:8d} {r['n_sequences']:5d} {r['n_components']:3d} {r['n_features']:3d} "
                  f"{r['hmmlearn_log_ms_per_iter']:9.1f} {r['hmmlearn_scaling_ms_per_iter']:9.1f} "
                  f"{r['emkit_ms_per_iter']:8.1f} {r['speedup_vs_log']:6.1f}x {r['speedup_vs_scaling']:6.2f}x  "
                  f"{r['relative_loglik_difference']:16.1e}", flush=True)
    gmm = [r for r in results if r["model"] == "GaussianMixture"]
    for dtype in sorted({r["dtype"] for r in gmm}):
        for key, label in (("speedup", "default n_jobs"), ("speedup_n_jobs2", "n_jobs=2")):
            full = [r[key] for r in gmm if r["covariance_type"] == "full" and r["dtype"] == dtype]
            if full:
                print(f"geometric mean speed-up, full, {dtype}, {label}: {np.exp(np.mean(np.log(full))):.2f}x "
                      f"over {len(full)} cells")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"machine": info, "command": " ".join(sys.argv), "results": results}, f, indent=1)
        print(f"written {args.json}")


if __name__ == "__main__":
    main()
