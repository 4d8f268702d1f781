"""Compiled kernels for Gaussian mixture E-steps, exact at any offset and separation.

Every kernel works on a block of rows laid out as *lanes*: the block is
transposed to ``(n_features, n_rows)`` (and log-densities or responsibilities
are ``(n_components, n_rows)``), so the innermost loop always runs over rows.
One vector instruction then serves several rows at once, whatever the number
of features and components.

Every term of component ``k`` is computed from ``x - mu_k`` (or ``x - c_k``),
centred on that component before anything is multiplied or squared, never
from an expansion about a shared point. The results are therefore as accurate
as a direct two-pass computation, however far the data sit from the origin
and from each other.

Inputs of at most :data:`NUMPY_MAX_ROWS` rows run the same arithmetic in
vectorised numpy instead (the ``_numpy_*`` functions; the public functions
with a ``numpy=None`` keyword choose by size, and callers that cut a larger
input into chunks pass ``numpy=False``): a first fit on small data then
answers without waiting for numba to compile the kernels (seconds, once per
installation). Up to that size numpy takes 1.3x to 3x the compiled time, at
most a millisecond or two per iteration (measured at 500 to 2,000 rows, D up
to 32, K up to 8). Both paths centre on each component first, so they agree
to round-off.
"""

import numpy as np

from ._jit import jit, specialized

__all__ = [
    "Scratch",
    "transpose_into",
    "diag_log_density",
    "full_log_density",
    "square_norms",
    "responsibilities",
    "diag_moments",
    "full_moments",
    "log_density_rows",
    "moments_rows",
    "normalize_log_rows",
    "normalize_log_groups",
]

#: Blocks of at most this many rows take the numpy path (see the module docstring).
NUMPY_MAX_ROWS = 1000

# Gaps to the row maximum below this are flushed to an exact 0 responsibility: exp(-700) changes no
# sum, and the subnormal numbers exp() would give below -708 slow every later product tenfold.
_FLUSH_BELOW = -700.0


# --------------------------------------------------------------------------- work arrays
class Scratch:
    """Work arrays shared by the chunks of one call, instead of fresh temporaries per chunk.

    Chunks are sized so that their temporaries take about half a megabyte.
    Allocated afresh for every chunk, each of them is a new memory mapping
    (and its page faults) wherever the C allocator is told to give memory back
    to the system eagerly: Dask's worker processes set
    ``MALLOC_TRIM_THRESHOLD_=65536``, and there a Gaussian E-step ran 1.6 to
    1.9 times slower than in the client process (measured on 125,000 x 16
    rows). One call's chunks therefore draw their arrays from a few flat
    buffers, kept for the call.
    """

    def __init__(self):
        self._flat = {}

    def empty(self, name, shape):
        """A C-contiguous float64 array of ``shape`` (contents undefined), the same memory on every call."""
        size = 1
        for extent in shape:
            size *= int(extent)
        flat = self._flat.get(name)
        if flat is None or flat.size < size:
            flat = self._flat[name] = np.empty(size)
        return flat[:size].reshape(shape)

    def padded(self, name, n_used, n_padding, n_rows):
        """``empty`` of shape (n_used + n_padding, n_rows) whose last ``n_padding`` rows are 0."""
        out = self.empty(name, (n_used + n_padding, n_rows))
        out[n_used:] = 0.0
        return out


# --------------------------------------------------------------------------- layout
_NARROW = 4  # a transposed side of at most this many entries is copied a whole line at a time (see _transpose)


@jit(inline=True)
def _transpose(source, target):
    """``target[j, i] = source[i, j]``, in the loop order that suits the shape.

    Rows of one to four entries (a few features or components) are copied
    one target line at a time, which writes contiguously (2-3x faster than
    row by row at 1 to 3 entries: stores four or three lines apart); past
    that, the outer loop runs along the long side, so that the short side's
    lines, a chunk apart, are written a few entries at a time (a line at a
    time, 8 to 64 of them a power-of-two stride apart collide in the cache:
    up to 6x slower). Only the order of the copies differs.
    """
    n_rows, n_cols = source.shape
    if n_cols <= _NARROW or (n_rows > _NARROW and n_cols > n_rows):
        for j in range(n_cols):
            for i in range(n_rows):
                target[j, i] = source[i, j]
    else:
        for i in range(n_rows):
            for j in range(n_cols):
                target[j, i] = source[i, j]


@jit
def _transpose_into(source, target):
    _transpose(source, target)


def transpose_into(source, target, numpy=None):
    """``target[...] = source.T`` (with conversion), compiled: for lanes of a few rows, numpy's
    strided copy costs several times more.

    Parameters
    ----------
    source : ndarray of shape (n, m)
    target : ndarray of shape (m, n)
    """
    if _small(source.shape[0], numpy):
        target[...] = source.T
    else:
        _transpose_into(source, target)


