"""Missing values (NaN) in Gaussian mixtures: the cost of an EM iteration against complete data (issue 11).

Run from the repository root (one command, about 20 minutes on 2 cores)::

    PYTHONPATH=. python benchmarks/bench_missing.py [--repeats 5] [--types full,tied,diag,spherical]
        [--shapes 2:3,2:8,8:3,8:8,16:3,16:8] [--hmm-shapes 8:3,16:3,16:8] [--hmm-types ...]
        [--n 100000] [--blas-threads 1]
        [--json benchmarks/results/missing.json]

Data: n rows from K Gaussian clusters in D dimensions (random centres of scale
3, per-feature scales 0.5 to 1.5); then each entry is missing with probability
0.2, independently (MCAR). Parameters: the planted ones, perturbed (means by
0.3, variances by 20%), so responsibilities are not trivially 0/1.

One EM iteration, as the engine runs it: the rows in blocks of
``gaussian.block_size`` rows, each block's E-step (``mixture_block``: densities,
responsibilities, statistics), the statistics added in order, then
``gaussian.m_step`` and the weights. Timed as CPU time of the process
(``time.process_time``: everything runs on one thread, and CPU time moves less
than wall time when other jobs share the machine), medians of ``--repeats``
runs, the contenders alternating in one process:

- ``complete``: :func:`emkit._densities.gaussian.mixture_block` on the same
  rows *before* the entries were removed (the complete-data fast path);
- ``grouped``: :func:`emkit._densities.gaussian_missing.mixture_block` with the
  incomplete rows of each block sorted by pattern (one factorisation of each
  ``P_mm`` per pattern and block);
- ``per_row``: the same without sorting (one factorisation per run of
  consecutive rows with one pattern: per row, at D=16); diag and spherical
  factorise nothing and never sort, so for them it is ``grouped`` again;
- ``presorted``: ``grouped`` on the rows permuted once by
  :func:`~emkit._densities.gaussian_missing.pattern_order` (what a mixture may
  do at validation; not timed, it is done once per fit);
- ``fit``: what a GaussianMixture fit runs: ``presorted``, each block given
  its :func:`~emkit._densities.gaussian_missing.layout` (where its entries are
  missing, its incomplete rows gathered), made once per fit and not timed.

Reported: ms per iteration and the ratio to ``complete`` (the goal of issue
11: at most 3x at D <= 16).

Second table, GaussianHMM: the whole EM iteration of a real fit (one sequence
of n rows from a sticky 3- or 8-state chain, the same explicit start for the
complete and the incomplete rows; seconds per iteration from the difference
of a 6- and a 1-iteration fit, CPU time, medians of ``--repeats``). An HMM
cannot reorder its rows; it sorts the incomplete rows of each block by
pattern, computes their densities, runs forward-backward, then takes the
statistics from the completed rows it kept (``--hmm-shapes``, ``--hmm-types``).

Third table, the density step alone (log-likelihoods of the incomplete rows
of the first ``--alt-rows`` rows, full covariances), against two numpy
implementations written here: one ``np.linalg`` Cholesky and solve per pattern
(batched over components), and one per row (``np.linalg`` on the stacked
observed blocks of all rows with the same number of observed coordinates).
Both are checked against emkit's values before they are timed.

BLAS: ``--blas-threads N`` limits every BLAS pool to N threads (default 1; the
kernels timed here run on one core, and idle-spinning BLAS threads distort
timings on a shared machine). numba's compile is done in a warm-up outside the
timings.
"""

import argparse
import json
import os
import platform
import sys
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from emkit import GaussianHMM
from emkit._densities import gaussian
from emkit._densities import gaussian_missing as gm

SHAPES = [(2, 3), (2, 8), (8, 3), (8, 8), (16, 3), (16, 8)]  # (D, K)
MISSING = 0.2


