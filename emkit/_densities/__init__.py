"""Emission / component densities: log-likelihood, weighted M-step, parameter count, sampling."""
