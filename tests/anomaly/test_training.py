"""The neural detectors train through tfcraft.training.Trainer, from arrays or tf.data."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

import tfcraft.anomaly.neural as neural
from tfcraft.anomaly import FlowDetector, GaussianMixtureDetector, VAEDetector


@pytest.mark.parametrize("name", ["tiny_flow", "tiny_vae"])
def test_trainer_history_shows_the_loss_decreasing(fitted, name):
    detector = fitted[name]
    history = detector.history_
    assert {"loss", "val_loss"} <= set(history)
    assert len(history["loss"]) == detector.epochs  # patience 20 > epochs: no early stop
    assert history["loss"][-1] < history["loss"][0] - 0.1
    assert history["val_loss"][-1] < history["val_loss"][0]
    assert all(np.isfinite(history["loss"]))


def test_fit_goes_through_the_trainer(monkeypatch, normal_data):
    train, _ = normal_data
    calls = []

    class RecordingTrainer(neural.Trainer):
        def fit(self, data, epochs=1, **kwargs):
            calls.append((self.model, epochs, kwargs["batch_size"]))
            return super().fit(data, epochs=epochs, **kwargs)

    monkeypatch.setattr(neural, "Trainer", RecordingTrainer)
    detector = FlowDetector(hidden_units=(4,), num_layers=1, epochs=2, batch_size=32, seed=0)
    detector.fit(train)
    assert len(calls) == 1  # one fit: holdout calibration needs no extra models
    model, epochs, batch_size = calls[0]
    assert model is detector.model_ and epochs == 2 and batch_size == 32


def _streaming_twin(detector):
    return type(detector)(**detector.get_params())


@pytest.mark.parametrize("name", ["tiny_flow", "tiny_vae"])
def test_fitting_from_tf_data_matches_the_in_memory_fit(fitted, normal_data, name):
    train, test = normal_data
    in_memory = fitted[name]
    dataset = tf.data.Dataset.from_tensor_slices(train).batch(64)
    streamed = _streaming_twin(in_memory).fit(dataset)
    assert streamed.n_features_in_ == 3
    assert len(streamed.history_["loss"]) == in_memory.epochs
    # every 5th batch is held out: 64 of the 400 rows calibrate
    assert len(streamed.calibration_scores_) == 64
    a, b = in_memory.score_samples(test), streamed.score_samples(test)
    assert abs(a.mean() - b.mean()) < 0.25, (a.mean(), b.mean())
    assert stats.spearmanr(a, b).statistic > 0.9
    labels = streamed.predict(np.r_[test[:20], test[:5] + 12.0])
    assert (labels[-5:] == -1).all() and (labels[:20] == 1).mean() > 0.8


def test_tf_data_with_labels_and_numeric_contamination(normal_data):
    train, _ = normal_data
    dataset = tf.data.Dataset.from_tensor_slices((train, np.zeros(len(train)))).batch(50)
    detector = VAEDetector(hidden_units=(4,), epochs=2, contamination=0.1, seed=0).fit(dataset)
    held_out = detector.calibration_scores_  # the held-out batches' anomaly scores
    share = np.mean(-held_out < detector.offset_)
    assert abs(share - 0.1) <= 1 / len(held_out) + 1e-9


def test_tf_data_streaming_errors():
    X = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices(X).batch(20)
    with pytest.raises(TypeError, match="GaussianMixtureDetector fits in-memory arrays only"):
        GaussianMixtureDetector().fit(dataset)
    with pytest.raises(ValueError, match="empty dataset"):
        FlowDetector(epochs=1).fit(dataset.take(0))
    with pytest.raises(ValueError, match=r"2-D batches .* Received: batch shape \(20,\)"):
        FlowDetector(epochs=1).fit(tf.data.Dataset.from_tensor_slices(X[:, 0]).batch(20))
    bad = X.copy()
    bad[5, 1] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="X contains NaN or inf values"):
        FlowDetector(hidden_units=(4,), num_layers=1, epochs=1).fit(
            tf.data.Dataset.from_tensor_slices(bad).batch(20)
        )


@pytest.mark.parametrize("name", ["tiny_flow", "tiny_vae"])
def test_scoring_a_tf_data_dataset_matches_the_array(fitted, normal_data, name):
    _, test = normal_data
    detector = fitted[name]
    dataset = tf.data.Dataset.from_tensor_slices(test).batch(32)
    np.testing.assert_allclose(
        detector.score_samples(dataset), detector.score_samples(test), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_array_equal(detector.predict(dataset), detector.predict(test))
    labelled = tf.data.Dataset.from_tensor_slices((test, np.zeros(len(test)))).batch(50)
    np.testing.assert_allclose(
        detector.anomaly_score(labelled), detector.anomaly_score(test), rtol=1e-5, atol=1e-5
    )
    wrong = tf.data.Dataset.from_tensor_slices(test[:, :2]).batch(32)
    with pytest.raises(ValueError, match=r"2-D batches with 3 features.*batch shape \(None, 2\)"):
        detector.score_samples(wrong)


def test_scoring_tf_data_is_refused_by_in_memory_detectors(fitted, normal_data):
    _, test = normal_data
    dataset = tf.data.Dataset.from_tensor_slices(test).batch(32)
    with pytest.raises(TypeError, match="GaussianMixtureDetector scores in-memory arrays only"):
        fitted["tiny_mixture"].score_samples(dataset)
