"""Per-document variational updates for Latent Dirichlet Allocation.

The kernels work on the plain arrays of a CSR document-term matrix
(``indptr``, ``indices``, ``data``): document ``d`` holds the words
``indices[indptr[d]:indptr[d + 1]]`` with counts ``data[indptr[d]:indptr[d + 1]]``.
One compiled call loops over a range of documents, so there is no Python
loop per document.

Notation, for one document with word counts ``n_w``, ``K`` topics,
``alpha`` the document-topic prior:

- ``gamma`` (length ``K``): the variational Dirichlet parameters of the
  document's topic mixture ``theta``;
- ``elog_theta = E[log theta] = psi(gamma) - psi(sum(gamma))`` and
  ``exp_theta = exp(elog_theta)``;
- ``exp_beta[w, k] = exp(E[log beta_kw])`` (the topic-word matrix's
  ``exp_dirichlet_component_``, transposed so that one word's ``K`` values are
  contiguous);
- ``norm_w = sum_k exp_theta[k] * exp_beta[w, k]``: the normaliser of the
  optimal word-topic responsibilities ``phi_wk = exp_theta[k] exp_beta[w, k] / norm_w``;
- the coordinate-ascent update ``gamma_k <- alpha + exp_theta[k] * sum_w exp_beta[w, k] n_w / norm_w``
  (that is, ``alpha + sum_w n_w phi_wk``).

Each document iterates that update from its starting ``gamma`` until the mean
absolute change of ``gamma`` drops below ``tol`` (scikit-learn's
``mean_change_tol``) or ``max_iter`` updates were made; converged documents
stop early. The returned ``ratio`` (``n_w / norm_w`` per stored entry, with
``exp_theta`` of the final ``gamma``) gives the expected topic-word counts
``sstats[k, w] = exp_beta[w, k] * sum_d exp_theta[d, k] ratio[d, w]``
(:func:`expected_counts`).

Speed: the updates only need ``exp_theta``, never ``elog_theta``, so
:func:`exp_digamma` computes ``exp(psi(x))`` with one ``exp`` and no ``log``
(``elog_theta`` is taken once per document, for the ELBO); its arithmetic is
branch-free so a loop over topics (or words, for ``exp(E[log beta])``,
:func:`exp_dirichlet_expectation`) vectorises and only the ``exp`` calls stay
scalar (numba has no vectorised ``exp`` without Intel's SVML). Online passes,
which need ``exp(E[log beta])`` after every mini-batch, take those
exponentials with numpy's vectorised ``exp`` instead (``vector_exp=True``,
about three times faster over a 20 x 5,000 matrix). The two sums of an update
sweep a topic-major copy of the document's ``exp_beta`` columns four topics at
a time.

The per-document ELBO, with ``phi`` optimal for the final ``gamma``, is::

    sum_w n_w log(norm_w)
      + sum_k [(alpha - gamma_k) elog_theta_k + lgamma(gamma_k) - lgamma(alpha)]
      + lgamma(K alpha) - lgamma(sum_k gamma_k)

``log(norm_w)`` falls back to a log-sum-exp over ``elog_theta + E[log beta]``
when ``norm_w`` underflows (``E[log beta]`` is then computed from ``lambda``).

Small corpora compile nothing. Compiling these kernels in a new process with
an empty numba cache takes about 5 s, spent in numba's type inference and
lowering and in LLVM's optimisation of kernels of this size (merging the
kernels into one, or inlining the per-document kernel, did not make it
faster). A corpus of at most ``SMALL_CORPUS`` stored counts times topics
(:func:`compiled_pays_off`, asked once per corpus by the estimator) is
therefore solved by :mod:`emkit._inference.lda_batched`: the same updates and
stopping rule as numpy operations over all documents at once. The public
functions below take ``compiled=False`` for it. The two paths agree to
round-off (``tests/test_lda.py``).
"""

import math
from typing import NamedTuple

import numpy as np

from . import lda_batched
from ._jit import jit

__all__ = [
    "compiled_pays_off",
    "DocumentUpdate",
    "update_documents",
    "expected_counts",
    "select_fresh",
    "digamma",
    "exp_digamma",
    "exp_dirichlet_expectation",
    "online_update",
]