# --------------------------------------------------------------------------- log-densities
@jit(inline=True)
def _to_log_density(row, const):
    """Squared Mahalanobis distances in ``row`` -> ``const - distance / 2``, in place."""
    for i in range(row.shape[0]):
        row[i] = const - 0.5 * row[i]


@jit
def _diag_log_density(lanes, means, scales, const, out):
    n_features, n_rows = lanes.shape
    for k in range(means.shape[0]):
        row = out[k]
        row[:] = 0.0
        # four features per sweep over the rows (one load and store of the running sum per four terms)
        for d in range(0, n_features - 3, 4):
            c0, c1, c2, c3 = means[k, d], means[k, d + 1], means[k, d + 2], means[k, d + 3]
            s0, s1, s2, s3 = scales[k, d], scales[k, d + 1], scales[k, d + 2], scales[k, d + 3]
            x0, x1, x2, x3 = lanes[d], lanes[d + 1], lanes[d + 2], lanes[d + 3]
            for i in range(n_rows):
                t0 = (x0[i] - c0) * s0
                t1 = (x1[i] - c1) * s1
                t2 = (x2[i] - c2) * s2
                t3 = (x3[i] - c3) * s3
                row[i] += t0 * t0 + t1 * t1 + t2 * t2 + t3 * t3
        for d in range(n_features - n_features % 4, n_features):
            center = means[k, d]
            scale = scales[k, d]
            x = lanes[d]
            for i in range(n_rows):
                t = (x[i] - center) * scale
                row[i] += t * t
        _to_log_density(row, const[k])


def diag_log_density(lanes, means, scales, const, out, numpy=None):
    """Diagonal-covariance log-densities of a block of rows.

    Parameters
    ----------
    lanes : ndarray of shape (n_features, n_rows), float64, C-contiguous
        The block, transposed.
    means : ndarray of shape (n_components, n_features), float64
    scales : ndarray of shape (n_components, n_features), float64
        ``1 / sigma_kd`` (a spherical component repeats its value).
    const : ndarray of shape (n_components,), float64
        ``sum_d log(scale_kd) - D/2 log(2 pi)`` (plus anything else per component).
    out : ndarray of shape (n_components, n_rows), float64, C-contiguous
        Receives ``const_k - 1/2 sum_d ((x_d - mu_kd) scale_kd)^2``.
    """
    if _small(lanes.shape[1], numpy):
        _numpy_log_density(lanes, means, scales, const, out, full=False)
    else:
        _diag_log_density(lanes, means, scales, const, out)


@jit(inline=True)
def _upper(factor, b, a, n_features):
    """``factor[b, a]`` on or above the diagonal of an n_features matrix, else 0."""
    return factor[b, a] if (a < n_features and b <= a) else 0.0


@jit
def _full_log_density(lanes, means, prec_chol, const, out, diff, whitened):
    n_features, n_rows = lanes.shape
    shared = prec_chol.shape[0] == 1  # tied: one factor for every component
    w0, w1, w2, w3 = whitened[0], whitened[1], whitened[2], whitened[3]
    for k in range(means.shape[0]):
        u = prec_chol[0] if shared else prec_chol[k]
        for b in range(n_features):
            center = means[k, b]
            x = lanes[b]
            db = diff[b]
            for i in range(n_rows):
                db[i] = x[i] - center
        row = out[k]
        row[:] = 0.0
        # y_a = sum_{b <= a} U[b, a] (x_b - mu_b): outputs a0..a0+3 from inputs b0..b0+3 per sweep over
        # the rows (four loads, sixteen products, four stores); coefficients below the diagonal or past
        # the last feature are 0, and so are the padding rows of diff
        for a0 in range(0, n_features, 4):
            whitened[:] = 0.0
            a1, a2, a3 = a0 + 1, a0 + 2, a0 + 3
            for b0 in range(0, min(a0 + 4, n_features), 4):
                b1, b2, b3 = b0 + 1, b0 + 2, b0 + 3
                c00, c01 = _upper(u, b0, a0, n_features), _upper(u, b1, a0, n_features)
                c02, c03 = _upper(u, b2, a0, n_features), _upper(u, b3, a0, n_features)
                c10, c11 = _upper(u, b0, a1, n_features), _upper(u, b1, a1, n_features)
                c12, c13 = _upper(u, b2, a1, n_features), _upper(u, b3, a1, n_features)
                c20, c21 = _upper(u, b0, a2, n_features), _upper(u, b1, a2, n_features)
                c22, c23 = _upper(u, b2, a2, n_features), _upper(u, b3, a2, n_features)
                c30, c31 = _upper(u, b0, a3, n_features), _upper(u, b1, a3, n_features)
                c32, c33 = _upper(u, b2, a3, n_features), _upper(u, b3, a3, n_features)
                d0, d1, d2, d3 = diff[b0], diff[b1], diff[b2], diff[b3]
                for i in range(n_rows):
                    v0, v1, v2, v3 = d0[i], d1[i], d2[i], d3[i]
                    w0[i] += c00 * v0 + c01 * v1 + c02 * v2 + c03 * v3
                    w1[i] += c10 * v0 + c11 * v1 + c12 * v2 + c13 * v3
                    w2[i] += c20 * v0 + c21 * v1 + c22 * v2 + c23 * v3
                    w3[i] += c30 * v0 + c31 * v1 + c32 * v2 + c33 * v3
            for i in range(n_rows):
                row[i] += w0[i] * w0[i] + w1[i] * w1[i] + w2[i] * w2[i] + w3[i] * w3[i]
        _to_log_density(row, const[k])


