"""emkit: Expectation-Maximization for latent-variable models, scikit-learn compatible."""

__version__ = "0.1.0"

from .mixture import GaussianMixture

__all__ = ["GaussianMixture", "__version__"]
