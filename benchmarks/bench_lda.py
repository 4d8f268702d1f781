"""LatentDirichletAllocation: emkit vs scikit-learn (batch and online) and gensim (online), seed by seed.

Corpus (issue 14): documents sampled from the LDA generative model, 20 planted
topics ``beta_k ~ Dirichlet(0.05)`` over a 5,000-word vocabulary, mixtures
``theta_d ~ Dirichlet(0.1)``, lengths ``Poisson(150)``; 5,000 documents, the
first 4,000 for training and the last 1,000 held out. The corpus is fixed
(seed 0); the fits vary with the seed.

For every seed ``s`` (0, 1, ...) and every mode:

- scikit-learn: ``LatentDirichletAllocation(20, learning_method=mode, max_iter=10,
  random_state=s)`` (online: ``batch_size=128``, ``learning_decay=0.7``,
  ``learning_offset=10``, its defaults). Its starting topics are the first draw
  of ``RandomState(s)``: ``gamma(100, 0.01, (20, 5000))``.
- emkit: the same constructor arguments plus ``components_init`` = that same
  draw, so both start from the same topics and differ only in their random
  document starts (each library draws its own). This is the public-API
  comparison; it is paired (same start) but the document starts still differ.
- emkit, scikit-learn's document starts ("emkit (same draws)"): emkit's private
  stream of random document starts is replaced by scikit-learn's
  ``RandomState(s)`` stream, so both see identical random numbers. Its
  difference to scikit-learn is the algorithmic difference alone (topic skipping
  in the E-step, the batch ELBO floor); its time is not reported (the same fit).
  Only with ``--n-jobs 1``: scikit-learn's parallel E-step hands each worker a
  copy of its random state, so its stream is another one then.
- gensim (online only, a reference): ``LdaModel`` with ``chunksize=128``,
  ``passes=10``, ``update_every=1``, ``decay=0.7``, ``offset=10``,
  ``iterations=100``, ``gamma_threshold=1e-3``, ``alpha="symmetric"`` (1/20),
  ``eta=1/20``, ``eval_every=None``, float64, ``random_state=s``, its
  ``state.sstats`` set to the shared start minus eta. (gensim's step size is
  ``(offset + pass + updates/chunksize) ** -decay``, not scikit-learn's.)

Measured per fit: CPU time (``time.process_time``, this process's threads;
with ``--n-jobs`` above 1 it misses scikit-learn's worker processes, so the
speed goal is then checked on wall time) and wall time, held-out perplexity (emkit's ``perplexity`` of the fitted topics on
the 1,000 held-out documents, equal to scikit-learn's to 1e-9), and planted
topics recovered (cosine similarity > 0.9 after one-to-one matching with
``scipy.optimize.linear_sum_assignment``). Libraries alternate within a seed so
that load changes hit all of them; BLAS is limited to ``--n-jobs`` threads.

Summary per mode: mean perplexity and topics recovered (with standard errors),
paired differences to scikit-learn seed by seed (mean, its standard error, in %
of scikit-learn's mean), median times and the speed-up (scikit-learn's median
time over emkit's, and the median of the per-seed ratios), and issue 14's goal:
perplexity difference <= 1% of scikit-learn's mean + one standard error, topics
recovered no fewer on average, at least 5x faster.

``--ablation`` measures instead what each part of emkit's algorithm does
(issue 14's suspects), seed by seed against scikit-learn and against emkit's
default, whose random document starts every variant shares: no topic skipping,
no batch ELBO floor, warm document starts (from the start, or after 3 or 6
passes), document starts at gamma = 1 or from Gamma(10, 0.1),
``max_doc_update_iter=1000``, ``mean_change_tol=1e-4``; in online mode topic
skipping off and document starts drawn by numpy's exact ``Gamma(100, 0.01)``
sampler from a third stream (neither emkit's nor scikit-learn's): how far other
random numbers alone move the results.

Run: ``python benchmarks/bench_lda.py`` (24 seeds, about 25 minutes on a quiet
2-core machine), ``--quick`` for a smoke run (2 seeds, a small corpus),
``--seeds N``, ``--modes batch``, ``--no-gensim``, ``--json results.json``,
``--ablation``.
"""

import argparse
import json
import logging
import platform
import time
from unittest import mock

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from threadpoolctl import threadpool_limits


