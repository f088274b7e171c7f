"""Tiny-budget detectors and data shared by the anomaly tests.

Every factory returns an unfitted detector small enough to fit in about a
second on one core: a one-component mixture with few EM iterations, and
neural detectors with one narrow hidden layer and a few epochs (fewer than
`neural.XLA_MIN_STEPS` steps, so they train without XLA's compile cost).
"""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from tfcraft.anomaly import EnsembleDetector, FlowDetector, GaussianMixtureDetector, VAEDetector


def tiny_mixture(**kwargs):
    params = {"num_components": 1, "max_iter": 20, "calibration": "holdout", "seed": 0}
    params.update(kwargs)
    return GaussianMixtureDetector(**params)


def tiny_flow(**kwargs):
    params = {
        "hidden_units": (8,),
        "num_layers": 2,
        "epochs": 15,
        "learning_rate": 5e-3,
        "batch_size": 64,
        "seed": 0,
    }
    params.update(kwargs)
    return FlowDetector(**params)


def tiny_vae(**kwargs):
    params = {
        "hidden_units": (8,),
        "epochs": 30,
        "learning_rate": 5e-3,
        "batch_size": 64,
        "num_importance_samples": 4,
        "seed": 0,
    }
    params.update(kwargs)
    return VAEDetector(**params)


def tiny_ensemble(**kwargs):
    members = [tiny_mixture(), tiny_mixture(support_fraction=1.0, shrinkage=1.0)]
    params = {"detectors": members, "calibration": "holdout", "seed": 0}
    params.update(kwargs)
    return EnsembleDetector(**params)


@pytest.fixture(scope="module", autouse=True)
def single_threaded_blas():
    """One BLAS thread while these tests run: the mixture's EM solves many tiny
    triangular systems, and on a shared machine OpenBLAS' threads made each
    solve ~10x slower (measured 1.6 s vs 0.17 s of CPU per fit)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


FACTORIES = {
    "mixture": tiny_mixture,
    "flow": tiny_flow,
    "vae": tiny_vae,
    "ensemble": tiny_ensemble,
}


@pytest.fixture(params=sorted(FACTORIES))
def make_detector(request):
    """Each detector class in turn, as a factory of tiny unfitted instances."""
    return FACTORIES[request.param]


def independent_gaussian(num_rows, seed):
    """Rows of independent Gaussian features with scales 1, 2 and 0.5 around (1, -2, 0)."""
    rows = np.random.default_rng(seed).normal(size=(num_rows, 3))
    return (rows * np.array([1.0, 2.0, 0.5]) + np.array([1.0, -2.0, 0.0])).astype(np.float32)


@pytest.fixture(scope="session")
def normal_data():
    """`(train, test)`: 400 and 200 rows of the same 3-D Gaussian, independent features.

    Independent, so that shifting one feature makes only that feature anomalous
    (with correlated features a chain-rule attribution rightly blames the
    features that depend on it too), which is what the `explain` tests need.
    """
    return independent_gaussian(400, 0), independent_gaussian(200, 1)


@pytest.fixture(scope="session")
def fitted(normal_data):
    """One tiny detector of each class fitted on `normal_data`'s training rows, by name.

    Shared by the tests that only read a fitted detector; tests must not refit
    or mutate these (the ones that do fit their own).
    """
    train, _ = normal_data
    return {factory.__name__: factory().fit(train) for factory in FACTORIES.values()}


@pytest.fixture(params=sorted(FACTORIES))
def fitted_detector(request, fitted):
    """Each shared fitted detector in turn."""
    return fitted[FACTORIES[request.param].__name__]


@pytest.fixture(scope="session")
def sample_normal():
    """`sample_normal(num_rows, seed)`: more rows of `normal_data`'s distribution."""
    return independent_gaussian
