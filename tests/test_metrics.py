import doctest
import itertools

import keras
import numpy as np
import pytest
import scipy.integrate
import scipy.optimize
import scipy.stats
import sklearn.metrics
import tensorflow as tf
import tensorflow_probability as tfp
from hypothesis import given, settings
from hypothesis import strategies as st

import tfcraft.losses as losses
import tfcraft.metrics as metrics
from tfcraft import distributions

tfd = tfp.distributions
FAST = settings(max_examples=20, deadline=None)


def _softplus_inverse(x):
    return np.log(np.expm1(x))


def _normal_params(loc, scale):
    """`"normal"` family parameters giving exactly `Normal(loc, scale)`."""
    raw = _softplus_inverse(np.asarray(scale, np.float64) - distributions.MIN_SCALE)
    return np.stack([loc, raw], axis=-1).astype("float32")


def _stream(metric, y_true, y_pred, sample_weight, cuts):
    """Feed the data to `metric` in consecutive batches split at `cuts`."""
    bounds = [0, *sorted(set(cuts)), len(y_true)]
    for start, stop in itertools.pairwise(bounds):
        if stop > start:
            weight = None if sample_weight is None else sample_weight[start:stop]
            metric.update_state(y_true[start:stop], y_pred[start:stop], sample_weight=weight)
    return float(metric.result())


# --------------------------------------------------------------------------- precision & co

SKLEARN = {
    metrics.Precision: lambda **kw: sklearn.metrics.precision_score(**kw),
    metrics.Recall: lambda **kw: sklearn.metrics.recall_score(**kw),
    metrics.FBeta: lambda beta, **kw: sklearn.metrics.fbeta_score(beta=beta, **kw),
}


@st.composite
def _classification_data(draw):
    n = draw(st.integers(4, 40))
    num_labels = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    y_true = (rng.uniform(size=(n, num_labels)) < rng.uniform(0.0, 1.0)).astype("float32")
    y_pred = rng.uniform(size=(n, num_labels)).astype("float32")
    weight = rng.uniform(0.0, 2.0, size=n).astype("float32") if draw(st.booleans()) else None
    cuts = draw(st.lists(st.integers(1, n - 1), max_size=4))
    rank_one = num_labels == 1 and draw(st.booleans())
    return y_true, y_pred, weight, cuts, rank_one


@pytest.mark.parametrize("cls", [metrics.Precision, metrics.Recall, metrics.FBeta])
@FAST
@given(
    data=_classification_data(),
    threshold=st.sampled_from([0.0, 0.3, 0.5, 0.8]),
    average=st.sampled_from(["micro", "macro"]),
    beta=st.sampled_from([0.5, 1.0, 2.0]),
)
def test_streaming_matches_sklearn_on_the_whole_data(cls, data, threshold, average, beta):
    y_true, y_pred, weight, cuts, rank_one = data
    kwargs = {"beta": beta} if cls is metrics.FBeta else {}
    metric = cls(threshold=threshold, average=average, **kwargs)
    if rank_one:
        y_true, y_pred = y_true[:, 0], y_pred[:, 0]
    ours = _stream(metric, y_true, y_pred, weight, cuts)
    # One label is the binary problem: sklearn scores the positive class.
    single = y_true.ndim == 1 or y_true.shape[1] == 1
    sk_true, sk_pred = (y_true.ravel(), y_pred.ravel()) if single else (y_true, y_pred)
    expected = SKLEARN[cls](
        y_true=sk_true.astype(int),
        y_pred=(sk_pred > threshold).astype(int),
        average="binary" if single else average,
        sample_weight=weight,
        zero_division=0,
        **kwargs,
    )
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def test_confusion_metrics_in_model_compile_match_sklearn_on_evaluate():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype("float32")
    y = (x[:, :3] + 0.5 * rng.normal(size=(96, 3)) > 0).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="sigmoid")])
    model.compile(
        "adam",
        loss="binary_crossentropy",
        metrics=[
            metrics.Precision(threshold=0.4, average="macro"),
            metrics.Recall(threshold=0.4),
            metrics.FBeta(beta=2.0, threshold=0.4),
        ],
    )
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    results = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    predicted = (model.predict(x, verbose=0) > 0.4).astype(int)
    y = y.astype(int)
    expected = {
        "precision": sklearn.metrics.precision_score(y, predicted, average="macro"),
        "recall": sklearn.metrics.recall_score(y, predicted, average="micro"),
        "f_beta": sklearn.metrics.fbeta_score(y, predicted, beta=2.0, average="micro"),
    }
    for name, value in expected.items():
        np.testing.assert_allclose(results[name], value, rtol=1e-5, err_msg=name)


