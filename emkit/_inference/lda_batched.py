"""The LDA E-step in numpy, all documents at once: the path for small corpora, which compiles nothing.

:mod:`emkit._inference.lda` solves the documents one after the other in
compiled kernels. Compiling them takes seconds (numba's type inference,
lowering and LLVM's optimisation of a large kernel), which a small corpus
never earns back: a user's first ``fit`` of 100 short documents would spend
almost all of its time compiling. Small corpora (see
:func:`emkit._inference.lda.compiled_pays_off`) therefore take this path,
which runs the same per-document algorithm as dense ``(n_documents,
n_components)`` array operations over all documents together, plus one sparse
product per update for the sums over words:

- ``norm_w = sum_k exp_theta[d, k] exp_beta[w, k]`` for every stored entry
  (the document's row of ``exp_theta`` against the gathered rows of
  ``exp_beta``);
- ``acc[d, k] = sum_w exp_beta[w, k] n_dw / norm_w``: the CSR matrix of the
  ratios times ``exp_beta``;
- ``gamma <- alpha + exp_theta * acc`` and ``exp_theta = exp(psi(gamma) -
  psi(sum(gamma)))`` (scipy's ``digamma``).

Each document keeps its own convergence state, exactly as in the compiled
kernel: it stops after the first update whose mean absolute change of
``gamma`` is below ``tol`` (a full update, with pruning) or after
``max_iter`` updates, and a stopped document is no longer updated (the
updates run on the documents still going, which are gathered anew whenever
their number has halved). Pruning follows the kernel's rule document by
document: between full updates (every 8th, whenever more than half of the
topics are active, and the one that confirms convergence), topics whose
``exp_theta`` is below 1e-6 of the document's largest are left out of the
sums and their ``gamma`` set to ``alpha``. The outputs (``ratio``, the ELBO
with its log-sum-exp fallback where ``norm_w`` underflows, the expected
counts) are the kernel's formulas too.

Both paths compute the same fixed point by the same rule; they differ in the
order of the floating-point sums and in the ``digamma``/``exp`` routines, so
their results agree to round-off (tests compare them), not bit for bit.
"""

import numpy as np
import scipy.sparse as sp
from scipy.special import digamma, gammaln

# The kernel's constants (_TINY, _PRUNE, _FULL_EVERY) are read from the kernels' module, so that both paths
# follow one definition (it imports this module: the names are looked up when a function runs).
from . import lda as kernels

__all__ = ["dirichlet_expectation", "exp_dirichlet_expectation", "solve_documents", "expected_counts"]


def dirichlet_expectation(a):
    """``E[log x]`` row-wise for ``x ~ Dirichlet(a[i])`` (``-inf`` where ``a`` is 0), with scipy's ``digamma``."""
    with np.errstate(divide="ignore"):
        return digamma(a) - digamma(a.sum(axis=1, keepdims=True))


def exp_dirichlet_expectation(topic_word):
    """``exp(psi(lambda_kw) - psi(sum_w lambda_kw))`` row by row (0 where ``lambda`` is 0)."""
    return np.exp(dirichlet_expectation(topic_word))


def _exp_theta(gamma):
    """``exp(E[log theta])`` of every row of ``gamma``."""
    return exp_dirichlet_expectation(gamma)


class _Working:
    """The documents still being updated: their CSR entries, with the ``exp_beta`` rows of their words gathered."""

    def __init__(self, docs, indptr, indices, data, exp_beta):
        starts, stops = indptr[docs], indptr[docs + 1]
        lengths = stops - starts
        entries = np.repeat(stops - np.cumsum(lengths), lengths) + np.arange(lengths.sum())
        self.rows = np.repeat(np.arange(docs.shape[0]), lengths)  # working row of each entry
        self.data = data[entries]
        self.beta = exp_beta[indices[entries]]  # (n_entries, n_components)
        self.ratios = sp.csr_matrix(
            (np.zeros(entries.shape[0]), indices[entries], np.concatenate(([0], np.cumsum(lengths)))),
            shape=(docs.shape[0], exp_beta.shape[0]),
        )

    def norms(self, exp_theta):
        """``norm_w`` of every entry for the working rows of ``exp_theta``."""
        return np.einsum("jk,jk->j", np.take(exp_theta, self.rows, axis=0), self.beta)  # take: faster than [rows]

    def topic_sums(self, ratio, exp_beta):
        """``acc[d, k] = sum_w exp_beta[w, k] ratio_dw`` for every working document."""
        self.ratios.data = ratio
        return np.asarray(self.ratios @ exp_beta)


