"""predict_proba means something; contamination and FPR thresholds do what they say."""

import numpy as np
import pytest
from scipy import stats

from tfcraft.anomaly import FlowDetector, GaussianMixtureDetector


def _gaussian(num_rows, seed):
    mixing = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, -0.5, 1.0]])
    return np.random.default_rng(seed).normal(size=(num_rows, 3)) @ mixing.T


@pytest.fixture(scope="module")
def calibrated_mixture():
    # default calibration: 5-fold cross-fitted scores of all 3000 training rows
    return GaussianMixtureDetector(1, seed=0).fit(_gaussian(3000, 0))


def test_outlier_probability_is_uniform_on_held_out_normal_data(calibrated_mixture):
    detector = calibrated_mixture
    proba = detector.predict_proba(_gaussian(2000, 1))
    assert proba.shape == (2000, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    outlier = proba[:, 1]
    assert stats.kstest(outlier, "uniform").pvalue > 0.01
    for level in (0.5, 0.9, 0.99):  # coverage: P(proba > level) ~ 1 - level
        assert abs(np.mean(outlier > level) - (1.0 - level)) < 0.025
    # not min-max scaled: nothing is pinned to exactly 0 or 1
    assert 0.0 < outlier.min() < 0.01 and 0.99 < outlier.max() < 1.0


def test_outliers_get_high_probabilities_with_a_standard_error(calibrated_mixture):
    detector = calibrated_mixture
    far = _gaussian(20, 2) + np.array([8.0, -8.0, 8.0])
    proba, std = detector.predict_proba(far, return_std=True)
    count = len(detector.calibration_scores_)
    # above every calibration score: the largest value there is, (n + 0.5) / (n + 1)
    np.testing.assert_allclose(proba[:, 1], (count + 0.5) / (count + 1))
    assert np.all(proba[:, 1] < 1.0)
    np.testing.assert_allclose(std, np.sqrt(proba[:, 1] * proba[:, 0] / (count + 1)))
    assert np.all(std >= 0)


def test_flow_probabilities_cover_held_out_normal_data():
    detector = FlowDetector(hidden_units=(8,), num_layers=2, epochs=8, seed=0)
    detector.fit(_gaussian(2000, 3).astype(np.float32))  # 400 rows held out to calibrate
    outlier = detector.predict_proba(_gaussian(2000, 4))[:, 1]
    for level in (0.5, 0.9):
        # 4 standard errors: the 400 calibration rows' ECDF and the 2000 test rows
        tail = 1.0 - level
        tolerance = 4.0 * np.sqrt(tail * level * (1 / 400 + 1 / 2000))
        assert abs(np.mean(outlier > level) - tail) < tolerance
    assert outlier.min() > 0.0 and outlier.max() < 1.0


@pytest.fixture(scope="module")
def contaminated():
    """900 normal rows and 100 far outliers (10%); labels True for the outliers."""
    rng = np.random.default_rng(5)
    normal = _gaussian(900, 6)
    outliers = rng.normal(size=(100, 3)) + np.array([7.0, -7.0, 7.0])
    X = np.concatenate([normal, outliers])
    labels = np.r_[np.zeros(900, bool), np.ones(100, bool)]
    order = rng.permutation(len(X))
    return X[order], labels[order]


def test_auto_contamination_finds_the_known_outlier_share(contaminated):
    X, is_outlier = contaminated
    detector = GaussianMixtureDetector(1, contamination="auto", seed=0).fit(X)
    flagged = detector.predict(X) == -1
    # "auto" flags the model's own 2.5% log-likelihood tail: every far outlier
    # plus about 2.5% of the normal rows, so about 12% of the rows in all.
    assert 0.08 <= flagged.mean() <= 0.16, flagged.mean()
    assert flagged[is_outlier].mean() == 1.0
    assert flagged[~is_outlier].mean() < 0.06


@pytest.mark.parametrize(
    "factory",
    [
        lambda c: GaussianMixtureDetector(1, contamination=c, calibration="holdout", seed=0),
        lambda c: FlowDetector(hidden_units=(8,), num_layers=1, epochs=3, contamination=c, seed=0),
    ],
    ids=["mixture", "flow"],
)
@pytest.mark.parametrize("contamination", [0.05, 0.2])
def test_numeric_contamination_flags_that_share_of_the_training_rows(factory, contamination):
    X = _gaussian(500, 7).astype(np.float32)
    detector = factory(contamination).fit(X)
    share = np.mean(detector.predict(X) == -1)
    assert abs(share - contamination) <= 2 / len(X), share


def test_threshold_for_fpr_gives_that_false_positive_rate(fitted_detector, sample_normal):
    X_normal = sample_normal(1000, 8)  # the fitted detectors' own (normal) distribution
    for fpr in (0.01, 0.05, 0.2):
        threshold = fitted_detector.threshold_for_fpr(X_normal, fpr)
        scores = fitted_detector.anomaly_score(X_normal)
        share = np.mean(scores > threshold)
        ties = np.mean(scores == threshold)  # the ensemble's rank scores tie
        assert fpr - 2 / len(X_normal) <= share + ties and share <= fpr, (fpr, share, ties)


def test_threshold_for_fpr_carries_over_to_new_normal_data(calibrated_mixture):
    detector = calibrated_mixture
    threshold = detector.threshold_for_fpr(_gaussian(4000, 9), 0.05)
    share = np.mean(detector.anomaly_score(_gaussian(4000, 10)) > threshold)
    assert abs(share - 0.05) < 0.015  # ~4 binomial standard errors


@pytest.mark.parametrize("fpr", [0.0, 1.0, -0.1, 1.5, True, "0.1"])
def test_threshold_for_fpr_rejects_bad_rates(calibrated_mixture, fpr):
    with pytest.raises(ValueError, match=r"Argument `fpr` must be a float in \(0, 1\)"):
        calibrated_mixture.threshold_for_fpr(_gaussian(10, 0), fpr)