def make_corpus(n_docs, n_words, n_topics, doc_length, doc_topic_prior=0.1, topic_word_prior=0.05, seed=0):
    """Documents from the LDA generative model; returns (counts as CSR float64, planted topics)."""
    rng = np.random.RandomState(seed)
    topics = rng.dirichlet(np.full(n_words, topic_word_prior), n_topics)
    mixtures = rng.dirichlet(np.full(n_topics, doc_topic_prior), n_docs)
    lengths = rng.poisson(doc_length, n_docs)
    rows = [rng.multinomial(length, mixture @ topics) for length, mixture in zip(lengths, mixtures)]
    return sp.csr_matrix(np.vstack(rows).astype(np.float64)), topics


def topics_recovered(components, topics, threshold=0.9):
    """Planted topics matched one to one by a fitted topic with cosine similarity above ``threshold``."""
    fitted = components / np.linalg.norm(components, axis=1, keepdims=True)
    planted = topics / np.linalg.norm(topics, axis=1, keepdims=True)
    cosine = fitted @ planted.T
    rows, cols = linear_sum_assignment(-cosine)
    return int(np.sum(cosine[rows, cols] > threshold))


def heldout_perplexity(components, X_test):
    """Perplexity of X_test under fixed topics (documents inferred from gamma = 1, as scikit-learn)."""
    from emkit import LatentDirichletAllocation

    evaluator = LatentDirichletAllocation(components.shape[0], max_iter=0, components_init=components)
    evaluator.fit(X_test[:1])  # max_iter=0: keeps components as given
    return float(evaluator.perplexity(X_test))


def sklearn_start(seed, n_topics, n_words):
    """scikit-learn's starting topics for ``random_state=seed``: the first draw of ``RandomState(seed)``."""
    return np.random.RandomState(seed).gamma(100.0, 0.01, (n_topics, n_words))


def sklearn_stream(seed, n_topics, n_words):
    """scikit-learn's stream of random document starts for ``random_state=seed`` (after its starting topics)."""
    stream = np.random.RandomState(seed)
    stream.gamma(100.0, 0.01, (n_topics, n_words))
    return stream


def online_params(mode):
    return {"learning_method": mode, "batch_size": 128, "learning_decay": 0.7, "learning_offset": 10.0}


def fit_sklearn(X, mode, seed, args):
    from sklearn.decomposition import LatentDirichletAllocation

    model = LatentDirichletAllocation(
        args.n_topics, max_iter=args.n_iter, random_state=seed, n_jobs=args.n_jobs, **online_params(mode)
    )
    return model.fit(X).components_


def fit_emkit(X, mode, seed, args, same_draws=False, stream_offset=None):
    from emkit import LatentDirichletAllocation

    model = LatentDirichletAllocation(
        args.n_topics, max_iter=args.n_iter, random_state=seed, n_jobs=args.n_jobs,
        components_init=sklearn_start(seed, args.n_topics, X.shape[1]), **online_params(mode),
    )
    if not same_draws:
        return model.fit(X).components_
    # scikit-learn's random document starts; with stream_offset, the same sampler and order of draws
    # from another RandomState (seed + offset): scikit-learn's algorithm with other random numbers
    if stream_offset is None:
        stream = sklearn_stream(seed, args.n_topics, X.shape[1])
    else:
        stream = np.random.RandomState(seed + stream_offset)
    starts = staticmethod(lambda *_: _StreamStarts(stream, X.shape[0]))
    with mock.patch.object(LatentDirichletAllocation, "_fresh_starts", starts):
        return model.fit(X).components_


def fit_gensim(corpus, n_words, mode, seed, args):
    from gensim.models import LdaModel

    eta = 1.0 / args.n_topics
    settings = {
        "chunksize": 128, "passes": args.n_iter, "update_every": 1, "decay": 0.7, "offset": 10.0, "iterations": 100,
        "gamma_threshold": 1e-3, "eval_every": None,
    }
    model = LdaModel(
        num_topics=args.n_topics, id2word={i: str(i) for i in range(n_words)}, alpha="symmetric", eta=eta,
        random_state=seed, dtype=np.float64, **settings,
    )  # no corpus yet: nothing is trained here
    model.state.sstats[...] = sklearn_start(seed, args.n_topics, n_words) - eta
    model.sync_state()
    model.update(corpus, **settings)
    return model.state.get_lambda()