def make_problem(n_samples, n_features, n_components, covariance_type, seed=0):
    """Complete rows, the same rows with 20% MCAR holes, and perturbed parameters."""
    rng = np.random.RandomState(seed)
    centres = rng.normal(scale=3.0, size=(n_components, n_features))
    scales = rng.uniform(0.5, 1.5, size=(n_components, n_features))
    labels = rng.randint(n_components, size=n_samples)
    X = centres[labels] + rng.normal(size=(n_samples, n_features)) * scales[labels]
    X_missing = X.copy()
    X_missing[rng.uniform(size=X.shape) < MISSING] = np.nan
    means = centres + 0.3 * rng.normal(size=centres.shape)
    variances = scales**2 * rng.uniform(0.8, 1.2, size=scales.shape)
    if covariance_type == "full":
        mix = np.eye(n_features) + 0.1 * rng.normal(size=(n_components, n_features, n_features))
        covariances = np.einsum("kij,kj,klj->kil", mix, variances, mix)
    elif covariance_type == "tied":
        mix = np.eye(n_features) + 0.1 * rng.normal(size=(n_features, n_features))
        covariances = (mix * variances.mean(axis=0)) @ mix.T
    elif covariance_type == "diag":
        covariances = variances
    else:
        covariances = variances.mean(axis=1)
    weights = np.full(n_components, 1.0 / n_components)
    return X, X_missing, (weights, means, covariances)


def _block_starts(X, means, covariance_type):
    step = gaussian.block_size(means.shape[0], X.shape[1], covariance_type, X.dtype)
    return [(start, start + step) for start in range(0, X.shape[0], step)]


def em_iteration(module, X, params, covariance_type, layouts=None, **options):
    """One E-step over blocks (as the engine splits them) and one M-step; ``layouts``: each block's
    ``gaussian_missing.layout``, made once per fit."""
    weights, means, covariances = params
    prec_chol = gaussian.precisions_cholesky(covariances, covariance_type)
    log_weights = np.log(weights)
    stats, total = None, 0.0
    for i, (start, end) in enumerate(_block_starts(X, means, covariance_type)):
        if layouts is not None:
            options = {**options, "layout": layouts[i]}
        block_stats, block_total = module.mixture_block(
            X[start:end], None, log_weights, means, prec_chol, covariance_type, **options
        )
        stats = block_stats if stats is None else stats.add(block_stats)
        total += block_total
    new_means, new_covariances = gaussian.m_step(stats, means, covariance_type, reg_covar=1e-6)
    return stats.post / stats.post.sum(), new_means, new_covariances, total


def time_em(n_samples, n_features, n_components, covariance_type, repeats):
    X, X_missing, params = make_problem(n_samples, n_features, n_components, covariance_type)
    X_sorted = X_missing[gm.pattern_order(X_missing)]
    n_components = params[1].shape[0]
    layouts = [gm.layout(X_sorted[start:end], n_components, covariance_type)
               for start, end in _block_starts(X_sorted, params[1], covariance_type)]
    contenders = {
        "complete": lambda: em_iteration(gaussian, X, params, covariance_type),
        "grouped": lambda: em_iteration(gm, X_missing, params, covariance_type, group=True),
        "per_row": lambda: em_iteration(gm, X_missing, params, covariance_type, group=False),
        "presorted": lambda: em_iteration(gm, X_sorted, params, covariance_type, group=True),
        "fit": lambda: em_iteration(gm, X_sorted, params, covariance_type, layouts=layouts),
    }
    results = {name: run() for name, run in contenders.items()}  # warm-up (compile or load the cache)
    # the three missing-data variants compute the same iteration
    for name in ("per_row", "presorted", "fit"):
        for a, b in zip(results[name][:3], results["grouped"][:3]):
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(results[name][3], results["grouped"][3], rtol=1e-10)
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            t0 = time.process_time()
            run()
            times[name].append(time.process_time() - t0)
    ms = {name: float(np.median(values) * 1e3) for name, values in times.items()}
    missing = np.isnan(X_missing)
    return {
        "n_samples": n_samples,
        "n_features": n_features,
        "n_components": n_components,
        "covariance_type": covariance_type,
        "missing_fraction": float(missing.mean()),
        "incomplete_rows": float(missing.any(axis=1).mean()),
        "patterns": len(gm.missing_patterns(X_missing).patterns),
        "ms_per_iteration": ms,
        "ratio_to_complete": {name: ms[name] / ms["complete"] for name in ms if name != "complete"},
    }