def full_log_density(lanes, means, prec_chol, const, out, numpy=None, scratch=None):
    """Full- (or tied-) covariance log-densities of a block of rows.

    Parameters
    ----------
    lanes : ndarray of shape (n_features, n_rows), float64, C-contiguous
    means : ndarray of shape (n_components, n_features), float64
    prec_chol : ndarray of shape (n_components, n_features, n_features) or (1, n_features, n_features)
        Upper-triangular ``U_k`` with ``U_k U_k^T = Sigma_k^-1`` (one shared
        factor for tied); only the upper triangle is read.
    const : ndarray of shape (n_components,), float64
        ``log det U_k - D/2 log(2 pi)`` (plus anything else per component).
    out : ndarray of shape (n_components, n_rows), float64, C-contiguous
        Receives ``const_k - 1/2 |U_k^T (x - mu_k)|^2``.
    """
    n_features, n_rows = lanes.shape
    if _small(n_rows, numpy):
        _numpy_log_density(lanes, means, prec_chol, const, out, full=True)
        return
    scratch = Scratch() if scratch is None else scratch
    diff = scratch.padded("diff", n_features, 3, n_rows)  # three zero rows pad the last sweep of four inputs
    whitened = scratch.empty("whitened", (4, n_rows))
    _full_log_density(lanes, means, np.ascontiguousarray(prec_chol, dtype=np.float64), const, out, diff, whitened)


@jit(reassociate=True)
def _square_norms(whitened, const, out):
    n_components, n_rows, n_features = whitened.shape
    for k in range(n_components):
        ck = const[k]
        for i in range(n_rows):
            y = whitened[k, i]
            total = 0.0
            for d in range(n_features):
                total += y[d] * y[d]
            out[k, i] = ck - 0.5 * total


def square_norms(whitened, const, out, numpy=None):
    """``out[k, i] = const[k] - 1/2 |whitened[k, i]|^2`` (the last step of a BLAS-whitened density).

    Parameters
    ----------
    whitened : ndarray of shape (n_components, n_rows, n_features), C-contiguous
        ``(x_i - mu_k) U_k``, float64 or float32 (squares are summed in float64).
    const : ndarray of shape (n_components,), float64
    out : ndarray of shape (n_components, n_rows), float64
    """
    if _small(whitened.shape[1], numpy):
        # products in the input's dtype, sums in float64, as the compiled loop does
        out[...] = const[:, np.newaxis] - 0.5 * np.sum(whitened * whitened, axis=2, dtype=np.float64)
    else:
        _square_norms(whitened, const, out)


# --------------------------------------------------------------------------- responsibilities
@jit
def _shift_lanes(log_prob, peaks):
    n_components, n_rows = log_prob.shape
    for i in range(n_rows):  # element by element: a slice copy would compile numba's shape-mismatch error
        peaks[i] = log_prob[0, i]
    for k in range(1, n_components):
        row = log_prob[k]
        for i in range(n_rows):
            if row[i] > peaks[i]:
                peaks[i] = row[i]
    for k in range(n_components):
        row = log_prob[k]
        for i in range(n_rows):
            gap = row[i] - peaks[i]  # NaN for a row with no density anywhere (-inf - -inf): flushed too
            row[i] = gap if gap > _FLUSH_BELOW else -np.inf


