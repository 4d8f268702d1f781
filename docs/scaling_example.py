"""Scaling out: emkit on a Dask cluster (shown in docs/scaling.rst, run by tests/test_dask.py)."""

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster

from emkit import GaussianHMM, GaussianMixture


def main():
    # On a real cluster: client = Client("scheduler-address:8786"); nothing else changes.
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster):
        # a million rows generated on the workers, in chunks of 250,000: the data never come to this process
        rng = da.random.RandomState(0)
        X = da.concatenate([
            rng.normal(0.0, 1.0, size=(500_000, 4), chunks=(250_000, 4)),
            rng.normal(4.0, 0.5, size=(500_000, 4), chunks=(250_000, 4)),
        ])
        gm = GaussianMixture(n_components=2, covariance_type="diag", random_state=0).fit(X)
        print("means:", np.round(np.sort(gm.means_[:, 0]), 2))  # plain numpy: the model pickles, no dask inside

        labels = gm.predict(X)  # lazy, chunked like X
        print("cluster sizes:", np.bincount(labels.compute()))
        print("mean log-likelihood:", round(gm.score(X), 3))  # a number

        # sequences: 400 sequences of 250 steps; chunk boundaries are moved so that none is cut
        states = da.random.RandomState(1).randint(0, 2, size=(100_000, 1), chunks=(30_000, 1))
        Y = states * 3.0 + da.random.RandomState(2).normal(size=(100_000, 1), chunks=(30_000, 1))
        hmm = GaussianHMM(n_components=2, random_state=0).fit(Y, lengths=[250] * 400)
        print("HMM means:", np.round(np.sort(hmm.means_[:, 0]), 2))

    # streaming without a cluster: one online-EM update per chunk read
    online = GaussianMixture(n_components=2, covariance_type="diag", random_state=0)
    generator = np.random.RandomState(3)
    for _ in range(50):
        chunk = np.r_[generator.normal(0.0, 1.0, (1000, 4)), generator.normal(4.0, 0.5, (1000, 4))]
        online.partial_fit(chunk)
    print("online means:", np.round(np.sort(online.means_[:, 0]), 2))
    return gm, hmm, online


if __name__ == "__main__":
    main()
