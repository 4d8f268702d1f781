"""The one place numba is touched.

Every compiled kernel uses :func:`jit`: ``nopython`` mode, ``cache=True`` (so
joblib workers and later sessions load the machine code instead of compiling
again) and ``nogil=True``. The undecorated function stays reachable as
``kernel.py_func`` for tests.

:func:`literally` marks an integer argument as a compile-time constant (the
function is then compiled once per value it is called with from compiled
code), and ``jit(inline=True)`` inlines a helper into its callers, so a loop
bound that is a constant in the caller becomes a constant in the helper's
loops too (fully unrolled small loops for a fixed number of states).
"""

import numba

__all__ = ["jit", "literally"]

literally = numba.literally


def jit(function=None, *, inline=False, reassociate=False):
    """Compile ``function`` with emkit's settings (nopython, cache, nogil).

    Use as ``@jit``, ``@jit(inline=True)`` or ``@jit(reassociate=True)``. The
    last lets LLVM reorder floating-point sums and fuse multiply-adds
    (``fastmath`` flags ``reassoc`` and ``contract`` only: NaN and inf keep
    their meaning), so reductions vectorise; results change in the last bits.
    """
    options = {"cache": True, "nogil": True}
    if inline:
        options["inline"] = "always"
    if reassociate:
        options["fastmath"] = {"reassoc", "contract"}
    if function is None:
        return numba.njit(**options)
    return numba.njit(**options)(function)