@jit
def _normalize_lanes(prob, peaks, sample_weight, log_norm, scale):
    n_components, n_rows = prob.shape
    for i in range(n_rows):
        scale[i] = prob[0, i]
    for k in range(1, n_components):
        row = prob[k]
        for i in range(n_rows):
            scale[i] += row[i]
    for i in range(n_rows):
        total = scale[i]
        if total > 0.0:
            log_norm[i] = peaks[i] + np.log(total)
            scale[i] = sample_weight[i] / total
        else:  # no component gives this row any density
            log_norm[i] = -np.inf
            scale[i] = 0.0
    for k in range(n_components):
        row = prob[k]
        for i in range(n_rows):
            row[i] *= scale[i]


def responsibilities(log_prob, sample_weight=None, numpy=None):
    """Turn log joint densities (lanes) into weighted responsibilities in place.

    A compiled pass subtracts each row's maximum (flushing gaps below -700 to
    an exact 0), numpy's vectorised ``exp`` exponentiates, and a second
    compiled pass normalises, multiplies by the sample weights and records the
    log normaliser.

    Parameters
    ----------
    log_prob : ndarray of shape (n_components, n_rows), float64, C-contiguous
        ``log p(x_i, z_i = k)``; overwritten by ``w_i p(z_i = k | x_i)`` (all
        zeros for a row with no density anywhere).
    sample_weight : ndarray of shape (n_rows,), optional
        ``w_i``; None means 1.

    Returns
    -------
    log_norm : ndarray of shape (n_rows,)
        ``log p(x_i)`` (``-inf`` for a row with no density anywhere).
    """
    n_rows = log_prob.shape[1]
    weight = np.ones(n_rows) if sample_weight is None else np.ascontiguousarray(sample_weight, dtype=np.float64)
    if _small(n_rows, numpy):
        return _numpy_responsibilities(log_prob, weight)
    peaks = np.empty(n_rows)
    log_norm = np.empty(n_rows)
    scale = np.empty(n_rows)
    _shift_lanes(log_prob, peaks)
    np.exp(log_prob, out=log_prob)
    _normalize_lanes(log_prob, peaks, weight, log_norm, scale)
    return log_norm


def normalize_log_rows(log_prob):
    """Turn log joint densities (one row per sample) into posteriors in place.

    Parameters
    ----------
    log_prob : ndarray of shape (n_rows, n_components), C-contiguous
        ``log p(x_n, z_n = k)``; overwritten by ``p(z_n = k | x_n)`` (all zeros
        for a row with no density anywhere; gaps below -700 to the row's
        maximum are flushed to an exact 0).

    Returns
    -------
    log_norm : ndarray of shape (n_rows,), float64
        ``log p(x_n) = logsumexp_k log_prob[n, k]``.
    """
    if not log_prob.flags.c_contiguous:
        raise ValueError("normalize_log_rows needs a C-contiguous array")
    lanes = np.ascontiguousarray(log_prob.T, dtype=np.float64)
    log_norm = responsibilities(lanes)
    log_prob[...] = lanes.T
    return log_norm


@jit
def _normalize_log_groups(joint, log_norm):
    n_rows, n_groups, group = joint.shape
    for i in range(n_rows):
        for k in range(n_groups):
            row = joint[i, k]
            peak = row[0]
            for m in range(1, group):
                if row[m] > peak:
                    peak = row[m]
            if not peak > -np.inf:  # no density in this group (or NaN): zero responsibilities
                log_norm[i, k] = -np.inf
                row[:] = 0.0
                continue
            total = 0.0
            for m in range(group):
                gap = row[m] - peak
                term = np.exp(gap) if gap > _FLUSH_BELOW else 0.0
                row[m] = term
                total += term
            log_norm[i, k] = peak + np.log(total)
            scale = 1.0 / total
            for m in range(group):
                row[m] *= scale


def normalize_log_groups(joint):
    """Log-normalisers of groups of log densities, and the groups turned into posteriors, in place.

    For a mixture inside each state (GMMHMM): ``joint[i, k, m] = log w_km + log p(x_i | k, m)``
    becomes ``p(m | x_i, k)``, and ``log_norm[i, k] = log p(x_i | k)``; each group is shifted by its
    maximum first (gaps below -700 flushed to an exact 0, as :func:`responsibilities` does).

    Parameters
    ----------
    joint : ndarray of shape (n_rows, n_groups, group_size), float64, C-contiguous
        Overwritten by the posteriors within each group (all zeros for a group with no density).

    Returns
    -------
    log_norm : ndarray of shape (n_rows, n_groups)
        ``logsumexp`` over the last axis (``-inf`` for a group with no density).
    """
    if joint.dtype != np.float64 or not joint.flags.c_contiguous:
        raise ValueError("normalize_log_groups needs a C-contiguous float64 array")
    log_norm = np.empty(joint.shape[:2])
    _normalize_log_groups(joint, log_norm)
    return log_norm


