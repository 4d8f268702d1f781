"""CategoricalHMM: hidden Markov model with categorical emissions (one integer symbol per step)."""

from numbers import Integral, Real

import numpy as np

from .._densities import categorical
from .._validation import Interval, store_init_arguments, validate_data
from ._base import _BaseHMM, fill_docstring

__all__ = ["CategoricalHMM"]

_MAX_TABLE_BYTES = 1 << 30  # an inferred emission table larger than this is refused


@fill_docstring
class CategoricalHMM(_BaseHMM):
    """Hidden Markov model with categorical emissions (one integer symbol per step).

    Parameters
    ----------
    n_components : int, default=1
        Number of hidden states.
    n_features : int, default=None
        Number of symbols (hmmlearn's name); None infers ``max(X) + 1`` at
        fit. Never overwritten: the count used is ``n_symbols_``.
    emissionprob_prior : float or array-like of shape (n_components, n_symbols), default=1.0
        Dirichlet prior on each row of ``emissionprob_`` (1 = maximum likelihood).
    params : str or tuple of str, default="ste"
        What EM learns: letters s, t, e (emissionprob).
    init_params : str or tuple of str, default="ste"
        What is initialised (the rest must be given).
    emissionprob_init : array-like of shape (n_components, n_symbols), default=None
        Starting emission probabilities.
    {shared_parameters}
    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
    transmat_ : ndarray of shape (n_components, n_components)
    emissionprob_ : ndarray of shape (n_components, n_symbols)
    n_symbols_ : int
        Number of symbols used (``n_features`` if given, else inferred at fit).
    n_features_in_ : int
        Always 1: X is one column of symbols.

    Examples
    --------
    >>> import numpy as np
    >>> from emkit.hmm import CategoricalHMM
    >>> X = np.array([[0], [0], [1], [2], [2], [2], [0], [1]])
    >>> model = CategoricalHMM(n_components=2, random_state=0).fit(X)
    >>> model.emissionprob_.shape
    (2, 3)
    >>> model.predict(X).shape
    (8,)
    """

    _emission_names = {"e": "emissionprob_"}

    _parameter_constraints = {
        **_BaseHMM._hmm_parameter_constraints,
        "n_features": [Interval(Integral, 1, None, closed="left"), None],
        "emissionprob_prior": [Interval(Real, 0, None, closed="left"), "array-like"],
        "emissionprob_init": ["array-like", None],
    }

    def __init__(self, n_components=1, *, n_features=None, startprob_prior=1.0, transmat_prior=1.0,
                 emissionprob_prior=1.0, algorithm="viterbi", params="ste", init_params="ste",
                 startprob_init=None, transmat_init=None, emissionprob_init=None, max_iter=100, tol=1e-4,
                 n_init=1, random_state=None, warm_start=False, verbose=0, verbose_interval=10, n_jobs=None,
                 keep_params_history=False, learning_decay=0.7, learning_offset=10.0):
        store_init_arguments(self, locals())

    _positive_only = True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True
        return tags

    _emission_dtype = None  # symbols of any numeric dtype
    _width_attr = "emissionprob_"

    def _emission_validate_X(self, X, reset):
        X = validate_data(self, X, reset=reset, dtype=None)
        symbols = self._emission_input(X)
        if not reset:
            n_symbols = np.shape(self.emissionprob_)[1]
            if symbols.size and symbols.max() >= n_symbols:
                raise ValueError(
                    f"Largest symbol is {symbols.max()} but the model only emits symbols up to {n_symbols - 1}."
                )
        return X, symbols

    def _emission_input(self, X):
        """Check one column of integer symbols (any numeric dtype); return them as int64."""
        return categorical.check_symbols(X, "CategoricalHMM")

    def _make_density(self, n_symbols, learn):
        return categorical.Categorical(self.n_components, n_symbols, emissionprob_prior=self.emissionprob_prior)

    def _emission_check(self, X, symbols, continuing, learn):
        K = self.n_components
        init = self._user_value("e", self.emissionprob_init)
        n_seen = int(symbols.max()) + 1
        if self.n_features is not None:
            n_symbols = int(self.n_features)
        elif init is not None:
            n_symbols = int(np.shape(init)[-1])
        elif continuing:
            n_symbols = max(n_seen, int(np.shape(self.emissionprob_)[-1]))  # continue with the fitted symbols
        else:
            n_symbols = n_seen
            table_bytes = 8 * K * n_symbols
            if table_bytes > _MAX_TABLE_BYTES:
                raise ValueError(
                    f"CategoricalHMM: the largest symbol is {n_seen - 1}, so the emission table would have "
                    f"{n_symbols} columns per state ({table_bytes / 2**30:.1f} GiB): symbols are the integers "
                    "0 .. n_features - 1, and column j of emissionprob_ is symbol j. Raw ids (zip codes, user ids) "
                    "should be encoded first, e.g. with sklearn.preprocessing.OrdinalEncoder; or give n_features "
                    "if the table really is that large."
                )
        if n_seen > n_symbols:
            raise ValueError(
                f"Largest symbol is {n_seen - 1} but the model only emits symbols up to {n_symbols - 1} "
                "(n_features)."
            )
        self.n_symbols_ = n_symbols
        density = self._make_density(n_symbols, learn)
        given = {}
        if init is not None:
            name = "emissionprob_init" if self.emissionprob_init is not None else "emissionprob_"
            given["emissionprob_"] = density.check(init, "emissionprob", label=name)
        return density, given

    def _emission_initialize(self, data, random_state):
        if "emissionprob_" in data.given:
            return {"emissionprob_": data.given["emissionprob_"].copy()}, None
        prob = random_state.uniform(size=(self.n_components, self.n_symbols_))
        return {"emissionprob_": prob / prob.sum(axis=1, keepdims=True)}, None