# ----------------------------------------------------------------------------- GaussianHMM fits
def hmm_problem(n_samples, n_features, n_components, seed=0):
    """One sequence from a sticky chain (runs of 20 steps), its 20%-MCAR copy, and a start near the truth."""
    rng = np.random.RandomState(seed)
    centres = rng.normal(scale=0.5, size=(n_components, n_features))  # overlapping states: EM keeps moving
    states = np.repeat(rng.randint(n_components, size=n_samples // 20 + 1), 20)[:n_samples]
    X = centres[states] + rng.normal(size=(n_samples, n_features)) * rng.uniform(0.5, 1.5, size=n_features)
    X_missing = X.copy()
    X_missing[rng.uniform(size=X.shape) < MISSING] = np.nan
    return X, X_missing, centres + 0.3 * rng.normal(size=centres.shape)


def hmm_fit(X, means, covariance_type, max_iter):
    n_components, n_features = means.shape
    model = GaussianHMM(n_components, covariance_type=covariance_type, init_params="", max_iter=max_iter, tol=0.0)
    model.startprob_ = np.full(n_components, 1.0 / n_components)
    model.transmat_ = np.full((n_components, n_components), 0.05 / (n_components - 1))
    np.fill_diagonal(model.transmat_, 0.95)
    model.means_ = means
    model.covars_ = {"full": np.tile(1.2 * np.eye(n_features), (n_components, 1, 1)), "tied": 1.2 * np.eye(n_features),
                     "diag": np.full((n_components, n_features), 1.2),
                     "spherical": np.full(n_components, 1.2)}[covariance_type]
    t0 = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fixed number of iterations: "did not converge" is expected
        model.fit(X)
    elapsed = time.process_time() - t0
    if model.n_iter_ != max_iter:
        raise RuntimeError(f"the fit stopped after {model.n_iter_} of {max_iter} iterations")
    return elapsed


def time_hmm(n_samples, n_features, n_components, covariance_type, repeats):
    X, X_missing, means = hmm_problem(n_samples, n_features, n_components)
    for data in (X, X_missing):
        hmm_fit(data, means, covariance_type, 1)  # warm-up
    times = {"complete": [], "missing": []}
    for _ in range(repeats):
        for name, data in (("complete", X), ("missing", X_missing)):
            times[name].append((hmm_fit(data, means, covariance_type, 6) - hmm_fit(data, means, covariance_type, 1)) / 5)
    ms = {name: float(np.median(values) * 1e3) for name, values in times.items()}
    return {"n_samples": n_samples, "n_features": n_features, "n_components": n_components,
            "covariance_type": covariance_type, "ms_per_iteration": ms, "ratio": ms["missing"] / ms["complete"]}


# ----------------------------------------------------------------------------- numpy alternatives (densities)
def _full_covariance_stack(covariances, covariance_type, n_components, n_features):
    if covariance_type == "full":
        return covariances
    return np.broadcast_to(covariances, (n_components, n_features, n_features))


def numpy_per_pattern(X, means, covariances):
    """log N(x_o | mu_o, Sigma_oo): one Cholesky per pattern, batched over components."""
    n_samples = X.shape[0]
    n_components = means.shape[0]
    out = np.zeros((n_samples, n_components))
    _, patterns, inverse = gm.missing_patterns(X)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(patterns) + 1))
    for p, pattern in enumerate(patterns):
        rows = order[bounds[p] : bounds[p + 1]]
        seen = np.flatnonzero(~pattern)
        if seen.size == 0:
            continue
        cov = covariances[:, seen[:, None], seen[None, :]]  # (K, o, o)
        low = np.linalg.cholesky(cov)
        diff = X[rows][:, seen][None, :, :] - means[:, None, seen]  # (K, rows, o)
        white = np.linalg.solve(low, np.swapaxes(diff, 1, 2))  # (K, o, rows)
        log_det = np.sum(np.log(np.diagonal(low, axis1=1, axis2=2)), axis=1)
        out[rows] = (-0.5 * np.sum(white**2, axis=1) - log_det[:, None] - 0.5 * seen.size * np.log(2 * np.pi)).T
    return out


