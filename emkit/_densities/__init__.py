"""Component densities as objects (``base.Density``), shared by the mixtures and the HMMs; ``dirichlet``: probability vectors."""
