"""The one place numba is touched.

Every compiled kernel uses :func:`jit`: ``nopython`` mode, ``cache=True`` (so
joblib workers and later sessions load the machine code instead of compiling
again) and ``nogil=True``. The undecorated function stays reachable as
``kernel.py_func`` for tests.

Caching degrades gracefully. numba stores compiled code in the first writable
folder of: ``NUMBA_CACHE_DIR``, the package's ``__pycache__``, the user's
cache folder. Where none is writable (a read-only install as a user without a
writable home, as in containers, HPC modules or serverless functions), numba
refuses ``cache=True``, either when the function is decorated (at import) or
when it first saves compiled code, depending on its version. :func:`jit` then
compiles in memory instead, and says so once through the ``logging`` module
(logger ``emkit._inference._jit``, level DEBUG).

``jit(inline=True)`` inlines a helper into its callers, so a loop bound that
is a constant in the caller becomes a constant in the helper's loops too.
:func:`specialized` is the one dispatcher from Python to compiled code: it
compiles a kernel only for the argument types (and, for small state counts,
the constant ``n_components``) a call needs, when the call first needs them,
and then calls the machine code directly.

:func:`local_array` is a small float64 work array for compiled code: on the
stack when its length is a compile-time constant (so LLVM can keep its
entries in registers), else on the heap.
"""

import logging
import threading

import numba
import numpy as np
from numba.core import cgutils, types
from numba.core.caching import NullCache
from numba.extending import intrinsic, overload

__all__ = ["jit", "specialized", "local_array"]

_logger = logging.getLogger(__name__)
_no_cache_noted = threading.Event()


def _note_no_cache(function, error):
    """Log once per process that compiled code is kept in memory only."""
    if not _no_cache_noted.is_set():
        _no_cache_noted.set()
        _logger.debug(
            "no writable cache folder for numba (%s: %s); emkit compiles its kernels in memory, "
            "so every new process compiles them again (set NUMBA_CACHE_DIR to a writable folder to cache them)",
            getattr(function, "__qualname__", function), error,
        )


def _cannot_cache(error):
    """True for numba's refusals to cache: an unwritable folder or no cache location at all."""
    return isinstance(error, OSError) or (isinstance(error, RuntimeError) and "cannot cache" in str(error))


class _GuardedCache:
    """A dispatcher's cache whose failures to read or write fall back to compiling in memory.

    numba checks that a cache folder is writable when the function is decorated
    and writes to it at every compile; if the folder has become unwritable in
    between (or, in numba versions that look the folder up lazily, was never
    writable), the save raises. Then this cache replaces itself with numba's
    ``NullCache`` on its dispatcher and the compiled code stays in memory.
    Reads that fail (an unreadable index) likewise count as a cache miss.
    """

    def __init__(self, dispatcher, cache):
        self._dispatcher = dispatcher
        self._cache = cache

    def __getattr__(self, name):
        return getattr(self._cache, name)

    def _disable(self, error):
        _note_no_cache(self._dispatcher.py_func, error)
        self._dispatcher._cache = NullCache()

    def load_overload(self, *args, **kwargs):
        try:
            return self._cache.load_overload(*args, **kwargs)
        except (OSError, RuntimeError) as error:
            if not _cannot_cache(error):
                raise
            self._disable(error)
            return None

    def save_overload(self, *args, **kwargs):
        try:
            self._cache.save_overload(*args, **kwargs)
        except (OSError, RuntimeError) as error:
            if not _cannot_cache(error):
                raise
            self._disable(error)


def _compile(function, options):
    try:
        dispatcher = numba.njit(cache=True, **options)(function)
    except (OSError, RuntimeError) as error:  # "cannot cache function ...: no locator available"
        if not _cannot_cache(error):
            raise
        _note_no_cache(function, error)
        return numba.njit(**options)(function)
    cache = getattr(dispatcher, "_cache", None)
    if cache is not None and hasattr(cache, "save_overload"):
        dispatcher._cache = _GuardedCache(dispatcher, cache)
    return dispatcher


