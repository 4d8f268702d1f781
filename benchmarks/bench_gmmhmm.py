"""GMMHMM: emkit against hmmlearn, in one process, alternating runs (issue 11's goal: >= 3x hmmlearn's scaling).

Run from the repository root (one command, about 10 minutes on 2 cores)::

    PYTHONPATH=. python benchmarks/bench_gmmhmm.py [--repeats 3] [--n-iter 5] [--with-log]
        [--json benchmarks/results/gmmhmm.json]

Workloads: 4 states, 3 Gaussians per state, 4 features (data: Gaussian
clusters around 4 levels), every covariance type, on one sequence of 50,000
steps and on 500 sequences of 100 steps. Both libraries start from the same
explicit parameters (``init_params=""``: weights 1/3, means drawn from the
rows, unit covariances) and run ``--n-iter`` EM iterations (``tol=0`` /
``tol=-inf``); emkit evaluates the objective once more (at the start), which
its time includes. Reported: median seconds per iteration over ``--repeats``
alternating runs, the ratio hmmlearn / emkit (higher: emkit faster) against
hmmlearn's ``implementation="scaling"`` (and ``"log"`` with ``--with-log``),
and the final total log-likelihood of each (they differ: hmmlearn's M-step
takes the scatter about the old means, emkit's is exact EM). BLAS keeps its
default threads; numba's compile is done in a warm-up outside the timings.
"""

import argparse
import json
import logging
import platform
import time
import warnings

import numpy as np
from hmmlearn import hmm as hl

from emkit import GMMHMM

K, M, D = 4, 3, 4
LAYOUTS = {"1 x 50,000": [50_000], "500 x 100": [100] * 500}
COVARIANCE_TYPES = ["diag", "full", "tied", "spherical"]


def workload(lengths, covariance_type, seed=0):
    rng = np.random.RandomState(seed)
    n = sum(lengths)
    X = rng.normal(size=(n, D)) + 2.0 * rng.randint(0, 4, size=(n, 1)) + rng.normal(scale=0.5, size=(n, D))
    start = {
        "startprob_": np.full(K, 1.0 / K),
        "transmat_": rng.dirichlet(np.ones(K) * 5, size=K),
        "weights_": np.full((K, M), 1.0 / M),
        "means_": X[rng.choice(n, K * M, replace=False)].reshape(K, M, D),
        "covars_": {"diag": np.ones((K, M, D)), "full": np.tile(np.eye(D), (K, M, 1, 1)),
                    "tied": np.tile(np.eye(D), (K, 1, 1)), "spherical": np.ones((K, M))}[covariance_type],
    }
    return X, start


def run(X, lengths, start, covariance_type, n_iter, repeats, with_log):
    def ours():
        return GMMHMM(K, n_mix=M, covariance_type=covariance_type, init_params="", max_iter=n_iter, tol=0.0,
                      **{name[:-1] + "_init": value for name, value in start.items()})

    def theirs(implementation):
        model = hl.GMMHMM(K, n_mix=M, covariance_type=covariance_type, init_params="", n_iter=n_iter, tol=-np.inf,
                          implementation=implementation)
        for name, value in start.items():
            setattr(model, name, value)
        return model

    contenders = {"emkit": (ours, lambda m: m.fit(X, lengths=lengths), lambda m: m.score(X, lengths=lengths) * len(X)),
                  "hmmlearn-scaling": (lambda: theirs("scaling"), lambda m: m.fit(X, lengths),
                                       lambda m: m.score(X, lengths))}
    if with_log:
        contenders["hmmlearn-log"] = (lambda: theirs("log"), lambda m: m.fit(X, lengths), lambda m: m.score(X, lengths))
    ours().set_params(max_iter=1).fit(X, lengths=lengths)  # warm-up: numba's compile or cache load
    times = {key: [] for key in contenders}
    logliks = {}
    for _ in range(repeats):
        for key, (make, fit, score) in contenders.items():  # alternate the libraries
            model = make()
            began = time.perf_counter()
            fit(model)
            times[key].append((time.perf_counter() - began) / n_iter)
            logliks[key] = float(score(model))
    return {key: {"s_per_iter": float(np.median(t)), "loglik": logliks[key]} for key, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-iter", type=int, default=5)
    parser.add_argument("--with-log", action="store_true", help="also time hmmlearn's implementation='log'")
    parser.add_argument("--types", default=",".join(COVARIANCE_TYPES))
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args()
    logging.getLogger("hmmlearn").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    header = {"python": platform.python_version(), "machine": platform.processor() or platform.machine(),
              "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "K": K, "n_mix": M, "D": D,
              "n_iter": args.n_iter, "repeats": args.repeats}
    print(json.dumps(header))
    print(f"{'type':10s} {'sequences':>11s} {'emkit s/iter':>12s} {'hl-scal s/iter':>14s} {'ratio':>6s}"
          f"{'  ratio vs log' if args.with_log else ''}   log-likelihood emkit / hmmlearn-scaling")
    results = []
    for covariance_type in args.types.split(","):
        for label, lengths in LAYOUTS.items():
            X, start = workload(lengths, covariance_type)
            med = run(X, lengths, start, covariance_type, args.n_iter, args.repeats, args.with_log)
            ours, scaling = med["emkit"], med["hmmlearn-scaling"]
            line = (f"{covariance_type:10s} {label:>11s} {ours['s_per_iter']:12.4f} {scaling['s_per_iter']:14.4f} "
                    f"{scaling['s_per_iter'] / ours['s_per_iter']:6.1f}")
            if args.with_log:
                line += f" {med['hmmlearn-log']['s_per_iter'] / ours['s_per_iter']:14.1f}"
            print(line + f"   {ours['loglik']:.10g} / {scaling['loglik']:.10g}", flush=True)
            results.append({"covariance_type": covariance_type, "layout": label, **med})
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({**header, "results": results}, handle, indent=1)


if __name__ == "__main__":
    main()
