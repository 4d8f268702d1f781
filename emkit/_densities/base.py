"""What every component density provides, for the mixtures and the HMMs alike.

A density object is made by an estimator once per fit (and once per call at
inference), from its constructor parameters: it holds the family's
hyperparameters (covariance type, priors, regularisation, which parameters
are learned), never data or fitted values. Fitted values travel in the
engine's parameter dict, keyed by the estimator's attribute names
(``"means_"``, ``"lambdas_"``).

The mixture core (:class:`emkit.mixture._BaseMixture`) and the HMM core
(``emkit.hmm._base._BaseHMM``) call the same methods:

========================================  ===================================================
``check_input(X)``                        value checks and conversion of validated rows
``context(params)``                       values derived once per E-step (precision factors)
``log_likelihood(X, params, context)``    ``log p(x_n | z_n = k)``, shape (n_samples, K)
``frames(X, params, context, work)``      the same for the HMM kernels, plus a cache for ``accumulate``
``accumulate(X, resp, params, context)``  additive statistics (:mod:`emkit._stats`)
``mixture_block(...)``                    a mixture's whole block: responsibilities kept inside
``post(stats)``                           each component's mass ``N_k`` (the mixture weights' counts)
``initial_centre(X, sample_weight)``      what a start's statistics are centred on
``initial_m_step(stats, centre)``         the start's parameters from drawn responsibilities
``m_step(stats, params)``                 new component parameters (MAP under the priors)
``pack(params)``                          derived values (precision factors) and dtype
``slack(stats, params)``                  what a deliberately inexact M-step may cost (0 here)
``log_prior(params)``                     log-density of the priors (0 with priors off)
``recenter(stats, old, new)``             centred statistics moved to new parameters (online EM)
``n_parameters()``                        free parameters
``sample(params, labels, rng)``           one row per label
``expectation(params)``                   ``E[x | z = k]``, shape (K, n_outputs)
``shapes()``                              each parameter's shape (warm starts)
``check(value, name, label)``             a user-given start or prior against the family's one table
========================================  ===================================================

A new family is one small module: a statistics NamedTuple and a subclass of
:class:`Density` with ``log_likelihood``, ``accumulate``, ``post``,
``m_step``, ``n_parameters``, ``sample``, ``expectation`` and its table of
accepted shapes (``table``).
"""

from typing import NamedTuple

import numpy as np

from .._inference.mixture import normalize_log_rows

__all__ = ["Density", "Broadcast"]


class Broadcast(NamedTuple):
    """A table entry: any shape that broadcasts to ``shape`` (a scalar prior, a row, the full array)."""

    shape: tuple


class _PendingLayout:
    """A block's state before its first E-step: the density's layout of it (``Density.layout``) is still to be
    made. One object, also in worker processes."""

    def __reduce__(self):
        return "PENDING_LAYOUT"


PENDING_LAYOUT = _PendingLayout()


