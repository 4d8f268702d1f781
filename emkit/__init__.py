"""emkit: Expectation-Maximization for latent-variable models, scikit-learn compatible."""

__version__ = "0.1.0"

from .hmm import GMMHMM, CategoricalHMM, GaussianHMM, PoissonHMM
from .kalman import KalmanFilter
from .lda import LatentDirichletAllocation
from .mixture import BernoulliMixture, GaussianMixture, PoissonMixture

__all__ = [
    "GaussianMixture",
    "BernoulliMixture",
    "PoissonMixture",
    "GaussianHMM",
    "GMMHMM",
    "CategoricalHMM",
    "PoissonHMM",
    "KalmanFilter",
    "LatentDirichletAllocation",
    "__version__",
]
