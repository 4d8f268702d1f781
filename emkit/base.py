"""The EM engine shared by every emkit estimator.

An estimator mixes in :class:`EMMixin` and provides a handful of hooks; the
engine runs the restarts (in parallel through joblib), the E-step/M-step loop,
the stopping rule, warnings, the choice of the best restart and the fitted
attributes common to every model.

The hooks (none of ``_initialize``, ``_e_step`` or ``_m_step`` writes to
``self``):

``_validate_fit_data(X, y=None, **fit_params) -> data``
    Validate once per fit. ``data`` is a small NamedTuple with at least the
    field ``n_units``: what the objective is averaged over (samples, time
    steps, documents, or the sum of sample weights).
``_initialize(data, random_state) -> params``
    Starting parameters: a dict keyed by fitted attribute names
    (``"means_"``). Keys with a leading underscore are private: they are
    passed along from step to step but never set on the estimator.
``_e_step(data, params) -> (stats, log_likelihood)``
    Expected sufficient statistics and the total log-likelihood (or ELBO) of
    ``data`` at ``params``.
``_m_step(data, stats, params) -> params``
    New parameters (a new dict; what is not learned is copied through).
``_log_prior(params) -> float``
    Log-density of the priors at ``params`` (0 when priors are off); added
    once per iteration to the total objective. Optional: defaults to 0.
``_fitted_params() -> params``
    The current fitted attributes as a params dict (for warm start).
``_after_fit(data, params)``
    Optional: set model-specific derived attributes after the winner is set.
``_is_converged(data, history, change) -> bool``
    Optional: the stopping rule (default ``change < tol``).
``_objective_dtype(data)``
    Optional: dtype whose eps sets the round-off allowance (default float64).

An M-step that is deliberately not the exact maximiser (scikit-learn's
``reg_covar`` adds a constant to every variance after the update) may return
the private entry ``"_objective_slack"``: an upper bound on how much that
departure can lower the total objective. The engine widens its round-off
allowance by it, so such a step is neither reported as a decrease nor kept from
converging, while a genuine decrease still is.

Models signal a numerical failure of a restart by raising
:class:`NumericalFailure`; the engine drops that restart with a
:class:`RestartFailedWarning`, and raises a ``ValueError`` only when every
restart failed.
"""

import contextvars
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
from joblib import effective_n_jobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.parallel import Parallel, delayed

from ._validation import Interval

__all__ = [
    "EMMixin",
    "EMRun",
    "NumericalFailure",
    "RestartFailedWarning",
    "ObjectiveDecreaseWarning",
    "map_blocks",
]

# Threads a model may use for the row blocks of one E-step: more than one only while a single
# restart runs in this process with n_jobs > 1 (with several restarts, n_jobs runs the restarts).
_BLOCK_THREADS = contextvars.ContextVar("emkit_block_threads", default=1)


def map_blocks(function, items):
    """``[function(item) for item in items]``, on threads when the running fit allows it.

    Models call this for independent blocks of rows inside ``_e_step``. Results
    come back in the order of ``items``, so sums taken over them are the same
    whatever the number of threads (BLAS is limited to one thread per block
    meanwhile, which changes at most the last bits of its products).
    """
    items = list(items)
    n_threads = min(_BLOCK_THREADS.get(), len(items))
    if n_threads <= 1:
        return [function(item) for item in items]
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(n_threads) as pool:
        return list(pool.map(function, items))


class NumericalFailure(ArithmeticError):
    """Raised by a model's hooks when a restart cannot go on.

    The message should name the hyperparameter that helps
    (for example "increase reg_covar").
    """


class RestartFailedWarning(UserWarning):
    """One restart failed numerically and was dropped; the others went on."""


class ObjectiveDecreaseWarning(UserWarning):
    """EM's objective decreased by more than round-off.

    In exact EM this cannot happen, so it points at a numerical problem
    (or a bug); that iteration is never counted as converged.
    """


@dataclass
class EMRun:
    """The record of one restart.

    Attributes
    ----------
    index : int
        Position of the restart (0-based).
    seed : int or None
        Seed the restart's initialisation drew from (None for a warm start).
    params : dict or None
        Final parameters (None when the restart failed).
    history : list of float
        Per-unit objective after each M-step.
    initial_objective : float
        Per-unit objective at the starting parameters.
    converged : bool
    error : str or None
        Message of the numerical failure that ended this restart, if any.
    params_history : list of dict or None
        Parameters after every iteration (``keep_params_history=True``).
    warnings : list
        ``warnings.WarningMessage`` objects raised while the restart ran.
    messages : list of str
        Verbose lines, printed by the parent in restart order.
    """

    index: int
    seed: object
    params: dict = None
    history: list = field(default_factory=list)
    initial_objective: float = np.nan
    converged: bool = False
    error: str = None
    params_history: list = None
    warnings: list = field(default_factory=list)
    messages: list = field(default_factory=list)

    @property
    def objective(self):
        """Per-unit objective of the final parameters."""
        return self.history[-1] if self.history else self.initial_objective

    @property
    def n_iter(self):
        """Number of M-steps done."""
        return len(self.history)

    def summary(self):
        """A small dict for ``restarts_``: seed, objective, n_iter, converged, error."""
        return {
            "seed": self.seed,
            "objective": float(self.objective) if self.error is None else np.nan,
            "n_iter": self.n_iter,
            "converged": self.converged,
            "error": self.error,
        }