_TINY = 1e-300  # floor of norm_w inside the fixed-point updates (only hit on underflow)
_PRUNE = 1e-6  # topics with exp_theta below this fraction of the largest skip the in-between updates
_FULL_EVERY = 8  # with pruning, every 8th update is over all topics
# At most this many stored counts times topics: the numpy path (see compiled_pays_off). The numpy path is 5-9x
# slower than the compiled one, so the limit is low: at it a default fit + transform takes about 0.2 s in numpy
# against 0.04 s compiled (after 5 s of compiling, once per machine); the README's corpus is about 13,000.
SMALL_CORPUS = 20_000


def compiled_pays_off(nnz, n_components):
    """Whether a corpus of ``nnz`` stored counts and ``n_components`` topics should use the compiled kernels.

    Compiling the kernels takes seconds, once per machine (numba caches the
    machine code). Corpora with at most ``SMALL_CORPUS`` stored counts times
    topics are solved with the numpy implementation of the same algorithm
    (:mod:`emkit._inference.lda_batched`) instead, which compiles nothing, so
    that a first fit of a small corpus takes a fraction of a second.
    """
    return nnz * n_components > SMALL_CORPUS


class DocumentUpdate(NamedTuple):
    """Output of :func:`update_documents`.

    Attributes
    ----------
    doc_topic : ndarray of shape (n_documents, n_components)
        Final variational Dirichlet parameters ``gamma`` of each document.
    exp_doc_topic : ndarray of shape (n_documents, n_components)
        ``exp(E[log theta])`` at ``doc_topic``.
    ratio : ndarray of shape (nnz,)
        ``n_w / norm_w`` for every stored entry of the CSR matrix (aligned
        with ``indices``), computed at the final ``doc_topic``.
    elbo : ndarray of shape (n_documents,)
        Per-document ELBO (the topic-word term excluded); zeros when not asked for.
    n_updates : ndarray of int64 of shape (n_documents,)
        Number of fixed-point updates each document made.
    """

    doc_topic: np.ndarray
    exp_doc_topic: np.ndarray
    ratio: np.ndarray
    elbo: np.ndarray
    n_updates: np.ndarray


@jit(inline=True)
def _psi_parts(x):
    """``(y, c)`` with ``psi(x) = log(y) - c`` for ``x > 0``.

    Uses ``psi(x) = psi(x + 8) - sum_{i<8} 1 / (x + i)`` and the asymptotic
    series of ``psi(x + 8)`` through the ``x**-12`` term. The sum is taken as
    ``p'(x) / p(x)`` of the product ``p(x) = x (x + 1) ... (x + 7)``: one
    division. Beyond 1e15 the series alone is exact to round-off (and the
    product would overflow for huge ``x``). Selects instead of branches and
    ``np.divide`` (no zero-division check) keep a loop over many ``x``
    vectorisable.
    """
    big = x >= 1e15
    shifted = 1.0 if big else x
    product = shifted
    derivative = 1.0
    for i in range(1, 8):
        factor = shifted + i
        derivative = derivative * factor + product
        product = product * factor
    shift = 0.0 if big else np.divide(derivative, product)
    y = x if big else x + 8.0
    inv = np.divide(1.0, y)
    inv2 = inv * inv
    # 1/(12 y^2) - 1/(120 y^4) + 1/(252 y^6) - 1/(240 y^8) + 1/(132 y^10) - 691/(32760 y^12)
    series = 1.0 / 132.0 - inv2 * (691.0 / 32760.0)
    series = 1.0 / 240.0 - inv2 * series
    series = 1.0 / 252.0 - inv2 * series
    series = 1.0 / 120.0 - inv2 * series
    series = inv2 * (1.0 / 12.0 - inv2 * series)
    return y, 0.5 * inv + series + shift


@jit(inline=True)
def digamma(x):
    """``psi(x)`` for ``x >= 0`` (``-inf`` at 0), accurate to about 1e-14 (see :func:`_psi_parts`).

    Inlined into its callers, the reassociating document solver among them
    (see :func:`._jit.jit`).
    """
    if x <= 0.0:
        return -np.inf
    y, correction = _psi_parts(x)
    return math.log(y) - correction


