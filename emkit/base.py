"""The EM engine shared by every emkit estimator.

An estimator mixes in :class:`EMMixin` and provides a handful of hooks; the
engine runs the restarts (in parallel through joblib), the E-step as a sum over
independent blocks of data, the M-step, the stopping rule, warnings, the choice
of the best restart and the fitted attributes common to every model. The
contract is written out in ``docs/engine.rst``; in short (none of these hooks
writes to ``self``):

``_validate_fit_data(X, y=None, **fit_params) -> data``
    Validate once per fit. ``data`` is a NamedTuple with at least ``blocks``
    (an :class:`emkit._blocks.Blocks` sequence: rows, whole sequences or
    documents) and ``n_units`` (what the objective is averaged over), plus
    every hyperparameter a call may override (``em_vars``, ``params``
    letters), resolved once.
``_initialize(data, random_state) -> params``
    Starting parameters: a dict keyed by fitted attribute names. Parameters
    only: working state goes to ``_initial_state``.
``_initial_state(data, params, random_state) -> list or None``
    Optional per-restart working state, one entry per block (LDA's document
    mixtures); ``None`` (the default) when the model has none.
``_e_step_context(data, params) -> context``
    Optional: what every block needs, computed once per E-step (derived
    parameters, resolved hyperparameters). Defaults to ``params``.
``_objective_context(data, params) -> context or None``
    Optional: the context of an E-step whose statistics will not be used (the
    last of a run that reaches ``max_iter``), so that blocks can return the
    objective alone (``stats`` None) and skip what only the statistics need.
    ``None`` (the default): a full E-step runs.
``_e_step_block(block, context, state) -> BlockResult``
    One block's statistics (a NamedTuple type with ``add``, see
    :mod:`emkit._stats`), its log-likelihood (or ELBO) and its new state.
    The engine maps blocks and adds the results in block order.
``_m_step(data, stats, params) -> params``
    New parameters (a new dict; what is not learned is copied through).
``_m_step_slack(data, stats, params) -> float``
    Optional: how much a deliberately inexact M-step (a regulariser added after
    the exact update) may lower the total objective; widens the round-off
    allowance by that much. Defaults to 0.
``_log_prior(data, params) -> float``
    Optional: log-density of the priors, added once per iteration.
``_fitted_params() -> params``
    The current fitted attributes as a params dict (warm start, inference).
``_after_fit(data, params)``, ``_is_converged(data, history, change)``,
``_objective_dtype(data)``, ``_monotone(data)``
    Optional refinements (derived attributes, another stopping rule, the dtype
    whose eps sets the allowance, whether decreases are checked at all).

Models signal a numerical failure of a restart by raising
:class:`NumericalFailure`; the engine drops that restart with a
:class:`RestartFailedWarning`, and raises a ``ValueError`` only when every
restart failed.
"""

import contextvars
import os
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
from joblib import cpu_count, effective_n_jobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.parallel import Parallel, delayed

from ._blocks import BlockResult
from ._dask import DaskBlocks, DaskExecutor
from ._stats import sum_in_order
from ._validation import Interval, fit_context

__all__ = [
    "EMMixin",
    "EMRun",
    "BlockResult",
    "NumericalFailure",
    "RestartFailedWarning",
    "ObjectiveDecreaseWarning",
    "SerialExecutor",
    "ThreadExecutor",
    "stopping_tolerance",
]


# A private per-iteration hook for tests (``hook(iteration)`` after each accepted M-step and E-step of the
# restart running in the fit's own thread): they stop a fit or kill a worker at a chosen iteration.
_AFTER_ITERATION = contextvars.ContextVar("emkit_after_iteration", default=None)


class NumericalFailure(ArithmeticError):
    """Raised by a model's hooks when a restart cannot go on.

    The message should name the hyperparameter that helps
    (for example "increase reg_covar").
    """


class RestartFailedWarning(UserWarning):
    """One restart failed numerically and was dropped; the others went on."""


class ObjectiveDecreaseWarning(UserWarning):
    """EM's objective decreased by more than round-off.

    In exact EM this cannot happen, so it points at a numerical problem (or a
    bug). The restart stops there and returns the parameters from before the
    step that decreased the objective.
    """