# --------------------------------------------------------------------------- statistics
# Running statistics of a component are (N, f, S): the mass N = sum r, the first moment f = sum r (x - c)
# about the fixed centre c, and the scatter S = sum r (x - m)(x - m)^T about their own weighted mean
# m = c + f / N. A chunk's (n, s1, Sc) is taken in two passes over its rows (the mean, then the scatter
# about it) and merged exactly (Chan, Golub and LeVeque):
#     S += Sc + (N n / (N + n)) u u^T   with   u = f / N - s1 / n,   then f += s1, N += n.
# The scatters are sums of squares of rows centred on their own chunk's mean, and the merge adds a
# non-negative term, so nothing cancels however far the data lie from c, and the M-step needs no
# correction of the size of its step. The one rounding that grows with the distance |m - c| is in u,
# a difference of two means each known to eps |m - c|; it enters the scatter to first order only
# (measured: 1e-10 relative when a mean moves by 5e7 standard deviations in one step, where a
# correction of statistics about c loses eps (|m - c| / sigma)^2, everything).
@jit(inline=True)
def _chunk_mean(lanes, w, center, k, post, first, offset, mean, gap):
    """Pass 1 for component k over a chunk with weights ``w``.

    Fills ``offset = sum w (x - c_k)`` (the chunk's first moment), ``mean``
    (the chunk's weighted mean) and ``gap`` (``u`` of the merge); returns the
    chunk's mass and the weight of ``u u^T`` in the merged scatter (a mass of
    0 means nothing of the chunk belongs to k: every term is an exact 0).
    """
    n_features, n_rows = lanes.shape
    mass = 0.0
    for i in range(n_rows):
        mass += w[i]
    if mass == 0.0:
        return 0.0, 0.0
    total = post[k]
    for b in range(n_features):
        c = center[k, b]
        x = lanes[b]
        s1 = 0.0
        for i in range(n_rows):
            s1 += w[i] * (x[i] - c)
        offset[b] = s1
        mean[b] = c + s1 / mass
        gap[b] = (first[k, b] / total if total > 0.0 else 0.0) - s1 / mass
    return mass, total * mass / (total + mass)


@jit(inline=True)
def _diag_scatter(lanes, w, mean, scatter):
    """``scatter[d] += sum w (x_d - mean_d)^2`` (pass 2, diagonal)."""
    n_features, n_rows = lanes.shape
    for d in range(n_features):
        m = mean[d]
        x = lanes[d]
        s2 = 0.0
        for i in range(n_rows):
            dv = x[i] - m
            s2 += w[i] * dv * dv
        scatter[d] += s2


@jit(inline=True)
def _add_four(upper, a, b0, s0, s1, s2, s3, n_features):
    """Add four sums to ``upper[a, b0:b0+4]``, keeping only entries on or above the diagonal."""
    if b0 >= a:
        upper[a, b0] += s0
    if a <= b0 + 1 < n_features:
        upper[a, b0 + 1] += s1
    if a <= b0 + 2 < n_features:
        upper[a, b0 + 2] += s2
    if a <= b0 + 3 < n_features:
        upper[a, b0 + 3] += s3


@jit(inline=True)
def _full_scatter(lanes, w, mean, upper, diff, weighted):
    """``upper += sum w (x - mean)(x - mean)^T`` on and above the diagonal (pass 2, full)."""
    n_features, n_rows = lanes.shape
    for b in range(n_features):
        m = mean[b]
        x = lanes[b]
        db = diff[b]
        wb = weighted[b]
        for i in range(n_rows):
            dv = x[i] - m
            db[i] = dv
            wb[i] = w[i] * dv
    # blocks of two rows a, a+1 by four columns b0..b0+3: eight running sums per sweep over the rows
    # (padding rows of diff and weighted are 0; sums below the diagonal or past the last feature are dropped)
    for a in range(0, n_features, 2):
        p_row, q_row = weighted[a], weighted[a + 1]
        for b0 in range(a, n_features, 4):
            d0, d1, d2, d3 = diff[b0], diff[b0 + 1], diff[b0 + 2], diff[b0 + 3]
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = 0.0
            for i in range(n_rows):
                p, q = p_row[i], q_row[i]
                e0, e1, e2, e3 = d0[i], d1[i], d2[i], d3[i]
                s00 += p * e0
                s01 += p * e1
                s02 += p * e2
                s03 += p * e3
                s10 += q * e0
                s11 += q * e1
                s12 += q * e2
                s13 += q * e3
            _add_four(upper, a, b0, s00, s01, s02, s03, n_features)
            if a + 1 < n_features:
                _add_four(upper, a + 1, b0, s10, s11, s12, s13, n_features)


