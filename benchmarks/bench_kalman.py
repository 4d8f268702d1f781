"""KalmanFilter: emkit vs pykalman in one process.

4-dim state, 8-dim observations, 5,000 steps: one filter, one smooth, and EM over all
parameters for 10 iterations from the same start. Runs alternate between the two
libraries; medians and ratios are printed, with the log-likelihoods reached.

    python benchmarks/bench_kalman.py [--timesteps 5000] [--repeats 5] [--em-repeats 1]
"""

import argparse
import platform
import time

import numpy as np
from pykalman import KalmanFilter as PyKalmanFilter

from emkit.kalman import KalmanFilter


def make_problem(n_timesteps, n_dim_state=4, n_dim_obs=8, seed=0):
    rng = np.random.RandomState(seed)
    a = rng.standard_normal((n_dim_state, n_dim_state))
    q = rng.standard_normal((n_dim_state, n_dim_state))
    r = rng.standard_normal((n_dim_obs, n_dim_obs))
    truth = dict(
        transition_matrices=0.95 * a / np.abs(np.linalg.eigvals(a)).max(),
        observation_matrices=rng.standard_normal((n_dim_obs, n_dim_state)),
        transition_covariance=q @ q.T / n_dim_state + 0.1 * np.eye(n_dim_state),
        observation_covariance=r @ r.T / n_dim_obs + 0.5 * np.eye(n_dim_obs),
        transition_offsets=0.1 * rng.standard_normal(n_dim_state),
        observation_offsets=rng.standard_normal(n_dim_obs),
        initial_state_mean=np.zeros(n_dim_state),
        initial_state_covariance=np.eye(n_dim_state),
    )
    X = KalmanFilter(**truth).sample(n_timesteps, random_state=seed)[1]
    start = dict(truth)
    start["transition_matrices"] = 0.9 * np.eye(n_dim_state)
    start["observation_matrices"] = truth["observation_matrices"] + 0.3 * rng.standard_normal((n_dim_obs, n_dim_state))
    start["transition_covariance"] = np.eye(n_dim_state)
    start["observation_covariance"] = np.eye(n_dim_obs)
    start["transition_offsets"] = np.zeros(n_dim_state)
    start["observation_offsets"] = np.zeros(n_dim_obs)
    return X, start


def timed(function):
    begin = time.perf_counter()
    out = function()
    return time.perf_counter() - begin, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5, help="alternating runs of filter and smooth")
    parser.add_argument("--em-repeats", type=int, default=1, help="alternating runs of the 10-iteration EM")
    parser.add_argument("--em-iter", type=int, default=10)
    args = parser.parse_args()

    X, start = make_problem(args.timesteps)
    ours = KalmanFilter(**start)
    theirs = PyKalmanFilter(**start)
    # warm-up: numba compiles (or loads its cache) once
    KalmanFilter(**start, em_vars="all").em(X[:50], n_iter=1)
    ours.smooth(X[:50])

    print(f"KalmanFilter benchmark: T={args.timesteps}, n_dim_state=4, n_dim_obs=8, "
          f"EM over all parameters for {args.em_iter} iterations")
    print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}")
    rows = []
    for label, mine, peer in (
        ("filter", lambda: ours.filter(X), lambda: theirs.filter(X)),
        ("smooth", lambda: ours.smooth(X), lambda: theirs.smooth(X)),
    ):
        t_ours, t_theirs = [], []
        for _ in range(args.repeats):
            t, a = timed(mine)
            t_ours.append(t)
            t, b = timed(peer)
            t_theirs.append(t)
        gap = max(np.abs(x - y).max() for x, y in zip(a, b))
        rows.append((label, np.median(t_ours), np.median(t_theirs), f"max |means/covs diff| {gap:.1e}"))

    t_ours, t_theirs = [], []
    for _ in range(args.em_repeats):
        t, fitted = timed(lambda: KalmanFilter(**start, em_vars="all").em(X, n_iter=args.em_iter))
        t_ours.append(t / args.em_iter)
        t, peer = timed(lambda: PyKalmanFilter(**start).em(X, n_iter=args.em_iter, em_vars="all"))
        t_theirs.append(t / args.em_iter)
    ll_ours = fitted.loglikelihood(X)
    ll_theirs = peer.loglikelihood(X)
    rows.append(("EM iteration", np.median(t_ours), np.median(t_theirs),
                 f"log-likelihood emkit {ll_ours:.6f}, pykalman {ll_theirs:.6f}"))

    print(f"{'task':<14}{'emkit (s)':>12}{'pykalman (s)':>14}{'speed-up':>10}  check")
    for label, mine, peer, note in rows:
        print(f"{label:<14}{mine:>12.5f}{peer:>14.4f}{peer / mine:>9.0f}x  {note}")


if __name__ == "__main__":
    main()
