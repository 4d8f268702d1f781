"""emkit's HMMs against hmmlearn's, in one process, alternating runs.

Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_hmm.py [--repeats 5] [--cpu]

Workloads (all from the same explicit start, nothing initialised, so every
library does the same arithmetic):

- GaussianHMM, 8 states, 4-dim diag emissions, one sequence of 100,000 steps;
- the same on 1,000 sequences of 100 steps;
- CategoricalHMM, 6 states, 20 symbols, one sequence of 200,000 steps.

``--grid`` runs instead a grid of state counts (K = 2, 3, 4, 8, 20, 50; the
same diag GaussianHMM, D = 4) on one sequence of 20,000 steps and on 200
sequences of 100, with ``--grid-iter`` EM iterations (default 5), and prints
one table of times and ratios.

Each: 10 EM iterations (``max_iter=10, tol=0`` / ``n_iter=10``), one ``score``
and one ``predict``. emkit evaluates the objective once more than hmmlearn
(at the start and after every M-step), which the per-iteration figure
includes. hmmlearn is timed with both its implementations: ``"log"`` (its
default) and ``"scaling"``. Medians over repeats; ratios are hmmlearn / emkit
(higher means emkit is faster). The log-likelihoods after fitting are printed
to show that all three reach the same value.
"""

import argparse
import logging
import platform
import time
import warnings

import numpy as np
from hmmlearn import hmm as hl

from emkit.hmm import CategoricalHMM, GaussianHMM

N_ITER = 10


def _chain(K, rng):
    startprob = rng.dirichlet(np.ones(K))
    transmat = 0.8 * np.eye(K) + 0.2 * rng.dirichlet(np.ones(K), size=K)
    return startprob, transmat


def _sample_states(startprob, transmat, n, rng):
    cdf = np.cumsum(transmat, axis=1)
    u = rng.uniform(size=n)
    z = np.empty(n, dtype=np.int64)
    z[0] = np.searchsorted(np.cumsum(startprob), u[0])
    for t in range(1, n):
        z[t] = min(np.searchsorted(cdf[z[t - 1]], u[t]), len(startprob) - 1)
    return z


def gaussian_workload(lengths, seed=0, K=8):
    rng = np.random.RandomState(seed)
    D = 4
    sp, tm = _chain(K, rng)
    means = rng.normal(scale=2.0, size=(K, D))
    X = np.concatenate([rng.normal(size=(n, D)) + means[_sample_states(sp, tm, n, rng)] for n in lengths])
    start = dict(
        startprob=np.full(K, 1.0 / K),
        transmat=rng.dirichlet(np.ones(K) * 5, size=K),
        means=X[rng.choice(len(X), K, replace=False)],
        covars=np.ones((K, D)),
    )

    def ours():
        return GaussianHMM(K, covariance_type="diag", init_params="", max_iter=N_ITER, tol=0.0,
                           startprob_init=start["startprob"], transmat_init=start["transmat"],
                           means_init=start["means"], covars_init=start["covars"])

    def theirs(impl):
        model = hl.GaussianHMM(K, covariance_type="diag", init_params="", n_iter=N_ITER, tol=-np.inf,
                               implementation=impl)
        model.startprob_, model.transmat_ = start["startprob"], start["transmat"]
        model.means_, model.covars_ = start["means"], start["covars"]
        return model

    return X, list(lengths), ours, theirs


def categorical_workload(n_steps=200_000, seed=1):
    rng = np.random.RandomState(seed)
    K, M = 6, 20
    sp, tm = _chain(K, rng)
    B = rng.dirichlet(np.ones(M) * 0.5, size=K)
    z = _sample_states(sp, tm, n_steps, rng)
    cdf = np.cumsum(B, axis=1)
    u = rng.uniform(size=n_steps)
    X = np.minimum((u[:, None] > cdf[z]).sum(axis=1), M - 1)[:, None]
    start = dict(startprob=np.full(K, 1.0 / K), transmat=rng.dirichlet(np.ones(K) * 5, size=K),
                 emissionprob=rng.dirichlet(np.ones(M) * 5, size=K))

    def ours():
        return CategoricalHMM(K, init_params="", max_iter=N_ITER, tol=0.0, startprob_init=start["startprob"],
                              transmat_init=start["transmat"], emissionprob_init=start["emissionprob"])

    def theirs(impl):
        model = hl.CategoricalHMM(K, init_params="", n_iter=N_ITER, tol=-np.inf, implementation=impl)
        model.startprob_, model.transmat_, model.emissionprob_ = start["startprob"], start["transmat"], start["emissionprob"]
        return model

    return X, [n_steps], ours, theirs


def _time(fn, cpu):
    clock = time.process_time if cpu else time.perf_counter
    t0 = clock()
    out = fn()
    return clock() - t0, out