@jit(reassociate=True)
def exp_digamma(x):
    """``exp(psi(x))`` for ``x >= 0`` (0 at 0), with one ``exp`` and no ``log``.

    The fixed-point updates only need ``exp(E[log theta])``, so this halves
    their transcendental calls. Compiled with reassociated sums for every
    caller, as the reassociating kernels that call it need (see
    :func:`._jit.jit`).
    """
    if x <= 0.0:
        return 0.0
    y, correction = _psi_parts(x)
    return y * math.exp(-correction)


@jit(reassociate=True)
def _exp_theta(gamma, exp_out, work, alpha, exp_digamma_alpha):
    """``exp_out = exp(psi(gamma) - psi(sum(gamma)))``; ``work`` is scratch of the same length.

    Entries equal to ``alpha`` use the precomputed ``exp_digamma_alpha``
    (topics that pruning left at the prior; callers without such topics pass
    ``alpha=-1.0``). Every caller passes all five arguments, so the kernel is
    compiled once (optional arguments would compile it once per arity). The arithmetic of
    :func:`_psi_parts` runs as one vectorised loop and only the ``exp`` calls
    as a scalar loop (about twice as fast as calling :func:`exp_digamma` per
    entry).
    """
    n = gamma.shape[0]
    total = 0.0
    for k in range(n):
        total += gamma[k]
    scale = exp_digamma(total)
    scale = np.divide(1.0, scale) if scale > 0.0 else 0.0
    for k in range(n):
        x = gamma[k]
        y, correction = _psi_parts(max(x, 1e-300))
        at_prior = x == alpha
        exp_out[k] = (exp_digamma_alpha if at_prior else (y if x > 0.0 else 0.0)) * scale
        work[k] = 0.0 if at_prior else -correction
    for k in range(n):
        if work[k] != 0.0:
            exp_out[k] *= math.exp(work[k])


@jit
def _exp_dirichlet_expectation_rows(topic_word, out, word_major):
    """``exp(psi(topic_word[k]) - psi(sum(topic_word[k])))`` for every row ``k``, into ``out[k]`` or ``out[:, k]``."""
    row = np.empty(topic_word.shape[1])
    work = np.empty(topic_word.shape[1])
    for k in range(topic_word.shape[0]):
        _exp_theta(topic_word[k], row, work, -1.0, 0.0)
        # element by element: a slice copy would compile numba's shape-mismatch error (seconds, cold)
        if word_major:
            for w in range(row.shape[0]):
                out[w, k] = row[w]
        else:
            for w in range(row.shape[0]):
                out[k, w] = row[w]


@jit(reassociate=True)
def _exp_dirichlet_expectation_parts(topic_word, scale, exponent):
    """``exp(psi(x) - psi(row total))`` of every entry as ``scale * exp(exponent)``, the exponentials left to numpy.

    The same arithmetic as :func:`_exp_theta` (``scale`` is ``y / exp(psi(total))``
    and ``exponent`` is ``-c`` of :func:`_psi_parts`), in one vectorised loop per row.
    """
    n_topics, n_words = topic_word.shape
    for k in range(n_topics):
        total = 0.0
        for w in range(n_words):
            total += topic_word[k, w]
        inverse = exp_digamma(total)
        inverse = np.divide(1.0, inverse) if inverse > 0.0 else 0.0
        for w in range(n_words):
            x = topic_word[k, w]
            y, correction = _psi_parts(max(x, 1e-300))
            scale[k, w] = (y if x > 0.0 else 0.0) * inverse
            exponent[k, w] = -correction


@jit
def _multiply_word_major(scale, factor, out):
    """``out[w, k] = scale[k, w] * factor[k, w]`` (topic-major inputs, word-major output)."""
    n_topics, n_words = scale.shape
    for w in range(n_words):
        for k in range(n_topics):
            out[w, k] = scale[k, w] * factor[k, w]