def solve_documents(
    indptr, indices, data, exp_beta, topic_word, alpha, doc_topic, selected, max_iter, tol, prune, want_elbo,
    exp_doc_topic, ratio, elbo, n_updates,
):
    """The compiled ``_update_documents`` over all documents, in numpy (its arguments and outputs).

    ``doc_topic`` is updated in place; ``exp_doc_topic``, ``ratio``, ``elbo``
    and ``n_updates`` are filled for the selected documents.
    """
    n_components = exp_beta.shape[1]
    docs = np.flatnonzero(selected)
    gamma = doc_topic[docs].copy()
    exp_theta = _exp_theta(gamma)
    done = np.zeros(docs.shape[0], dtype=np.int64)  # updates made
    need_full = np.ones(docs.shape[0], dtype=bool)
    active = np.ones(gamma.shape, dtype=bool)  # topics in the sums of a partial update

    running = np.full(docs.shape[0], max_iter > 0)
    # the documents the updates are computed for (positions in docs): the running ones and, until half of them
    # have stopped, the stopped ones (whose results are dropped)
    batch = np.flatnonzero(running)
    work = _Working(docs[batch], indptr, indices, data, exp_beta)
    while batch.shape[0]:
        live = running[batch]
        if 2 * np.count_nonzero(live) <= batch.shape[0]:  # gather the running documents' entries anew
            batch = batch[live]
            if not batch.shape[0]:
                break
            work = _Working(docs[batch], indptr, indices, data, exp_beta)
            live = running[batch]
        n_active = active[batch].sum(axis=1)
        full = need_full[batch] | (not prune) | (done[batch] % kernels._FULL_EVERY == 0) | (2 * n_active > n_components)
        used = full[:, None] | active[batch]  # the topics each document's sums run over
        theta = exp_theta[batch]
        norm = work.norms(np.where(used, theta, 0.0))
        acc = work.topic_sums(work.data / np.maximum(norm, kernels._TINY), exp_beta)
        terms = np.where(used, alpha + theta * acc, alpha)  # the topics left out stay at alpha
        change = np.abs(terms - gamma[batch]).sum(axis=1)

        updated, full = batch[live], full[live]
        gamma[updated] = terms[live]
        exp_theta[updated] = theta = _exp_theta(terms[live])
        done[updated] += 1
        converged = change[live] / n_components < tol
        need_full[updated] = converged & ~full  # confirm on an exact update
        if prune:  # after a full update any topic may be active; after a partial one, only fewer
            kept = (theta >= kernels._PRUNE * theta.max(axis=1, keepdims=True)) & (full[:, None] | active[updated])
            active[updated] = np.where(converged[:, None], active[updated], kept)
        running[updated] = ~(converged & full) & (done[updated] < max_iter)

    doc_topic[docs] = gamma
    exp_doc_topic[docs] = exp_theta
    n_updates[docs] = done

    # outputs at the final gamma
    final = _Working(docs, indptr, indices, data, exp_beta)
    norm = final.norms(exp_theta)
    entries = np.flatnonzero(np.repeat(selected, np.diff(indptr)))
    ratio[entries] = final.data / np.maximum(norm, kernels._TINY)
    if not want_elbo:
        return
    psi_topic_totals = digamma(topic_word.sum(axis=1))
    total = gamma.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        elog_theta = digamma(gamma) - digamma(total)[:, None]
        counted = final.data != 0.0
        fine = counted & (norm > 1e-280)
        word_terms = np.where(fine, final.data * np.log(np.where(fine, norm, 1.0)), 0.0)
        for j in np.flatnonzero(counted & ~fine):  # underflow: log-sum-exp of elog_theta + E[log beta]
            w = indices[entries[j]]
            terms = elog_theta[final.rows[j]] + digamma(topic_word[:, w]) - psi_topic_totals
            top = terms.max()
            word_terms[j] = -np.inf if top == -np.inf else final.data[j] * (top + np.log(np.exp(terms - top).sum()))
        word_term = np.bincount(final.rows, weights=word_terms, minlength=docs.shape[0])
        dirichlet = np.where(
            gamma != alpha, (alpha - gamma) * elog_theta + gammaln(gamma) - gammaln(alpha), 0.0
        ).sum(axis=1)
    elbo[docs] = word_term + gammaln(n_components * alpha) + dirichlet - gammaln(total)


def expected_counts(indptr, indices, ratio, exp_doc_topic, exp_beta):
    """``out[w, k] = exp_beta[w, k] * sum_d exp_doc_topic[d, k] ratio[d, w]`` (word-major)."""
    ratios = sp.csr_matrix((ratio, indices, indptr), shape=(indptr.shape[0] - 1, exp_beta.shape[0]))
    return exp_beta * np.asarray(ratios.T @ exp_doc_topic)