class _StreamStarts:
    """Document starts drawn from a numpy stream for all documents of an E-step (or pass) at once.

    With scikit-learn's own stream this is exactly what scikit-learn draws (it draws for all documents of a
    batch E-step at once, and online for one mini-batch after the other: the same numbers).
    """

    def __init__(self, stream, n_documents, shape=100.0, scale=0.01):
        self.stream, self.n_documents, self.shape, self.scale, self.draws = stream, n_documents, shape, scale, None

    def rows(self, first, last, n_topics):
        if self.draws is None:
            self.draws = self.stream.gamma(self.shape, self.scale, (self.n_documents, n_topics))
        return self.draws[first:last]


class _ConstantStarts:
    """Every document starts at gamma = 1."""

    def rows(self, first, last, n_topics):
        return np.ones((last - first, n_topics))


def _noisier_starts(n_documents):
    """Starts from Gamma(10, 0.1) (coefficient of variation 0.32 instead of 0.1), one stream per E-step."""
    return staticmethod(
        lambda seed, n_batch_iter: _StreamStarts(np.random.default_rng([seed, n_batch_iter]), n_documents, 10.0, 0.1)
    )


def _numpy_starts(n_documents):
    """numpy's exact Gamma(100, 0.01) starts from a third stream (neither emkit's nor scikit-learn's), per E-step."""
    return staticmethod(
        lambda seed, n_batch_iter: _StreamStarts(np.random.default_rng([seed, n_batch_iter, 100]), n_documents)
    )


def _without_floor(self, run, params, previous, fresh, floor, margin, executor):
    """The restarts kept even when their total falls below the floor (scikit-learn's batch E-step)."""
    from emkit.lda import _BlockState

    return run(self._context(params, "evaluate"), [_BlockState(b.doc_topic, None) for b in executor.fetch(fresh)])


def _warm_after(after):
    """A batch E-step that continues every document from its previous gamma once ``n_batch_iter_`` passes ``after``."""
    from emkit import LatentDirichletAllocation

    original = LatentDirichletAllocation._e_step

    def e_step(self, data, params, state, executor):
        if state.blocks is None or params["n_batch_iter_"] <= after:
            return original(self, data, params, state, executor)
        context = self._context(params, "warm")
        results = executor.map(self._e_step_block, data.blocks, [context] * len(data.blocks),
                               [(b, None) for b in state.blocks])
        documents = sum(float(r.objective) for r in results)
        stats = results[0].stats
        for r in results[1:]:
            stats = stats.add(r.stats)
        topic_term = self._log_prior(data, params)
        return stats, documents, state._replace(blocks=[r.state for r in results], objective=documents + topic_term)

    return e_step


def ablation_variants(mode, n_documents):
    """(name, constructor overrides, patches) for each variant of emkit's algorithm."""
    from emkit import LatentDirichletAllocation as LDA

    def patch(name, value):
        return mock.patch.object(LDA, name, value)

    if mode == "online":
        return [
            ("emkit", {}, []),
            ("no topic skipping", {}, [patch("_prune", False)]),
            ("starts from numpy's Gamma", {}, [patch("_fresh_starts", _numpy_starts(n_documents))]),
        ]
    return [
        ("emkit", {}, []),
        ("no topic skipping", {}, [patch("_prune", False)]),
        ("no ELBO floor", {}, [patch("_fall_back", _without_floor)]),
        ("warm starts", {}, [patch("_e_step", _warm_after(0))]),
        ("warm after 3 passes", {}, [patch("_e_step", _warm_after(4))]),
        ("warm after 6 passes", {}, [patch("_e_step", _warm_after(7))]),
        ("starts at gamma = 1", {}, [patch("_fresh_starts", staticmethod(lambda *_: _ConstantStarts()))]),
        ("starts Gamma(10, 0.1)", {}, [patch("_fresh_starts", _noisier_starts(n_documents))]),
        ("max_doc_update_iter=1000", {"max_doc_update_iter": 1000}, []),
        ("mean_change_tol=1e-4", {"mean_change_tol": 1e-4}, []),
    ]


