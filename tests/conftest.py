"""Shared fixtures: local seeds and data factories that sample from known parameters."""

import numpy as np
import pytest


@pytest.fixture
def rng():
    """A fresh RandomState(0) for each test."""
    return np.random.RandomState(0)


def make_blobs_from_params(rng, weights, means, covariances, n_samples):
    """Sample a Gaussian mixture with full covariances; returns (X, labels)."""
    labels = rng.choice(len(weights), size=n_samples, p=weights)
    X = np.empty((n_samples, means.shape[1]))
    for k in range(len(weights)):
        rows = labels == k
        X[rows] = rng.multivariate_normal(means[k], covariances[k], rows.sum())
    return X, labels


@pytest.fixture
def mixture_data(rng):
    """Three well-separated 2-D Gaussians with known parameters."""
    weights = np.array([0.5, 0.3, 0.2])
    means = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 7.0]])
    covariances = np.array([[[1.0, 0.3], [0.3, 0.5]], [[0.6, 0.0], [0.0, 1.2]], [[0.8, -0.2], [-0.2, 0.4]]])
    X, labels = make_blobs_from_params(rng, weights, means, covariances, 1500)
    return X, labels, weights, means, covariances