def test_confusion_metric_builds_and_updates_inside_tf_function():
    metric = metrics.FBeta(average="macro")

    @tf.function
    def update(y_true, y_pred):
        metric.update_state(y_true, y_pred)

    y_true = np.array([[1, 0], [1, 1], [0, 1]], "float32")
    y_pred = np.array([[0.9, 0.2], [0.1, 0.8], [0.7, 0.6]], "float32")
    update(y_true[:2], y_pred[:2])
    update(y_true[2:], y_pred[2:])
    expected = sklearn.metrics.f1_score(y_true.astype(int), (y_pred > 0.5), average="macro")
    np.testing.assert_allclose(metric.result(), expected, rtol=1e-6)
    assert [v.shape for v in metric.variables] == [(2,)] * 3
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_confusion_metric_result_before_any_update_is_zero():
    assert float(metrics.Precision().result()) == 0.0


def test_confusion_metric_rejects_a_change_in_label_count():
    metric = metrics.Recall()
    metric.update_state(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"built for 3 labels. Received: y_pred.shape=\(2, 2\)"):
        metric.update_state(np.ones((2, 2)), np.ones((2, 2)))


def test_confusion_metric_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"y_true.shape=\(4, 3\), y_pred.shape=\(4, 2\)"):
        metrics.Precision().update_state(np.ones((4, 3)), np.ones((4, 2)))


@pytest.mark.parametrize("cls", [metrics.Precision, metrics.Recall, metrics.FBeta])
def test_confusion_metric_argument_errors(cls):
    with pytest.raises(ValueError, match=r"Received: threshold=1.5"):
        cls(threshold=1.5)
    with pytest.raises(ValueError, match=r"Received: threshold=-0.1"):
        cls(threshold=-0.1)
    with pytest.raises(ValueError, match=r"\['micro', 'macro'\]. Received: average='weighted'"):
        cls(average="weighted")


@pytest.mark.parametrize("beta", [0.0, -1.0])
def test_fbeta_rejects_non_positive_beta(beta):
    with pytest.raises(ValueError, match=rf"Received: beta={beta}"):
        metrics.FBeta(beta=beta)


# --------------------------------------------------------------------------- calibration


def _numpy_ece(y_true, probs, num_bins, weight=None):
    probs = np.asarray(probs, np.float32)
    if probs.ndim == 1:
        probs = probs[:, None]
    if probs.shape[1] == 1:
        probs = np.concatenate([1 - probs, probs], axis=1)
    labels = np.asarray(y_true)
    if labels.ndim == 2 and labels.shape[1] == probs.shape[1]:
        labels = labels.argmax(1)
    labels = labels.reshape(-1)
    weight = np.ones(len(labels)) if weight is None else np.asarray(weight, np.float64)
    confidence = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    ece = 0.0
    for m in range(num_bins):
        low, high = m / num_bins, (m + 1) / num_bins
        in_bin = (confidence > low) & (confidence <= high) if m else confidence <= high
        if weight[in_bin].sum() > 0:
            gap = np.sum(weight[in_bin] * (correct[in_bin] - confidence[in_bin]))
            ece += abs(gap)
    return ece / weight.sum()