def exp_dirichlet_expectation(topic_word, word_major=False, compiled=True, vector_exp=False):
    """``exp(E[log beta])`` row-wise for ``beta_k ~ Dirichlet(topic_word[k])``.

    Parameters
    ----------
    topic_word : ndarray of shape (n_components, n_features)
        Dirichlet parameters ``lambda`` (non-negative, each row with a positive sum).
    word_major : bool, default=False
        Return the transpose, C-contiguous (the layout :func:`update_documents` reads).
    compiled : bool, default=True
        Use the compiled kernel; False takes scipy's ``digamma`` (the same to round-off).
    vector_exp : bool, default=False
        With ``compiled``: compute ``psi`` as the compiled kernel does, but take
        the exponentials with numpy's vectorised ``exp`` (the one scikit-learn
        uses for this matrix) instead of the C library's scalar ``exp``: about
        three times faster over a 20 x 5,000 matrix. Both ``exp`` are within
        one unit in the last place of the exact value (measured: at most 0.66
        and 0.50 units), so the two results differ in the last bits only.
        Online passes use it; batch fits keep the scalar ``exp``, so that their
        results do not change.

    Returns
    -------
    exp_elog : ndarray of shape (n_components, n_features), or (n_features, n_components) if word_major
        ``exp(psi(lambda_kw) - psi(sum_w lambda_kw))`` (0 where ``lambda`` is 0).
    """
    topic_word = np.ascontiguousarray(topic_word, dtype=np.float64)
    if not compiled:
        out = lda_batched.exp_dirichlet_expectation(topic_word)
        return np.ascontiguousarray(out.T) if word_major else out
    if vector_exp:
        scale, factor = np.empty_like(topic_word), np.empty_like(topic_word)
        _exp_dirichlet_expectation_parts(topic_word, scale, factor)
        with np.errstate(under="ignore"):  # exp(E[log beta]) of a tiny lambda underflows to 0
            np.exp(factor, out=factor)
        if not word_major:
            return np.multiply(scale, factor, out=scale)
        out = np.empty(topic_word.shape[::-1])
        _multiply_word_major(scale, factor, out)
        return out
    out = np.empty(topic_word.shape[::-1] if word_major else topic_word.shape)
    _exp_dirichlet_expectation_rows(topic_word, out, word_major)
    return out


@jit
def _online_update(topic_word, counts_t, decay, prior_step, count_step):
    """``topic_word[k, w] = topic_word[k, w] * decay + prior_step + count_step * counts_t[w, k]`` in place.

    Three roundings per entry, in numpy's order for the same expression
    written as three in-place operations (compiled without ``contract``, so no
    fused multiply-add).
    """
    n_topics, n_words = topic_word.shape
    for k in range(n_topics):
        for w in range(n_words):
            value = topic_word[k, w] * decay
            value = value + prior_step
            topic_word[k, w] = value + count_step * counts_t[w, k]


def online_update(topic_word, sstats, weight, prior, total_samples, n_documents, compiled=True):
    """One online step of the topic-word parameters, in place.

    ``lambda <- (1 - rho) lambda + rho (eta + total_samples / n_documents * sstats)``,
    computed per entry as ``lambda * (1 - rho) + rho * eta + (rho * total_samples /
    n_documents) * sstats`` (left to right), without full-size temporaries.

    Parameters
    ----------
    topic_word : ndarray of shape (n_components, n_features)
        ``lambda``, C-contiguous float64; updated in place.
    sstats : ndarray of shape (n_components, n_features)
        The mini-batch's expected topic-word counts (as :func:`expected_counts`
        returns them: a view of a word-major array, read without a copy).
    weight : float
        The step size ``rho``.
    prior : float
        The topic-word prior ``eta``.
    total_samples : float
        Size of the corpus the mini-batch stands for.
    n_documents : int
        Number of documents in the mini-batch.
    compiled : bool, default=True
        Use the compiled loop; False the same operations in numpy (the same
        numbers bit for bit).
    """
    if topic_word.dtype != np.float64 or not topic_word.flags.c_contiguous:
        raise ValueError("topic_word must be a C-contiguous float64 array (it is updated in place).")
    if sstats.shape != topic_word.shape:
        raise ValueError(f"sstats must have shape {topic_word.shape}, got {sstats.shape}.")
    count_step = weight * total_samples / n_documents
    if not compiled:
        topic_word *= 1.0 - weight
        topic_word += weight * prior
        topic_word += count_step * sstats
        return
    counts_t = np.ascontiguousarray(np.asarray(sstats, dtype=np.float64).T)
    _online_update(topic_word, counts_t, 1.0 - weight, weight * prior, count_step)