@jit(reassociate=True)
def _moments(lanes, resp, center, post, first, second, diff, weighted, offset, mean, gap):
    n_features = lanes.shape[0]
    for k in range(center.shape[0]):
        w = resp[k]
        mass, weight = _chunk_mean(lanes, w, center, k, post, first, offset, mean, gap)
        if mass == 0.0:
            continue
        scatter = second[k]
        if second.ndim == 2:  # diag and spherical: the diagonal only
            _diag_scatter(lanes, w, mean, scatter)
            for d in range(n_features):
                scatter[d] += weight * gap[d] * gap[d]
        else:
            _full_scatter(lanes, w, mean, scatter, diff, weighted)
            for a in range(n_features):
                for b in range(a, n_features):
                    scatter[a, b] += weight * gap[a] * gap[b]
        for b in range(n_features):
            first[k, b] += offset[b]
        post[k] += mass


def diag_moments(lanes, resp, center, post, first, second, numpy=None):
    """Merge a chunk's diagonal statistics into running float64 ones (see the comment above).

    Parameters
    ----------
    lanes : ndarray of shape (n_features, n_rows), float64, C-contiguous
    resp : ndarray of shape (n_components, n_rows), float64, C-contiguous
        Weights ``r_ik`` (responsibilities times sample weights).
    center : ndarray of shape (n_components, n_features), float64
        ``c_k``, the centre of the first moments.
    post, first, second : ndarray of shape (n_components,), (n_components, n_features), (n_components, n_features)
        Running ``N_k = sum r_ik``, ``sum r_ik (x_i - c_k)`` and
        ``sum r_ik (x_i - m_k)^2`` (elementwise) about the weighted mean
        ``m_k = c_k + first_k / N_k``; updated in place.
    """
    n_features = lanes.shape[0]
    if _small(lanes.shape[1], numpy):
        _numpy_moments(lanes, resp, center, post, first, second, full=False)
        return
    unused = np.empty((0, 0))
    _moments(lanes, resp, center, post, first, second, unused, unused, *(np.empty(n_features) for _ in range(3)))


def full_moments(lanes, resp, center, post, first, upper, numpy=None, scratch=None):
    """Merge a chunk's statistics (scatter matrices as upper triangles) into running float64 ones.

    Parameters
    ----------
    lanes : ndarray of shape (n_features, n_rows), float64, C-contiguous
    resp : ndarray of shape (n_components, n_rows), float64, C-contiguous
        Weights ``r_ik``.
    center : ndarray of shape (n_components, n_features), float64
        ``c_k``, the centre of the first moments.
    post, first : ndarray of shape (n_components,), (n_components, n_features)
        Running ``N_k`` and ``sum r_ik (x_i - c_k)``; updated in place.
    upper : ndarray of shape (n_components, n_features, n_features)
        Its upper triangle holds the running ``sum r_ik (x_i - m_k)(x_i - m_k)^T``
        about the weighted mean ``m_k = c_k + first_k / N_k``; updated in
        place (the strict lower triangle is not touched).
    """
    n_features, n_rows = lanes.shape
    if _small(n_rows, numpy):
        _numpy_moments(lanes, resp, center, post, first, upper, full=True)
        return
    scratch = Scratch() if scratch is None else scratch
    diff = scratch.padded("diff", n_features, 3, n_rows)  # zero rows pad the sweeps of two rows and four columns
    weighted = scratch.padded("weighted", n_features, 1, n_rows)
    _moments(lanes, resp, center, post, first, upper, diff, weighted, *(np.empty(n_features) for _ in range(3)))


# --------------------------------------------------------------------------- whole inputs, one compiled call
# A large input is cut into chunks of rows (their temporaries stay small), each chunk transposed to lanes, run
# through the kernels above and, for densities, transposed back. Compiled chunk loops do what a Python loop
# over the chunks does, with the same chunks and the same kernels (so the same results), without a Python
# round trip and two to four compiled calls per chunk: with few features and components a chunk's work is
# as short as those calls (one sequence of a million rows, K=3, D=1: ~1000 calls per E-step).
@jit(inline=True)
def _rows_as_lanes(source, start, n_rows, flat):
    """Rows ``start:start + n_rows`` of ``source`` transposed into a (n_cols, n_rows) float64 view of ``flat``."""
    n_cols = source.shape[1]
    lanes = flat[: n_cols * n_rows].reshape((n_cols, n_rows))
    _transpose(source[start : start + n_rows], lanes)
    return lanes


@jit(inline=True)
def _padded_view(flat, n_used, n_padding, n_rows):
    """A (n_used + n_padding, n_rows) view of ``flat`` whose last ``n_padding`` rows are 0 (as Scratch.padded)."""
    out = flat[: (n_used + n_padding) * n_rows].reshape((n_used + n_padding, n_rows))
    for j in range(n_used, n_used + n_padding):
        for i in range(n_rows):
            out[j, i] = 0.0
    return out


