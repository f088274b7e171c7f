"""Split-conformal prediction sets for classification (LAC and APS).

On a calibration set not used for training, a nonconformity score `s(x, y)`
is computed for each true label; with `q` the `ceil((n + 1) * level)`-th
smallest score, the set `{y : s(x, y) <= q}` contains the label of a new
exchangeable case with probability at least `level` (Vovk et al. 2005; Lei et
al. 2018). Two scores:

- `"lac"` (least ambiguous set-valued classifier, Sadinle, Lei & Wasserman
  2019): `s = 1 - p_y`. The smallest sets on average.
- `"aps"` (adaptive prediction sets, Romano, Sesia & Candès 2020): the total
  probability of the classes ranked above `y` plus (a uniform fraction `u` of)
  `p_y`. Sets grow where the model is unsure. With `randomize=True` (the
  paper's default) coverage is close to exact; without it, conservative.

Binary `(n,)` probabilities are read as `[1 - p, p]`. With ties in the scores
coverage stays above `level` but may exceed `level + 1 / (n + 1)`.

With `smoothing=True` (either score) a label enters the set when its smoothed
conformal p-value `(#{s_i > s} + u * (#{s_i = s} + 1)) / (n + 1)`, one uniform
`u` per test row, exceeds `1 - level` (Vovk, Gammerman & Shafer 2005, sec.
2.4; crepes' `smoothing=True`). Coverage then equals `level` exactly in
expectation over calibration set, test case and `u`, with ties and on small
calibration sets alike, instead of lying anywhere in
`[level, level + 1 / (n + 1)]` (more with ties); the price is that a case on the
boundary gets a set that depends on the draw.

Example:

>>> probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]])
>>> conformal = ConformalClassifier(level=0.5).fit(probs, np.array([0, 0, 1, 0]))
>>> round(conformal.quantile_, 6), conformal.predict_set(probs).astype(int).tolist()
(0.4, [[1, 0], [1, 0], [0, 1], [0, 1]])
"""

from __future__ import annotations

import math

import numpy as np

from tfcraft._validation import check_choice, check_float_in_range

__all__ = ["ConformalClassifier", "set_coverage", "set_size"]

METHODS = ("lac", "aps")


def _class_probs(probs, name: str) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 2 and probs.shape[1] == 1:
        probs = probs[:, 0]
    if probs.ndim == 1:
        probs = np.stack([1.0 - probs, probs], axis=1)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(
            f"`{name}` must have shape (n,) or (n, num_classes). "
            f"Received: {name}.shape={probs.shape}"
        )
    if not np.all(np.isfinite(probs)) or probs.min() < 0.0 or probs.max() > 1.0:
        raise ValueError(
            f"`{name}` must be finite probabilities in [0, 1]. "
            f"Received: min={float(np.min(probs))!r}, max={float(np.max(probs))!r}"
        )
    return probs


def _labels(y, n: int, num_classes: int) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if y.size != n:
        raise ValueError(
            f"`y_cal` must have one label per row of probabilities ({n}). "
            f"Received: y_cal.size={y.size}"
        )
    if y.size and (y.min() < 0 or y.max() >= num_classes or not np.all(y == np.round(y))):
        raise ValueError(
            f"`y_cal` must hold class indices in [0, {num_classes}). "
            f"Received: min={y.min()}, max={y.max()}"
        )
    return y.astype(int)


