"""emkit: Expectation-Maximization for latent-variable models, scikit-learn compatible."""

__version__ = "0.1.0"

from .kalman import KalmanFilter
from .mixture import GaussianMixture

__all__ = ["GaussianMixture", "KalmanFilter", "__version__"]
