"""Running emkit's E-steps where the data live: on a Dask cluster.

dask is an optional dependency (``pip install "emkit[dask]"``): nothing here
imports it until an estimator is given a ``dask.array.Array``.

How a fit on a dask array works:

1. Validation (:func:`check_dask_array`) reads only metadata to refuse what
   cannot work (unknown chunk sizes, a chunking that cuts a sequence, a wrong
   number of columns), then one pass over the chunks checks their values
   (dtype, NaN/inf, negative counts) without gathering them.
2. The data become :class:`DaskBlocks`: one block per row chunk (whole
   sequences for the sequence models).
3. :class:`DaskExecutor` persists the chunks on the workers when they fit in
   the cluster's memory (otherwise every E-step recomputes them chunk by chunk
   from their source), sends the parameters to the workers once per E-step,
   runs the model's block function next to each chunk and brings back only the
   small statistics, which the engine adds in chunk order: the same arithmetic
   as a fit in memory. Per-block working state (LDA's document mixtures) stays
   on the workers as futures. The M-step runs in the client.
4. When the fit ends (or raises), the executor releases everything it put on
   the cluster; the fitted estimator holds plain numpy arrays only.

Without a ``distributed`` client, the same graph runs on dask's local
scheduler.
"""

import functools

import numpy as np

from ._blocks import BlockResult

__all__ = [
    "is_dask_array",
    "DaskBlocks",
    "DaskExecutor",
    "check_dask_array",
    "row_chunks_on_sequences",
    "sample_rows",
    "rowwise",
    "sequencewise",
    "sample_sequences",
    "gather_labels",
    "per_chunk",
]

# persist the data when they take at most this fraction of the workers' memory
_PERSIST_FRACTION = 0.5


def is_dask_array(X):
    """True for a ``dask.array.Array`` (checked without importing dask)."""
    return type(X).__module__.split(".")[0] == "dask" and hasattr(X, "chunks") and hasattr(X, "dask")