@jit
def _log_density_rows(X, means, factor, const, out, chunk_rows):
    n_samples, n_features = X.shape
    n_components = means.shape[0]
    full = factor.ndim == 3
    width = min(chunk_rows, n_samples)
    lanes_flat = np.empty(n_features * width)
    dens_flat = np.empty(n_components * width)
    diff_flat = np.empty((n_features + 3) * width if full else 0)
    whitened_flat = np.empty(4 * width if full else 0)
    for start in range(0, n_samples, chunk_rows):
        n_rows = min(chunk_rows, n_samples - start)
        lanes = _rows_as_lanes(X, start, n_rows, lanes_flat)
        dens = dens_flat[: n_components * n_rows].reshape((n_components, n_rows))
        if full:
            diff = _padded_view(diff_flat, n_features, 3, n_rows)
            whitened = whitened_flat[: 4 * n_rows].reshape((4, n_rows))
            _full_log_density(lanes, means, factor, const, dens, diff, whitened)
        else:
            _diag_log_density(lanes, means, factor, const, dens)
        _transpose(dens, out[start : start + n_rows])


def log_density_rows(X, means, factor, const, out, chunk_rows):
    """Diagonal- or full-covariance log-densities of every row, chunk by chunk in one compiled call.

    The same chunks through the same kernels as calling :func:`diag_log_density`
    or :func:`full_log_density` on the lanes of each chunk of ``chunk_rows``
    rows (with ``numpy=False``), so the same results.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float64 or float32
    means : ndarray of shape (n_components, n_features), float64
    factor : ndarray, float64, C-contiguous
        The scales of shape (n_components, n_features) (diagonal), or the
        upper-triangular precision factors of shape (n_components or 1,
        n_features, n_features) (full, tied).
    const : ndarray of shape (n_components,), float64
    out : ndarray of shape (n_samples, n_components)
        Receives the log-densities, one row per sample.
    chunk_rows : int
    """
    _log_density_rows(X, means, factor, const, out, int(chunk_rows))


@jit
def _moments_rows(X, weights, center, post, first, second, chunk_rows):
    n_samples, n_features = X.shape
    full = second.ndim == 3
    width = min(chunk_rows, n_samples)
    lanes_flat = np.empty(n_features * width)
    resp_flat = np.empty(weights.shape[1] * width)
    diff_flat = np.empty((n_features + 3) * width if full else 0)
    weighted_flat = np.empty((n_features + 1) * width if full else 0)
    offset, mean, gap = np.empty(n_features), np.empty(n_features), np.empty(n_features)
    for start in range(0, n_samples, chunk_rows):
        n_rows = min(chunk_rows, n_samples - start)
        lanes = _rows_as_lanes(X, start, n_rows, lanes_flat)
        resp = _rows_as_lanes(weights, start, n_rows, resp_flat)
        if full:  # zero rows pad the sweeps of two rows and four columns (see full_moments)
            diff = _padded_view(diff_flat, n_features, 3, n_rows)
            weighted = _padded_view(weighted_flat, n_features, 1, n_rows)
        else:
            diff = weighted = diff_flat[:0].reshape((0, 0))
        _moments(lanes, resp, center, post, first, second, diff, weighted, offset, mean, gap)


def moments_rows(X, weights, center, post, first, second, chunk_rows):
    """Merge the statistics of every row into running ones, chunk by chunk in one compiled call.

    The same chunks through the same kernel as :func:`diag_moments` or
    :func:`full_moments` on the lanes of each chunk of ``chunk_rows`` rows
    (with ``numpy=False``), so the same results.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float64 or float32
    weights : ndarray of shape (n_samples, n_components)
        ``r_ik``, one row per sample.
    center, post, first : see :func:`diag_moments`
    second : ndarray of shape (n_components, n_features) or (n_components, n_features, n_features)
        The running diagonal scatters (diag), or the upper triangles of the
        scatter matrices (full); updated in place.
    chunk_rows : int
    """
    _moments_rows(X, weights, center, post, first, second, int(chunk_rows))


# --------------------------------------------------------------------------- densities and row maxima, row by row
SHIFTED_MAX_FEATURES = 2  # log_density_shifted_rows takes up to this many features ...
SHIFTED_MAX_COMPONENTS = 8  # ... and components (a compile-time constant: unrolled loops)


