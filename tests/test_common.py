"""scikit-learn's estimator checks over fast instances of every emkit estimator."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from emkit import GaussianMixture, KalmanFilter

# Fast instances: short fits, two restarts, so the checks exercise the engine too.
ESTIMATORS = [
    GaussianMixture(n_components=2, max_iter=5, n_init=2, random_state=0),
    KalmanFilter(max_iter=5, n_init=2, random_state=0),
    KalmanFilter(max_iter=5, n_init=2, random_state=0, em_vars="all", n_dim_state=2),
]

# Expected failures: {estimator class name: {check name: reason}}. Keep them few and specific.
EXPECTED_FAILURES = {
    "GaussianMixture": {
        "check_sample_weight_equivalence_on_dense_data": (
            "random starts draw over rows, so weighted and repeated data start differently (labels "
            "come out permuted); from an explicit start they agree to 1e-7 (tests/test_gmm.py)"
        ),
    },
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
