import numpy as np
import pytest

from tfcraft import bayes


def _miscalibrated(rng, n, k=3):
    """Probabilities from a model that is over-confident: labels follow a softened version."""
    logits = rng.normal(scale=2.0, size=(n, k))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    true = np.exp(logits / 2.5) / np.exp(logits / 2.5).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(k, p=p) for p in true])
    return probs, y


@pytest.mark.parametrize(("method", "level"), [("lac", 0.9), ("aps", 0.9), ("lac", 0.8)])
def test_coverage_holds_over_many_splits(method, level):
    rng = np.random.default_rng(0)
    n_cal, n_test, coverages = 100, 200, []
    for split in range(300):
        probs, y = _miscalibrated(rng, n_cal + n_test)
        conformal = bayes.ConformalClassifier(level, method=method, seed=split)
        conformal.fit(probs[:n_cal], y[:n_cal])
        coverages.append(bayes.set_coverage(conformal.predict_set(probs[n_cal:]), y[n_cal:]))
    mean = np.mean(coverages)
    stderr = np.std(coverages) / np.sqrt(len(coverages))
    # Lei et al. (2018): level <= E[coverage] <= level + 1 / (n + 1), without ties.
    assert level - 3 * stderr <= mean <= level + 1 / (n_cal + 1) + 3 * stderr


def test_aps_sets_grow_with_uncertainty_and_lac_matches_a_loop():
    rng = np.random.default_rng(1)
    probs, y = _miscalibrated(rng, 400)
    lac = bayes.ConformalClassifier(0.9).fit(probs[:200], y[:200])
    scores = np.sort(1 - probs[np.arange(200), y[:200]])
    assert lac.quantile_ == scores[int(np.ceil(201 * 0.9)) - 1]
    sets = lac.predict_set(probs[200:])
    for row, members in zip(probs[200:], sets, strict=True):
        assert members.tolist() == [1 - p <= lac.quantile_ + 1e-12 for p in row]
    aps = bayes.ConformalClassifier(0.9, method="aps", seed=0).fit(probs[:200], y[:200])
    sizes = aps.predict_set(probs[200:]).sum(axis=1)
    conservative = bayes.ConformalClassifier(0.9, method="aps", randomize=False)
    full = conservative.fit(probs[:200], y[:200]).predict_set(probs[200:])
    assert full.sum() >= sets.sum()  # without randomisation APS is conservative
    top = probs[200:].max(axis=1)
    assert sizes[top > 0.9].mean() < sizes[top < 0.6].mean()


def test_binary_probabilities_and_small_calibration_sets():
    conformal = bayes.ConformalClassifier(0.95).fit(np.array([0.2, 0.9]), np.array([0, 1]))
    assert conformal.quantile_ == np.inf  # ceil(3 * 0.95) = 3 > 2 scores
    assert conformal.predict_set(np.array([0.5])).tolist() == [[True, True]]
    assert bayes.set_size(conformal.predict_set(np.array([0.1, 0.7]))) == 2.0


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"Received: level=1.0"):
        bayes.ConformalClassifier(1.0)
    with pytest.raises(ValueError, match=r"Received: level=0"):
        bayes.ConformalClassifier(0)
    with pytest.raises(ValueError, match=r"Received: method='raps'"):
        bayes.ConformalClassifier(method="raps")
    with pytest.raises(ValueError, match=r"Received: min=0, max=3"):
        bayes.ConformalClassifier().fit(np.full((2, 3), 1 / 3), np.array([0, 3]))
    with pytest.raises(RuntimeError, match=r"not fitted yet"):
        bayes.ConformalClassifier().predict_set(np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"fitted with 3"):
        bayes.ConformalClassifier().fit(np.full((2, 3), 1 / 3), [0, 1]).predict_set(np.ones((1, 2)))


@pytest.mark.parametrize(("method", "level"), [("lac", 0.9), ("lac", 0.95), ("aps", 0.9)])
def test_smoothed_coverage_is_exact_on_small_tied_calibration_sets(method, level):
    # 40 calibration cases and probabilities rounded to 0.1 (heavy ties): the plain
    # sets over-cover, the smoothed ones cover `level` in expectation (Vovk et al. 2005).
    rng = np.random.default_rng(3)
    n_cal, n_test, plain, smoothed = 40, 100, [], []
    for split in range(3000):
        p = np.round(rng.uniform(0.05, 0.95, size=n_cal + n_test), 1)
        y = (rng.uniform(size=p.size) < np.clip(p + rng.normal(0, 0.15, p.size), 0, 1)).astype(int)
        for out, smooth in ((plain, False), (smoothed, True)):
            conformal = bayes.ConformalClassifier(level, method, seed=split, smoothing=smooth)
            sets = conformal.fit(p[:n_cal], y[:n_cal]).predict_set(p[n_cal:])
            out.append(bayes.set_coverage(sets, y[n_cal:]))
    stderr = np.std(smoothed) / np.sqrt(len(smoothed))
    assert abs(np.mean(smoothed) - level) < 3 * stderr
    if method == "lac":  # randomised APS scores are already close to exact
        assert np.mean(plain) > level + 3 * stderr  # the plain LAC sets over-cover here


def test_smoothed_p_values_match_a_loop():
    rng = np.random.default_rng(4)
    probs, y = _miscalibrated(rng, 300)
    probs[:, :] = np.round(probs, 2)  # ties between calibration and test scores
    probs /= probs.sum(axis=1, keepdims=True)
    conformal = bayes.ConformalClassifier(0.9, seed=7, smoothing=True).fit(probs[:100], y[:100])
    sets = conformal.predict_set(probs[100:])
    u = np.random.default_rng(7).uniform(size=(200, 1))
    cal = 1 - probs[np.arange(100), y[:100]]
    for row, members, draw in zip(probs[100:], sets, u[:, 0], strict=True):
        for score, member in zip(1 - row, members, strict=True):
            greater = np.sum(cal > score + 1e-12)
            equal = np.sum(np.abs(cal - score) <= 1e-12)
            assert member == ((greater + draw * (equal + 1)) / 101 > 0.1)