@jit(inline=True, reassociate=True)
def _word_norms(beta_kw, exp_theta, topics, n_topics, nnz, norm):
    """``norm[j] = sum_k exp_theta[k] beta_kw[k, j]`` over ``topics[:n_topics]``, four topics per sweep."""
    for j in range(nnz):
        norm[j] = 0.0
    a = 0
    while a + 4 <= n_topics:
        k0, k1, k2, k3 = topics[a], topics[a + 1], topics[a + 2], topics[a + 3]
        e0, e1, e2, e3 = exp_theta[k0], exp_theta[k1], exp_theta[k2], exp_theta[k3]
        for j in range(nnz):
            norm[j] += (e0 * beta_kw[k0, j] + e1 * beta_kw[k1, j]) + (e2 * beta_kw[k2, j] + e3 * beta_kw[k3, j])
        a += 4
    while a < n_topics:
        k = topics[a]
        e = exp_theta[k]
        for j in range(nnz):
            norm[j] += e * beta_kw[k, j]
        a += 1


@jit(inline=True, reassociate=True)
def _topic_sums(beta_kw, r, topics, n_topics, nnz, out):
    """``out[k] = sum_j beta_kw[k, j] r[j]`` for ``k`` in ``topics[:n_topics]``, four topics per sweep."""
    a = 0
    while a + 4 <= n_topics:
        k0, k1, k2, k3 = topics[a], topics[a + 1], topics[a + 2], topics[a + 3]
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        for j in range(nnz):
            rj = r[j]
            s0 += beta_kw[k0, j] * rj
            s1 += beta_kw[k1, j] * rj
            s2 += beta_kw[k2, j] * rj
            s3 += beta_kw[k3, j] * rj
        out[k0] = s0
        out[k1] = s1
        out[k2] = s2
        out[k3] = s3
        a += 4
    while a < n_topics:
        k = topics[a]
        s = 0.0
        for j in range(nnz):
            s += beta_kw[k, j] * r[j]
        out[k] = s
        a += 1