def _calibration_case(kind, rng, n=60):
    if kind in ("binary", "binary_column"):
        probs = rng.uniform(size=n).astype("float32")
        labels = (rng.uniform(size=n) < probs).astype("float32")
        if kind == "binary_column":
            probs, labels = probs[:, None], labels[:, None]
        return labels, probs
    logits = rng.normal(scale=2.0, size=(n, 4))
    probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype("float32")
    labels = rng.integers(0, 4, size=n)
    if kind == "one_hot":
        return np.eye(4, dtype="float32")[labels], probs
    return labels, probs


@pytest.mark.parametrize("kind", ["binary", "binary_column", "int_labels", "one_hot"])
@pytest.mark.parametrize("weighted", [False, True])
def test_ece_streaming_matches_numpy(kind, weighted):
    rng = np.random.default_rng(11)
    y_true, probs = _calibration_case(kind, rng)
    weight = rng.uniform(0.1, 2.0, size=len(probs)).astype("float32") if weighted else None
    expected = _numpy_ece(y_true, probs, 10, weight)
    metric = metrics.ExpectedCalibrationError(num_bins=10)
    ours = _stream(metric, y_true, probs, weight, cuts=[7, 30, 31])
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    one_shot = metrics.expected_calibration_error(y_true, probs, 10, sample_weight=weight)
    np.testing.assert_allclose(one_shot, expected, rtol=1e-5, atol=1e-6)
    assert expected > 0.0


def test_binary_ece_uses_top_label_confidence():
    # p = 0.2 predicts class 0 with confidence 0.8; correct when the label is 0.
    np.testing.assert_allclose(metrics.expected_calibration_error([0], [0.2], 5), 0.2, 1e-6)
    np.testing.assert_allclose(metrics.expected_calibration_error([1], [0.2], 5), 0.8, 1e-6)


def test_ece_in_model_compile_matches_pure_function():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(12)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = rng.integers(0, 3, size=64)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(
        "adam", "sparse_categorical_crossentropy", metrics=[metrics.ExpectedCalibrationError(5)]
    )
    result = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    probs = model.predict(x, verbose=0)
    np.testing.assert_allclose(
        result["expected_calibration_error"], _numpy_ece(y, probs, 5), rtol=1e-5
    )


@pytest.mark.parametrize("num_bins", [0, -3])
def test_ece_rejects_bad_num_bins(num_bins):
    with pytest.raises(ValueError, match=rf"Received: num_bins={num_bins}"):
        metrics.ExpectedCalibrationError(num_bins=num_bins)


def test_brier_score_matches_sklearn_binary_and_multiclass():
    rng = np.random.default_rng(13)
    probs = rng.uniform(size=30).astype("float32")
    labels = rng.integers(0, 2, size=30)
    weight = rng.uniform(size=30).astype("float32")
    metric = metrics.BrierScore()
    ours = _stream(metric, labels, probs[:, None], weight, cuts=[10])
    expected = sklearn.metrics.brier_score_loss(labels, probs, sample_weight=weight)
    np.testing.assert_allclose(ours, expected, rtol=1e-5)

    logits = rng.normal(size=(30, 3))
    probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype("float32")
    labels = rng.integers(0, 3, size=30)
    expected = sklearn.metrics.brier_score_loss(labels, probs, labels=[0, 1, 2])
    for y_true in (labels, np.eye(3)[labels]):
        metric = metrics.BrierScore()
        np.testing.assert_allclose(_stream(metric, y_true, probs, None, [5]), expected, 1e-5)


# --------------------------------------------------------------------------- uncertainty


def _crps_by_integration(y, loc, scale):
    def integrand(x):
        return (scipy.stats.norm.cdf(x, loc, scale) - (x >= y)) ** 2

    below = scipy.integrate.quad(integrand, -np.inf, y)[0]
    above = scipy.integrate.quad(integrand, y, np.inf)[0]
    return below + above


@pytest.mark.parametrize(("y", "loc", "scale"), [(0.0, 0.0, 1.0), (1.3, -0.4, 0.7), (-5, 2, 3)])
def test_crps_normal_matches_numerical_integration(y, loc, scale):
    ours = float(metrics.crps_normal(np.float32(y), np.float32(loc), np.float32(scale)))
    np.testing.assert_allclose(ours, _crps_by_integration(y, loc, scale), rtol=1e-5)