def run_ablation(X_train, X_test, topics, args):
    """Each variant seed by seed; differences to scikit-learn and to emkit's default (same random starts)."""
    from emkit import LatentDirichletAllocation

    for mode in args.modes:
        variants = ablation_variants(mode, X_train.shape[0])
        results = {name: {"perplexity": [], "recovered": [], "cpu": []} for name in ["scikit-learn"] + [
            v[0] for v in variants]}
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            components, cpu, _ = timed(fit_sklearn, X_train, mode, seed, args)
            runs = [("scikit-learn", components, cpu)]
            for name, overrides, patches in variants:
                model = LatentDirichletAllocation(
                    args.n_topics, max_iter=args.n_iter, random_state=seed, n_jobs=args.n_jobs,
                    components_init=sklearn_start(seed, args.n_topics, X_train.shape[1]), **online_params(mode),
                    **overrides,
                )
                for active in patches:
                    active.start()
                try:
                    components, cpu, _ = timed(lambda model: model.fit(X_train).components_, model)
                finally:
                    for active in reversed(patches):
                        active.stop()
                runs.append((name, components, cpu))
            for name, components, cpu in runs:
                results[name]["perplexity"].append(heldout_perplexity(components, X_test))
                results[name]["recovered"].append(topics_recovered(components, topics))
                results[name]["cpu"].append(cpu)
            print(f"  {mode} seed {seed}: " + ", ".join(
                f"{name} {results[name]['perplexity'][-1]:.1f}/{results[name]['recovered'][-1]}" for name in results
            ), flush=True)
        n = args.seeds
        print(f"\nablation, {mode} ({n} seeds, {args.n_iter} passes); differences are paired, seed by seed (± SE):")
        print(
            f"  {'variant':<26} {'perplexity':>10} {'vs scikit-learn':>20} {'vs emkit':>20} "
            f"{'recovered':>9} {'vs sklearn':>12} {'vs emkit':>12} {'cpu s':>7}"
        )
        base = {key: np.array(results["emkit"][key], dtype=float) for key in ("perplexity", "recovered")}
        ref = {key: np.array(results["scikit-learn"][key], dtype=float) for key in ("perplexity", "recovered")}

        def paired(values, other):
            diff = values - other
            return f"{diff.mean():+8.1f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):6.1f}"

        def paired_count(values, other):
            diff = values - other
            return f"{diff.mean():+5.2f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):4.2f}"

        for name, rows in results.items():
            perp, rec = np.array(rows["perplexity"]), np.array(rows["recovered"], dtype=float)
            print(
                f"  {name:<26} {perp.mean():10.1f} {paired(perp, ref['perplexity']):>20} "
                f"{paired(perp, base['perplexity']):>20} {rec.mean():9.2f} {paired_count(rec, ref['recovered']):>12} "
                f"{paired_count(rec, base['recovered']):>12} {np.median(rows['cpu']):7.2f}"
            )


def timed(function, *args):
    """``function(*args)``, its CPU time (this process) and its wall time."""
    cpu, wall = time.process_time(), time.perf_counter()
    components = function(*args)
    return components, time.process_time() - cpu, time.perf_counter() - wall


