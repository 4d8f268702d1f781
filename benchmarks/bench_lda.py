"""LatentDirichletAllocation: emkit vs scikit-learn vs gensim, in one process.

Corpus: documents sampled from the LDA generative model (topics
``beta_k ~ Dirichlet(0.05)`` over the vocabulary, mixtures
``theta_d ~ Dirichlet(0.1)``, document lengths ``Poisson(150)``), plus 1,000
held-out documents from the same model.

All three start from the same topic-word matrix ``lambda`` (Gamma(100, 0.01)
entries) with ``alpha = eta = 1 / n_topics`` and run ``n_iter`` batch
iterations (one E-step over all documents + one M-step each), at most 100
updates per document with a mean-change tolerance of 1e-3.

- scikit-learn: ``LatentDirichletAllocation(learning_method="batch")``, its
  private initialiser patched to start from the shared matrix.
- gensim: ``LdaModel`` in batch mode: ``update_every=0`` (one M-step per pass),
  ``chunksize=n_docs``, ``passes=n_iter``, ``decay=0`` (so the M-step weight
  ``rho = (offset + t) ** -decay`` is 1: ``lambda = eta + sstats``, plain batch
  VB), ``iterations=100``, ``gamma_threshold=1e-3``, ``alpha="symmetric"``
  (1/K), ``eta=1/K``, ``eval_every=None``, float64; ``state.sstats`` set to
  ``lambda - eta`` before training.
- emkit: ``LatentDirichletAllocation(components_init=lambda)``.

Held-out perplexity of every fitted model is computed the same way (emkit's
``perplexity``, which matches scikit-learn's to 1e-9): ``exp(-bound / words)``
with each held-out document's ``gamma`` inferred from ones.

Run: ``python benchmarks/bench_lda.py [--repeats 3] [--n-docs 5000] ...``
"""

import argparse
import platform
import time
from unittest import mock

import numpy as np
import scipy.sparse as sp


def make_corpus(n_docs, n_heldout, n_words, n_topics, doc_length, seed=0):
    rng = np.random.RandomState(seed)
    topics = rng.dirichlet(np.full(n_words, 0.05), n_topics)

    def sample(n):
        mixtures = rng.dirichlet(np.full(n_topics, 0.1), n)
        lengths = rng.poisson(doc_length, n)
        rows = [rng.multinomial(length, mixture @ topics) for length, mixture in zip(lengths, mixtures)]
        return sp.csr_matrix(np.vstack(rows).astype(np.float64))

    return sample(n_docs), sample(n_heldout), topics


def fit_emkit(X, init, n_iter, n_jobs, seed):
    from emkit.lda import LatentDirichletAllocation

    model = LatentDirichletAllocation(
        init.shape[0], max_iter=n_iter, components_init=init, n_jobs=n_jobs, random_state=seed
    )
    model.fit(X)
    return model.components_


def fit_sklearn(X, init, n_iter, n_jobs, seed):
    from sklearn.decomposition import LatentDirichletAllocation
    from sklearn.decomposition import _lda

    original = LatentDirichletAllocation._init_latent_vars

    def start_from_init(self, n_features, dtype=np.float64):
        original(self, n_features, dtype)
        self.components_ = init.copy()
        self.exp_dirichlet_component_ = np.exp(_lda._dirichlet_expectation_2d(self.components_))

    with mock.patch.object(LatentDirichletAllocation, "_init_latent_vars", start_from_init):
        model = LatentDirichletAllocation(init.shape[0], max_iter=n_iter, n_jobs=n_jobs, random_state=seed)
        model.fit(X)
    return model.components_


def fit_gensim(corpus, init, n_iter, seed):
    from gensim.models import LdaModel

    n_topics, n_words = init.shape
    eta = 1.0 / n_topics
    model = LdaModel(
        num_topics=n_topics, id2word={i: str(i) for i in range(n_words)}, chunksize=len(corpus), passes=n_iter,
        update_every=0, decay=0.0, offset=1.0, iterations=100, gamma_threshold=1e-3, alpha="symmetric", eta=eta,
        eval_every=None, random_state=seed, dtype=np.float64,
    )
    model.state.sstats[...] = init - eta
    model.sync_state()
    model.update(corpus, passes=n_iter, update_every=0, decay=0.0, offset=1.0, eval_every=None,
                 iterations=100, gamma_threshold=1e-3, chunksize=len(corpus))
    return model.state.get_lambda()


