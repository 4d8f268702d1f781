"""Independent blocks of data: what the EM engine's E-step maps over.

Every family's E-step is a sum over independent blocks: rows (mixtures), whole
sequences (HMMs, KalmanFilter) or documents (LDA). A model's validation splits
its data once per fit into a :class:`Blocks` sequence; the engine asks for
``blocks[i]`` and hands it to the model's block function. Block boundaries
depend on the data (and the model's shape) alone, never on ``n_jobs``, so block
sums are added in the same order whatever runs them.

A :class:`Blocks` object holds the source arrays once and the boundaries; a
block is made (as views) only when asked for, so pickling the data for a worker
process sends every array once.
"""

import contextlib
import contextvars
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["Blocks", "BlockResult", "row_bounds", "sequence_bounds", "forced_block_count"]

# Tests split the data into a chosen number of blocks to show that results do not depend on it.
_FORCED_N_BLOCKS = contextvars.ContextVar("emkit_forced_n_blocks", default=None)


@contextlib.contextmanager
def forced_block_count(n_blocks):
    """Within this context, fits split their data into ``n_blocks`` blocks (fewer if there are fewer units).

    A testing aid: the result of a fit must not depend on how its data are
    split, and this shows it.
    """
    token = _FORCED_N_BLOCKS.set(int(n_blocks))
    try:
        yield
    finally:
        _FORCED_N_BLOCKS.reset(token)


def _even_split(n_units, n_blocks):
    n_blocks = max(1, min(n_blocks, n_units))
    return np.linspace(0, n_units, n_blocks + 1).round().astype(np.int64)


def row_bounds(n_rows, rows_per_block):
    """Boundaries ``[0, b_1, ..., n_rows]`` of consecutive blocks of about ``rows_per_block`` rows.

    Parameters
    ----------
    n_rows : int
    rows_per_block : int
        Target block size (the last block may be smaller).

    Returns
    -------
    bounds : ndarray of int64 of shape (n_blocks + 1,)
    """
    forced = _FORCED_N_BLOCKS.get()
    if forced is not None:
        return _even_split(n_rows, forced)
    rows_per_block = max(1, int(rows_per_block))
    return np.unique(np.r_[np.arange(0, n_rows, rows_per_block), n_rows]).astype(np.int64)


def sequence_bounds(offsets, rows_per_block):
    """Group whole sequences into blocks of about ``rows_per_block`` rows (a longer sequence is a block alone).

    Parameters
    ----------
    offsets : ndarray of int64 of shape (n_sequences + 1,)
        Sequence ``i`` is rows ``offsets[i]:offsets[i + 1]``.
    rows_per_block : int

    Returns
    -------
    bounds : ndarray of int64 of shape (n_blocks + 1,)
        Indices into the *sequences*: block ``j`` holds sequences
        ``bounds[j]:bounds[j + 1]``.
    """
    n_sequences = len(offsets) - 1
    forced = _FORCED_N_BLOCKS.get()
    if forced is not None:
        return _even_split(n_sequences, forced)
    bounds = [0]
    start_row = offsets[0]
    for i in range(1, n_sequences):
        if offsets[i] - start_row >= rows_per_block:
            bounds.append(i)
            start_row = offsets[i]
    bounds.append(n_sequences)
    return np.asarray(bounds, dtype=np.int64)


class Blocks(Sequence):
    """A lazy sequence of data blocks: ``blocks[i] == make(source, bounds[i], bounds[i + 1])``.

    Parameters
    ----------
    source : object
        What the blocks are cut from (a NamedTuple of arrays, say); held once.
    bounds : ndarray of int of shape (n_blocks + 1,)
        Block boundaries, in whatever unit ``make`` understands (rows,
        sequences, documents).
    make : callable
        ``make(source, start, stop) -> block``; a module-level function, so
        that the blocks pickle.
    """

    __slots__ = ("source", "bounds", "make")

    def __init__(self, source, bounds, make):
        self.source = source
        self.bounds = np.asarray(bounds, dtype=np.int64)
        self.make = make

    def __len__(self):
        return len(self.bounds) - 1

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.make(self.source, int(self.bounds[index]), int(self.bounds[index + 1]))

    def __getstate__(self):
        return self.source, self.bounds, self.make

    def __setstate__(self, state):
        self.source, self.bounds, self.make = state


class BlockResult(NamedTuple):
    """What a model's block function returns for one block of data.

    Attributes
    ----------
    stats : NamedTuple
        Expected sufficient statistics of the block (additive, see
        :mod:`emkit._stats`).
    objective : float
        The block's log-likelihood (or ELBO) at the parameters it was given.
    state : object
        The block's new working state (None for models without state).
    """

    stats: object
    objective: float
    state: object = None
