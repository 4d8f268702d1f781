"""emkit: Expectation-Maximization for latent-variable models, scikit-learn compatible."""

__version__ = "0.1.0"

from .hmm import CategoricalHMM, GaussianHMM, PoissonHMM
from .kalman import KalmanFilter
from .lda import LatentDirichletAllocation
from .mixture import GaussianMixture

__all__ = [
    "GaussianMixture",
    "GaussianHMM",
    "CategoricalHMM",
    "PoissonHMM",
    "KalmanFilter",
    "LatentDirichletAllocation",
    "__version__",
]
