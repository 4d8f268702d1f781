"""GaussianHMM: hidden Markov model with Gaussian emissions (the density of :mod:`emkit._densities.gaussian`)."""

from numbers import Real

import numpy as np
from sklearn.cluster import KMeans

from .._densities import gaussian
from .._validation import Interval, StrOptions, store_init_arguments, validate_data
from ._base import _BaseHMM, cluster_covariances, fill_docstring

__all__ = ["GaussianHMM"]


@fill_docstring
class GaussianHMM(_BaseHMM):
    """Hidden Markov model with Gaussian emissions.

    hmmlearn's ``GaussianHMM`` names, defaults and priors, fitted by emkit's
    EM engine (restarts, ``n_jobs``, per-step stopping rule) with compiled
    forward-backward and Viterbi kernels.

    Parameters
    ----------
    n_components : int, default=1
        Number of hidden states.
    covariance_type : {"diag", "full", "tied", "spherical"}, default="diag"
        ``covars_`` shapes: diag (n_components, n_features), full
        (n_components, n_features, n_features), tied (n_features, n_features),
        spherical (n_components,). hmmlearn's ``covars_`` getter expands to
        full matrices; here ``covars_`` is compact (as scikit-learn's
        ``covariances_``).
    min_covar : float, default=1e-3
        Added to the diagonal of the data covariance that initialises
        ``covars_`` (as hmmlearn).
    means_prior, means_weight : float or array-like, default=0
        Normal prior on the means: centre and precision weight (0 = off).
    covars_prior : float or array-like, default=1e-2
        Inverse-gamma / inverse-Wishart scale of the covariance prior. A scalar
        means ``covars_prior * I`` for full and tied (hmmlearn adds a scalar
        to every entry of the matrix instead).
    covars_weight : float, default=1
        Its degrees of freedom (hmmlearn's convention).
    params : str or tuple of str, default="stmc"
        What EM learns: letters s (startprob), t (transmat), m (means), c
        (covars), or a tuple of attribute names.
    init_params : str or tuple of str, default="stmc"
        What is initialised from the data (the rest must be given).
    means_init : array-like of shape (n_components, n_features), default=None
        Starting means.
    covars_init : array-like, default=None
        Starting covariances, compact shape for ``covariance_type``.
    {shared_parameters}
    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
    transmat_ : ndarray of shape (n_components, n_components)
    means_ : ndarray of shape (n_components, n_features)
    covars_ : ndarray
        Compact covariances (see ``covariance_type``).
    n_features_in_ : int
    converged_, n_iter_, lower_bound_, lower_bound_history_, restarts_
        Set by the EM engine (see :class:`emkit.base.EMMixin`).

    Examples
    --------
    >>> import numpy as np
    >>> from emkit.hmm import GaussianHMM
    >>> rng = np.random.RandomState(0)
    >>> states = np.repeat([0, 1, 0, 1], 50)
    >>> X = rng.normal(size=(200, 1)) + 5.0 * states[:, None]
    >>> model = GaussianHMM(n_components=2, random_state=0).fit(X)
    >>> bool(np.allclose(np.sort(model.means_[:, 0]), [0.0, 5.0], atol=0.3))
    True
    >>> agree = np.mean(model.predict(X) == states)
    >>> bool(agree > 0.99 or agree < 0.01)
    True
    """

    _emission_names = {"m": "means_", "c": "covars_"}

    _parameter_constraints = {
        **_BaseHMM._hmm_parameter_constraints,
        "covariance_type": [StrOptions(set(gaussian.COVARIANCE_TYPES))],
        "min_covar": [Interval(Real, 0, None, closed="left")],
        "means_prior": ["array-like", Real],
        "means_weight": ["array-like", Real],
        "covars_prior": ["array-like", Real],
        "covars_weight": [Real],
        "means_init": ["array-like", None],
        "covars_init": ["array-like", None],
    }

    def __init__(self, n_components=1, *, covariance_type="diag", min_covar=1e-3, startprob_prior=1.0,
                 transmat_prior=1.0, means_prior=0, means_weight=0, covars_prior=1e-2, covars_weight=1,
                 algorithm="viterbi", params="stmc", init_params="stmc", startprob_init=None, transmat_init=None,
                 means_init=None, covars_init=None, max_iter=100, tol=1e-4, n_init=1, random_state=None,
                 warm_start=False, verbose=0, verbose_interval=10, n_jobs=None, keep_params_history=False,
                 learning_decay=0.7, learning_offset=10.0):
        store_init_arguments(self, locals())

    # ------------------------------------------------------------ emission hooks
    _failure_message = (
        "a state's covariance is no longer positive definite ({exc}); increase covars_prior "
        "(or min_covar), or lower n_components"
    )

    _allow_nan = True  # NaN marks a missing entry: a step's emission uses its observed coordinates

    def _emission_validate_X(self, X, reset):
        X = validate_data(
            self, X, reset=reset, dtype=np.float64, ensure_min_samples=2 if reset else 1, ensure_all_finite="allow-nan"
        )
        if reset and X.shape[0] < self.n_components:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {self.n_components}, "
                f"n_samples = {X.shape[0]}."
            )
        return X, X

    def _make_density(self, n_features, learn):
        return gaussian.Gaussian(
            self.covariance_type, self.n_components, n_features, covariances_name="covars_",
            means_prior=self.means_prior, means_weight=self.means_weight, covars_prior=self.covars_prior,
            covars_weight=self.covars_weight, learn_means="m" in learn, learn_covars="c" in learn, keep_empty=True,
        )

    def _emission_check(self, X, emission_input, continuing, learn):
        # shapes and values of the Gaussian parameters: one table, shared with GaussianMixture
        density = self._make_density(X.shape[1], learn)
        for name in ("means_weight", "means_prior", "covars_prior"):
            density.check(getattr(self, name), name)
        given = {}
        value = self._user_value("m", self.means_init)
        if value is not None:
            given["means_"] = density.check(value, "means", label="means_init")
        value = self._user_value("c", self.covars_init)
        if value is not None:
            given["covars_"] = density.check(value, "covariances", label="covars_init")
        return density, given

    def _emission_initialize(self, data, random_state):
        X = data.X
        K = self.n_components
        given = data.given
        labels = None
        if "means_" in given:
            means = given["means_"].copy()
        else:
            kmeans = KMeans(n_clusters=K, n_init=1, random_state=random_state).fit(X)
            means, labels = kmeans.cluster_centers_, kmeans.labels_
        if "covars_" in given:
            covars = given["covars_"].copy()
        elif labels is not None:
            # each state starts with the spread of its own k-means cluster, not that of all the data
            # (a shared, wide start lets well-separated states merge)
            covars = cluster_covariances(X, labels, means, self.covariance_type, self.min_covar)
        else:
            covars = data_covariances(X, K, self.covariance_type, self.min_covar)
        return {"means_": means, "covars_": covars}, labels


def data_covariances(X, n_components, covariance_type, min_covar):
    """The covariance of all the rows (``min_covar`` added to its diagonal), once per component in compact form."""
    cv = np.atleast_2d(np.cov(X.T)) + min_covar * np.eye(X.shape[1])
    K = n_components
    return {
        "full": lambda: np.tile(cv, (K, 1, 1)),
        "tied": lambda: cv,
        "diag": lambda: np.tile(np.diag(cv), (K, 1)),
        "spherical": lambda: np.full(K, np.diag(cv).mean()),
    }[covariance_type]()