def _client():
    """The active ``distributed`` client, or None (dask's local scheduler then runs the graph)."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


# ---------------------------------------------------------------------------- validation
def _chunk_summary(chunk, check_negative):
    shape = chunk.shape
    if hasattr(chunk, "tocsr"):  # a scipy.sparse chunk: its stored values
        chunk = chunk.tocsr().data
    chunk = np.asarray(chunk)
    summary = {
        "dtype": chunk.dtype.str,
        "nan": bool(np.isnan(chunk).any()) if chunk.dtype.kind == "f" else False,
        "inf": bool(np.isinf(chunk).any()) if chunk.dtype.kind == "f" else False,
        "negative": bool((chunk < 0).any()) if check_negative and chunk.size else False,
    }
    return np.array([summary], dtype=object).reshape((1,) * len(shape))


def check_dask_array(
    X, *, name="X", n_features=None, allow_nan=False, non_negative=False, whom="fit", check_values=True
):
    """Validate a dask array of rows without gathering it; return it with one column chunk.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
    name : str
        How the error messages call it.
    n_features : int, optional
        The number of columns the fitted model expects (prediction).
    allow_nan : bool, default=False
        NaN entries are missing values rather than an error.
    non_negative : bool, default=False
        Refuse negative entries (counts).
    whom : str
        The method, for the error messages.
    check_values : bool, default=True
        Run the pass over the chunks that checks their values; False checks
        the metadata only (prediction: each chunk's own method checks it).

    Returns
    -------
    X : dask.array.Array
        Rechunked so that each row chunk holds all the columns.

    Raises
    ------
    ValueError
        Not 2-D, unknown chunk sizes, another column count, non-numeric or
        mixed dtypes across chunks, NaN/inf (unless ``allow_nan``: NaN only),
        negative values (``non_negative``).
    """
    import dask

    if X.ndim != 2:
        raise ValueError(f"{whom}: expected a 2-D dask array for {name}, got {X.ndim} dimension(s).")
    if any(np.isnan(size) for size in X.chunks[0]) or np.isnan(X.shape[0]):
        raise ValueError(
            f"{whom}: {name} has unknown chunk sizes (NaN in its shape). Call {name}.compute_chunk_sizes() first, "
            "or build it with known chunks."
        )
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"{whom}: {name} has {X.shape[1]} features, but the model is expecting {n_features} features as input."
        )
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{whom}: {name} must be numeric, got dtype {X.dtype}.")
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    if not check_values:
        return X
    summaries = dask.compute(X.map_blocks(_chunk_summary, non_negative, dtype=object))[0].ravel()
    dtypes = {s["dtype"] for s in summaries}
    if len(dtypes) > 1 or (dtypes and np.dtype(dtypes.pop()) != X.dtype):
        found = sorted({s["dtype"] for s in summaries})
        raise ValueError(
            f"{whom}: the chunks of {name} hold different dtypes ({', '.join(found)}; the array says {X.dtype}). "
            f"Cast it first, e.g. {name}.astype('float64')."
        )
    if any(s["inf"] for s in summaries) or (not allow_nan and any(s["nan"] for s in summaries)):
        what = "infinity" if allow_nan else "NaN or infinity"
        raise ValueError(f"{whom}: input {name} contains {what}.")
    if any(s["negative"] for s in summaries):
        raise ValueError(f"{whom}: negative values in {name}; counts must be non-negative.")
    return X


def row_chunks_on_sequences(X, offsets, whom="fit"):
    """Rechunk the rows of X so that no chunk boundary falls inside a sequence.

    Each boundary moves forward to the next sequence start (a sequence longer
    than a chunk makes its chunk longer). Returns the rechunked array and, per
    chunk, the sequence range it holds.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
    offsets : ndarray of int64 of shape (n_sequences + 1,)

    Returns
    -------
    X : dask.array.Array
    sequence_bounds : ndarray of int64 of shape (n_chunks + 1,)
        Chunk ``j`` holds sequences ``sequence_bounds[j]:sequence_bounds[j + 1]``.
    """
    row_bounds = np.cumsum((0,) + X.chunks[0])
    first_sequence = np.searchsorted(offsets, row_bounds[1:-1], side="left")  # next sequence start at or after
    cuts = np.unique(np.r_[0, first_sequence, len(offsets) - 1])
    rows = offsets[cuts]
    sizes = tuple(int(n) for n in np.diff(rows) if n > 0)
    cuts = cuts[np.r_[True, np.diff(rows) > 0]]
    if sizes != X.chunks[0]:
        X = X.rechunk({0: sizes})
    return X, cuts.astype(np.int64)


# ---------------------------------------------------------------------------- blocks and executor
class DaskBlocks:
    """E-step blocks that live on a Dask cluster: one per row chunk.

    The arrays are persisted on the workers when they take at most half of the
    workers' memory (then every later use, the start's sample included, reads
    the same chunks); otherwise every pass recomputes them chunk by chunk from
    their source. :meth:`release` (called when the fit ends) frees them.

    Parameters
    ----------
    arrays : list of dask.array.Array or None
        Row-aligned arrays with the same row chunks (X, its sample weights,
        ...); None for an absent one.
    make : callable
        ``make(*chunks, *extras[i]) -> block``, run on the worker next to the
        chunks (module level, so it pickles).
    extras : list of tuple, optional
        Small per-chunk values in memory (a chunk's sequence offsets, its rows
        of time-varying parameters).
    """

    def __init__(self, arrays, make, extras=None):
        arrays = list(arrays)
        self.make = make
        n_chunks = len(next(a for a in arrays if a is not None).chunks[0])
        self.extras = [()] * n_chunks if extras is None else [tuple(e) for e in extras]
        self.nbytes = int(sum(a.nbytes for a in arrays if a is not None))
        self._held = []  # futures of the persisted chunks
        client = _client()
        if client is not None:
            workers = client.scheduler_info().get("workers", {})
            memory = sum(w.get("memory_limit", 0) or 0 for w in workers.values())
            if memory and self.nbytes <= _PERSIST_FRACTION * memory:
                from distributed import futures_of, wait

                present = iter(client.persist([a for a in arrays if a is not None]))
                arrays = [None if a is None else next(present) for a in arrays]
                self._held = [f for a in arrays if a is not None for f in futures_of(a)]
                wait(self._held)
        self.arrays = arrays

    def __len__(self):
        return len(self.extras)

    def parts(self):
        """Per block, the delayed chunks of the arrays followed by its extras."""
        columns = [None if a is None else list(a.to_delayed().ravel()) for a in self.arrays]
        return [
            tuple(None if c is None else c[i] for c in columns) + self.extras[i] for i in range(len(self.extras))
        ]

    def release(self):
        """Let go of the persisted chunks (the fit is over).

        Dropping the references is what frees them: the scheduler forgets a key
        once no client wants it. (Cancelling would also cancel the same keys
        for any computation of the user's that shares them.)
        """
        self._held = []
        self.arrays = [None] * len(self.arrays)


def _run_block(function, make, parts, context, state):
    return function(make(*parts), context, state)


def _small_part(result):
    return result.stats, result.objective


def _state_part(result):
    return result.state


class DaskExecutor:
    """Maps a model's block function over :class:`DaskBlocks` on the cluster (or dask's local scheduler).

    Parameters
    ----------
    blocks : DaskBlocks
        The fit's blocks (released by :meth:`close`).
    """

    def __init__(self, blocks):
        import dask

        self._dask = dask
        self.client = _client()
        self.n_workers = 1 if self.client is None else max(1, len(self.client.scheduler_info().get("workers", {})))
        self._blocks = blocks
        self._parts = blocks.parts()

    def map(self, function, blocks, contexts, states):
        """The block function on every block, next to its data; results in block order.

        Returns
        -------
        list of BlockResult
            ``state`` stays on the cluster (a future) when a client runs the graph.
        """
        delayed = self._dask.delayed
        context = delayed(contexts[0], traverse=False)  # one copy per E-step, shared by every block
        function = delayed(function, traverse=False)
        tasks = [
            delayed(_run_block, pure=False)(function, blocks.make, parts, context, state)
            for parts, state in zip(self._parts, states)
        ]
        if self.client is None:
            return list(self._dask.compute(*tasks))
        if all(state is None for state in states):  # no state: one round trip brings back the small results
            return list(self.client.gather(self.client.compute(tasks)))
        futures = self.client.compute(tasks)
        small = self.client.gather([self.client.submit(_small_part, f, pure=False) for f in futures])
        new_states = [self.client.submit(_state_part, f, pure=False) for f in futures]  # stays on the workers
        del futures
        return [BlockResult(stats, objective, state) for (stats, objective), state in zip(small, new_states)]

    def fetch(self, items):
        """Bring ``items`` (values, or futures of per-block state) to this process."""
        items = list(items)
        if self.client is None:
            return items
        return self.client.gather(items)

    def close(self):
        """Release what the fit put on the cluster."""
        self._blocks.release()
        self._parts = None


def sample_rows(X, n_rows, random_state, weights=None, index=None):
    """A uniform random subset of ``n_rows`` rows of a dask array, gathered (for initialisation).

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
    n_rows : int
        How many rows (all of them when X has fewer).
    random_state : numpy.random.RandomState
    weights : dask.array.Array of shape (n_samples,), optional
        Gathered for the same rows.
    index : ndarray of int, optional
        The rows to gather, in this order (no draw then).

    Returns
    -------
    rows : ndarray of shape (min(n_rows, n_samples), n_features)
    row_weights : ndarray or None
    """
    import dask

    n_samples = X.shape[0]
    if index is not None:
        pass
    elif n_rows >= n_samples:
        index = np.arange(n_samples)
    else:
        index = np.sort(random_state.choice(n_samples, size=n_rows, replace=False))
    if weights is None:
        return np.asarray(X[index].compute()), None
    rows, row_weights = dask.compute(X[index], weights[index])
    return np.asarray(rows), np.asarray(row_weights)


def rowwise(output):
    """Decorate a per-row method so that a dask array gets a lazy dask array back, chunked like it.

    Parameters
    ----------
    output : {"rows", "columns"} or callable
        ``"rows"``: one value per row; a callable ``(estimator) -> n_columns``:
        a matrix with that many columns.
    """

    def decorator(method):
        @functools.wraps(method)
        def wrapper(self, X, *args, **kwargs):
            if not is_dask_array(X):
                return method(self, X, *args, **kwargs)
            X = _fitted_input(self, X, method.__name__)
            chunk_method = functools.partial(_call_on_chunk, method, self, args, kwargs)
            probe = method(self, np.zeros((1, X.shape[1]), dtype=X.dtype), *args, **kwargs)
            if output == "rows":
                return X.map_blocks(chunk_method, drop_axis=1, dtype=probe.dtype, meta=probe[:0])
            n_columns = output(self)
            return X.map_blocks(chunk_method, chunks=(X.chunks[0], (n_columns,)), dtype=probe.dtype, meta=probe[:0])

        return wrapper

    return decorator


def _call_on_chunk(method, estimator, args, kwargs, chunk):
    return method(estimator, np.asarray(chunk), *args, **kwargs)


def gather_labels(labels):
    """``sequence_ids`` as a numpy array (a dask array of labels is gathered: one small value per row)."""
    if labels is not None and is_dask_array(labels):
        return np.asarray(labels.compute())
    return labels


def sample_sequences(arrays, offsets, n_rows, random_state):
    """Whole sequences drawn at random until about ``n_rows`` rows, gathered (for initialisation).

    Parameters
    ----------
    arrays : list of dask.array.Array
        Row-aligned arrays to gather from.
    offsets : ndarray of int64 of shape (n_sequences + 1,)
    n_rows : int
    random_state : numpy.random.RandomState

    Returns
    -------
    gathered : list of ndarray
    local_offsets : ndarray of int64
        The gathered sequences' boundaries, from 0.
    """
    import dask

    lengths = np.diff(offsets)
    if lengths.sum() <= n_rows:
        chosen = np.arange(len(lengths))
    else:
        order = random_state.permutation(len(lengths))
        chosen = np.sort(order[: max(1, int(np.searchsorted(np.cumsum(lengths[order]), n_rows)) + 1)])
    index = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in chosen])
    gathered = dask.compute(*[a[index] for a in arrays])
    local = np.concatenate([[0], np.cumsum(lengths[chosen])]).astype(np.int64)
    return [np.asarray(g) for g in gathered], local


def sequencewise(output, check_sequences):
    """Decorate a per-step method of a sequence model (``method(X, lengths=None, sequence_ids=None, ...)``).

    A dask array gets a lazy dask array back: its rows rechunked so that no
    chunk cuts a sequence, each chunk answered with its own sequences' lengths.

    Parameters
    ----------
    output : {"rows"} or callable
        One value per row, or ``(estimator) -> n_columns``.
    check_sequences : callable
        ``(n_samples, lengths, sequence_ids) -> offsets`` (the model's own check).
    """

    def decorator(method):
        @functools.wraps(method)
        def wrapper(self, X, lengths=None, sequence_ids=None, **kwargs):
            if not is_dask_array(X):
                return method(self, X, lengths=lengths, sequence_ids=sequence_ids, **kwargs)
            X, chunk_lengths = _sequence_chunks(self, X, lengths, sequence_ids, method.__name__, check_sequences)
            function = functools.partial(_call_on_sequences, method, self, chunk_lengths, kwargs)
            probe = method(self, np.asarray(X[: min(2, X.shape[0])].compute()), **kwargs)
            if output == "rows":
                return X.map_blocks(function, drop_axis=1, dtype=probe.dtype, meta=probe[:0])
            return X.map_blocks(function, chunks=(X.chunks[0], (output(self),)), dtype=probe.dtype, meta=probe[:0])

        return wrapper

    return decorator


def _fitted_input(estimator, X, name):
    """A dask array checked for a fitted estimator's method ``name``: 2-D, known chunks, its column count.

    Returns it with all columns in one chunk (the per-row methods need whole rows).
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator)
    whom = f"{type(estimator).__name__}.{name}"
    if X.ndim != 2 or any(np.isnan(size) for size in X.chunks[0]):
        check_dask_array(X, whom=whom)  # raises the clear message
    if X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"{whom}: X has {X.shape[1]} features, but the model is expecting {estimator.n_features_in_} "
            "features as input."
        )
    return X.rechunk({1: -1}) if len(X.chunks[1]) > 1 else X