def summarize(mode, results, args):
    """Print the per-library and paired statistics of one mode; return them as a dict."""
    reference = results["scikit-learn"]
    n = len(reference["perplexity"])
    ref_perp = np.array(reference["perplexity"])
    ref_rec = np.array(reference["recovered"], dtype=float)
    summary = {}
    print(f"\n{mode} ({n} seeds, {args.n_iter} passes, n_jobs={args.n_jobs}):")
    header = (
        f"  {'library':<26} {'perplexity':>17} {'recovered':>12} {'d perplexity (paired)':>28} "
        f"{'d recovered':>13} {'cpu s':>7} {'wall s':>7} {'speed-up cpu':>13} {'wall':>6}"
    )
    print(header)
    for name, rows in results.items():
        perp = np.array(rows["perplexity"])
        rec = np.array(rows["recovered"], dtype=float)
        entry = {
            "perplexity_mean": perp.mean(), "perplexity_se": perp.std(ddof=1) / np.sqrt(n),
            "recovered_mean": rec.mean(), "recovered_se": rec.std(ddof=1) / np.sqrt(n),
        }
        line = (
            f"  {name:<26} {perp.mean():9.1f} ± {entry['perplexity_se']:5.1f} "
            f"{rec.mean():6.2f} ± {entry['recovered_se']:3.2f}"
        )
        if name == "scikit-learn":
            line += f" {'':>28} {'':>13}"
        else:
            diff, diff_rec = perp - ref_perp, rec - ref_rec
            se, se_rec = diff.std(ddof=1) / np.sqrt(n), diff_rec.std(ddof=1) / np.sqrt(n)
            entry.update(
                perplexity_diff=diff.mean(), perplexity_diff_se=se,
                perplexity_diff_pct=100 * diff.mean() / ref_perp.mean(),
                recovered_diff=diff_rec.mean(), recovered_diff_se=se_rec,
            )
            line += (
                f" {diff.mean():+8.1f} ± {se:5.1f} ({entry['perplexity_diff_pct']:+5.2f}%) "
                f"{diff_rec.mean():+6.2f} ± {se_rec:3.2f}"
            )
        if rows["cpu"]:
            cpu, wall = np.median(rows["cpu"]), np.median(rows["wall"])
            entry.update(cpu_median=cpu, wall_median=wall)
            line += f" {cpu:7.2f} {wall:7.2f}"
            if name != "scikit-learn":
                ratio_cpu = np.median(reference["cpu"]) / cpu
                ratio_wall = np.median(reference["wall"]) / wall
                per_seed = np.median(np.array(reference["cpu"]) / np.array(rows["cpu"]))
                entry.update(speedup_cpu=ratio_cpu, speedup_wall=ratio_wall, speedup_cpu_per_seed_median=per_seed)
                line += f" {ratio_cpu:12.2f}x {ratio_wall:5.2f}x"
        summary[name] = entry
        print(line)
    ours = summary["emkit"]
    perp_ok = ours["perplexity_diff"] <= 0.01 * ref_perp.mean() + ours["perplexity_diff_se"]
    rec_ok = ours["recovered_diff"] >= 0
    # with n_jobs > 1 scikit-learn works in other processes, which this process's CPU time misses
    speed_ok = ours["speedup_wall"] >= 5 and (ours["speedup_cpu"] >= 5 or args.n_jobs != 1)
    print(
        f"  issue 14 goal: perplexity diff {ours['perplexity_diff']:+.1f} <= 1% + 1 SE = "
        f"{0.01 * ref_perp.mean() + ours['perplexity_diff_se']:.1f}: {'yes' if perp_ok else 'NO'}; "
        f"recovered diff {ours['recovered_diff']:+.2f} >= 0: {'yes' if rec_ok else 'NO'} "
        f"(standard error {ours['recovered_diff_se']:.2f}); >= 5x faster "
        f"({'cpu and wall' if args.n_jobs == 1 else 'wall'}): {'yes' if speed_ok else 'NO'}"
    )
    summary["goal"] = {"perplexity": bool(perp_ok), "recovered": bool(rec_ok), "speed": bool(speed_ok)}
    others = [name for name in results if "stream +" in name]
    if others:  # scikit-learn's algorithm averaged over other random streams, against emkit and scikit-learn
        def paired(values, base):
            d = np.asarray(values, dtype=float) - base
            return d.mean(), d.std(ddof=1) / np.sqrt(n)

        for key in ("recovered", "perplexity"):
            mean_other = np.mean([np.asarray(results[name][key], dtype=float) for name in others], axis=0)
            ours_d = paired(results["emkit"][key], mean_other)
            theirs_d = paired(reference[key], mean_other)
            summary[f"other_streams_{key}"] = {
                "mean": mean_other.mean(), "emkit_minus": ours_d, "sklearn_own_minus": theirs_d,
            }
            print(
                f"  {key}, scikit-learn's algorithm over {len(others)} other streams: {mean_other.mean():.3f}; "
                f"emkit minus that {ours_d[0]:+.3f} ± {ours_d[1]:.3f}, "
                f"scikit-learn's own stream minus that {theirs_d[0]:+.3f} ± {theirs_d[1]:.3f}"
            )
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=24, help="number of seeds (first-seed, first-seed + 1, ...)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed (to extend an earlier run)")
    parser.add_argument("--modes", nargs="+", default=["batch", "online"], choices=["batch", "online"])
    parser.add_argument("--n-docs", type=int, default=5000, help="documents in all (the last --n-heldout held out)")
    parser.add_argument("--n-heldout", type=int, default=1000)
    parser.add_argument("--n-words", type=int, default=5000)
    parser.add_argument("--n-topics", type=int, default=20)
    parser.add_argument("--doc-length", type=int, default=150)
    parser.add_argument("--n-iter", type=int, default=10, help="passes (max_iter)")
    parser.add_argument("--n-jobs", type=int, default=1, help="n_jobs of emkit and scikit-learn, and BLAS threads")
    parser.add_argument("--no-gensim", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 seeds, 1,200 documents, 3 passes")
    parser.add_argument("--json", help="write every fit's numbers and the summaries to this file")
    parser.add_argument("--ablation", action="store_true", help="measure the variants of emkit's algorithm instead")
    parser.add_argument(
        "--other-streams", type=int, nargs="*", default=[], metavar="OFFSET",
        help="also fit emkit fed scikit-learn's document starts drawn from RandomState(seed + OFFSET) instead of "
             "scikit-learn's own stream (scikit-learn's algorithm with other random numbers, as 'same draws' "
             "shows), one run per offset; not timed",
    )
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.n_docs, args.n_heldout, args.n_words, args.n_topics, args.n_iter = 2, 1200, 200, 1000, 10, 3
    logging.getLogger("gensim").setLevel(logging.WARNING)

    X, topics = make_corpus(args.n_docs, args.n_words, args.n_topics, args.doc_length)
    X_train, X_test = X[: args.n_docs - args.n_heldout], X[args.n_docs - args.n_heldout :]
    print(
        f"LDA benchmark: {X_train.shape[0]} training and {X_test.shape[0]} held-out documents, "
        f"{args.n_words}-word vocabulary, {args.n_topics} planted topics, {X.sum() / X.shape[0]:.1f} words/document "
        f"({X.nnz / X.shape[0]:.1f} distinct); {args.n_iter} passes; "
        f"seeds {args.first_seed}..{args.first_seed + args.seeds - 1}; "
        f"n_jobs={args.n_jobs}; {platform.processor() or platform.machine()}"
    )
    from sklearn.decomposition import LatentDirichletAllocation as SklearnLDA

    from emkit import LatentDirichletAllocation

    for mode in args.modes:  # compile (or load the numba cache) outside the timings
        LatentDirichletAllocation(args.n_topics, max_iter=1, **online_params(mode)).fit(X_train[:200])
    start = SklearnLDA(args.n_topics, max_iter=0, random_state=3).fit(X_train[:2]).components_
    assert np.array_equal(start, sklearn_start(3, args.n_topics, args.n_words)), "scikit-learn's start changed"

    if args.ablation:
        with threadpool_limits(limits=args.n_jobs, user_api="blas"):
            run_ablation(X_train, X_test, topics, args)
        return
    corpus = None
    if not args.no_gensim and "online" in args.modes:
        from gensim.matutils import Sparse2Corpus

        corpus = list(Sparse2Corpus(X_train, documents_columns=False))

    everything = {"args": vars(args), "fits": [], "summary": {}}
    with threadpool_limits(limits=args.n_jobs, user_api="blas"):
        for mode in args.modes:
            runners = {
                "scikit-learn": lambda seed, mode=mode: fit_sklearn(X_train, mode, seed, args),
                "emkit": lambda seed, mode=mode: fit_emkit(X_train, mode, seed, args),
            }
            if args.n_jobs == 1:  # scikit-learn's workers draw from copies of its stream otherwise
                runners["emkit (same draws)"] = lambda seed, mode=mode: fit_emkit(
                    X_train, mode, seed, args, same_draws=True
                )
                for offset in args.other_streams:
                    runners[f"sklearn algo, stream +{offset}"] = lambda seed, mode=mode, offset=offset: fit_emkit(
                        X_train, mode, seed, args, same_draws=True, stream_offset=offset
                    )
            if mode == "online" and corpus is not None:
                runners["gensim"] = lambda seed, mode=mode: fit_gensim(corpus, args.n_words, mode, seed, args)
            results = {name: {"perplexity": [], "recovered": [], "cpu": [], "wall": []} for name in runners}
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                line = []
                for name, run in runners.items():
                    components, cpu, wall = timed(run, seed)
                    perplexity = heldout_perplexity(components, X_test)
                    recovered = topics_recovered(components, topics)
                    rows = results[name]
                    rows["perplexity"].append(perplexity)
                    rows["recovered"].append(recovered)
                    if name != "emkit (same draws)" and "stream +" not in name:  # its time says nothing new
                        rows["cpu"].append(cpu)
                        rows["wall"].append(wall)
                    everything["fits"].append(
                        {"mode": mode, "seed": seed, "library": name, "perplexity": perplexity,
                         "recovered": recovered, "cpu": cpu, "wall": wall}
                    )
                    line.append(f"{name} {perplexity:.1f}/{recovered} {cpu:.2f}s")
                print(f"  {mode} seed {seed}: " + ", ".join(line), flush=True)
            everything["summary"][mode] = summarize(mode, results, args)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(everything, handle, indent=1, default=float)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