# ---------------------------------------------------------------------------- executors
class SerialExecutor:
    """Runs blocks one after the other in the calling thread."""

    n_workers = 1

    def map(self, function, *iterables):
        """``[function(*args) for args in zip(*iterables)]``."""
        return [function(*args) for args in zip(*iterables)]

    def fetch(self, items):
        """The values of ``items`` here (they already are)."""
        return list(items)

    def close(self):
        """Nothing to release."""


class ThreadExecutor:
    """Runs blocks on a pool of threads (one restart, ``n_jobs > 1``).

    Results come back in block order, so sums over them do not depend on the
    number of threads. BLAS is limited to one thread per block meanwhile (which
    changes at most the last bits of its products). The kernels release the
    GIL, so blocks really run side by side.
    """

    def __init__(self, n_threads):
        self.n_workers = int(n_threads)
        self._pool = ThreadPoolExecutor(self.n_workers)

    def map(self, function, *iterables):
        """``[function(*args) for args in zip(*iterables)]``, on the pool's threads."""
        items = list(zip(*iterables))
        if len(items) <= 1:
            return [function(*args) for args in items]
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return list(self._pool.map(lambda args: function(*args), items))

    def fetch(self, items):
        """The values of ``items`` here (they already are)."""
        return list(items)

    def close(self):
        """Stop the threads."""
        self._pool.shutdown(wait=True)


# ---------------------------------------------------------------------------- restart records
@dataclass
class EMRun:
    """The record of one restart.

    Attributes
    ----------
    index : int
        Position of the restart (0-based).
    seed : int or None
        Seed the restart's initialisation drew from (None for a start from given
        parameters: warm start, ``em``).
    params : dict or None
        Final parameters (None when the restart failed).
    history : list of float
        Per-unit objective after each accepted M-step.
    initial_objective : float
        Per-unit objective at the starting parameters.
    converged : bool
    error : str or None
        Message of the numerical failure that ended this restart, if any.
    rejected_step : int or None
        The iteration whose step decreased the objective beyond round-off and
        was undone (the restart stopped there), if any.
    params_history : list of dict or None
        Parameters after every iteration (``keep_params_history=True``).
    warnings : list of tuple
        ``(category, message, filename, lineno)`` of every warning the restart
        raised, emkit's own and (where they could be caught) those of the
        libraries it called; re-emitted by the parent in restart order.
    messages : list of str
        Verbose lines, printed by the parent when the restart ran elsewhere.
    elapsed : float
        Seconds the restart took.
    """

    index: int
    seed: object
    params: dict = None
    history: list = field(default_factory=list)
    initial_objective: float = np.nan
    converged: bool = False
    error: str = None
    rejected_step: int = None
    params_history: list = None
    warnings: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def objective(self):
        """Per-unit objective of the final parameters."""
        return self.history[-1] if self.history else self.initial_objective

    @property
    def n_iter(self):
        """Number of accepted M-steps."""
        return len(self.history)

    def warn(self, category, message):
        """Record one of emkit's own warnings (as data: nothing a thread can lose)."""
        self.warnings.append((category, message, None, None))

    def summary(self):
        """A small dict for ``restarts_``."""
        return {
            "seed": self.seed,
            "objective": float(self.objective) if self.error is None else np.nan,
            "n_iter": self.n_iter,
            "converged": self.converged,
            "error": self.error,
            "rejected_step": self.rejected_step,
        }


class _Start(NamedTuple):
    index: int
    seed: object  # int: draw the start from it; None: start from ``params``
    params: dict
    state_seed: int  # seeds the working state of a start from given parameters


class _RunOptions(NamedTuple):
    max_iter: int
    fixed_iterations: bool  # run exactly max_iter iterations: no convergence test
    parent: tuple  # (pid, thread id) of the fit call: lines print live only there
    started: float  # time.time() when the fit began
    n_restarts: int


def stopping_tolerance(objective, dtype=np.float64):
    """Round-off allowance ``eps = 8 * finfo(dtype).eps * max(1, |objective|)``."""
    return 8.0 * np.finfo(dtype).eps * max(1.0, abs(objective))


def _copy_params(params):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in params.items()}


def _is_parent(parent):
    return (os.getpid(), threading.get_ident()) == parent