def _sequence_chunks(estimator, X, lengths, sequence_ids, name, check_sequences):
    X = _fitted_input(estimator, X, name)
    offsets = check_sequences(X.shape[0], lengths, gather_labels(sequence_ids))
    X, bounds = row_chunks_on_sequences(X, offsets)
    chunk_lengths = [np.diff(offsets[bounds[i] : bounds[i + 1] + 1]) for i in range(len(bounds) - 1)]
    return X, chunk_lengths


def _call_on_sequences(method, estimator, chunk_lengths, kwargs, chunk, block_info=None):
    index = block_info[0]["chunk-location"][0]
    return method(estimator, np.asarray(chunk), lengths=chunk_lengths[index], **kwargs)


def per_chunk(estimator, method, X, lengths, sequence_ids, check_sequences, **kwargs):
    """``method`` on every chunk of whole sequences of a dask array, computed: a list of the chunks' answers.

    For per-sequence answers (``forecast``, ``decode``'s log-probability) that
    are small, so gathering them is what the caller wants.
    """
    import dask

    X, chunk_lengths = _sequence_chunks(estimator, X, lengths, sequence_ids, method.__name__, check_sequences)
    call = dask.delayed(_call_per_chunk, pure=False)
    tasks = [
        call(method, estimator, np.asarray, chunk, lengths_i, kwargs)
        for chunk, lengths_i in zip(X.to_delayed().ravel(), chunk_lengths)
    ]
    return list(dask.compute(*tasks))


def _call_per_chunk(method, estimator, to_array, chunk, lengths, kwargs):
    return method(to_array(chunk), lengths=lengths, **kwargs)