@jit(reassociate=True)  # the per-word and per-topic sums vectorise
def _solve_document(
    start, nnz, data, indices, beta_kw, topic_word, psi_topic_totals, alpha, gamma, max_iter, tol, prune, want_elbo,
    norm, r, acc, elog_theta, exp_theta, terms, work, active, all_topics, ratio_out, exp_digamma_alpha, psi_alpha,
    lgamma_alpha, lgamma_sum_alpha,
):
    """Fixed-point updates of one document from ``gamma`` (updated in place).

    Stops after the first update that changes ``gamma`` by less than ``tol``
    on average, or after ``max_iter`` updates. With ``prune``, topics whose
    ``exp_theta`` is below ``_PRUNE`` times the largest are left out of the
    updates between full updates (their ``gamma`` is set to ``alpha``); a full
    update runs every ``_FULL_EVERY`` updates, whenever more than half of the
    topics are active, and before stopping, so the stopping rule is always
    checked on an exact update. Fills ``exp_theta`` and ``elog_theta`` (final)
    and ``ratio_out[:nnz]``; returns ``(elbo, n_updates)`` (the ELBO is 0 when
    ``want_elbo`` is False, which saves its logarithms).
    """
    n_components = gamma.shape[0]
    _exp_theta(gamma, exp_theta, work, -1.0, 0.0)
    n_done = 0
    n_active = n_components
    need_full = True
    while n_done < max_iter:
        # a full update when asked, periodically, or when most topics are active anyway
        full = need_full or not prune or n_done % _FULL_EVERY == 0 or 2 * n_active > n_components
        topics = all_topics if full else active
        n_topics = n_components if full else n_active
        # norm_w = sum_k exp_theta[k] exp_beta[w, k]; acc_k = sum_w exp_beta[w, k] n_w / norm_w
        _word_norms(beta_kw, exp_theta, topics, n_topics, nnz, norm)
        for j in range(nnz):
            r[j] = data[start + j] / max(norm[j], _TINY)
        _topic_sums(beta_kw, r, topics, n_topics, nnz, acc)
        if full:
            for k in range(n_components):
                terms[k] = alpha + exp_theta[k] * acc[k]
        else:  # the topics left out stay at alpha
            for k in range(n_components):
                terms[k] = alpha
            for a in range(n_active):
                k = active[a]
                terms[k] = alpha + exp_theta[k] * acc[k]
        change = 0.0
        for k in range(n_components):
            change += abs(terms[k] - gamma[k])
            gamma[k] = terms[k]
        if full:
            _exp_theta(gamma, exp_theta, work, -1.0, 0.0)
        else:
            _exp_theta(gamma, exp_theta, work, alpha, exp_digamma_alpha)
        n_done += 1
        if change / n_components < tol:
            if full:
                break
            need_full = True  # confirm on an exact update
            continue
        need_full = False
        if prune:  # after a full update any topic may be active; after a partial one, only fewer
            largest = 0.0
            for k in range(n_components):
                largest = max(largest, exp_theta[k])
            if full:
                n_active = 0
                for k in range(n_components):
                    if exp_theta[k] >= _PRUNE * largest:
                        active[n_active] = k
                        n_active += 1
            else:
                kept = 0
                for a in range(n_active):
                    k = active[a]
                    if exp_theta[k] >= _PRUNE * largest:
                        active[kept] = k
                        kept += 1
                n_active = kept

    # outputs at the final gamma: ratio, and (if wanted) elog_theta and the ELBO with phi optimal for it
    _word_norms(beta_kw, exp_theta, all_topics, n_components, nnz, norm)
    for j in range(nnz):
        ratio_out[j] = data[start + j] / max(norm[j], _TINY)
    if not want_elbo:
        return 0.0, n_done
    total = 0.0
    for k in range(n_components):
        total += gamma[k]
    psi_total = digamma(total)
    for k in range(n_components):
        elog_theta[k] = (psi_alpha if gamma[k] == alpha else digamma(gamma[k])) - psi_total
    word_term = 0.0
    for j in range(nnz):
        s = norm[j]
        count = data[start + j]
        if count != 0.0:
            if s > 1e-280:
                word_term += count * math.log(s)
            else:  # underflow: log-sum-exp of elog_theta + E[log beta]
                w = indices[start + j]
                top = -np.inf
                for k in range(n_components):
                    terms[k] = elog_theta[k] + digamma(topic_word[k, w]) - psi_topic_totals[k]
                    top = max(top, terms[k])
                if top == -np.inf:
                    word_term += -np.inf
                else:
                    acc_exp = 0.0
                    for k in range(n_components):
                        acc_exp += math.exp(terms[k] - top)
                    word_term += count * (top + math.log(acc_exp))
    dirichlet_term = lgamma_sum_alpha
    for k in range(n_components):
        g = gamma[k]
        if g != alpha:  # (alpha - g) * elog_theta is 0 (even when elog_theta is -inf at g = 0)
            dirichlet_term += (alpha - g) * elog_theta[k] + math.lgamma(g) - lgamma_alpha
    dirichlet_term -= math.lgamma(total)
    return word_term + dirichlet_term, n_done


@jit
def _update_documents(
    indptr, indices, data, exp_beta, topic_word, psi_topic_totals, alpha, doc_topic, selected, first, last,
    max_iter, tol, prune, want_elbo, exp_doc_topic, ratio, elbo, n_updates,
):
    """Solve documents ``first..last-1`` whose ``selected`` flag is set, from their ``doc_topic`` row.

    ``doc_topic`` is updated in place; the other outputs are filled for the
    selected documents only. ``exp_beta`` has shape (n_features,
    n_components); ``topic_word`` (``lambda``, shape (n_components,
    n_features)) and ``psi_topic_totals`` (``psi`` of its row sums) give
    ``E[log beta]`` where ``exp_beta`` underflows.
    """
    n_components = exp_beta.shape[1]
    max_nnz = 0
    for d in range(first, last):
        max_nnz = max(max_nnz, indptr[d + 1] - indptr[d])
    beta_kw = np.empty((n_components, max_nnz))  # the document's words, topic-major
    norm = np.empty(max_nnz)
    r = np.empty(max_nnz)
    acc = np.empty(n_components)
    terms = np.empty(n_components)
    work = np.empty(n_components)
    active = np.empty(n_components, dtype=np.int64)
    all_topics = np.arange(n_components)
    gamma = np.empty(n_components)
    elog_theta = np.empty(n_components)
    exp_theta = np.empty(n_components)
    exp_digamma_alpha = exp_digamma(alpha)
    psi_alpha = digamma(alpha)
    lgamma_alpha = math.lgamma(alpha)
    lgamma_sum_alpha = math.lgamma(n_components * alpha)

    for d in range(first, last):
        if not selected[d]:
            continue
        start = indptr[d]
        nnz = indptr[d + 1] - start
        for j in range(nnz):
            w = indices[start + j]
            for k in range(n_components):
                beta_kw[k, j] = exp_beta[w, k]
        for k in range(n_components):
            gamma[k] = doc_topic[d, k]
        elbo[d], n_updates[d] = _solve_document(
            start, nnz, data, indices, beta_kw, topic_word, psi_topic_totals, alpha, gamma, max_iter, tol, prune,
            want_elbo, norm, r, acc, elog_theta, exp_theta, terms, work, active, all_topics, ratio[start:],
            exp_digamma_alpha, psi_alpha, lgamma_alpha, lgamma_sum_alpha,
        )
        for k in range(n_components):
            doc_topic[d, k] = gamma[k]
            exp_doc_topic[d, k] = exp_theta[k]