class Density:
    """Base of the component densities: the shared E-step plumbing and the one validation of user values.

    Subclasses set ``names`` (role -> fitted attribute name, e.g.
    ``{"lambdas": "lambdas_"}``) and ``n_components``, and implement the
    family's maths (see the module docstring).
    """

    names = {}
    n_components = 0

    def param_names(self):
        """The attribute names this density keeps in the parameter dict."""
        return tuple(self.names.values())

    # ------------------------------------------------------------ data
    def check_input(self, X):
        """Value checks and conversion of validated rows (the family's support); identity by default."""
        return X

    # ------------------------------------------------------------ E-step
    def context(self, params):
        """Values derived from the parameters once per E-step (None by default)."""
        return None

    def log_likelihood(self, X, params, context):
        """``log p(x_n | z_n = k)`` of every row and component: shape (n_samples, n_components)."""
        raise NotImplementedError

    def likelihood(self, X, params, context):
        """``p(x_n | z_n = k)`` when cheap and exact to give directly (saves exponentials), else None."""
        return None

    def layout(self, X):
        """What :meth:`frames` and :meth:`accumulate` can reuse on these rows at every E-step (it does not
        depend on the parameters; passed back as ``layout=``), or None (the default: nothing)."""
        return None

    def frames(self, X, params, context, work=None):
        """What the HMM kernels take: ``({"frameprob": ...} or {"log_frameprob": ...}, cache)``.

        ``cache`` is handed back to :meth:`accumulate` for the same rows
        (a per-state mixture keeps its within-state responsibilities there).
        ``work`` is a dict the caller keeps from one E-step to the next for
        these rows (None: nothing kept); a density may keep its output
        arrays there. The Gaussian density also gives ``"shifted"``, each
        row minus its maximum and the maxima (see
        :func:`emkit._inference.hmm.forward_backward`).
        """
        frameprob = self.likelihood(X, params, context)
        if frameprob is not None:
            return {"frameprob": frameprob, "overwrite_frameprob": True}, None  # a fresh array: no copy needed
        return {"log_frameprob": self.log_likelihood(X, params, context)}, None

    def accumulate(self, X, resp, params, context, cache=None):
        """Additive statistics of the rows weighted by ``resp`` (shape (n_samples, n_components))."""
        raise NotImplementedError

    def post(self, stats):
        """Each component's summed responsibility ``N_k``: shape (n_components,)."""
        return stats.post

    def mixture_block(self, X, sample_weight, log_weights, params, context):
        """One block of a mixture's E-step: responsibilities from the log joint densities, then statistics.

        Parameters
        ----------
        X : ndarray of shape (n_rows, n_features)
        sample_weight : ndarray of shape (n_rows,) or None
        log_weights : ndarray of shape (n_components,)
            Log mixing weights (``-inf`` allowed).
        params : dict
        context : object
            From :meth:`context`.

        Returns
        -------
        stats : NamedTuple
            The family's statistics, responsibilities times sample weights.
        log_likelihood : float
            ``sum_n w_n log p(x_n)``.
        """
        log_prob = np.ascontiguousarray(self.log_likelihood(X, params, context) + log_weights, dtype=np.float64)
        log_norm = normalize_log_rows(log_prob)  # log_prob now holds p(z_n = k | x_n)
        if sample_weight is None:
            total = float(np.sum(log_norm))
        else:
            log_prob *= sample_weight[:, np.newaxis]
            total = float(np.dot(sample_weight, log_norm))
        return self.accumulate(X, log_prob, params, context), total

    def initial_centre(self, X, sample_weight):
        """What the statistics of a start (from responsibilities) are centred on: parameters for
        :meth:`accumulate` and :meth:`m_step` (none for plain sums)."""
        return {}

    #: Whether a start adds one pseudo-row at the data's mean to every component (statistics ``(post, sums)``).
    start_with_a_mean_row = False

    def initial_m_step(self, stats, centre):
        """The start's parameters from the statistics of drawn responsibilities: the M-step.

        With ``start_with_a_mean_row`` (Bernoulli and Poisson components),
        every component first gets one pseudo-row at the data's mean: a
        start from hard responsibilities (k-means) often has a component
        whose rows all share a value of some feature, and a probability of
        exactly 0 or 1 (a rate of exactly 0) is one EM can never leave. The
        pseudo-row keeps them inside unless the feature is constant in the
        data.
        """
        if self.start_with_a_mean_row:
            post, sums = stats
            mean = sums.sum(axis=0) / max(post.sum(), np.finfo(np.float64).tiny)
            stats = type(stats)(post + 1.0, sums + mean)
        return self.m_step(stats, centre)

    # ------------------------------------------------------------ M-step and priors
    def m_step(self, stats, params):
        """New component parameters (a dict keyed by attribute names), before :meth:`pack`.

        ``params`` holds the current values (or only the centre of the
        statistics, for a start: :meth:`initial_centre`).
        """
        raise NotImplementedError

    def pack(self, params):
        """Parameters as the model keeps them (derived values added, dtype set); may raise
        ``numpy.linalg.LinAlgError`` for the caller to name the hyperparameter that helps."""
        return params

    def slack(self, stats, params):
        """Upper bound on the objective a deliberately inexact M-step may lose (0: exact)."""
        return 0.0

    def log_prior(self, params):
        """Log-density of the priors at ``params`` (0 with priors off)."""
        return 0.0

    def recenter(self, stats, old_params, new_params):
        """Statistics taken about ``old_params`` moved to ``new_params``; identity for plain sums."""
        return stats

    # ------------------------------------------------------------ counting, sampling, prediction
    def n_parameters(self):
        """Free parameters of the components."""
        raise NotImplementedError

    def sample(self, params, labels, random_state):
        """One row per entry of ``labels``, drawn from the labelled component."""
        raise NotImplementedError

    def expectation(self, params):
        """``E[x | z = k]`` for every component: shape (n_components, n_outputs)."""
        raise NotImplementedError

    def shapes(self):
        """``{attribute name: shape}`` of the fitted parameters."""
        raise NotImplementedError

    # ------------------------------------------------------------ user-given values
    def table(self):
        """``{name: tuple of accepted shapes, or Broadcast(shape)}`` for starts and priors."""
        raise NotImplementedError

    def check_values(self, array, name, label):
        """The family's value rules for one entry of :meth:`table` (raise a ValueError naming ``label``)."""

    def check(self, value, name, label=None):
        """Validate a user-given starting value or prior against :meth:`table`, then its values.

        Parameters
        ----------
        value : array-like
        name : str
            A row of :meth:`table`.
        label : str, optional
            The user's name for it in messages (``"lambdas_init"``); defaults
            to ``name``.

        Returns
        -------
        array : ndarray of float64 (a copy; a broadcast entry comes back at its full shape)
        """
        label = name if label is None else label
        accepted = self.table()[name]
        array = np.array(value, dtype=np.float64, copy=True)
        if isinstance(accepted, Broadcast):
            try:
                array = np.broadcast_to(array, accepted.shape).copy()
            except ValueError:
                raise ValueError(
                    f"{label} must be a scalar or broadcastable to {tuple(accepted.shape)}, got {array.shape}."
                ) from None
        elif array.shape not in accepted:
            if len(accepted) == 1:
                raise ValueError(f"{label} must have shape {accepted[0]}, got {array.shape}.")
            raise ValueError(f"{label} must have a shape in {accepted}, got {array.shape}.")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{label} must be finite (found NaN or inf).")
        self.check_values(array, name, label)
        return array
