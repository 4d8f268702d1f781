"""A Gaussian mixture per component: GMMHMM's emissions (hmmlearn's shapes and meanings).

State ``k`` emits from its own mixture of ``n_mix`` Gaussians with weights
``weights_[k]``. Everything is computed on the ``K * n_mix`` Gaussians laid
end to end (state-major), with the compiled kernels of
:mod:`emkit._densities.gaussian`, so densities and statistics are exact at any
scale, and the M-step is exact EM (scatter about the *new* means):

============  ===================  =====================================================
type          ``covars_``          laid end to end as
============  ===================  =====================================================
full          (K, M, D, D)         full, (K M, D, D)
tied          (K, D, D)            full, each state's matrix repeated for its M Gaussians
diag          (K, M, D)            diag, (K M, D)
spherical     (K, M)               spherical, (K M,)
============  ===================  =====================================================

``tied`` is per state, as in hmmlearn: the Gaussians of one state share one
matrix (pooled over that state's Gaussians in the M-step).
"""

import numpy as np

from .._inference.mixture import normalize_log_groups
from . import dirichlet, gaussian
from .base import Broadcast, Density

__all__ = ["GaussianMixtures"]


class GaussianMixtures(Density):
    """One Gaussian mixture per component (state), as an object.

    Parameters
    ----------
    covariance_type : {"full", "tied", "diag", "spherical"}
    n_components, n_mix, n_features : int
    weights_prior : float or array-like broadcastable to (n_components, n_mix), default=1.0
        Dirichlet prior on each state's mixture weights (1: maximum likelihood).
    means_prior, means_weight, covars_prior, covars_weight : optional
        The Gaussian priors of :func:`emkit._densities.gaussian.m_step`, for
        every Gaussian (shapes in :meth:`table`); None switches one off.
    learn_weights, learn_means, learn_covars : bool, default=True
        What the M-step updates (GMMHMM's ``params`` letters w, m, c).

    Notes
    -----
    A Gaussian (or, for tied, a state) with no posterior mass keeps its
    parameters, as in every emkit HMM.
    """

    def __init__(self, covariance_type, n_components, n_mix, n_features, *, weights_prior=1.0, means_prior=None,
                 means_weight=None, covars_prior=None, covars_weight=None, learn_weights=True, learn_means=True,
                 learn_covars=True):
        self.covariance_type = covariance_type
        self.n_components = int(n_components)
        self.n_mix = int(n_mix)
        self.n_features = int(n_features)
        self.flat_type = "full" if covariance_type == "tied" else covariance_type
        # the K M Gaussians laid end to end: every row is read through this object (so what it learns about
        # rows -- missing values, say -- holds here too)
        self.components = gaussian.Gaussian(self.flat_type, self.n_components * self.n_mix, self.n_features)
        self.names = {"weights": "weights_", "means": "means_", "covariances": "covars_"}
        self.weights_prior = self.check(weights_prior, "weights_prior")
        K, M = self.n_components, self.n_mix
        priors = {
            "means_prior": None if means_prior is None else self._flat("means_prior", self.check(means_prior,
                                                                                                  "means_prior")),
            "means_weight": None if means_weight is None else self._flat("means_weight",
                                                                         self.check(means_weight, "means_weight")),
            "covars_prior": None if covars_prior is None else self.check(covars_prior, "covars_prior"),
            "covars_weight": covars_weight,
        }
        # tied covariances are updated state by state (each a "tied" mixture of M Gaussians), the others at once
        prior_type = "tied" if covariance_type == "tied" else covariance_type
        if covariance_type == "tied":
            self.state_priors = []
            for k in range(K):
                prior_k = dict(priors)
                for name in ("means_prior", "means_weight"):
                    if np.ndim(priors[name]) and np.shape(priors[name])[0] == K * M:
                        prior_k[name] = priors[name][k * M : (k + 1) * M]
                if np.ndim(priors["covars_prior"]) == 3:
                    prior_k["covars_prior"] = priors["covars_prior"][k]
                self.state_priors.append(gaussian.prior_arrays(prior_type, M, self.n_features, **prior_k))
        else:
            flat_covars_prior = priors["covars_prior"]
            if flat_covars_prior is not None and np.ndim(flat_covars_prior) > {"full": 2, "diag": 1,
                                                                               "spherical": 0}[covariance_type]:
                flat_covars_prior = self._flat("covars_prior", flat_covars_prior)
            priors["covars_prior"] = flat_covars_prior
            self.priors = gaussian.prior_arrays(prior_type, K * M, self.n_features, **priors)
        self.learn_weights = bool(learn_weights)
        self.learn_means = bool(learn_means)
        self.learn_covars = bool(learn_covars)

    # ------------------------------------------------------------ layout
    def _flat(self, name, array):
        """A (K, M, ...) array laid end to end as (K M, ...)."""
        K, M = self.n_components, self.n_mix
        return np.reshape(array, (K * M,) + np.shape(array)[2:]) if np.ndim(array) >= 2 else array

    def flat_covariances(self, covars):
        """``covars_`` as the covariances of the K M Gaussians laid end to end (tied: repeated per state)."""
        if self.covariance_type == "tied":
            return np.repeat(np.asarray(covars), self.n_mix, axis=0)
        return self._flat("covars", np.asarray(covars))

    # ------------------------------------------------------------ E-step
    def context(self, params):
        """Means, precision factors and log weights of the K M Gaussians (precision factors once per state if
        tied)."""
        covars = params["covars_"]
        if self.covariance_type == "tied":
            prec_chol = np.repeat(gaussian.precisions_cholesky(covars, "full"), self.n_mix, axis=0)
        else:
            prec_chol = gaussian.precisions_cholesky(self.flat_covariances(covars), self.flat_type)
        with np.errstate(divide="ignore"):
            log_weights = np.log(params["weights_"])
        return self._flat("means", params["means_"]), prec_chol, log_weights

    def _joint(self, X, context):
        """``log w_km + log N(x_t | mu_km, Sigma_km)``: shape (n_samples, K, M)."""
        means, prec_chol, log_weights = context
        log_prob = self.components.log_likelihood(X, {"means_": means}, prec_chol)
        log_prob = log_prob.reshape(X.shape[0], self.n_components, self.n_mix)
        log_prob += log_weights
        return np.ascontiguousarray(log_prob, dtype=np.float64)

    def frames(self, X, params, context, work=None):
        """Log emission densities (n_samples, K) and, as the cache, each state's mixture responsibilities."""
        joint = self._joint(X, context)
        log_frameprob = normalize_log_groups(joint)  # joint now holds p(m_t = m | x_t, z_t = k)
        return {"log_frameprob": log_frameprob}, joint

    def log_likelihood(self, X, params, context):
        return normalize_log_groups(self._joint(X, context))

    def mixture_posteriors(self, X, params, context):
        """``p(m_t = m | x_t, z_t = k)``: each state's mixture responsibilities, shape (n_samples, K, M)."""
        return self.frames(X, params, context)[1]

    def accumulate(self, X, resp, params, context, cache=None):
        """Gaussian statistics of the K M Gaussians, weighted by ``p(z_t = k | X) p(m_t = m | x_t, z_t = k)``."""
        mix_resp = self.mixture_posteriors(X, params, context) if cache is None else cache
        weighted = (resp[:, :, np.newaxis] * mix_resp).reshape(X.shape[0], -1)
        return self.components.accumulate(X, weighted, {"means_": context[0]}, context[1])

    def post(self, stats):
        return stats.post.reshape(self.n_components, self.n_mix).sum(axis=1)

    # ------------------------------------------------------------ M-step
    def m_step(self, stats, params):
        r"""Exact M-step of every state's mixture.

        With ``N_km = sum_t gamma_tk r_tkm`` (``gamma`` the state posteriors,
        ``r`` the mixture responsibilities within the state):
        ``w_km = max(N_km + alpha_km - 1, 0) / sum_m' (...)``
        (:func:`emkit._densities.dirichlet.map_update`), and the means and
        covariances of :func:`emkit._densities.gaussian.m_step` for each
        Gaussian (scatter about the new means; tied pools a state's
        Gaussians).
        """
        K, M = self.n_components, self.n_mix
        weights = params["weights_"]
        if self.learn_weights:
            weights = dirichlet.map_update(stats.post.reshape(K, M), self.weights_prior, weights)
        means, covars = params["means_"], params["covars_"]
        if self.learn_means or self.learn_covars:
            if self.covariance_type == "tied":
                means, covars = self._tied_m_step(stats, means, covars)
            else:
                means, covars = self._flat_m_step(stats, means, covars)
        return {"weights_": weights, "means_": means, "covars_": covars}

    def _flat_m_step(self, stats, means, covars):
        K, M, D = self.n_components, self.n_mix, self.n_features
        centre = self._flat("means", np.asarray(means, dtype=np.float64))
        flat_covars = self.flat_covariances(covars)
        new_means, new_covars = gaussian.m_step(
            stats, centre, self.flat_type, means=centre, covariances=flat_covars, learn_means=self.learn_means,
            learn_covars=self.learn_covars, **self.priors,
        )
        empty = stats.post <= 1e-10  # a Gaussian with no posterior mass keeps its parameters
        if np.any(empty):
            new_means = np.where(empty[:, np.newaxis], centre, new_means)
            new_covars = np.array(new_covars, copy=True)
            new_covars[empty] = flat_covars[empty]
        return new_means.reshape(K, M, D), np.reshape(new_covars, np.shape(covars))

    def _tied_m_step(self, stats, means, covars):
        M = self.n_mix
        new_means = np.array(means, dtype=np.float64, copy=True)
        new_covars = np.array(covars, dtype=np.float64, copy=True)
        for k in range(self.n_components):
            part = slice(k * M, (k + 1) * M)
            stats_k = gaussian.GaussianStats(stats.post[part], stats.first[part], stats.second[part])
            if stats_k.post.sum() <= 1e-10:  # a state with no posterior mass keeps its parameters
                continue
            means_k, covars_k = gaussian.m_step(
                stats_k, new_means[k], "tied", means=new_means[k], covariances=new_covars[k],
                learn_means=self.learn_means, learn_covars=self.learn_covars, **self.state_priors[k],
            )
            empty = stats_k.post <= 1e-10
            new_means[k] = np.where(empty[:, np.newaxis], new_means[k], means_k)
            new_covars[k] = covars_k
        return new_means, new_covars

    def pack(self, params):
        """The parameters unchanged, once every covariance is checked positive definite (raises LinAlgError)."""
        gaussian.precisions_cholesky(self.flat_covariances(params["covars_"]), self.flat_type)
        return params

    def log_prior(self, params):
        total = dirichlet.log_prior(params["weights_"], self.weights_prior) if self.learn_weights else 0.0
        if not (self.learn_means or self.learn_covars):
            return total

        def masked(priors):
            priors = dict(priors)
            if not self.learn_means:
                priors["means_weight"] = 0.0
            if not self.learn_covars:
                priors["covars_prior"], priors["covars_weight"] = 0.0, None
            return priors

        if self.covariance_type == "tied":
            for k in range(self.n_components):
                total += gaussian.log_prior(params["means_"][k], params["covars_"][k], "tied",
                                            **masked(self.state_priors[k]))
            return total
        return total + gaussian.log_prior(self._flat("means", params["means_"]),
                                          self.flat_covariances(params["covars_"]), self.flat_type,
                                          **masked(self.priors))

    def recenter(self, stats, old_params, new_params):
        return gaussian.recenter(stats, self._flat("means", old_params["means_"]),
                                 self._flat("means", new_params["means_"]), self.flat_type)

    # ------------------------------------------------------------ counting, sampling, shapes
    def n_parameters(self):
        K, M, D = self.n_components, self.n_mix, self.n_features
        if self.covariance_type == "tied":
            covariances = K * D * (D + 1) // 2
        else:
            covariances = gaussian.n_parameters(K * M, D, self.covariance_type) - K * M * D
        return int(K * (M - 1) + K * M * D + covariances)

    def sample(self, params, labels, random_state):
        """One row per state in ``labels``: a Gaussian drawn from that state's weights, then a row from it."""
        labels = np.asarray(labels)
        cdf = np.cumsum(params["weights_"], axis=1)
        u = random_state.uniform(size=labels.shape[0])
        mix = np.minimum((u[:, np.newaxis] * cdf[labels, -1:] > cdf[labels]).sum(axis=1), self.n_mix - 1)
        flat = labels * self.n_mix + mix
        return gaussian.sample(self._flat("means", params["means_"]), self.flat_covariances(params["covars_"]),
                               self.flat_type, flat, random_state)

    def expectation(self, params):
        """``E[x | z = k] = sum_m w_km mu_km``."""
        return np.einsum("km,kmd->kd", params["weights_"], params["means_"])

    def shapes(self):
        return {"weights_": (self.n_components, self.n_mix), "means_": (self.n_components, self.n_mix,
                                                                        self.n_features),
                "covars_": self.table()["covariances"][0]}

    def table(self):
        """Accepted shapes of GMMHMM's starts and priors (K states, M Gaussians each, D features).

        ================  ===========================================================
        name              shapes
        ================  ===========================================================
        ``weights``       (K, M)
        ``means``         (K, M, D)
        ``covariances``   full (K, M, D, D), tied (K, D, D), diag (K, M, D), spherical (K, M)
        ``weights_prior`` broadcastable to (K, M)
        ``means_prior``   (), (D,), (K, M, D)
        ``means_weight``  (), (K, M)
        ``covars_prior``  full (), (D, D), (K, M, D, D); tied (), (D, D), (K, D, D);
                          diag (), (D,), (K, M, D); spherical (), (K, M)
        ================  ===========================================================
        """
        K, M, D = self.n_components, self.n_mix, self.n_features
        covariances = {"full": (K, M, D, D), "tied": (K, D, D), "diag": (K, M, D), "spherical": (K, M)}
        covars_prior = {"full": ((), (D, D), (K, M, D, D)), "tied": ((), (D, D), (K, D, D)),
                        "diag": ((), (D,), (K, M, D)), "spherical": ((), (K, M))}
        return {
            "weights": ((K, M),),
            "means": ((K, M, D),),
            "covariances": (covariances[self.covariance_type],),
            "weights_prior": Broadcast((K, M)),
            "means_prior": ((), (D,), (K, M, D)),
            "means_weight": ((), (K, M)),
            "covars_prior": covars_prior[self.covariance_type],
        }

    def check_values(self, array, name, label):
        K, M, D = self.n_components, self.n_mix, self.n_features
        if name == "weights":
            dirichlet.check_distribution(array, label, array.shape)
        elif name == "weights_prior" and np.any(array < 0):
            raise ValueError(f"{label} must be finite and >= 0.")
        elif name == "covariances":
            flat = self.flat_covariances(array)
            gaussian.check_parameter(flat, "covariances", self.flat_type, K * M, D, label=label)
        elif name in ("covars_prior", "means_weight") and array.ndim:
            flat = array
            if name == "means_weight" or array.ndim > {"full": 2, "tied": 2, "diag": 1, "spherical": 0}[
                    self.covariance_type]:
                flat = self.flat_covariances(array) if name == "covars_prior" else self._flat(name, array)
            gaussian.check_parameter(flat, name, self.flat_type, K * M, D, label=label)
        elif name in ("covars_prior", "means_weight") and array < 0:
            raise ValueError(f"{label} must be non-negative.")