def test_crps_metric_from_params_and_from_distributions():
    rng = np.random.default_rng(14)
    loc, scale = rng.normal(size=8), rng.uniform(0.5, 2.0, size=8)
    y = rng.normal(size=8).astype("float32")
    weight = rng.uniform(size=8)
    per_example = np.array([_crps_by_integration(*v) for v in zip(y, loc, scale, strict=True)])
    expected = np.sum(weight * per_example) / weight.sum()
    from_params = _stream(metrics.CRPS(), y, _normal_params(loc, scale), weight, [3])
    np.testing.assert_allclose(from_params, expected, rtol=1e-5)
    metric = metrics.CRPS(distribution=None)
    metric.update_state(y, tfd.Normal(loc.astype("float32"), scale.astype("float32")), weight)
    np.testing.assert_allclose(metric.result(), expected, rtol=1e-5)


def test_crps_rejects_non_normal_predictions():
    with pytest.raises(ValueError, match=r"only for Normal predictions.*StudentT"):
        metrics.crps([0.0], tfd.StudentT(3.0, [0.0], 1.0), distribution=None)
    with pytest.raises(ValueError, match=r"Received: distribution='student_t'"):
        metrics.CRPS(distribution="student_t")


def test_interval_of_normal_and_student_t_params_match_scipy():
    rng = np.random.default_rng(15)
    params = rng.normal(size=(5, 3)).astype("float32")
    softplus = np.log1p(np.exp(params.astype(np.float64)))
    df, scale = 2.0 + softplus[:, 2], softplus[:, 1] + distributions.MIN_SCALE
    low, high = scipy.stats.t.interval(0.8, df, loc=params[:, 0], scale=scale)
    width = metrics.interval_width(params, level=0.8, distribution="student_t")
    np.testing.assert_allclose(width, high - low, rtol=1e-4)
    y = np.array([low[0] - 0.01, high[1] + 0.01, low[2] + 0.01, high[3] - 0.01, params[4, 0]])
    coverage = metrics.interval_coverage(y[:, None], params, 0.8, "student_t")
    np.testing.assert_array_equal(coverage, [0.0, 0.0, 1.0, 1.0, 1.0])

    params = _normal_params(np.zeros(2), np.array([1.0, 3.0]))
    width = metrics.MeanIntervalWidth(level=0.95, distribution="normal")
    width.update_state(np.zeros(2), params)
    np.testing.assert_allclose(width.result(), 2 * 1.959964 * 2.0, rtol=1e-5)


def test_mixture_interval_uses_bisection_matching_a_root_finder():
    logits, loc, scale = [0.3, -0.2], [-1.0, 2.0], [0.5, 1.5]
    weights = np.exp(logits) / np.sum(np.exp(logits))

    def cdf(x):
        return np.sum(weights * scipy.stats.norm.cdf(x, loc, scale))

    expected = [scipy.optimize.brentq(lambda x, p=p: cdf(x) - p, -20, 20) for p in (0.05, 0.95)]
    mixture = tfd.MixtureSameFamily(tfd.Categorical(logits=[logits]), tfd.Normal([loc], [scale]))
    lower, upper = metrics.central_interval(mixture, 0.9)
    np.testing.assert_allclose([float(lower[0]), float(upper[0])], expected, rtol=1e-4)

    raw_scale = _softplus_inverse(np.array(scale) - distributions.MIN_SCALE)
    params = np.concatenate([logits, loc, raw_scale])[None].astype("float32")
    width = metrics.interval_width(params, 0.9, "mixture_normal")
    np.testing.assert_allclose(width, expected[1] - expected[0], rtol=1e-4)


def test_coverage_of_samples_from_the_predictive_is_close_to_level():
    rng = np.random.default_rng(16)
    loc, scale = rng.normal(size=2000), rng.uniform(0.5, 2.0, size=2000)
    y = rng.normal(loc, scale).astype("float32")
    metric = metrics.IntervalCoverage(level=0.9, distribution="normal")
    coverage = _stream(metric, y, _normal_params(loc, scale), None, [500, 1500])
    assert abs(coverage - 0.9) < 0.02
    too_narrow = metrics.IntervalCoverage(level=0.9)
    too_narrow.update_state(y, tfd.Normal(loc.astype("float32"), 0.5 * scale.astype("float32")))
    assert float(too_narrow.result()) < 0.75


