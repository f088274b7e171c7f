import numpy as np
import pytest
import tensorflow_probability as tfp
from scipy import special, stats
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss

from tfcraft import bayes, metrics

tfd = tfp.distributions


def _binary(seed=0, n=500):
    rng = np.random.default_rng(seed)
    probs = rng.uniform(size=n)
    y = (rng.uniform(size=n) < probs**1.5).astype(int)  # miscalibrated on purpose
    return y, probs


@pytest.mark.parametrize("num_bins", [5, 10, 15])
def test_reliability_diagram_matches_sklearn_calibration_curve(num_bins):
    y, probs = _binary()
    diagram = bayes.reliability_diagram(y, probs, num_bins=num_bins)
    prob_true, prob_pred = calibration_curve(y, probs, n_bins=num_bins, strategy="uniform")
    filled = diagram["counts"] > 0
    np.testing.assert_allclose(diagram["accuracy"][filled], prob_true, rtol=1e-12)
    np.testing.assert_allclose(diagram["confidence"][filled], prob_pred, rtol=1e-12)
    assert diagram["counts"].sum() == len(y)
    np.testing.assert_allclose(diagram["bin_edges"], np.linspace(0, 1, num_bins + 1))
    assert np.isnan(diagram["accuracy"][~filled]).all()


def test_reliability_diagram_top_label_for_multiclass():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.45, 0.55, 0.0]])
    diagram = bayes.reliability_diagram([0, 1, 1], probs, num_bins=2)
    # confidences 0.7, 0.6, 0.55 all in (0.5, 1]: accuracy 2/3.
    np.testing.assert_allclose(diagram["counts"], [0, 3])
    np.testing.assert_allclose(diagram["confidence"][1], (0.7 + 0.6 + 0.55) / 3)
    np.testing.assert_allclose(diagram["accuracy"][1], 2 / 3)


def test_ece_weighted_gap_and_matches_metrics_module():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(300, 4)) * 3
    probs = special.softmax(logits, axis=1)
    y = rng.integers(0, 4, size=300)
    diagram = bayes.reliability_diagram(y, probs, num_bins=10)
    filled = diagram["counts"] > 0
    expected = np.sum(
        diagram["counts"][filled]
        * np.abs(diagram["accuracy"][filled] - diagram["confidence"][filled])
    ) / len(y)
    ours = bayes.expected_calibration_error(y, probs, num_bins=10)
    np.testing.assert_allclose(ours, expected, rtol=1e-12)
    theirs = float(metrics.expected_calibration_error(y, probs.astype("float32"), num_bins=10))
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_brier_matches_sklearn_binary_and_multiclass():
    y, probs = _binary(2)
    np.testing.assert_allclose(bayes.brier_score(y, probs), brier_score_loss(y, probs))
    rng = np.random.default_rng(3)
    probs3 = special.softmax(rng.normal(size=(50, 3)), axis=1)
    y3 = rng.integers(0, 3, size=50)
    np.testing.assert_allclose(
        bayes.brier_score(y3, probs3), brier_score_loss(y3, probs3, labels=[0, 1, 2])
    )


