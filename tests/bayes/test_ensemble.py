import json

import keras
import numpy as np
import pytest

from tfcraft import bayes
from tfcraft.layers import CategoricalHead, NormalHead
from tfcraft.losses import NegativeLogLikelihood


def build_model(seed):
    return keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(
                4, activation="tanh", kernel_initializer=keras.initializers.GlorotUniform(seed)
            ),
            NormalHead(seed=seed),
        ]
    )


def _data(n=32):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2)).astype("float32")
    return x, (x[:, :1] + 0.1 * rng.normal(size=(n, 1))).astype("float32")


def test_members_differ_by_seed_and_seeds_are_reproducible():
    ensemble = bayes.DeepEnsemble(build_model, num_members=3, seed=4)
    again = bayes.DeepEnsemble(build_model, num_members=3, seed=4)
    assert ensemble.seeds == again.seeds and len(set(ensemble.seeds)) == 3
    kernels = [m.layers[0].kernel.numpy() for m in ensemble.members]
    assert not np.allclose(kernels[0], kernels[1])
    np.testing.assert_array_equal(kernels[0], again.members[0].layers[0].kernel.numpy())
    assert set(bayes.DeepEnsemble(build_model, 3, seed=5).seeds).isdisjoint(ensemble.seeds)


def test_fit_trains_every_member_and_predict_is_the_mixture():
    x, y = _data()
    ensemble = bayes.DeepEnsemble(build_model, num_members=3, seed=0)
    histories = ensemble.fit(x, y, epochs=3, batch_size=8, jit_compile=False)
    assert len(histories) == 3
    for history in histories:
        assert history.history["loss"][-1] < history.history["loss"][0]
    predictive = ensemble.predict(x)
    assert predictive.samples.shape == (3, 32, 1)
    per_member = np.stack([m(x).numpy()[:, 0] for m in ensemble.members])
    np.testing.assert_allclose(predictive.mean[:, 0], per_member.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(predictive.epistemic_stddev[:, 0], per_member.std(axis=0), rtol=1e-4)


def test_second_fit_continues_with_the_same_trainers():
    x, y = _data()
    ensemble = bayes.DeepEnsemble(build_model, num_members=2, seed=0)
    ensemble.fit(x, y, epochs=1, batch_size=8, jit_compile=False)
    trainers = list(ensemble.trainers)
    ensemble.fit(x, y, epochs=1, batch_size=8, jit_compile=False)
    assert all(a is b for a, b in zip(trainers, ensemble.trainers, strict=True))
    ensemble.fit(x, y, epochs=1, batch_size=8, optimizer="sgd", jit_compile=False)
    assert all(a is not b for a, b in zip(trainers, ensemble.trainers, strict=True))


def test_optimizer_instance_is_cloned_per_member():
    x, y = _data()
    ensemble = bayes.DeepEnsemble(build_model, num_members=2, seed=0)
    optimizer = keras.optimizers.Adam(0.05)
    ensemble.fit(
        x, y, epochs=1, batch_size=8, optimizer=optimizer, jit_compile=False, vectorize=False
    )
    first, second = (trainer.optimizer for trainer in ensemble.trainers)
    assert first is not second and first is not optimizer
    assert float(first.learning_rate) == pytest.approx(0.05)


def test_save_load_roundtrip_same_predictions(tmp_path):
    x, y = _data()
    ensemble = bayes.DeepEnsemble(build_model, num_members=2, seed=3)
    ensemble.fit(
        x, y, epochs=1, batch_size=16, loss=NegativeLogLikelihood("normal"), jit_compile=False
    )
    path = tmp_path / "ensemble"
    ensemble.save(path)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["members"] == ["member_0.keras", "member_1.keras"]
    assert manifest["seeds"] == ensemble.seeds
    restored = bayes.DeepEnsemble.load(path)
    np.testing.assert_allclose(restored.predict(x).params, ensemble.predict(x).params, rtol=1e-6)
    # Overwriting leaves exactly the new ensemble and no temporary folders behind.
    restored.members = restored.members[:1]
    restored.num_members = 1
    restored.save(path)
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "member_0.keras"]
    assert [p.name for p in tmp_path.iterdir()] == ["ensemble"]


def test_failed_save_keeps_the_old_ensemble(tmp_path):
    ensemble = bayes.DeepEnsemble(build_model, num_members=2, seed=3)
    path = tmp_path / "ensemble"
    ensemble.save(path)
    before = {p.name: p.read_bytes() for p in path.iterdir()}

    def failing_save(*args, **kwargs):
        raise OSError("disk full")

    ensemble.members[1].save = failing_save  # the second member fails half-way
    with pytest.raises(OSError, match="disk full"):
        ensemble.save(path)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert sorted(p.name for p in path.iterdir()) == [
        "manifest.json",
        "member_0.keras",
        "member_1.keras",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["ensemble"]


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match=r"manifest\.json is missing"):
        bayes.DeepEnsemble.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="Received: format='other'"):
        bayes.DeepEnsemble.load(tmp_path)


def test_constructor_errors():
    with pytest.raises(ValueError, match="Received: num_members=0"):
        bayes.DeepEnsemble(build_model, num_members=0)
    with pytest.raises(TypeError, match="build_model"):
        bayes.DeepEnsemble("model")
    with pytest.raises(TypeError, match=r"must return a `keras\.Model`"):
        bayes.DeepEnsemble(lambda seed: None, num_members=1)


def test_default_loss_needs_a_head():
    def plain(seed):
        return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    ensemble = bayes.DeepEnsemble(plain, num_members=2)
    with pytest.raises(ValueError, match="Pass `loss=`"):
        ensemble.fit(*_data(), epochs=1)
    ensemble.fit(*_data(), epochs=1, loss="mse", jit_compile=False)
    predictive = ensemble.predict(_data()[0])  # headless members: spread only
    assert predictive.family is None and predictive.num_samples == 2


def test_classification_ensemble():
    def classifier(seed):
        return keras.Sequential([keras.Input((2,)), CategoricalHead(3, seed=seed)])

    ensemble = bayes.DeepEnsemble(classifier, num_members=2, seed=0)
    x = _data()[0]
    ensemble.fit(x, np.arange(32) % 3, epochs=1, batch_size=8, jit_compile=False)
    np.testing.assert_allclose(ensemble.predict(x).mean.sum(axis=-1), 1.0, rtol=1e-5)