def stopping_tolerance(objective, dtype=np.float64):
    """Round-off allowance ``eps = 8 * finfo(dtype).eps * max(1, |objective|)``."""
    return 8.0 * np.finfo(dtype).eps * max(1.0, abs(objective))


def _copy_params(params, public_only=False):
    return {
        k: (v.copy() if isinstance(v, np.ndarray) else v)
        for k, v in params.items()
        if not (public_only and k.startswith("_"))
    }


class EMMixin:
    """Expectation-Maximization engine: restarts, loop, stopping rule, bookkeeping.

    Shared constructor parameters (documented on each estimator): ``max_iter``,
    ``tol``, ``n_init``, ``random_state``, ``warm_start``, ``verbose``,
    ``verbose_interval``, ``n_jobs``, ``keep_params_history``. The hooks a
    model provides are described in the module docstring of :mod:`emkit.base`.

    Attributes
    ----------
    converged_ : bool
        Whether the winning restart met the stopping rule
        ``-eps <= change < tol``.
    n_iter_ : int
        Number of M-steps of the winning restart.
    lower_bound_ : float
        Per-unit objective of the returned parameters.
    lower_bound_history_ : ndarray, one entry per iteration
        Per-unit objective after each M-step of the winning restart.
    restarts_ : list of dict
        One record per restart: ``seed``, ``objective``, ``n_iter``,
        ``converged`` and ``error``.
    params_history_ : list of dict
        Only with ``keep_params_history=True``: the starting parameters
        followed by the parameters after each M-step of the winning restart.
    """

    _em_parameter_constraints = {
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "verbose_interval": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [Integral, None],
        "keep_params_history": ["boolean"],
    }

    # ------------------------------------------------------------------ hooks
    def _log_prior(self, params):
        return 0.0

    def _after_fit(self, data, params):
        pass

    def _objective_dtype(self, data):
        return np.float64

    def _is_converged(self, data, history, change):
        """Stopping rule, asked only when ``change >= -eps`` (no decrease beyond round-off).

        ``history`` holds the per-unit objective after each M-step so far
        (``history[-1]`` is the current one, ``len(history)`` the iteration).
        The default is emkit's ``change < tol``; a model whose peer uses another
        rule (LDA's ``perp_tol``) overrides this.
        """
        return change < self.tol

    # ----------------------------------------------------------------- engine
    def _fit_em(self, data):
        """Run EM on validated ``data`` and set the fitted attributes.

        Returns the winning :class:`EMRun`.
        """
        warm = self.warm_start and self._is_fitted_for_warm_start()
        if warm:
            starts = [(0, None, self._fitted_params())]
        else:
            rng = check_random_state(self.random_state)
            seeds = rng.randint(np.iinfo(np.int32).max, size=self.n_init)
            starts = [(i, int(s), None) for i, s in enumerate(seeds)]

        n_jobs = self.n_jobs
        in_process = len(starts) == 1 or n_jobs in (None, 1)
        if in_process:
            # a single restart may spread its E-step's row blocks over n_jobs threads instead
            threads = effective_n_jobs(n_jobs) if len(starts) == 1 and n_jobs not in (None, 1) else 1
            token = _BLOCK_THREADS.set(threads)
            try:
                runs = [self._run_restart(data, i, seed, start, live=True) for i, seed, start in starts]
            finally:
                _BLOCK_THREADS.reset(token)
        else:
            n_workers = min(effective_n_jobs(n_jobs), len(starts))
            runs = Parallel(n_jobs=n_jobs)(
                delayed(_run_restart_in_worker)(self, data, i, seed, start, n_workers)
                for i, seed, start in starts
            )
            for run in runs:  # carried back from the workers, re-emitted in restart order
                for line in run.messages:
                    print(line)

        for run in runs:
            for w in run.warnings:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

        good = [r for r in runs if r.error is None]
        failed = [r for r in runs if r.error is not None]
        for run in failed:
            warnings.warn(
                f"Restart {run.index} (seed {run.seed}) failed and was dropped: {run.error}",
                RestartFailedWarning,
                stacklevel=3,
            )
        if not good:
            raise ValueError(
                f"{type(self).__name__}: every restart failed numerically. Last error: {failed[-1].error}"
            )

        # highest final objective wins; ties go to the earliest restart
        best = max(good, key=lambda r: (r.objective, -r.index))
        if not best.converged and self.max_iter > 0:
            warnings.warn(
                f"{type(self).__name__}: the best restart (index {best.index}) did not converge in "
                f"{best.n_iter} iterations (last change "
                f"{_last_change(best):.3g}, tol={self.tol}). Try a larger max_iter or tol, "
                "or check the data.",
                ConvergenceWarning,
                stacklevel=3,
            )

        self._set_params_attrs(best.params)
        self.converged_ = bool(best.converged)
        self.n_iter_ = best.n_iter
        self.lower_bound_ = float(best.objective)
        self.lower_bound_history_ = np.asarray(best.history, dtype=np.float64)
        self.restarts_ = [r.summary() for r in runs]
        if self.keep_params_history:
            self.params_history_ = best.params_history
        elif hasattr(self, "params_history_"):
            del self.params_history_
        self._after_fit(data, best.params)
        return best

    def _is_fitted_for_warm_start(self):
        # lower_bound_ is set by the engine alone (n_features_in_ is already set by validation)
        return hasattr(self, "lower_bound_")

    def _set_params_attrs(self, params):
        for key, value in params.items():
            if not key.startswith("_"):
                setattr(self, key, value)

    def _run_restart(self, data, index, seed, start_params, live=False):
        """One EM run from one start; never raises on numerical failure."""
        run = EMRun(index=index, seed=seed)
        verbose = self.verbose
        interval = getattr(self, "verbose_interval", 10)

        def say(line):
            if live:
                print(line)
                sys.stdout.flush()
            else:
                run.messages.append(line)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if start_params is None:
                    params = self._initialize(data, np.random.RandomState(seed))
                else:
                    params = _copy_params(start_params)
                dtype = self._objective_dtype(data)
                n_units = data.n_units
                stats, loglik = self._e_step(data, params)
                value = (loglik + self._log_prior(params)) / n_units
                _check_finite_objective(value)
                run.initial_objective = value
                if self.keep_params_history:
                    run.params_history = [_copy_params(params, public_only=True)]
                if verbose:
                    say(f"Initialization {index}: objective {value:.8g}")
                for iteration in range(1, self.max_iter + 1):
                    params = self._m_step(data, stats, params)
                    stats, loglik = self._e_step(data, params)
                    new_value = (loglik + self._log_prior(params)) / n_units
                    _check_finite_objective(new_value)
                    change = new_value - value
                    value = new_value
                    run.history.append(value)
                    if self.keep_params_history:
                        run.params_history.append(_copy_params(params, public_only=True))
                    if verbose >= 2 and iteration % interval == 0:
                        say(f"  Iteration {iteration}: objective {value:.8g}, change {change:.3g}")
                    elif verbose == 1 and iteration % interval == 0:
                        say(f"  Iteration {iteration}")
                    # round-off, plus what a deliberately inexact M-step (a regulariser
                    # such as reg_covar) may cost, which the model states in "_objective_slack"
                    eps = stopping_tolerance(value, dtype) + params.get("_objective_slack", 0.0) / n_units
                    if change < -eps:
                        warnings.warn(
                            f"{type(self).__name__}: the objective decreased by {-change:.3g} per unit at "
                            f"iteration {iteration} (restart {index}); EM should never decrease it, which "
                            "points at numerical trouble (e.g. too small reg_covar / min_covar).",
                            ObjectiveDecreaseWarning,
                        )
                    elif self._is_converged(data, run.history, change):
                        run.converged = True
                        break
                if verbose:
                    state = "converged" if run.converged else "did not converge"
                    say(f"Initialization {index} {state}: {run.n_iter} iterations, objective {value:.8g}")
                run.params = params
            except NumericalFailure as exc:
                run.error = str(exc)
                run.params = None
        run.warnings = list(caught)
        return run


def _last_change(run):
    if len(run.history) >= 2:
        return run.history[-1] - run.history[-2]
    if run.history:
        return run.history[-1] - run.initial_objective
    return np.nan


def _check_finite_objective(value):
    if not np.isfinite(value):
        raise NumericalFailure(
            "the objective became non-finite; the data may be degenerate for this model "
            "(increase the covariance regularisation, e.g. reg_covar or min_covar)"
        )


def _run_restart_in_worker(estimator, data, index, seed, start_params, n_workers):
    """Worker entry point: limits BLAS threads so restarts do not oversubscribe."""
    from joblib import cpu_count
    from threadpoolctl import threadpool_limits

    n_workers = max(1, n_workers)
    with threadpool_limits(limits=max(1, cpu_count() // n_workers), user_api="blas"):
        return estimator._run_restart(data, index, seed, start_params, live=False)
