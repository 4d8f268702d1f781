"""Compiled inference kernels on plain arrays (numba). Kernels never import estimators."""
