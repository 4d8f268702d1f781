"""scikit-learn's estimator checks over fast instances of every emkit estimator."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from emkit import (
    GMMHMM,
    BernoulliMixture,
    CategoricalHMM,
    GaussianHMM,
    GaussianMixture,
    KalmanFilter,
    LatentDirichletAllocation,
    PoissonHMM,
    PoissonMixture,
)

# Fast instances: short fits, two restarts, so the checks exercise the engine too.
ESTIMATORS = [
    GaussianMixture(n_components=2, max_iter=5, n_init=2, random_state=0),
    BernoulliMixture(n_components=2, max_iter=5, n_init=2, random_state=0),
    PoissonMixture(n_components=2, max_iter=5, n_init=2, random_state=0),
    GaussianHMM(n_components=2, max_iter=5, n_init=2, random_state=0),
    # a covariance prior: the checks' tiny data sets would otherwise collapse a Gaussian onto a point
    GMMHMM(n_components=2, n_mix=2, max_iter=5, n_init=2, random_state=0, covars_prior=1e-2, covars_weight=1.0),
    CategoricalHMM(n_components=2, max_iter=5, n_init=2, random_state=0),
    PoissonHMM(n_components=2, max_iter=5, n_init=2, random_state=0),
    KalmanFilter(max_iter=5, n_init=2, random_state=0),
    KalmanFilter(max_iter=5, n_init=2, random_state=0, em_vars="all", n_dim_state=2),
    LatentDirichletAllocation(n_components=3, max_iter=5, n_init=2, random_state=0),
]

# CategoricalHMM takes one column of symbols (as hmmlearn does); these checks only ever feed it several
# columns, so they fail on input validation before testing anything else. The same properties (pickling,
# idempotent fits, parameters not overwritten, NaN/inf rejected, ...) are tested for it in tests/test_hmm.py.
_MULTI_COLUMN = "the check feeds X with several columns; CategoricalHMM takes one column of symbols"
_CATEGORICAL_MULTI_COLUMN_CHECKS = [
    "check_fit_score_takes_y", "check_estimators_overwrite_params", "check_dont_overwrite_parameters",
    "check_estimators_fit_returns_self", "check_readonly_memmap_input", "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit", "check_estimators_dtypes", "check_dtype_object",
    "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_methods_sample_order_invariance",
    "check_methods_subset_invariance", "check_fit2d_1sample", "check_dict_unchanged", "check_fit_idempotent",
    "check_fit_check_is_fitted", "check_n_features_in", "check_fit2d_predict1d",
]

_RANDOM_STARTS_DRAW_OVER_ROWS = (
    "random starts draw over rows, so weighted and repeated data start differently (labels come out permuted); "
    "from an explicit start they agree to 1e-7 (tests/test_gmm.py, tests/test_mixtures.py)"
)

# Expected failures: {estimator class name: {check name: reason}}. Keep them few and specific.
EXPECTED_FAILURES = {
    "GaussianMixture": {"check_sample_weight_equivalence_on_dense_data": _RANDOM_STARTS_DRAW_OVER_ROWS},
    "PoissonMixture": {"check_sample_weight_equivalence_on_dense_data": _RANDOM_STARTS_DRAW_OVER_ROWS},
    "CategoricalHMM": {name: _MULTI_COLUMN for name in _CATEGORICAL_MULTI_COLUMN_CHECKS},
    "KalmanFilter": {
        "check_methods_subset_invariance": "row t's state estimate depends on the other rows of its sequence",
        "check_methods_sample_order_invariance": "a time series: reordering rows changes the model's output",
    },
}


def _expected_failed_checks(estimator):
    return EXPECTED_FAILURES.get(type(estimator).__name__, {})


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