def run(name, workload, repeats, cpu=False, quiet=False):
    X, lengths, ours, theirs = workload
    contenders = {
        "emkit": (ours, lambda m: m.fit(X, lengths=lengths), lambda m: m.score(X, lengths=lengths) * len(X),
                  lambda m: m.predict(X, lengths=lengths)),
        "hmmlearn-log": (lambda: theirs("log"), lambda m: m.fit(X, lengths), lambda m: m.score(X, lengths),
                         lambda m: m.predict(X, lengths)),
        "hmmlearn-scaling": (lambda: theirs("scaling"), lambda m: m.fit(X, lengths), lambda m: m.score(X, lengths),
                             lambda m: m.predict(X, lengths)),
    }
    times = {key: {"fit": [], "score": [], "predict": []} for key in contenders}
    logliks = {}
    # warm-up (numba cache load / compile) outside the timings
    warm = ours()
    warm.set_params(max_iter=1).fit(X)
    warm.score(X, lengths=lengths)
    warm.predict(X, lengths=lengths)
    for _ in range(repeats):
        for key, (make, fit, score, predict) in contenders.items():  # alternate the libraries
            model = make()
            t_fit, _ = _time(lambda: fit(model), cpu)
            t_score, total = _time(lambda: score(model), cpu)
            t_pred, _ = _time(lambda: predict(model), cpu)
            times[key]["fit"].append(t_fit / N_ITER)
            times[key]["score"].append(t_score)
            times[key]["predict"].append(t_pred)
            logliks[key] = total
    med = {key: {k: float(np.median(v)) for k, v in t.items()} for key, t in times.items()}
    med["loglik_rel_diff"] = abs(logliks["emkit"] - logliks["hmmlearn-log"]) / abs(logliks["hmmlearn-log"])
    if quiet:
        return med
    clock = "CPU time of the process" if cpu else "wall time"
    print(f"\n## {name}  (n_samples={len(X)}, n_sequences={len(lengths)}, {repeats} repeats, medians of {clock})")
    print(f"{'':18s} {'s/iter':>9s} {'score s':>9s} {'predict s':>9s}   log-likelihood after fit")
    for key in contenders:
        m = med[key]
        print(f"{key:18s} {m['fit']:9.4f} {m['score']:9.4f} {m['predict']:9.4f}   {logliks[key]:.10g}")
    for ref in ("hmmlearn-log", "hmmlearn-scaling"):
        r = {k: med[ref][k] / med["emkit"][k] for k in ("fit", "score", "predict")}
        print(f"ratio {ref} / emkit: per iteration {r['fit']:.1f}x, score {r['score']:.1f}x, "
              f"predict {r['predict']:.1f}x")
    rel = abs(logliks["emkit"] - logliks["hmmlearn-log"]) / abs(logliks["hmmlearn-log"])
    print(f"relative log-likelihood difference emkit vs hmmlearn-log: {rel:.2e}")
    return med


def grid(repeats, cpu, n_iter):
    """K = 2 .. 50 on one long sequence and on many short ones; one line per shape."""
    global N_ITER
    N_ITER = n_iter
    print(f"\n## grid: GaussianHMM diag, D=4, {n_iter} EM iterations, {repeats} repeats, medians "
          f"({'CPU time' if cpu else 'wall time'}); ratio = hmmlearn-scaling / emkit (higher: emkit faster)")
    print(f"{'K':>3s} {'sequences':>12s} {'emkit s/iter':>12s} {'hl-scal s/iter':>14s} {'ratio':>6s} "
          f"{'score ratio':>11s} {'predict ratio':>13s} {'ratio vs hl-log':>15s} {'rel. loglik diff':>16s}")
    for K in (2, 3, 4, 8, 20, 50):
        for label, lengths in (("1 x 20,000", [20_000]), ("200 x 100", [100] * 200)):
            med = run("", gaussian_workload(lengths, seed=K, K=K), repeats, cpu, quiet=True)
            ours, scal, log = med["emkit"], med["hmmlearn-scaling"], med["hmmlearn-log"]
            print(f"{K:3d} {label:>12s} {ours['fit']:12.5f} {scal['fit']:14.5f} {scal['fit'] / ours['fit']:6.2f} "
                  f"{scal['score'] / ours['score']:11.2f} {scal['predict'] / ours['predict']:13.2f} "
                  f"{log['fit'] / ours['fit']:15.2f} {med['loglik_rel_diff']:16.1e}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpu", action="store_true",
                        help="time with the process's CPU time instead of wall time (steadier on a busy machine)")
    parser.add_argument("--grid", action="store_true", help="the grid of state counts and shapes instead")
    parser.add_argument("--grid-iter", type=int, default=5, help="EM iterations per fit in the grid")
    args = parser.parse_args()
    logging.getLogger("hmmlearn").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    print(f"python {platform.python_version()}, {platform.processor() or platform.machine()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    if args.grid:
        grid(args.repeats, args.cpu, args.grid_iter)
        return
    run("GaussianHMM diag, K=8, D=4, one sequence of 100,000", gaussian_workload([100_000]), args.repeats, args.cpu)
    run("GaussianHMM diag, K=8, D=4, 1,000 sequences of 100", gaussian_workload([100] * 1000), args.repeats,
        args.cpu)
    run("CategoricalHMM, K=6, 20 symbols, one sequence of 200,000", categorical_workload(), args.repeats, args.cpu)


if __name__ == "__main__":
    main()