class ConformalClassifier:
    """Split-conformal classification sets with marginal coverage at least `level`.

    Args:
        level: Float in (0, 1), the target coverage. Defaults to `0.9`.
        method: `"lac"` or `"aps"`. Defaults to `"lac"`.
        randomize: APS only: break the score of the true class with a uniform
            draw (Romano et al. 2020), for coverage close to `level` instead of
            above it. Defaults to `True`.
        smoothing: Use smoothed p-values (see the module docstring): coverage
            equal to `level` in expectation rather than at least `level`.
            Defaults to `False`.
        seed: Optional int seed of those uniform draws (APS scores and smoothing).

    Attributes:
        quantile_: The calibrated score threshold `q` (`inf` when the
            calibration set is too small for `level`: every set is full).
        n_calibration_: Size of the calibration set.
    """

    def __init__(
        self,
        level: float = 0.9,
        method: str = "lac",
        randomize: bool = True,
        seed: int | None = None,
        smoothing: bool = False,
    ) -> None:
        self.level = check_float_in_range("level", level, 0.0, 1.0)
        self.method = check_choice("method", method, METHODS)
        self.randomize = bool(randomize)
        self.smoothing = bool(smoothing)
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def _scores(self, probs: np.ndarray) -> np.ndarray:
        """Score of every class for every row, `(n, k)`."""
        if self.method == "lac":
            return 1.0 - probs
        # Mass of the classes strictly more probable than each class, plus its own
        # (a uniform share of it when randomised). Ties share their rank's mass.
        greater = (probs[:, None, :] > probs[:, :, None]) * probs[:, None, :]
        above = greater.sum(axis=2)
        own = probs * (self._rng.uniform(size=probs.shape[0])[:, None] if self.randomize else 1.0)
        return above + own

    def fit(self, probs_cal, y_cal) -> ConformalClassifier:
        """Calibrate `quantile_` on held-out probabilities `(n, k)` (or `(n,)`) and labels."""
        probs = _class_probs(probs_cal, "probs_cal")
        y = _labels(y_cal, len(probs), probs.shape[1])
        if y.size == 0:
            raise ValueError("`y_cal` must not be empty. Received: y_cal.size=0")
        scores = self._scores(probs)[np.arange(y.size), y]
        n = scores.size
        rank = math.ceil((n + 1) * self.level)
        self.scores_ = np.sort(scores)
        self.quantile_ = float(self.scores_[rank - 1]) if rank <= n else math.inf
        self.n_calibration_ = n
        self.num_classes_ = probs.shape[1]
        return self

    def predict_set(self, probs) -> np.ndarray:
        """Boolean `(n, k)` membership of each class in each row's prediction set."""
        if not hasattr(self, "quantile_"):
            raise RuntimeError(
                "This ConformalClassifier instance is not fitted yet. "
                "Call `fit(probs_cal, y_cal)` first."
            )
        probs = _class_probs(probs, "probs")
        if probs.shape[1] != self.num_classes_:
            raise ValueError(
                f"`probs` has {probs.shape[1]} classes, but the ConformalClassifier was "
                f"fitted with {self.num_classes_}."
            )
        scores = self._scores(probs)
        if self.smoothing:
            return self._p_values(scores) > 1.0 - self.level
        # A small tolerance so float rounding of the same score does not drop a class.
        return scores <= self.quantile_ + 1e-12

    def _p_values(self, scores) -> np.ndarray:
        """Smoothed conformal p-values of scores `(n, k)`, one uniform draw per row."""
        scores = np.asarray(scores, np.float64)
        # Scores within 1e-12 count as equal (float rounding of the same score).
        below = np.searchsorted(self.scores_, scores - 1e-12, side="left")
        upto = np.searchsorted(self.scores_, scores + 1e-12, side="right")
        u = self._rng.uniform(size=scores.shape[:1] + (1,) * (scores.ndim - 1))
        n = self.scores_.size
        return ((n - upto) + u * (upto - below + 1)) / (n + 1)


def set_coverage(sets, y_true) -> float:
    """Fraction of rows whose prediction set holds the true label.

    Example:

    >>> set_coverage(np.array([[True, False], [True, True]]), [1, 0])
    0.5
    """
    sets = np.asarray(sets, dtype=bool)
    y = np.asarray(y_true).reshape(-1).astype(int)
    return float(np.mean(sets[np.arange(y.size), y]))


def set_size(sets) -> float:
    """Mean number of classes per prediction set.

    Example:

    >>> set_size(np.array([[True, False], [True, True]]))
    1.5
    """
    return float(np.asarray(sets, dtype=bool).sum(axis=1).mean())
