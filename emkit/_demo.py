"""``python -m emkit demo``: EM fitting a 2-D Gaussian mixture, printed and drawn.

Generates a small data set from three known Gaussians, fits
:class:`emkit.GaussianMixture` from a deliberately poor start while keeping
every iteration's parameters, prints the objective per iteration, and writes
``emkit_demo.png`` (the fit every few iterations) and ``emkit_demo.gif`` (the
classic animation of EM) to the output folder.
"""

import argparse
import os
import sys

import numpy as np

from ._densities import gaussian
from ._math import log_normalize, logsumexp
from .mixture import GaussianMixture


def make_data(random_state=0, n_samples=600):
    """Three 2-D Gaussian clusters with known parameters; returns (X, labels)."""
    rng = np.random.RandomState(random_state)
    means = np.array([[-4.0, 0.0], [3.0, 3.5], [2.5, -3.0]])
    covariances = np.array([[[2.0, 1.2], [1.2, 1.5]], [[1.0, -0.6], [-0.6, 1.2]], [[0.6, 0.0], [0.0, 2.0]]])
    labels = rng.choice(3, size=n_samples, p=[0.4, 0.35, 0.25])
    X = np.array([rng.multivariate_normal(means[k], covariances[k]) for k in labels])
    return X, labels


def fit_demo(X, verbose=True):
    """Fit a 3-component mixture from a poor start, keeping every iteration's parameters."""
    start_means = np.array([[-0.5, 0.5], [0.0, 0.0], [0.5, -0.5]])
    model = GaussianMixture(
        3, means_init=start_means, weights_init=np.full(3, 1 / 3), precisions_init=np.array([np.eye(2)] * 3),
        tol=1e-6, max_iter=200, keep_params_history=True,
    ).fit(X)
    if verbose:
        print(f"start        : mean log-likelihood {_mean_loglik(model.params_history_[0], X):.6f}")
        for i, value in enumerate(model.lower_bound_history_, start=1):
            print(f"iteration {i:3d}: mean log-likelihood {value:.6f}")
        print(f"converged: {model.converged_} after {model.n_iter_} iterations")
    return model


def _log_joint(params, X):
    """``log p(x_n, z_n = k)`` under one iteration's parameters (full covariances)."""
    log_prob = gaussian.log_likelihood(X, params["means_"], params["precisions_cholesky_"], "full")
    return log_prob + np.log(params["weights_"])


def _mean_loglik(params, X):
    return float(np.mean(logsumexp(_log_joint(params, X), axis=1)))


def _ellipses(ax, params, colors):
    from matplotlib.patches import Ellipse

    for k in range(params["means_"].shape[0]):
        values, vectors = np.linalg.eigh(params["covariances_"][k])
        angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
        for scale in (1.0, 2.0):
            w, h = 2 * scale * np.sqrt(values[::-1])
            ax.add_patch(
                Ellipse(params["means_"][k], w, h, angle=angle, fill=False, color=colors[k], lw=2 if scale == 1 else 1)
            )
        ax.plot(*params["means_"][k], "x", color=colors[k], ms=10, mew=3)


def draw(model, X, outdir):
    """Write the snapshot grid (PNG) and the animation (GIF); returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    history = model.params_history_
    colors = ["tab:red", "tab:blue", "tab:green"]
    steps = sorted({0, 1, 3, 8, len(history) // 2, len(history) - 1})
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.5), sharex=True, sharey=True)
    for ax, step in zip(axes.ravel(), steps):
        params = history[step]
        resp = _responsibilities(params, X)
        ax.scatter(X[:, 0], X[:, 1], c=resp @ np.array(matplotlib.colors.to_rgba_array(colors))[:, :3], s=6)
        _ellipses(ax, params, colors)
        ax.set_title(f"iteration {step}")
    fig.suptitle("EM fitting a Gaussian mixture (emkit.GaussianMixture)")
    fig.tight_layout()
    png = os.path.join(outdir, "emkit_demo.png")
    fig.savefig(png, dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 5))
    lim = (X.min(axis=0) - 1, X.max(axis=0) + 1)

    def frame(step):
        ax.clear()
        params = history[step]
        resp = _responsibilities(params, X)
        ax.scatter(X[:, 0], X[:, 1], c=resp @ np.array(matplotlib.colors.to_rgba_array(colors))[:, :3], s=6)
        _ellipses(ax, params, colors)
        ax.set_xlim(lim[0][0], lim[1][0])
        ax.set_ylim(lim[0][1], lim[1][1])
        ax.set_title(f"EM iteration {step}")

    frames = list(range(min(len(history), 40)))
    gif = os.path.join(outdir, "emkit_demo.gif")
    FuncAnimation(fig, frame, frames=frames).save(gif, writer=PillowWriter(fps=4))
    plt.close(fig)
    return png, gif


def _responsibilities(params, X):
    return np.exp(log_normalize(_log_joint(params, X))[0])


DESCRIPTION = (
    "Fit a 2-D Gaussian mixture with EM from a deliberately poor start, print the mean log-likelihood after "
    "every iteration, and draw the fit (emkit_demo.png, a grid of snapshots, and emkit_demo.gif, an animation "
    "of EM). Drawing needs matplotlib: install emkit[demo], or pass --no-plot."
)


def _matplotlib_missing():
    """The message to print when matplotlib cannot be imported, else None."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "python -m emkit demo: matplotlib is not installed; install emkit[demo], or pass --no-plot"
    return None


def main(argv=None):
    """Entry point of ``python -m emkit``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m emkit", description=DESCRIPTION)
    parser.add_argument("command", choices=["demo"], help="what to run (demo: the EM demo above)")
    parser.add_argument("--outdir", default=".", help="folder for emkit_demo.png and emkit_demo.gif (default: .)")
    parser.add_argument("--no-plot", action="store_true", help="print the EM run only, draw nothing")
    args = parser.parse_args(argv)
    if not args.no_plot:
        message = _matplotlib_missing()
        if message is not None:
            print(message, file=sys.stderr)
            return 1
    X, _ = make_data()
    model = fit_demo(X)
    if not args.no_plot:
        os.makedirs(args.outdir, exist_ok=True)
        png, gif = draw(model, X, args.outdir)
        print(f"wrote {png} and {gif}")
    return 0