def heldout_perplexity(components, X_test):
    from emkit.lda import LatentDirichletAllocation

    evaluator = LatentDirichletAllocation(components.shape[0], max_iter=0, components_init=components)
    evaluator.fit(X_test)  # max_iter=0: keeps components as given
    return evaluator.perplexity(X_test)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-docs", type=int, default=5000)
    parser.add_argument("--n-words", type=int, default=5000)
    parser.add_argument("--n-topics", type=int, default=20)
    parser.add_argument("--doc-length", type=int, default=150)
    parser.add_argument("--n-iter", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-jobs", type=int, nargs="+", default=[1, 2], help="n_jobs values for emkit and sklearn")
    parser.add_argument("--no-gensim", action="store_true")
    args = parser.parse_args()

    X, X_test, _ = make_corpus(args.n_docs, 1000, args.n_words, args.n_topics, args.doc_length)
    init = np.random.RandomState(1).gamma(100.0, 0.01, (args.n_topics, args.n_words))
    print(
        f"LDA benchmark: {args.n_docs} documents, {args.n_words}-word vocabulary, {args.n_topics} topics, "
        f"{X.sum() / args.n_docs:.1f} words/document ({X.nnz / args.n_docs:.1f} distinct), "
        f"{args.n_iter} batch iterations, {args.repeats} repeats; {platform.processor() or platform.machine()}"
    )
    fit_emkit(X[:50], init, 1, 1, 0)  # compile (or load the numba cache) outside the timings

    runners = []
    for n_jobs in args.n_jobs:
        runners.append((f"emkit   n_jobs={n_jobs}", lambda j=n_jobs, s=0: fit_emkit(X, init, args.n_iter, j, s)))
        runners.append((f"sklearn n_jobs={n_jobs}", lambda j=n_jobs, s=0: fit_sklearn(X, init, args.n_iter, j, s)))
    if not args.no_gensim:
        from gensim.matutils import Sparse2Corpus

        corpus = list(Sparse2Corpus(X, documents_columns=False))
        runners.append(("gensim  (1 process)", lambda s=0: fit_gensim(corpus, init, args.n_iter, s)))

    times = {name: [] for name, _ in runners}
    perplexities = {name: [] for name, _ in runners}
    for repeat in range(args.repeats):  # alternate the libraries so load changes hit all of them
        for name, run in runners:
            start = time.perf_counter()
            components = run(s=repeat)
            times[name].append(time.perf_counter() - start)
            perplexities[name].append(heldout_perplexity(components, X_test))
            print(
                f"  repeat {repeat}: {name}: {times[name][-1]:.2f} s, "
                f"held-out perplexity {perplexities[name][-1]:.1f}"
            )

    print("\nmedians (time, time per iteration, held-out perplexity):")
    median = {name: float(np.median(t)) for name, t in times.items()}
    for name in times:
        print(
            f"  {name}: {median[name]:.2f} s ({median[name] / args.n_iter:.3f} s/iteration), "
            f"perplexity {np.median(perplexities[name]):.1f} "
            f"(runs: {', '.join(f'{p:.1f}' for p in perplexities[name])})"
        )
    print("\nspeed-up of emkit (other's median time / emkit's median time, same n_jobs):")
    for n_jobs in args.n_jobs:
        ours = median[f"emkit   n_jobs={n_jobs}"]
        print(f"  n_jobs={n_jobs}: vs scikit-learn {median[f'sklearn n_jobs={n_jobs}'] / ours:.2f}x", end="")
        if not args.no_gensim:
            print(f", vs gensim {median['gensim  (1 process)'] / ours:.2f}x", end="")
        print()


if __name__ == "__main__":
    main()