def jit(function=None, *, inline=False, reassociate=False):
    """Compile ``function`` with emkit's settings (nopython, cache, nogil).

    Use as ``@jit``, ``@jit(inline=True)`` or ``@jit(reassociate=True)``. The
    last lets LLVM reorder floating-point sums and fuse multiply-adds
    (``fastmath`` flags ``reassoc`` and ``contract`` only: NaN and inf keep
    their meaning), so reductions vectorise; results change in the last bits.
    Whatever such a kernel calls must itself be ``reassociate=True`` or
    ``inline=True``: numba compiles a plain callee with the flags of the first
    caller that compiles it and then keeps (and caches) that machine code for
    every caller (numba issue #7168), so a plain helper shared with a
    reassociating kernel would give results that depend on what the process,
    or the cache, compiled before (``tests/inference/test_jit_flags.py``).
    Where no cache folder is writable the function is compiled in memory (see
    the module docstring).
    """
    options = {"nogil": True}
    if inline:
        options["inline"] = "always"
    if reassociate:
        options["fastmath"] = {"reassoc", "contract"}
    if function is None:
        return lambda function: _compile(function, options)
    return _compile(function, options)


_entries = {}  # (kernel, constant or None) -> compiled entry point


def specialized(kernel, args, constant=False):
    """The compiled entry point of ``kernel`` for ``args``, compiled (or loaded from the cache) on first use.

    Parameters
    ----------
    kernel : numba dispatcher
        A function decorated with :func:`jit`.
    args : tuple
        The arguments of the call. Their types must not change from call to
        call (the public wrappers fix dtype, dimension and contiguity).
    constant : bool, default=False
        Compile the last argument, an integer, as a compile-time constant:
        machine code specialised for that value (constant loop bounds, which
        LLVM unrolls), compiled once per value the program uses. Otherwise one
        machine code serves every value.

    Returns
    -------
    entry : callable
        Call it with ``args``. Calling the entry point directly skips numba's
        per-call type dispatch, which for a constant argument would otherwise
        redo type inference on every call.
    """
    key = (kernel, args[-1] if constant else None)
    entry = _entries.get(key)
    if entry is None:
        if not hasattr(kernel, "compile"):  # NUMBA_DISABLE_JIT=1: plain Python
            return kernel
        signature = [numba.typeof(arg) for arg in args]
        if constant:
            signature[-1] = types.IntegerLiteral(int(args[-1]))
        entry = _entries[key] = kernel.compile(tuple(signature))
    return entry


# --------------------------------------------------------------------------- small work arrays
def local_array(n):
    """A float64 work array of length ``n`` (contents undefined), for compiled code.

    In compiled code with ``n`` a compile-time constant (a kernel compiled by
    :func:`specialized` with ``constant=True``) the array lives in the
    kernel's stack frame: it cannot alias any argument, and when every index
    into it is a constant after unrolling, LLVM keeps its entries in
    registers. A vector carried from one step of a sequential loop to the
    next (HMM messages) then skips a store and a reload per step, which
    through arrays the compiler cannot prove distinct it must otherwise do.
    Otherwise (and in Python) it is ``np.empty(n)``. The array must not be
    returned from the compiled function that made it (it dies with its frame).
    """
    return np.empty(n)


@intrinsic
def _stack_array(typingctx, n):
    if not isinstance(n, types.IntegerLiteral):
        return None
    length = n.literal_value
    array_type = types.Array(types.float64, 1, "C")

    def codegen(context, builder, signature, args):
        array = context.make_array(array_type)(context, builder)
        # in the function's entry block, whatever loop the call sits in
        data = cgutils.alloca_once(builder, context.get_data_type(types.float64), size=max(1, length))
        intp = lambda value: context.get_constant(types.intp, value)  # noqa: E731
        context.populate_array(array, data=data, shape=[intp(length)], strides=[intp(8)], itemsize=intp(8),
                               meminfo=None)
        return array._getvalue()

    return array_type(n), codegen


@overload(local_array, prefer_literal=True)
def _local_array(n):
    if isinstance(n, types.IntegerLiteral):
        return lambda n: _stack_array(n)
    return lambda n: np.empty(n)