def test_probability_checks_name_the_problem():
    with pytest.raises(ValueError, match="not logits"):
        bayes.brier_score([0, 1], [-1.0, 2.0])
    with pytest.raises(ValueError, match=r"Received: probs.shape=\(3,\)"):
        bayes.reliability_diagram([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="Received: num_bins=0"):
        bayes.reliability_diagram([0, 1], [0.1, 0.2], num_bins=0)


def test_regression_coverage_of_a_true_normal_is_nominal():
    rng = np.random.default_rng(4)
    loc = rng.normal(size=20000)
    y = loc + rng.normal(size=20000)
    result = bayes.regression_coverage(y, tfd.Normal(loc, 1.0), levels=[0.5, 0.9, 0.95])
    np.testing.assert_allclose(result["nominal"], [0.5, 0.9, 0.95])
    np.testing.assert_allclose(result["observed"], result["nominal"], atol=0.01)


def test_regression_coverage_accepts_a_predictive():
    predictive = bayes.Predictive(
        samples=np.zeros((1, 4, 1)),
        variances=np.ones((1, 4, 1)),
        family="normal",
        params=np.tile([0.0, np.log(np.expm1(1.0))], (1, 4, 1)),
    )
    y = np.array([[0.5], [1.5], [-2.5], [0.0]])
    result = bayes.regression_coverage(y, predictive, levels=[0.9])
    np.testing.assert_allclose(result["observed"], [0.75])  # |y| <= 1.645 for 3 of 4
    with pytest.raises(ValueError, match=r"Received: level=1\.0"):
        bayes.regression_coverage(y, predictive, levels=[1.0])


def _overconfident_classifier(seed, n=2000, num_classes=3):
    """Logits whose argmax is right 70% of the time but with ~99% confidence."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, size=n)
    predicted = np.where(rng.uniform(size=n) < 0.7, y, rng.integers(0, num_classes, size=n))
    logits = rng.normal(scale=0.3, size=(n, num_classes))
    logits[np.arange(n), predicted] += 6.0
    return logits, y


def test_temperature_scaling_fixes_an_overconfident_classifier():
    logits_val, y_val = _overconfident_classifier(0)
    logits_test, y_test = _overconfident_classifier(1)
    scaler = bayes.TemperatureScaling().fit(logits_val, y_val)
    assert scaler.temperature_ > 1.5
    before = special.softmax(logits_test, axis=1)
    after = scaler.predict_proba(logits_test)
    assert log_loss(y_test, after) < log_loss(y_test, before) - 0.1
    ece_before = bayes.expected_calibration_error(y_test, before)
    ece_after = bayes.expected_calibration_error(y_test, after)
    assert ece_after < 0.5 * ece_before
    np.testing.assert_array_equal(after.argmax(axis=1), before.argmax(axis=1))


def test_temperature_is_the_nll_minimiser():
    logits, y = _overconfident_classifier(2, n=500)
    temperature = bayes.TemperatureScaling().fit(logits, y).temperature_

    def nll(t):
        return log_loss(y, special.softmax(logits / t, axis=1), labels=[0, 1, 2])

    assert nll(temperature) <= min(nll(temperature * 0.98), nll(temperature * 1.02))


def test_temperature_scaling_binary_logits():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, size=1000)
    logits = np.where(rng.uniform(size=1000) < 0.8, 2 * y - 1, 1 - 2 * y) * 8.0
    scaler = bayes.TemperatureScaling().fit(logits, y)
    probs = scaler.predict_proba(logits)
    # The NLL optimum sets the confidence sigmoid(8 / T) to the observed accuracy.
    accuracy = np.mean((logits > 0) == (y == 1))
    np.testing.assert_allclose(special.expit(8.0 / scaler.temperature_), accuracy, atol=1e-4)
    assert probs.shape == (1000,)


def test_unfitted_recalibrators_raise():
    with pytest.raises(RuntimeError, match="not fitted yet"):
        bayes.TemperatureScaling().transform(np.zeros((2, 2)))
    with pytest.raises(RuntimeError, match="not fitted yet"):
        bayes.VarianceScaling().transform(np.ones(2))
    with pytest.raises(RuntimeError, match="not fitted yet"):
        bayes.SplitConformal().predict_interval(np.zeros(2))


def test_variance_scaling_closed_form_and_optimal():
    rng = np.random.default_rng(6)
    mean = rng.normal(size=400)
    std = rng.uniform(0.5, 1.5, size=400)
    y = mean + 2.5 * std * rng.normal(size=400)  # under-dispersed by 2.5x
    scaler = bayes.VarianceScaling().fit(mean, std, y)
    z = (y - mean) / std
    np.testing.assert_allclose(scaler.scale_**2, np.mean(z**2), rtol=1e-12)
    assert 2.2 < scaler.scale_ < 2.8

    def nll(s):
        return -np.mean(stats.norm.logpdf(y, mean, s * std))

    assert nll(scaler.scale_) <= min(nll(scaler.scale_ * 0.99), nll(scaler.scale_ * 1.01))
    np.testing.assert_allclose(scaler.transform(std), std * scaler.scale_)


def test_variance_scaling_rejects_non_positive_std():
    with pytest.raises(ValueError, match="must be positive"):
        bayes.VarianceScaling().fit([0.0, 1.0], [1.0, 0.0], [0.0, 1.0])


def test_conformal_quantile_is_the_finite_sample_rank():
    scores = np.arange(1.0, 20.0)  # n = 19
    conformal = bayes.SplitConformal(level=0.9).fit(np.zeros(19), scores)
    # ceil((19 + 1) * 0.9) = 18th smallest score.
    assert conformal.quantile_ == 18.0
    assert bayes.SplitConformal(level=0.99).fit(np.zeros(19), scores).quantile_ == np.inf


@pytest.mark.parametrize("normalised", [False, True])
def test_conformal_marginal_coverage_guarantee(normalised):
    level, n_cal, n_test, trials = 0.9, 50, 200, 300
    rng = np.random.default_rng(7)
    coverages = []
    for _ in range(trials):
        x = rng.uniform(-2, 2, size=n_cal + n_test)
        std = 0.2 + np.abs(x)  # heteroscedastic noise
        y = np.sin(x) + std * rng.standard_t(df=3, size=x.size)
        pred = np.sin(x) + 0.1  # a biased model: conformal does not care
        cal, test = slice(0, n_cal), slice(n_cal, None)
        scale_cal = std[cal] if normalised else None
        scale_test = std[test] if normalised else None
        conformal = bayes.SplitConformal(level=level).fit(pred[cal], y[cal], scale_cal)
        lower, upper = conformal.predict_interval(pred[test], scale_test)
        coverages.append(np.mean((y[test] >= lower) & (y[test] <= upper)))
    mean_coverage = np.mean(coverages)
    tolerance = 3 * np.std(coverages) / np.sqrt(trials)
    assert mean_coverage >= level - tolerance
    assert mean_coverage <= level + 1 / (n_cal + 1) + tolerance


def test_conformal_errors_name_the_value():
    with pytest.raises(ValueError, match=r"Received: level=1\.2"):
        bayes.SplitConformal(level=1.2)
    with pytest.raises(ValueError, match=r"Received: pred_cal\.size=2, y_cal\.size=3"):
        bayes.SplitConformal().fit(np.zeros(2), np.zeros(3))


def test_binary_ece_equals_the_streaming_metric():
    rng = np.random.default_rng(7)
    probs = rng.uniform(size=400)
    y = (rng.uniform(size=400) < probs**2).astype(int)
    ours = bayes.expected_calibration_error(y, probs, num_bins=10)
    theirs = float(metrics.expected_calibration_error(y, probs.astype("float32"), num_bins=10))
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
