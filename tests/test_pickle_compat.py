"""Models pickled by emkit 0.1.0 (tests/data/models_emkit_0_1_0.pkl, made with that release) still load and answer."""

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

PICKLE = Path(__file__).parent / "data" / "models_emkit_0_1_0.pkl"


@pytest.fixture(scope="module")
def saved():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns when its own version differs from the pickle's
        with PICKLE.open("rb") as handle:
            return pickle.load(handle)


@pytest.mark.parametrize(
    "name",
    ["GaussianMixture", "GaussianHMM", "CategoricalHMM", "PoissonHMM", "KalmanFilter", "LatentDirichletAllocation"],
)
def test_a_model_pickled_by_the_previous_release_loads_and_answers(saved, name):
    assert saved["emkit"] == "0.1.0"
    record = saved["models"][name]
    model, data = record["model"], record["data"]
    assert type(model).__name__ == name
    model.get_params()  # parameters added since have their defaults
    np.testing.assert_allclose(model.score(data), record["score"], rtol=1e-9)
    output = model.predict(data) if hasattr(model, "predict") else model.transform(data)
    np.testing.assert_allclose(output, record["output"], rtol=1e-9, atol=1e-12)
    restored = pickle.loads(pickle.dumps(model))
    assert restored.get_params().keys() == model.get_params().keys()
