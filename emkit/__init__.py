"""emkit: Expectation-Maximization for latent-variable models, scikit-learn compatible."""

__version__ = "0.1.0"

__all__ = ["__version__"]
