"""Additive expected sufficient statistics.

Each family's E-step returns one statistics type: a NamedTuple of arrays (or
of other such NamedTuples, or None for what is not being learned) that adds
field by field. Attach the helpers below to it::

    class PoissonStats(NamedTuple):
        post: np.ndarray
        weighted_sum: np.ndarray

        add = add_fields
        scale = scale_fields

``a.add(b)`` is the statistics of the union of the two blocks; ``a.scale(w)``
multiplies every field by ``w`` (running averages of online EM). A type whose
fields are taken about a centre (Gaussian moments about the current means)
defines its own ``add``, ``scale`` and ``recenter`` instead, so that adding
statistics taken about different centres stays exact.
"""

__all__ = ["add_fields", "scale_fields", "sum_in_order"]


def _add(a, b):
    if a is None or b is None:
        if a is not None or b is not None:
            raise ValueError("cannot add statistics where only one side has a field")
        return None
    if hasattr(a, "add"):
        return a.add(b)
    return a + b


def _scale(a, factor):
    if a is None:
        return None
    if hasattr(a, "scale"):
        return a.scale(factor)
    return a * factor


def add_fields(self, other):
    """Field-by-field sum of two statistics of the same type (``None`` fields stay ``None``)."""
    return type(self)(*(_add(a, b) for a, b in zip(self, other)))


def scale_fields(self, factor):
    """Every field multiplied by ``factor``."""
    return type(self)(*(_scale(a, factor) for a in self))


def sum_in_order(items):
    """``items[0].add(items[1]).add(items[2])...``: the fixed order that makes sums reproducible."""
    items = list(items)
    total = items[0]
    for item in items[1:]:
        total = _add(total, item)
    return total