# ---------------------------------------------------------------------------- the mixin
class EMMixin:
    """Expectation-Maximization engine: restarts, block-mapped E-steps, stopping rule, bookkeeping.

    Shared constructor parameters (documented on each estimator): ``max_iter``,
    ``tol``, ``n_init``, ``random_state``, ``warm_start``, ``verbose``,
    ``verbose_interval``, ``n_jobs``, ``keep_params_history``. The hooks a
    model provides are described in the module docstring of :mod:`emkit.base`
    and in ``docs/engine.rst``.

    Attributes
    ----------
    converged_ : bool
        Whether the winning restart met the stopping rule
        ``-eps <= change < tol``.
    n_iter_ : int
        Number of accepted M-steps of the winning restart.
    lower_bound_ : float
        Per-unit objective of the returned parameters.
    lower_bound_history_ : ndarray, one entry per iteration
        Per-unit objective after each accepted M-step of the winning restart.
    initial_lower_bound_ : float
        Per-unit objective of the winning restart's starting parameters.
    restarts_ : list of dict
        One record per restart: ``seed``, ``objective``, ``n_iter``,
        ``converged``, ``error`` and ``rejected_step``.
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

    def __setstate__(self, state):
        # A model pickled by an earlier release lacks the constructor parameters added since: they take their
        # defaults, so get_params, clone and every method work on it.
        import inspect

        super().__setstate__(state)
        for name, parameter in inspect.signature(type(self).__init__).parameters.items():
            if parameter.default is not inspect.Parameter.empty and name not in self.__dict__:
                setattr(self, name, parameter.default)

    # ------------------------------------------------------------------ optional hooks
    def _initial_state(self, data, params, random_state):
        return None

    def _e_step_context(self, data, params):
        return params

    def _objective_context(self, data, params):
        return None

    def _m_step_slack(self, data, stats, params):
        return 0.0

    def _m_step_state(self, data, stats, params, state):
        """M-step that may also move the per-restart state (LDA's online passes); by default it does not."""
        return self._m_step(data, stats, params), state

    def _iteration_message(self, data, history, change, verbose, interval):
        """The verbose line after iteration ``len(history)`` (None: no line)."""
        iteration = len(history)
        if iteration % interval:
            return None
        if verbose >= 2:
            return f"Iteration {iteration}: objective {history[-1]:.8g}, change {change:.3g}"
        return f"Iteration {iteration}" if verbose == 1 else None

    def _log_prior(self, data, params):
        return 0.0

    def _after_fit(self, data, params):
        pass

    def _objective_dtype(self, data):
        return np.float64

    def _monotone(self, data):
        """Whether EM's objective must never decrease (stochastic updates return False)."""
        return True

    def _is_converged(self, data, history, change):
        """Stopping rule, asked only when ``change >= -eps`` (no decrease beyond round-off).

        ``history`` holds the per-unit objective after each M-step so far
        (``history[-1]`` is the current one, ``len(history)`` the iteration).
        The default is emkit's ``change < tol``; a model whose peer uses another
        rule (LDA's ``perp_tol``) overrides this.
        """
        return change < self.tol

    def _check_warm_start(self, data, params):
        """Raise a ValueError when fitted ``params`` cannot continue on ``data``."""

    def _recenter_stats(self, stats, old_params, new_params):
        """Statistics taken about ``old_params`` (centred moments) moved to ``new_params``; identity by default."""
        return stats

    # ------------------------------------------------------------------ fit template
    @fit_context(prefer_skip_nested_validation=True)
    def _fit(self, X, y=None, **fit_params):
        """The template behind every family's ``fit``: validate once, run EM, return self.

        Families keep explicit ``fit`` signatures (for metadata routing and
        docs) and delegate here.
        """
        before = dict(self.__dict__)
        try:
            data = self._validate_fit_data(X, y, **fit_params)
            self._fit_em(data)
        except Exception:
            # a fit that raises (bad input, a warm start that no longer fits, every restart failing) leaves the
            # estimator as it was: validation may already have recorded the new data's features
            self.__dict__.clear()
            self.__dict__.update(before)
            raise
        return self

    # ------------------------------------------------------------------ engine
    def _fit_em(self, data, *, start=None, max_iter=None, fixed_iterations=False):
        """Run EM on validated ``data`` and set the fitted attributes.

        Parameters
        ----------
        data : NamedTuple
            From ``_validate_fit_data``.
        start : dict, optional
            Parameters to continue from (one restart). None: a warm start
            when ``warm_start`` and fitted, else ``n_init`` drawn starts.
        max_iter : int, optional
            Overrides ``self.max_iter`` for this call (no attribute is written).
        fixed_iterations : bool, default=False
            Run exactly ``max_iter`` iterations: no convergence test and no
            ConvergenceWarning (the caller asked for exactly that many).

        Returns
        -------
        EMRun
            The winning restart.
        """
        started = time.time()  # wall clock: comparable across worker processes
        max_iter = self.max_iter if max_iter is None else int(max_iter)
        rng = check_random_state(self.random_state)
        if start is None and self.warm_start and self._is_fitted_for_warm_start():
            start = self._fitted_params()
        if start is not None:
            self._check_warm_start(data, start)
            starts = [_Start(0, None, start, int(rng.randint(np.iinfo(np.int32).max)))]
        else:
            seeds = rng.randint(np.iinfo(np.int32).max, size=self.n_init)
            starts = [_Start(i, int(s), None, None) for i, s in enumerate(seeds)]
        options = _RunOptions(max_iter, fixed_iterations, (os.getpid(), threading.get_ident()), started, len(starts))

        n_workers = effective_n_jobs(self.n_jobs)
        on_cluster = isinstance(data.blocks, DaskBlocks)
        if len(starts) == 1 or on_cluster:
            # one restart: its blocks may run side by side (threads, or the Dask cluster holding the data);
            # on a cluster, restarts run one after the other, each E-step spread over the workers
            if on_cluster:
                executor = DaskExecutor(data.blocks)
            else:
                executor = ThreadExecutor(n_workers) if n_workers > 1 else SerialExecutor()
            try:
                runs = [self._run_restart(data, start, options, executor) for start in starts]
            finally:
                executor.close()
        else:
            runs = [None] * len(starts)
            n_workers = min(n_workers, len(starts))
            # Threads unless the user chose a backend: the kernels release the GIL, a thread starts in
            # microseconds where a worker process costs seconds (and compiles or loads every kernel again).
            # BLAS threads are shared out between the workers (processes set their own limit).
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=max(1, cpu_count() // n_workers), user_api="blas"):
                tasks = Parallel(n_jobs=self.n_jobs, prefer="threads", return_as="generator_unordered")(
                    delayed(_run_restart_task)(self, data, s, options, n_workers) for s in starts
                )
                for run in tasks:  # as each restart ends: its verbose lines now, its warnings later, in order
                    runs[run.index] = run
                    for line in run.messages:
                        print(line)
                    sys.stdout.flush()
        return self._finish_fit(data, runs, options)

    def _partial_fit_em(self, data):
        """One stepwise-EM update on the chunk in ``data`` (online EM; Cappe & Moulines 2009).

        The running average of the per-unit statistics moves towards this
        chunk's with step ``(t + learning_offset) ** -learning_decay`` (``t``
        counts earlier updates); the M-step then maps that average, scaled to
        the units seen so far, to new parameters. The first call starts from
        ``_initialize`` on its chunk (or from the fitted parameters after a
        ``fit``). The history attributes hold each call's per-unit objective
        on its chunk, at the parameters it was given: not monotone, so no
        decrease warning.
        """
        started = time.time()
        online = getattr(self, "_online_state", None)
        fitted = self._is_fitted_for_warm_start()
        if fitted:
            params = self._fitted_params()
            self._check_warm_start(data, params)
        else:
            params = self._initialize(data, check_random_state(self.random_state))
        executor = DaskExecutor(data.blocks) if isinstance(data.blocks, DaskBlocks) else SerialExecutor()
        try:
            stats, objective, _ = self._e_step(data, params, None, executor)
        finally:
            executor.close()
        value = (objective + self._log_prior(data, params)) / data.n_units
        _check_finite_objective(value)
        per_unit = stats.scale(1.0 / data.n_units)
        if online is None:
            average, n_updates, n_seen = per_unit, 0, data.n_units
        else:
            average, centre, n_updates, n_seen = online
            step = (n_updates + self.learning_offset) ** (-self.learning_decay)
            average = self._recenter_stats(average, centre, params).scale(1.0 - step).add(per_unit.scale(step))
            n_seen += data.n_units
        new_params = self._m_step(data, average.scale(n_seen), params)
        self._set_params_attrs(new_params)
        self._online_state = (average, params, n_updates + 1, n_seen)
        history = list(getattr(self, "lower_bound_history_", [])) if fitted and online is not None else []
        history.append(value)
        self.lower_bound_history_ = np.asarray(history, dtype=np.float64)
        self.lower_bound_ = float(value)
        self.n_iter_ = len(history)
        self.converged_ = False
        self.restarts_ = [
            {"seed": None, "objective": float(value), "n_iter": 1, "converged": False, "error": None,
             "rejected_step": None}
        ]
        self._after_fit(data, new_params)
        if self.verbose:
            print(f"partial_fit {self.n_iter_}: objective {value:.8g} on {data.n_units:g} units "
                  f"({time.time() - started:.2f} s)")
        return self

    def _finish_fit(self, data, runs, options):
        for run in runs:  # warnings in restart order, whatever order the restarts ended in
            for category, message, filename, lineno in run.warnings:
                if filename is None:
                    warnings.warn(message, category, stacklevel=4)
                else:
                    warnings.warn_explicit(message, category, filename, lineno)
        good = [r for r in runs if r.error is None]
        failed = [r for r in runs if r.error is not None]
        for run in failed:
            warnings.warn(
                f"Restart {run.index} (seed {run.seed}) failed and was dropped: {run.error}",
                RestartFailedWarning,
                stacklevel=4,
            )
        if not good:
            raise ValueError(
                f"{type(self).__name__}: every restart failed numerically. Last error: {failed[-1].error}"
            )
        best = _best_run(good, self._objective_dtype(data))
        ran_out = not best.converged and best.rejected_step is None and best.n_iter == options.max_iter
        if ran_out and options.max_iter > 0 and not options.fixed_iterations:
            message = self._convergence_message(data, best)
            if message:
                warnings.warn(message, ConvergenceWarning, stacklevel=6)

        self._set_params_attrs(best.params)
        self.__dict__.pop("_online_state", None)  # a full fit starts online EM afresh
        self.converged_ = bool(best.converged)
        self.n_iter_ = best.n_iter
        self.lower_bound_ = float(best.objective)
        self.lower_bound_history_ = np.asarray(best.history, dtype=np.float64)
        self.initial_lower_bound_ = float(best.initial_objective)
        self.restarts_ = [r.summary() for r in runs]
        if self.keep_params_history:
            self.params_history_ = best.params_history
        elif hasattr(self, "params_history_"):
            del self.params_history_
        self._after_fit(data, best.params)
        return best

    def _convergence_message(self, data, run):
        """The ConvergenceWarning's text for a winning restart that ran out of iterations (None: stay quiet)."""
        return (
            f"{type(self).__name__}: the best restart (index {run.index}) did not converge in "
            f"{run.n_iter} iterations (last change {_last_change(run):.3g}, tol={self.tol}). "
            "Try a larger max_iter or tol, or check the data."
        )

    def _is_fitted_for_warm_start(self):
        # lower_bound_ is set by the engine alone (n_features_in_ is already set by validation)
        return hasattr(self, "lower_bound_")

    def _set_params_attrs(self, params):
        for key, value in params.items():
            setattr(self, key, value)

    def _e_step(self, data, params, state, executor, context=None):
        """Map the model's block function over the blocks; add the results in block order.

        ``context`` replaces ``_e_step_context``'s (an objective-only E-step,
        whose blocks may return no statistics: ``stats`` is then None).

        Returns
        -------
        stats, objective, state
            Summed statistics, summed log-likelihood (or ELBO) and the new
            per-block state (None when the model has none).
        """
        if context is None:
            context = self._e_step_context(data, params)
        states = [None] * len(data.blocks) if state is None else state
        results = executor.map(self._e_step_block, data.blocks, [context] * len(data.blocks), states)
        stats = None if results[0].stats is None else sum_in_order(r.stats for r in results)
        objective = 0.0
        for r in results:
            objective += float(r.objective)
        new_state = None if state is None else [r.state for r in results]
        return stats, objective, new_state

    def _run_restart(self, data, start, options, executor):
        """One EM run from one start; never raises on numerical failure."""
        run = EMRun(index=start.index, seed=start.seed)
        live = _is_parent(options.parent)
        verbose = self.verbose
        interval = getattr(self, "verbose_interval", 10)
        tag = f"[restart {start.index}] " if options.n_restarts > 1 else ""

        def say(line):
            line = f"{line} ({time.time() - options.started:.2f} s)"
            if live:
                print(line)
                sys.stdout.flush()
            else:
                run.messages.append(line)

        began = time.perf_counter()
        # Third-party warnings raised inside the hooks are recorded where that is safe: in the fit's own
        # thread or a worker process's main thread. catch_warnings is process-global, so on a thread of a
        # threading backend they are left to Python's filters (emkit's own warnings are data, never lost).
        catch = live or threading.current_thread() is threading.main_thread()
        guard = warnings.catch_warnings(record=True) if catch else _NoCatch()
        with guard as caught:
            if catch:
                warnings.simplefilter("always")
            try:
                self._em_loop(data, start, options, executor, run, say, verbose, interval, tag)
            except NumericalFailure as exc:
                run.error = str(exc)
                run.params = None
        if catch:
            run.warnings.extend((w.category, w.message, w.filename, w.lineno) for w in caught)
        run.elapsed = time.perf_counter() - began
        return run

    def _em_loop(self, data, start, options, executor, run, say, verbose, interval, tag):
        if start.seed is not None:
            random_state = np.random.RandomState(start.seed)
            params = self._initialize(data, random_state)
        else:
            random_state = np.random.RandomState(start.state_seed)
            params = _copy_params(start.params)
        state = self._initial_state(data, params, random_state)
        dtype = self._objective_dtype(data)
        n_units = data.n_units
        monotone = self._monotone(data)
        stats, objective, state = self._e_step(data, params, state, executor)
        value = (objective + self._log_prior(data, params)) / n_units
        _check_finite_objective(value)
        run.initial_objective = value
        if self.keep_params_history:
            run.params_history = [_copy_params(params)]
        if verbose:
            say(f"Initialization {start.index}: objective {value:.8g}")
        for iteration in range(1, options.max_iter + 1):
            new_params, moved_state = self._m_step_state(data, stats, params, state)
            slack = self._m_step_slack(data, stats, new_params)
            # the statistics of the last E-step of a run that reaches max_iter are never used: a model may
            # compute the objective alone then (the context is passed only then, so models that override
            # _e_step, as LDA does, need not take it)
            shortcut = self._objective_context(data, new_params) if iteration == options.max_iter else None
            extra = {} if shortcut is None else {"context": shortcut}
            new_stats, objective, new_state = self._e_step(data, new_params, moved_state, executor, **extra)
            new_value = (objective + self._log_prior(data, new_params)) / n_units
            _check_finite_objective(new_value)
            change = new_value - value
            # round-off, plus what a deliberately inexact M-step may cost (the model's slack hook)
            eps = stopping_tolerance(new_value, dtype) + slack / n_units
            if monotone and change < -eps:
                run.rejected_step = iteration
                run.warn(
                    ObjectiveDecreaseWarning,
                    f"{type(self).__name__}: the objective decreased by {-change:.3g} per unit at iteration "
                    f"{iteration} (restart {start.index}); EM never decreases it, which points at numerical "
                    "trouble (e.g. too small reg_covar / min_covar). That restart stopped and returns the "
                    f"parameters from before the step (iteration {iteration - 1}).",
                )
                break
            params, stats, state, value = new_params, new_stats, new_state, new_value
            run.history.append(value)
            hook = _AFTER_ITERATION.get()
            if hook is not None:
                hook(iteration)
            if self.keep_params_history:
                run.params_history.append(_copy_params(params))
            line = self._iteration_message(data, run.history, change, verbose, interval) if verbose else None
            if line:
                say(f"  {tag}{line}")
            if change >= -eps and not options.fixed_iterations and self._is_converged(data, run.history, change):
                run.converged = True
                break
        if verbose:
            outcome = "converged" if run.converged else "did not converge"
            say(f"Initialization {start.index} {outcome}: {run.n_iter} iterations, objective {value:.8g}")
        run.params = params


class _NoCatch:
    def __enter__(self):
        return []

    def __exit__(self, *exc):
        return False


def _best_run(runs, dtype):
    """Highest final objective; objectives within the round-off allowance of the best tie, the earliest wins."""
    top = max(r.objective for r in runs)
    allowance = stopping_tolerance(top, dtype)
    return min((r for r in runs if r.objective >= top - allowance), key=lambda r: r.index)


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


def _run_restart_task(estimator, data, start, options, n_workers):
    """One restart as a joblib task; in a worker process, BLAS threads are shared out between the workers."""
    if os.getpid() == options.parent[0]:  # in-process (sequential or threading backend)
        return estimator._run_restart(data, start, options, SerialExecutor())
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=max(1, cpu_count() // max(1, n_workers)), user_api="blas"):
        return estimator._run_restart(data, start, options, SerialExecutor())
