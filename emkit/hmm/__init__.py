"""Hidden Markov models fitted by Baum-Welch on the shared EM engine.

One core (``emkit.hmm._base._BaseHMM``) holds everything about start and
transition probabilities, sequences, decoding, filtering, forecasting and
sampling; the emissions are a component density object
(:mod:`emkit._densities`), the same the mixtures use. Each emission family is
one small module of this package:

- :class:`GaussianHMM` -- Gaussian emissions (``_gaussian.py``);
- :class:`GMMHMM` -- a Gaussian mixture per state (``_gmm.py``);
- :class:`CategoricalHMM` -- one integer symbol per step (``_categorical.py``);
- :class:`PoissonHMM` -- a vector of counts per step (``_poisson.py``).

Names follow hmmlearn (``startprob_``, ``transmat_``, ``means_``, ``covars_``,
``weights_``, ``emissionprob_``, ``lambdas_``, ``params``, ``init_params``,
``lengths``), the engine's ``max_iter`` / ``tol`` / ``n_init`` / ``n_jobs``
replace hmmlearn's ``n_iter`` / ``tol``, and ``score`` is the mean
log-likelihood per time step.
"""

from ._categorical import CategoricalHMM
from ._gaussian import GaussianHMM
from ._gmm import GMMHMM
from ._poisson import PoissonHMM

__all__ = ["GaussianHMM", "GMMHMM", "CategoricalHMM", "PoissonHMM"]

# The classes live in this package's modules but belong to ``emkit.hmm``: models pickled by earlier releases
# (when this was one module) load, and new pickles name ``emkit.hmm.GaussianHMM`` as before.
for _cls in (GaussianHMM, GMMHMM, CategoricalHMM, PoissonHMM):
    _cls.__module__ = __name__
del _cls
