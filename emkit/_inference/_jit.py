"""The one place numba is touched.

Every compiled kernel uses :func:`jit`: ``nopython`` mode, ``cache=True`` (so
joblib workers and later sessions load the machine code instead of compiling
again) and ``nogil=True``. The undecorated function stays reachable as
``kernel.py_func`` for tests.
"""

import numba

__all__ = ["jit"]


def jit(function):
    """Compile ``function`` with emkit's settings (nopython, cache, nogil)."""
    return numba.njit(cache=True, nogil=True)(function)
