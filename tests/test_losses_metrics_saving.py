import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow_probability as tfp
from sklearn.metrics import fbeta_score, precision_score

import tfcraft.losses as losses
import tfcraft.metrics as metrics

tfd = tfp.distributions

LOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    import tfcraft.losses, tfcraft.metrics

    model = keras.saving.load_model(sys.argv[1])
    x, y = np.load(sys.argv[2]), np.load(sys.argv[3])
    predictions = model.predict(x, verbose=0)
    evaluated = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
    compiled = [m for m in model.metrics if hasattr(m, "metrics")][0].metrics
    print(json.dumps({
        "predictions": predictions.tolist(),
        "evaluated": evaluated,
        "loss": [type(model.loss).__module__, type(model.loss).__name__, model.loss.delta],
        "metrics": {m.name: [type(m).__module__, m.get_config()] for m in compiled},
    }))
    """
)


@pytest.mark.timeout(300)
def test_compiled_model_reloads_in_a_fresh_process(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype("float32")
    y = (x[:, :1] + 0.3 * rng.normal(size=(32, 1)) > 0).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(
        keras.optimizers.SGD(0.1),
        loss=losses.Huber(delta=2.5),
        metrics=[metrics.Precision(threshold=0.3), metrics.FBeta(beta=2.0)],
    )
    model.train_on_batch(x, y)
    path = tmp_path / "model.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    expected_predictions = model.predict(x, verbose=0)
    expected_evaluation = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(path), tmp_path / "x.npy", tmp_path / "y.npy"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])

    np.testing.assert_allclose(report["predictions"], expected_predictions, atol=1e-6)
    assert report["loss"] == ["tfcraft.losses", "Huber", 2.5]
    precision_module, precision = report["metrics"]["precision"]
    fbeta_module, fbeta = report["metrics"]["f_beta"]
    assert precision_module == fbeta_module == "tfcraft.metrics"
    assert precision["threshold"] == 0.3
    assert fbeta["beta"] == 2.0
    for name, value in expected_evaluation.items():
        np.testing.assert_allclose(report["evaluated"][name], value, rtol=1e-6, err_msg=name)
    # The evaluated metrics are the real ones (sklearn, `y_pred > threshold` as in Keras).
    predicted = (expected_predictions[:, 0] > 0.3).astype(int)
    assert 0 < predicted.sum() < len(predicted)  # the threshold splits the rows
    np.testing.assert_allclose(
        report["evaluated"]["precision"], precision_score(y[:, 0], predicted), rtol=1e-6
    )
    at_default = (expected_predictions[:, 0] > 0.5).astype(int)  # FBeta's default threshold
    np.testing.assert_allclose(
        report["evaluated"]["f_beta"], fbeta_score(y[:, 0], at_default, beta=2.0), rtol=1e-6
    )


# --------------------------------------------------------------------------- round trips

rng = np.random.default_rng(1)
_REGRESSION = (rng.normal(size=(6, 3)).astype("float32"), rng.normal(size=(6, 3)).astype("float32"))
_BINARY = (
    rng.integers(0, 2, size=(6, 3)).astype("float32"),
    rng.uniform(size=(6, 3)).astype("float32"),
)
_ONE_HOT = (np.eye(3, dtype="float32")[[0, 1, 2, 2, 1, 0]], rng.normal(size=(6, 3)))
_Y = rng.normal(size=(6,)).astype("float32")
_NORMAL_PARAMS = rng.normal(size=(6, 2)).astype("float32")

LOSS_CASES = [
    (losses.Huber(delta=2.5, reduction="sum", name="h"), _REGRESSION),
    (losses.Pinball(quantiles=[0.05, 0.95, 0.99], reduction="none"), (_Y, _REGRESSION[1])),
    (losses.BinaryFocal(gamma=1.5, alpha=0.6, from_logits=True, reduction="sum"), _BINARY),
    (losses.BinaryFocal(gamma=3.0, alpha=None), _BINARY),
    (losses.CategoricalFocal(gamma=0.5, alpha=[0.2, 0.3, 0.5], from_logits=True), _ONE_HOT),
    (losses.CategoricalFocal(gamma=1.0, alpha=0.4, from_logits=True), _ONE_HOT),
    (losses.NegativeLogLikelihood("normal", reduction="none"), (_Y, _NORMAL_PARAMS)),
]


@pytest.mark.parametrize(("loss", "data"), LOSS_CASES, ids=lambda case: type(case).__name__)
def test_loss_serialization_round_trip_keeps_arguments_and_numbers(loss, data):
    restored = keras.losses.deserialize(json.loads(json.dumps(keras.losses.serialize(loss))))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    np.testing.assert_allclose(restored(*data), loss(*data), rtol=1e-6)
    assert type(loss)().get_config() != loss.get_config()  # non-default arguments


_CLASSIFICATION = (np.array([1, 0, 1, 1, 0, 1]), np.array([0.9, 0.4, 0.2, 0.35, 0.1, 0.7]))
_MULTICLASS = (np.array([0, 2, 1, 1]), np.eye(3)[[0, 1, 1, 2]] * 0.7 + 0.1)
_NORMAL = (_Y, _NORMAL_PARAMS)

METRIC_CASES = [
    (metrics.Precision(threshold=0.3, average="macro", name="p"), _CLASSIFICATION),
    (metrics.Recall(threshold=0.3, average="macro", name="r"), _CLASSIFICATION),
    (metrics.FBeta(beta=2.0, threshold=0.3, average="macro"), _CLASSIFICATION),
    (metrics.ExpectedCalibrationError(num_bins=4), _MULTICLASS),
    (metrics.BrierScore(name="brier"), _MULTICLASS),
    (metrics.MeanNLL(distribution="student_t"), (_Y, np.tile(_NORMAL_PARAMS, (1, 2))[:, :3])),
    (metrics.IntervalCoverage(level=0.5, distribution="normal"), _NORMAL),
    (metrics.MeanIntervalWidth(level=0.5, distribution="mixture_normal"), (_Y, _REGRESSION[1])),
    (metrics.CRPS(distribution=None, name="crps_dist"), (_Y, tfd.Normal(_Y + 0.5, 2.0))),
]


@pytest.mark.parametrize(("metric", "data"), METRIC_CASES, ids=lambda case: type(case).__name__)
def test_metric_serialization_round_trip_keeps_arguments_and_numbers(metric, data):
    config = json.loads(json.dumps(keras.metrics.serialize(metric)))
    restored = keras.metrics.deserialize(config)
    assert type(restored) is type(metric)
    assert restored.get_config() == metric.get_config()
    metric.update_state(*data)
    restored.update_state(*data)
    np.testing.assert_allclose(restored.result(), metric.result(), rtol=1e-6)
    assert type(metric)().get_config() != metric.get_config()  # non-default arguments