def test_interval_metrics_with_independent_multivariate_predictions():
    dist = tfd.Independent(tfd.Normal(np.zeros((3, 2), "float32"), 1.0), 1)
    y = np.array([[0.0, 5.0], [0.0, 0.0], [5.0, 5.0]], "float32")
    np.testing.assert_allclose(metrics.interval_coverage(y, dist), [0.5, 1.0, 0.0])
    np.testing.assert_allclose(metrics.interval_width(dist), [3.919928] * 3, rtol=1e-5)


def test_mean_nll_matches_scipy_with_weights():
    rng = np.random.default_rng(17)
    loc, scale = rng.normal(size=10), rng.uniform(0.5, 2.0, size=10)
    y = rng.normal(size=10).astype("float32")
    weight = rng.uniform(size=10)
    expected = np.sum(-weight * scipy.stats.norm.logpdf(y, loc, scale)) / weight.sum()
    metric = metrics.MeanNLL(distribution="normal")
    np.testing.assert_allclose(
        _stream(metric, y, _normal_params(loc, scale), weight, [4]), expected, rtol=1e-5
    )


def test_distribution_metrics_in_model_compile_match_pure_functions():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(18)
    x = rng.normal(size=(64, 2)).astype("float32")
    y = (x[:, 0] + 0.5 * rng.normal(size=64)).astype("float32")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.compile(
        "adam",
        loss=losses.NegativeLogLikelihood("normal"),
        metrics=[
            metrics.MeanNLL("normal"),
            metrics.IntervalCoverage(0.8, "normal"),
            metrics.MeanIntervalWidth(0.8, "normal"),
            metrics.CRPS(),
        ],
    )
    results = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    params = model.predict(x, verbose=0)
    expected = {
        "mean_nll": losses.negative_log_likelihood(y, params, "normal"),
        "interval_coverage": metrics.interval_coverage(y, params, 0.8, "normal"),
        "mean_interval_width": metrics.interval_width(params, 0.8, "normal"),
        "crps": metrics.crps(y, params, "normal"),
    }
    for name, values in expected.items():
        np.testing.assert_allclose(results[name], np.mean(values), rtol=1e-5, err_msg=name)


@pytest.mark.parametrize("cls", [metrics.IntervalCoverage, metrics.MeanIntervalWidth])
def test_interval_metric_argument_errors(cls):
    for level in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=rf"Received: level={level}"):
            cls(level=level)
    with pytest.raises(ValueError, match=r"'mixture_normal'\]. Received: distribution='bernoulli'"):
        cls(distribution="bernoulli")
    with pytest.raises(ValueError, match=r"Received: distribution='poisson'"):
        cls(distribution="poisson")


def test_interval_rejects_discrete_distributions_and_unknown_families():
    with pytest.raises(ValueError, match=r"continuous distribution\. .*Bernoulli"):
        metrics.interval_coverage([1.0], tfd.Bernoulli(probs=[0.5]))
    with pytest.raises(ValueError, match=r"Received: distribution='gamma'"):
        metrics.MeanNLL(distribution="gamma")


def test_docstring_examples_run():
    result = doctest.testmod(metrics)
    assert result.attempted > 30
    assert result.failed == 0


def test_binary_metrics_accept_rank_one_targets_against_a_column_of_scores():
    y_true = np.array([1, 0, 1, 1, 0])
    y_pred = np.array([0.9, 0.6, 0.2, 0.7, 0.1], "float32")
    for cls in (metrics.Precision, metrics.Recall, metrics.FBeta):
        column, flat = cls(), cls()
        column.update_state(y_true, y_pred[:, None])
        flat.update_state(y_true, y_pred)
        assert float(column.result()) == float(flat.result()) > 0.5
