"""GMMHMM: hidden Markov model whose states emit from Gaussian mixtures (hmmlearn's names and shapes)."""

from numbers import Integral, Real

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import pairwise_distances_argmin

from .._densities import gaussian
from .._densities.gmm import GaussianMixtures
from .._validation import Interval, StrOptions, store_init_arguments
from ._base import _BaseHMM, cluster_covariances, fill_docstring
from ._gaussian import GaussianHMM, data_covariances

__all__ = ["GMMHMM"]


@fill_docstring
class GMMHMM(_BaseHMM):
    """Hidden Markov model with Gaussian mixture emissions.

    State ``k`` emits from its own mixture of ``n_mix`` Gaussians:
    ``p(x_t | z_t = k) = sum_m weights_[k, m] N(x_t | means_[k, m], covars_[k, m])``.
    hmmlearn's ``GMMHMM`` names, shapes and meanings (its ``tied`` is per
    state: the Gaussians of one state share one matrix), fitted by emkit's
    engine with exact EM: the covariance update uses the scatter about the
    *new* means (hmmlearn accumulates it about the old ones), so the
    objective never decreases.

    Parameters
    ----------
    n_components : int, default=1
        Number of hidden states.
    n_mix : int, default=1
        Number of Gaussians in each state's mixture.
    covariance_type : {"diag", "full", "tied", "spherical"}, default="diag"
        ``covars_`` shapes: diag (n_components, n_mix, n_features), full
        (n_components, n_mix, n_features, n_features), tied (n_components,
        n_features, n_features): one matrix per state, shared by its
        Gaussians; spherical (n_components, n_mix).
    min_covar : float, default=1e-3
        Added to the diagonal of the covariances that initialise ``covars_``
        (as hmmlearn).
    weights_prior : float or array-like broadcastable to (n_components, n_mix), default=1.0
        Dirichlet prior on each state's mixture weights (1 = maximum likelihood).
    means_prior, means_weight : float or array-like, default=0
        Normal prior on the means: centre (shape (), (n_features,) or
        (n_components, n_mix, n_features)) and precision weight (shape () or
        (n_components, n_mix)); 0 = off.
    covars_prior : float or array-like, default=None
        Scale of the inverse-Wishart (full, tied) or inverse-gamma (diag,
        spherical) covariance prior, with GaussianHMM's convention (a scalar
        means ``covars_prior * I``); shapes: full (), (D, D),
        (n_components, n_mix, D, D); tied (), (D, D), (n_components, D, D);
        diag (), (D,), (n_components, n_mix, D); spherical (),
        (n_components, n_mix). None: off (maximum likelihood, hmmlearn's
        default). hmmlearn parametrises this prior differently (its
        defaults are negative numbers that switch it off): translate, do not
        copy, non-default values.
    covars_weight : float, default=None
        Degrees of freedom of the covariance prior (GaussianHMM's convention:
        the denominator gains ``max(nu - D, 0)`` for full and tied,
        ``max(nu - 1, 0)`` for diag and spherical). None: no extra count.
    params : str or tuple of str, default="stmcw"
        What EM learns: letters s (startprob), t (transmat), m (means), c
        (covars), w (weights), or a tuple of attribute names.
    init_params : str or tuple of str, default="stmcw"
        What is initialised from the data (the rest must be given).
    weights_init : array-like of shape (n_components, n_mix), default=None
        Starting mixture weights (each row sums to one).
    means_init : array-like of shape (n_components, n_mix, n_features), default=None
        Starting means.
    covars_init : array-like, default=None
        Starting covariances, shaped as ``covars_``.
    {shared_parameters}
    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
    transmat_ : ndarray of shape (n_components, n_components)
    weights_ : ndarray of shape (n_components, n_mix)
        Each state's mixture weights.
    means_ : ndarray of shape (n_components, n_mix, n_features)
    covars_ : ndarray
        Shaped as described under ``covariance_type`` (hmmlearn's shapes).
    n_features_in_ : int
    converged_, n_iter_, lower_bound_, lower_bound_history_, restarts_
        Set by the EM engine (see :class:`emkit.base.EMMixin`).

    See Also
    --------
    GaussianHMM : one Gaussian per state (``n_mix=1`` here is the same model).

    Examples
    --------
    >>> import numpy as np
    >>> from emkit import GMMHMM
    >>> rng = np.random.RandomState(0)
    >>> states = np.repeat([0, 1, 0, 1], 150)
    >>> sign = np.where(rng.uniform(size=600) < 0.5, -1.0, 1.0)  # each state: two clusters
    >>> X = np.c_[sign * np.where(states == 0, 3.0, 1.0), 10.0 * states] + 0.2 * rng.normal(size=(600, 2))
    >>> model = GMMHMM(2, n_mix=2, random_state=0).fit(X)
    >>> agree = np.mean(model.predict(X) == states)
    >>> bool(agree > 0.99 or agree < 0.01)
    True
    >>> model.predict_mixture_proba(X).shape
    (600, 2, 2)
    """

    _emission_names = {"w": "weights_", "m": "means_", "c": "covars_"}
    _failure_message = (
        "a covariance is no longer positive definite ({exc}); set covars_prior (and covars_weight), "
        "lower n_mix or n_components, or scale the data"
    )

    _parameter_constraints = {
        **_BaseHMM._hmm_parameter_constraints,
        "n_mix": [Interval(Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions(set(gaussian.COVARIANCE_TYPES))],
        "min_covar": [Interval(Real, 0, None, closed="left")],
        "weights_prior": [Interval(Real, 0, None, closed="left"), "array-like"],
        "means_prior": ["array-like", Real],
        "means_weight": ["array-like", Real],
        "covars_prior": [Interval(Real, 0, None, closed="left"), "array-like", None],
        "covars_weight": [Interval(Real, 0, None, closed="left"), None],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "covars_init": ["array-like", None],
    }

    def __init__(self, n_components=1, *, n_mix=1, covariance_type="diag", min_covar=1e-3, startprob_prior=1.0,
                 transmat_prior=1.0, weights_prior=1.0, means_prior=0.0, means_weight=0.0, covars_prior=None,
                 covars_weight=None, algorithm="viterbi", params="stmcw", init_params="stmcw",
                 startprob_init=None, transmat_init=None, weights_init=None, means_init=None, covars_init=None,
                 max_iter=100, tol=1e-4, n_init=1, random_state=None, warm_start=False, verbose=0,
                 verbose_interval=10, n_jobs=None, keep_params_history=False, learning_decay=0.7,
                 learning_offset=10.0):
        store_init_arguments(self, locals())

    # ------------------------------------------------------------ emission hooks
    _emission_validate_X = GaussianHMM._emission_validate_X  # real rows (NaN = missing), at least n_components
    _allow_nan = True

    def _make_density(self, n_features, learn):
        return GaussianMixtures(
            self.covariance_type, self.n_components, self.n_mix, n_features, weights_prior=self.weights_prior,
            means_prior=self.means_prior, means_weight=self.means_weight, covars_prior=self.covars_prior,
            covars_weight=self.covars_weight, learn_weights="w" in learn, learn_means="m" in learn,
            learn_covars="c" in learn,
        )

    def _emission_check(self, X, emission_input, continuing, learn):
        density = self._make_density(X.shape[1], learn)  # checks the priors against the density's table
        given = {}
        for letter, init, name, kind in (("w", self.weights_init, "weights_", "weights"),
                                         ("m", self.means_init, "means_", "means"),
                                         ("c", self.covars_init, "covars_", "covariances")):
            value = self._user_value(letter, init)
            if value is not None:
                label = name[:-1] + "_init" if init is not None else name
                given[name] = density.check(value, kind, label=label)
        return density, given

    def _emission_initialize(self, data, random_state):
        """k-means over the rows for the states, then k-means within each state's rows for its Gaussians.

        Each Gaussian starts with the spread of its own cluster (``min_covar``
        added), each state's weights with its clusters' sizes (plus one). A
        state with fewer rows than ``n_mix`` spreads its Gaussians around its
        centre by the data's own scale.
        """
        X, given = data.X, data.given
        K, M, D = self.n_components, self.n_mix, X.shape[1]
        if all(name in given for name in ("weights_", "means_", "covars_")):
            return {name: given[name].copy() for name in ("weights_", "means_", "covars_")}, None
        if "means_" in given:  # each row to the state whose Gaussians' centre is nearest
            state_centres = given["means_"].mean(axis=1)
            labels = pairwise_distances_argmin(X, state_centres)
        else:
            kmeans = KMeans(n_clusters=K, n_init=1, random_state=random_state).fit(X)
            state_centres, labels = kmeans.cluster_centers_, kmeans.labels_
        spread = data_covariances(X, 1, "full", self.min_covar)[0]
        weights = np.empty((K, M))
        means = np.empty((K, M, D))
        covars = np.empty(GaussianMixtures(self.covariance_type, K, M, D).table()["covariances"][0])
        for k in range(K):
            rows = X[labels == k]
            if rows.shape[0] >= M:
                sub = KMeans(n_clusters=M, n_init=1, random_state=random_state).fit(rows)
                centres, sub_labels = sub.cluster_centers_, sub.labels_
            else:
                centre = rows.mean(axis=0) if rows.shape[0] else state_centres[k]
                centres = centre + random_state.standard_normal((M, D)) * np.sqrt(np.diag(spread))
                sub_labels = None
            means[k] = centres
            if sub_labels is None:
                weights[k] = 1.0 / M
                covars[k] = data_covariances(X, M, self.covariance_type, self.min_covar)
            else:
                counts = np.bincount(sub_labels, minlength=M) + 1.0
                weights[k] = counts / counts.sum()
                covars[k] = cluster_covariances(rows, sub_labels, centres, self.covariance_type, self.min_covar)
        start = {"weights_": weights, "means_": means, "covars_": covars}
        start.update({name: value.copy() for name, value in given.items() if name in start})
        return start, (None if "means_" in given else labels)

    # ------------------------------------------------------------ inference
    def predict_mixture_proba(self, X, lengths=None, sequence_ids=None):
        """Joint posteriors of the state and of the Gaussian within it, ``p(z_t = k, m_t = m | x_1..T)``.

        Parameters
        ----------
        X, lengths, sequence_ids
            As for :meth:`predict_proba`.

        Returns
        -------
        posteriors : ndarray of shape (n_samples, n_components, n_mix)
            Summed over the last axis, the state posteriors of
            :meth:`predict_proba`. (A dask array is computed: the answer is
            three-dimensional.)
        """
        result, mix_resp = self._smoothed(X, lengths, sequence_ids)
        return result.posteriors[:, :, np.newaxis] * mix_resp