def numpy_per_row(X, means, covariances):
    """The same, one Cholesky per row and component: np.linalg on stacked observed blocks of equal size."""
    n_samples = X.shape[0]
    n_components = means.shape[0]
    out = np.zeros((n_samples, n_components))
    seen_mask = ~np.isnan(X)
    counts = seen_mask.sum(axis=1)
    for size in np.unique(counts):
        if size == 0:
            continue
        rows = np.flatnonzero(counts == size)
        seen = np.nonzero(seen_mask[rows])[1].reshape(rows.size, size)  # observed indices, row by row
        cov = covariances[:, seen[:, :, None], seen[:, None, :]]  # (K, rows, s, s)
        low = np.linalg.cholesky(cov)
        values = np.take_along_axis(X[rows], seen, axis=1)  # (rows, s)
        diff = values[None] - means[:, seen]  # (K, rows, s)
        white = np.linalg.solve(low, diff[..., None])[..., 0]
        log_det = np.sum(np.log(np.diagonal(low, axis1=2, axis2=3)), axis=2)  # (K, rows)
        out[rows] = (-0.5 * np.sum(white**2, axis=2) - log_det - 0.5 * size * np.log(2 * np.pi)).T
    return out


def time_densities(n_rows, n_features, n_components, repeats):
    _, X_missing, (_, means, covariances) = make_problem(n_rows, n_features, n_components, "full", seed=1)
    X = X_missing[np.isnan(X_missing).any(axis=1)]
    prec_chol = gaussian.precisions_cholesky(covariances, "full")
    full = _full_covariance_stack(covariances, "full", n_components, n_features)
    contenders = {
        "emkit_grouped": lambda: gm.log_likelihood(X, means, prec_chol, "full", group=True),
        "emkit_per_row": lambda: gm.log_likelihood(X, means, prec_chol, "full", group=False),
        "numpy_per_pattern": lambda: numpy_per_pattern(X, means, full),
        "numpy_per_row": lambda: numpy_per_row(X, means, full),
    }
    reference = contenders["emkit_grouped"]()
    for name, run in contenders.items():
        np.testing.assert_allclose(run(), reference, rtol=1e-9, atol=1e-9)
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            t0 = time.process_time()
            run()
            times[name].append(time.process_time() - t0)
    return {
        "n_rows": int(X.shape[0]),
        "n_features": n_features,
        "n_components": n_components,
        "us_per_row": {name: float(np.median(values) / X.shape[0] * 1e6) for name, values in times.items()},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--types", default="full,tied,diag,spherical")
    parser.add_argument("--alt-rows", type=int, default=20_000)
    parser.add_argument("--blas-threads", type=int, default=1)
    parser.add_argument("--shapes", default=",".join(f"{d}:{k}" for d, k in SHAPES), help="D:K pairs, e.g. 16:3,16:8")
    parser.add_argument("--hmm-shapes", default="8:3,16:3,16:8", help="D:K pairs of the GaussianHMM table")
    parser.add_argument("--hmm-types", default="full,tied,diag,spherical")
    parser.add_argument("--json", default="benchmarks/results/missing.json")
    args = parser.parse_args(argv)
    types = args.types.split(",")
    shapes = [tuple(int(v) for v in pair.split(":")) for pair in args.shapes.split(",")]

    with threadpool_limits(limits=args.blas_threads):
        print(f"n = {args.n}, {MISSING:.0%} of entries missing (MCAR), medians of {args.repeats}, "
              f"BLAS threads {args.blas_threads}, load average {os.getloadavg()[0]:.1f}")
        print(f"{'D':>3} {'K':>3} {'type':9} {'incompl.':>8} {'patterns':>8} | {'complete':>9} {'grouped':>9} "
              f"{'per row':>9} {'presorted':>9} {'fit':>9} | ratios (grouped / per row / presorted / fit)")
        em_rows = []
        for covariance_type in types:
            for n_features, n_components in shapes:
                row = time_em(args.n, n_features, n_components, covariance_type, args.repeats)
                em_rows.append(row)
                ms, ratio = row["ms_per_iteration"], row["ratio_to_complete"]
                print(f"{n_features:3d} {n_components:3d} {covariance_type:9} {row['incomplete_rows']:8.0%} "
                      f"{row['patterns']:8d} | {ms['complete']:9.1f} {ms['grouped']:9.1f} {ms['per_row']:9.1f} "
                      f"{ms['presorted']:9.1f} {ms['fit']:9.1f} | {ratio['grouped']:.2f} / {ratio['per_row']:.2f} / "
                      f"{ratio['presorted']:.2f} / {ratio['fit']:.2f}", flush=True)

        print(f"\nGaussianHMM, one sequence of {args.n} rows, ms per EM iteration (6- minus 1-iteration fit):")
        print(f"{'D':>3} {'K':>3} {'type':9} | {'complete':>9} {'missing':>9} | ratio")
        hmm_rows = []
        hmm_shapes = [tuple(int(v) for v in pair.split(":")) for pair in args.hmm_shapes.split(",") if pair]
        for covariance_type in [t for t in args.hmm_types.split(",") if t]:
            for n_features, n_components in hmm_shapes:
                row = time_hmm(args.n, n_features, n_components, covariance_type, args.repeats)
                hmm_rows.append(row)
                ms = row["ms_per_iteration"]
                print(f"{n_features:3d} {n_components:3d} {covariance_type:9} | {ms['complete']:9.1f} "
                      f"{ms['missing']:9.1f} | {row['ratio']:.2f}", flush=True)

        print(f"\nDensities of the incomplete rows among {args.alt_rows} (full covariances), us per row:")
        print(f"{'D':>3} {'K':>3} | {'emkit grouped':>13} {'emkit per row':>13} {'numpy/pattern':>13} "
              f"{'numpy/row':>13}")
        density_rows = []
        for n_features, n_components in shapes:
            row = time_densities(args.alt_rows, n_features, n_components, max(3, args.repeats // 2))
            density_rows.append(row)
            us = row["us_per_row"]
            print(f"{n_features:3d} {n_components:3d} | {us['emkit_grouped']:13.2f} {us['emkit_per_row']:13.2f} "
                  f"{us['numpy_per_pattern']:13.2f} {us['numpy_per_row']:13.2f}", flush=True)
        pools = threadpool_info()

    record = {
        "command": "PYTHONPATH=. python " + " ".join(["benchmarks/bench_missing.py", *(argv or sys.argv[1:])]),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "numpy": np.__version__},
        "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "load_average": os.getloadavg(),
        "blas_threads": args.blas_threads,
        "thread_pools": pools,
        "em_iteration": em_rows,
        "hmm_iteration": hmm_rows,
        "densities": density_rows,
    }
    if args.json:
        os.makedirs(os.path.dirname(args.json), exist_ok=True)
        with open(args.json, "w") as handle:
            json.dump(record, handle, indent=1)
        print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    main()