def update_documents(
    indptr, indices, data, exp_beta_t, topic_word, alpha, doc_topic, max_iter, tol, prune=False, elbo=True,
    selected=None, compiled=True,
):
    """Variational E-step for the documents of a CSR matrix, each from its row of ``doc_topic``.

    Parameters
    ----------
    indptr, indices, data : ndarray
        The CSR arrays of the document-term count matrix of shape
        (n_documents, n_features).
    exp_beta_t : ndarray of shape (n_features, n_components)
        ``exp(E[log beta])`` transposed (word-major).
    topic_word : ndarray of shape (n_components, n_features)
        The topic-word Dirichlet parameters ``lambda`` that ``exp_beta_t``
        was computed from; ``E[log beta]`` is taken from them only where
        ``norm_w`` underflows.
    alpha : float
        Document-topic prior.
    doc_topic : ndarray of shape (n_documents, n_components)
        Starting ``gamma`` of each document (not modified).
    max_iter : int
        Maximum number of fixed-point updates per document (0: evaluate the
        outputs at ``doc_topic`` as it is).
    tol : float
        A document stops when the mean absolute change of its ``gamma`` is
        below ``tol``.
    prune : bool, default=False
        Leave topics whose ``exp(E[log theta])`` is below 1e-6 of the
        document's largest out of the updates between full updates (every
        8th, and the one that stops). Changes ``gamma`` by about that
        fraction and makes the updates of concentrated documents several
        times cheaper.
    elbo : bool, default=True
        Compute the documents' ELBO (False returns zeros and saves the
        logarithms).
    selected : ndarray of bool of shape (n_documents,), optional
        Solve only these documents (the others' outputs stay zero and their
        ``gamma`` as given).
    compiled : bool, default=True
        Run the compiled kernel; False runs the numpy implementation of the
        same updates (:mod:`emkit._inference.lda_batched`), which agrees to
        round-off and compiles nothing (see :func:`compiled_pays_off`).

    Returns
    -------
    DocumentUpdate
    """
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    data = np.ascontiguousarray(data, dtype=np.float64)
    exp_beta_t = np.ascontiguousarray(exp_beta_t, dtype=np.float64)
    topic_word = np.ascontiguousarray(topic_word, dtype=np.float64)
    doc_topic = np.array(doc_topic, dtype=np.float64, order="C", copy=True)
    n_documents = indptr.shape[0] - 1
    n_features, n_components = exp_beta_t.shape
    if doc_topic.shape != (n_documents, n_components):
        raise ValueError(f"doc_topic must have shape {(n_documents, n_components)}, got {doc_topic.shape}.")
    if topic_word.shape != (n_components, n_features):
        raise ValueError(f"topic_word must have shape {(n_components, n_features)}, got {topic_word.shape}.")
    if indices.shape[0] != data.shape[0] or indptr[-1] != data.shape[0]:
        raise ValueError("indptr, indices and data do not describe one CSR matrix.")
    if selected is None:
        selected = np.ones(n_documents, dtype=np.bool_)
    exp_doc_topic = np.zeros_like(doc_topic)
    ratio = np.zeros_like(data)
    elbos = np.zeros(n_documents)
    n_updates = np.zeros(n_documents, dtype=np.int64)
    selected = np.ascontiguousarray(selected, dtype=np.bool_)
    if not compiled:
        lda_batched.solve_documents(
            indptr, indices, data, exp_beta_t, topic_word, float(alpha), doc_topic, selected, int(max_iter), float(tol),
            bool(prune), bool(elbo), exp_doc_topic, ratio, elbos, n_updates,
        )
        return DocumentUpdate(doc_topic, exp_doc_topic, ratio, elbos, n_updates)
    psi_topic_totals = np.array([digamma(total) for total in topic_word.sum(axis=1)])
    _update_documents(
        indptr, indices, data, exp_beta_t, topic_word, psi_topic_totals, float(alpha), doc_topic, selected, 0,
        n_documents, int(max_iter), float(tol), bool(prune), bool(elbo), exp_doc_topic, ratio, elbos, n_updates,
    )
    return DocumentUpdate(doc_topic, exp_doc_topic, ratio, elbos, n_updates)