@jit
def _diag_log_density_shifted_rows(X, means, scales, const, out, shifted, shifts, n_components):
    n_samples, n_features = X.shape
    for i in range(n_samples):
        best = -np.inf
        for k in range(n_components):
            distance = 0.0
            for d in range(n_features):
                t = (X[i, d] - means[k, d]) * scales[k, d]
                distance += t * t
            value = const[k] - 0.5 * distance
            out[i, k] = value
            best = value if value > best else best
        best = best if best > -np.inf else 0.0  # an all -inf row gives zero frames (impossible step)
        shifts[i] = best
        for k in range(n_components):
            shifted[i, k] = out[i, k] - best


def log_density_shifted_rows(X, means, scales, const, out, shifted, shifts):
    """Diagonal log-densities of every row, with each row's maximum and the row minus it: what the HMM
    kernels exponentiate, in one pass.

    For few features and components (at most ``SHIFTED_MAX_FEATURES`` and
    ``SHIFTED_MAX_COMPONENTS``). There the rows are short, so this row-major
    pass, with no lanes to transpose into and back, writes the three outputs
    while the row is in registers: 0.70 to 0.89 of the time of
    :func:`log_density_rows` followed by the HMM's separate pass over the
    rows for their maxima (measured at 10^6 rows, 1 to 2 features, 2 to 8
    components; at 4 features and 4 or more components it is slower, hence
    the limits). Each distance is summed feature by feature from zero, as
    the lane kernel sums up to four features, so ``out`` is bit for bit
    :func:`log_density_rows`'s.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float64 or float32
    means, scales : ndarray of shape (n_components, n_features), float64
    const : ndarray of shape (n_components,), float64
    out, shifted : ndarray of shape (n_samples, n_components), float64
        Receive the log-densities, and each row minus its maximum.
    shifts : ndarray of shape (n_samples,), float64
        Receives each row's maximum (0 for a row of ``-inf``).
    """
    X = np.ascontiguousarray(X, dtype=np.float64)  # one compiled signature (float32 converts exactly)
    args = (X, means, scales, const, out, shifted, shifts, means.shape[0])
    specialized(_diag_log_density_shifted_rows, args, constant=True)(*args)


# --------------------------------------------------------------------------- numpy path for small blocks
def _small(n_rows, numpy):
    """Whether a call takes the numpy path: the caller's choice, else at most NUMPY_MAX_ROWS rows.

    Callers that cut a larger input into chunks decide once for the whole
    input (``numpy=False``), so chunks of a large input never leave the
    compiled kernels.
    """
    return n_rows <= NUMPY_MAX_ROWS if numpy is None else numpy


def _numpy_log_density(lanes, means, factors, const, out, full):
    """``out[k] = const_k - |W_k (x - mu_k)|^2 / 2``: W_k = U_k^T (full, tied) or diag(scales_k)."""
    for k in range(means.shape[0]):
        diff = lanes - means[k][:, np.newaxis]
        if full:
            factor = factors[0] if factors.shape[0] == 1 else factors[k]
            whitened = np.triu(factor).T @ diff
        else:
            whitened = factors[k][:, np.newaxis] * diff
        out[k] = const[k] - 0.5 * np.einsum("ij,ij->j", whitened, whitened)


def _numpy_responsibilities(log_prob, weight):
    """:func:`responsibilities` in numpy: the same shift, flush, normalisation and weighting."""
    with np.errstate(invalid="ignore"):
        peaks = np.max(log_prob, axis=0)
        gaps = log_prob - peaks
    np.exp(np.where(gaps > _FLUSH_BELOW, gaps, -np.inf), out=log_prob)
    total = np.sum(log_prob, axis=0)
    found = total > 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        log_norm = np.where(found, peaks + np.log(np.where(found, total, 1.0)), -np.inf)
        scale = np.where(found, weight / np.where(found, total, 1.0), 0.0)
    log_prob *= scale
    return log_norm


def _numpy_moments(lanes, resp, center, post, first, second, full):
    """:func:`diag_moments` / :func:`full_moments` in numpy: chunk mean, scatter about it, exact merge."""
    upper = np.triu(np.ones((lanes.shape[0],) * 2, dtype=bool)) if full else None
    for k in range(center.shape[0]):
        w = resp[k]
        mass = np.sum(w)
        if mass == 0.0:
            continue
        total = post[k]
        offset = (lanes - center[k][:, np.newaxis]) @ w
        mean = center[k] + offset / mass
        gap = (first[k] / total if total > 0.0 else 0.0) - offset / mass
        weight = total * mass / (total + mass)
        diff = lanes - mean[:, np.newaxis]
        if full:
            second[k][upper] += ((diff * w) @ diff.T + weight * np.outer(gap, gap))[upper]
        else:
            second[k] += (diff * diff) @ w + weight * gap * gap
        first[k] += offset
        post[k] += mass
