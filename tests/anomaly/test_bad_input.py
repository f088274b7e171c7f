"""Bad input: a clear ValueError/NotFittedError naming the problem, and no half-fit."""

import re

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from tfcraft.anomaly import EnsembleDetector, FlowDetector, GaussianMixtureDetector, VAEDetector


@pytest.mark.parametrize("contamination", [0.0, 0.6, -0.1, 1.0, True, "0.1", None])
def test_contamination_outside_zero_to_half_is_refused(make_detector, contamination):
    X = np.random.default_rng(0).normal(size=(50, 3))
    message = (
        r"`contamination` must be a float in \(0, 0.5\] or 'auto'\. "
        rf"Received: contamination={re.escape(repr(contamination))}"
    )
    with pytest.raises(ValueError, match=message):
        make_detector(contamination=contamination).fit(X)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused_at_fit_and_predict(make_detector, fitted, bad):
    X = np.random.default_rng(0).normal(size=(50, 3))
    X[[3, 7], 1] = bad
    detector = make_detector()
    with pytest.raises(
        ValueError, match=r"X contains NaN or inf values in 2 row\(s\) \(first rows \[3, 7\]\)"
    ):
        detector.fit(X)
    with pytest.raises(ValueError, match="NaN or inf"):
        fitted[make_detector.__name__].score_samples(X)


def test_one_dimensional_and_empty_x_are_refused(make_detector):
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        make_detector().fit(np.arange(10.0))
    with pytest.raises(ValueError, match=r"X has 0 sample\(s\), but .* needs at least 2 samples"):
        make_detector().fit(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="0 feature"):
        make_detector().fit(np.zeros((10, 0)))


def test_too_few_rows_are_refused(make_detector):
    with pytest.raises(ValueError, match=r"X has 1 sample\(s\), but .* needs at least"):
        make_detector().fit(np.zeros((1, 3)))


def test_wrong_number_of_features_at_predict_time(fitted_detector):
    name = type(fitted_detector).__name__
    X = np.zeros((5, 2))
    for method in ("score_samples", "predict", "predict_proba", "decision_function", "explain"):
        with pytest.raises(ValueError, match=rf"X has 2 features, but {name} is expecting 3"):
            getattr(fitted_detector, method)(X)
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        fitted_detector.score_samples(np.zeros(3))


@pytest.mark.parametrize(
    "method",
    ["score_samples", "anomaly_score", "decision_function", "predict", "predict_proba", "explain"],
)
def test_unfitted_detector_raises_not_fitted(make_detector, method):
    with pytest.raises(NotFittedError, match="is not fitted yet"):
        getattr(make_detector(), method)(np.zeros((3, 3)))


def test_unfitted_threshold_for_fpr_and_ensemble_std_raise_not_fitted():
    with pytest.raises(NotFittedError):
        GaussianMixtureDetector().threshold_for_fpr(np.zeros((3, 3)), 0.1)
    with pytest.raises(NotFittedError):
        EnsembleDetector().anomaly_score(np.zeros((3, 3)), return_std=True)


@pytest.mark.parametrize(
    ("detector", "message"),
    [
        (GaussianMixtureDetector(0), r"`num_components` must be a positive integer or 'bic'"),
        (GaussianMixtureDetector(support_fraction=1.5), r"Received: support_fraction=1\.5"),
        (GaussianMixtureDetector(shrinkage=-1), r"Received: shrinkage=-1"),
        (GaussianMixtureDetector(calibration="none"), r"Received: calibration='none'"),
        (FlowDetector(num_layers=0, epochs=1), r"Received: num_layers=0"),
        (FlowDetector(epochs=0), r"Received: epochs=0"),
        (FlowDetector(batch_size=0, epochs=1), r"Received: batch_size=0"),
        (FlowDetector(learning_rate=-1.0, epochs=1), r"Received: learning_rate=-1\.0"),
        (VAEDetector(num_importance_samples=0, epochs=1), r"Received: num_importance_samples=0"),
        (VAEDetector(latent_dim=0, epochs=1), r"Received: latent_dim=0"),
        (VAEDetector(support_fraction=0.0, epochs=1), r"Received: support_fraction=0\.0"),
        (EnsembleDetector([]), r"`detectors` must be a non-empty list"),
        (EnsembleDetector(combine="max"), r"Received: combine='max'"),
    ],
)
def test_bad_arguments_name_the_argument_and_value(detector, message):
    with pytest.raises(ValueError, match=message):
        detector.fit(np.random.default_rng(0).normal(size=(40, 3)))


def test_ensemble_refuses_non_detectors():
    with pytest.raises(TypeError, match="must hold tfcraft detectors"):
        EnsembleDetector(["not a detector"]).fit(np.zeros((10, 2)))


def test_a_failed_fit_leaves_the_detector_as_it_was(normal_data, tmp_path, monkeypatch):
    train, test = normal_data
    monkeypatch.chdir(tmp_path)
    fresh = GaussianMixtureDetector(num_components=0)
    with pytest.raises(ValueError):
        fresh.fit(train)
    assert not [k for k in vars(fresh) if k.endswith("_")]  # no half-set fitted state
    with pytest.raises(NotFittedError):
        fresh.score_samples(test)
    detector = GaussianMixtureDetector(1, calibration="holdout", seed=0).fit(train)
    scores = detector.score_samples(test)
    wider = np.c_[train, train[:, :1]]
    detector.set_params(num_components=0)
    with pytest.raises(ValueError, match="num_components"):
        detector.fit(wider)  # validation of X (4 features) passed before the failure
    assert detector.n_features_in_ == 3
    np.testing.assert_array_equal(detector.score_samples(test), scores)
    bad = train.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        FlowDetector(epochs=1).fit(bad)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_warns_when_feature_scales_differ_wildly():
    X = np.random.default_rng(0).normal(size=(200, 3)) * np.array([1.0, 1e4, 1.0])
    with pytest.warns(UserWarning, match=r"range from .* \(ratio > 1000\).*StandardScaler"):
        GaussianMixtureDetector(1, calibration="holdout", seed=0).fit(X)


def test_no_scale_warning_on_comparable_scales(recwarn):
    X = np.random.default_rng(0).normal(size=(200, 3)) * np.array([1.0, 30.0, 0.2])
    GaussianMixtureDetector(1, calibration="holdout", seed=0).fit(X)
    assert not [w for w in recwarn if "StandardScaler" in str(w.message)]