def select_fresh(gain, slack=0.0):
    """Which documents may keep their fresh solution without lowering the total ELBO below a floor.

    ``gain[d]`` is the fresh solution's ELBO minus the ELBO at the previous
    gamma. Every document with a non-negative gain is kept; the others are
    added, smallest loss first, as long as the kept documents' total gain
    stays at least ``-slack``. The rest are solved from their previous gamma
    (which can only raise their ELBO above the baseline).

    Parameters
    ----------
    gain : ndarray of shape (n_documents,)
    slack : float, default=0.0
        How far (>= 0) the total may fall below the baseline.

    Returns
    -------
    keep : ndarray of bool of shape (n_documents,)
    """
    keep = gain >= 0
    surplus = float(np.sum(gain[keep])) + slack
    losers = np.flatnonzero(~keep)
    if losers.size:
        order = losers[np.argsort(-gain[losers], kind="stable")]
        cumulative = np.cumsum(-gain[order])
        keep[order[cumulative <= surplus]] = True
    return keep


@jit(reassociate=True)
def _expected_counts(indptr, indices, ratio, exp_doc_topic, exp_beta, out):
    """``out[w, k] = exp_beta[w, k] * sum_d exp_doc_topic[d, k] ratio[d, w]`` (``out`` zeroed by the caller)."""
    n_components = exp_doc_topic.shape[1]
    for d in range(indptr.shape[0] - 1):
        for j in range(indptr[d], indptr[d + 1]):
            w = indices[j]
            rj = ratio[j]
            for k in range(n_components):
                out[w, k] += rj * exp_doc_topic[d, k]
    for w in range(out.shape[0]):
        for k in range(n_components):
            out[w, k] *= exp_beta[w, k]


def expected_counts(indptr, indices, ratio, exp_doc_topic, exp_beta_t, compiled=True):
    """Expected topic-word counts ``sstats[k, w] = sum_d n_dw phi_dwk`` of an E-step.

    Parameters
    ----------
    indptr, indices : ndarray
        The CSR structure of the documents (as given to :func:`update_documents`).
    ratio : ndarray of shape (nnz,)
        :attr:`DocumentUpdate.ratio` (``n_w / norm_w`` per stored entry).
    exp_doc_topic : ndarray of shape (n_documents, n_components)
        :attr:`DocumentUpdate.exp_doc_topic`.
    exp_beta_t : ndarray of shape (n_features, n_components)
        The ``exp(E[log beta])`` the E-step used, word-major.
    compiled : bool, default=True
        Use the compiled kernel; False a sparse product in scipy (the same to round-off).

    Returns
    -------
    sstats : ndarray of shape (n_components, n_features)
        ``exp_beta[k, w] * sum_d exp_doc_topic[d, k] ratio[d, w]`` (a transposed view
        of a word-major array).
    """
    exp_beta_t = np.ascontiguousarray(exp_beta_t, dtype=np.float64)
    if not compiled:
        return lda_batched.expected_counts(indptr, indices, ratio, exp_doc_topic, exp_beta_t).T
    out = np.zeros_like(exp_beta_t)
    _expected_counts(
        np.ascontiguousarray(indptr, dtype=np.int64),
        np.ascontiguousarray(indices, dtype=np.int64),
        np.ascontiguousarray(ratio, dtype=np.float64),
        np.ascontiguousarray(exp_doc_topic, dtype=np.float64),
        exp_beta_t,
        out,
    )
    return out.T
