import dataclasses

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tfcraft import bayes
from tfcraft.recipes import RecipeResult, healthcare


def test_evaluate_probs_matches_references():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=200)
    p = np.clip(0.6 * y + 0.4 * rng.uniform(size=200), 0, 1)
    probs = np.stack([1 - p, p], axis=1)
    row = healthcare.evaluate_probs(y[100:], probs[100:], y[:100], probs[:100])
    assert row["roc_auc"] == pytest.approx(roc_auc_score(y[100:], p[100:]))
    assert row["brier"] == pytest.approx(np.mean((p[100:] - y[100:]) ** 2))
    assert row["aurc"] == pytest.approx(bayes.aurc(y[100:], probs[100:]))
    assert row["accuracy"] == pytest.approx(np.mean((p[100:] >= 0.5) == y[100:]))
    assert row["set_size_95"] >= row["set_size_90"]


def test_split_is_stratified_and_standardised_on_the_fitting_part_only():
    X = np.arange(200, dtype=np.float32).reshape(100, 2)
    y = (np.arange(100) % 4 == 0).astype(int)
    x_fit, _, x_val, y_val, x_test, y_test = healthcare.prepare_split(X, y, 0)
    assert len(y_test) == 30 and y_test.sum() in (7, 8) and len(y_val) == 14
    np.testing.assert_allclose(x_fit.mean(axis=0), 0, atol=1e-5)
    assert abs(x_test.mean()) > 0 or abs(x_val.mean()) > 0


@pytest.mark.timeout(300)
def test_quick_run_writes_tables_summary_and_plots(tmp_path):
    result = healthcare.run(
        "cleveland", models=("deterministic", "mc_dropout"), quick=True, out=tmp_path
    )
    assert isinstance(result, RecipeResult) and result.name == "healthcare"
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.name = "x"
    rows = result.tables["metrics"]
    assert [r["model"] for r in rows] == ["deterministic", "mc_dropout"]
    for row in rows:
        assert row["accuracy"] > 0.65 and row["roc_auc"] > 0.75  # a real diagnosis, not chance
        assert row["accuracy_at_80"] >= row["accuracy"] - 0.05
    assert "refer the 10% least certain cases" in result.summary
    for name in ("risk_coverage", "reliability"):
        path = result.figures[name]
        assert path.parent == tmp_path / "plots" and path.read_bytes()[:4] == b"\x89PNG"


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"Received: dataset='heart'"):
        healthcare.run("heart")
    with pytest.raises(ValueError, match=r"Received: models='svm'"):
        healthcare.run("pima", models=("svm",))
    with pytest.raises(ValueError, match=r"Received: seeds=\(\)"):
        healthcare.run("pima", seeds=())


def test_temperature_scaling_keeps_ranking_and_conformal_sets_and_lowers_validation_nll():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=400)
    logit = 6.0 * (y - 0.5) + rng.normal(0.0, 4.0, size=400)  # over-confident, ~25% wrong
    p = 1.0 / (1.0 + np.exp(-logit))
    probs = np.stack([1 - p, p], axis=1)
    val, test = healthcare.temperature_scale(probs[:200], y[:200], probs[200:])
    assert not np.allclose(test, probs[200:])  # the temperature moved the probabilities

    def nll(q, labels):
        return -np.mean(np.log(q[np.arange(len(labels)), labels]))

    assert nll(val, y[:200]) < nll(probs[:200], y[:200])
    assert bayes.aurc(y[200:], test) == pytest.approx(bayes.aurc(y[200:], probs[200:]))
    np.testing.assert_array_equal(test.argmax(axis=1), probs[200:].argmax(axis=1))
    for level in (0.9, 0.95):
        before = bayes.ConformalClassifier(level, method="lac").fit(probs[:200], y[:200])
        after = bayes.ConformalClassifier(level, method="lac").fit(val, y[:200])
        np.testing.assert_array_equal(before.predict_set(probs[200:]), after.predict_set(test))
    raw = healthcare.evaluate_probs(y[200:], probs[200:])
    scaled = healthcare.evaluate_probs(y[200:], test)
    assert scaled["ece"] < raw["ece"]  # same data-generating process: calibration carries over


def test_evaluate_probs_smoothed_conformal_covers_the_level_on_small_calibration_parts():
    # 42 calibration cases as on Cleveland: plain LAC sets cover ceil(43 * 0.9) / 43 = 0.907
    # in expectation, the smoothed ones 0.90 (Vovk et al. 2005).
    rng = np.random.default_rng(2)
    plain, smoothed = [], []
    for split in range(1500):
        y = rng.integers(0, 2, size=132)
        p = np.round(1.0 / (1.0 + np.exp(-(3.0 * (y - 0.5) + rng.normal(0, 1.5, 132)))), 2)
        probs = np.stack([1 - p, p], axis=1)
        args = (y[42:], probs[42:], y[:42], probs[:42])
        plain.append(healthcare.evaluate_probs(*args, smoothing=False)["coverage_90"])
        smoothed.append(healthcare.evaluate_probs(*args, seed=split)["coverage_90"])
    stderr = np.std(smoothed) / np.sqrt(len(smoothed))
    assert abs(np.mean(smoothed) - 0.9) < 3 * stderr
    assert np.mean(plain) > 0.9 + 3 * stderr
    assert healthcare.evaluate_probs(*args, seed=3) == healthcare.evaluate_probs(*args, seed=3)


def test_fit_predict_with_weight_decay_returns_probabilities():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    val, test = healthcare.fit_predict(
        "deterministic", x[:40], y[:40], x[40:], y[40:], x[40:], quick=True, weight_decay=0.1
    )
    assert val.shape == test.shape == (20, 2)
    np.testing.assert_allclose(val.sum(axis=1), 1.0, atol=1e-5)
