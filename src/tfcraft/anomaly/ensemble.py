"""EnsembleDetector: several density detectors, combined, with their disagreement as uncertainty.

Each member is fitted on the same rows; its anomaly scores are put on a common
scale against its own training scores, either as ranks (`"rank"`: the share
of training rows it scores lower, i.e. the empirical CDF) or as robust z-scores
(`"zscore"`: minus the median, over 1.4826 MAD). The ensemble's anomaly score
is the mean over members, `anomaly_score(X, return_std=True)` also returns the
standard deviation across members. The ensemble itself is calibrated like
every detector (cross-fitted by default), so `predict_proba` stays uniform on
normal data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone

from tfcraft.anomaly.base import Detector

__all__ = ["EnsembleDetector"]

RANK_TIE_TOLERANCE = 1e-5  # relative; float32 scores differ by ~1e-6 across batch sizes


class EnsembleDetector(Detector):
    """Combine density detectors by averaged ranks or standardised scores.

    Example:

    >>> import numpy as np
    >>> from tfcraft.anomaly import GaussianMixtureDetector
    >>> X = np.random.default_rng(0).normal(size=(200, 2))
    >>> ensemble = EnsembleDetector(
    ...     [GaussianMixtureDetector(1), GaussianMixtureDetector("bic")], seed=0
    ... ).fit(X)
    >>> score, std = ensemble.anomaly_score(X[:3], return_std=True)
    >>> score.shape, std.shape
    ((3,), (3,))

    Args:
        detectors: Unfitted tfcraft detectors (cloned at `fit`; each member's
            `seed` is replaced by one drawn from the ensemble's `seed`).
            `None` gives the default: a robust one-component Gaussian and a
            BIC-chosen robust mixture.
        combine: `"rank"` or `"zscore"`.
        contamination: Expected outlier share in (0, 0.5], or `"auto"`.
        calibration: `"cross_fit"` or `"holdout"`.
        seed: Integer seed.
    """

    def __init__(
        self,
        detectors: list[Detector] | None = None,
        *,
        combine: str = "rank",
        contamination: float | str = "auto",
        calibration: str = "cross_fit",
        seed: int | None = None,
    ) -> None:
        self.detectors = detectors
        self.combine = combine
        self.contamination = contamination
        self.calibration = calibration
        self.seed = seed

    def _members(self) -> list[Detector]:
        if self.detectors is None:
            from tfcraft.anomaly.mixture import GaussianMixtureDetector

            return [GaussianMixtureDetector(1), GaussianMixtureDetector("bic")]
        if not isinstance(self.detectors, list | tuple) or not self.detectors:
            raise ValueError(
                "Argument `detectors` must be a non-empty list of tfcraft detectors. "
                f"Received: detectors={self.detectors!r}"
            )
        for member in self.detectors:
            if not isinstance(member, Detector) or isinstance(member, EnsembleDetector):
                raise TypeError(
                    "Argument `detectors` must hold tfcraft detectors (not ensembles). "
                    f"Received: {member!r}"
                )
        return list(self.detectors)

    def _fit_model(self, X, X_val, seed: int, like=None):
        if self.combine not in ("rank", "zscore"):
            raise ValueError(
                "Argument `combine` must be one of ['rank', 'zscore']. "
                f"Received: combine={self.combine!r}"
            )
        rng = np.random.default_rng(seed)
        fitted = []
        for index, template in enumerate(self._members()):
            member = clone(template).set_params(seed=int(rng.integers(2**31 - 1)))
            member.n_features_in_ = self.n_features_in_
            previous = like[index][1] if like is not None else None
            model = member._fit_model(X, X_val, member.seed, like=previous)
            reference = np.sort(-member._log_prob(model, X))
            fitted.append((member, model, reference))
        return fitted

    def _member_scores(self, model, X) -> np.ndarray:
        """`(members, n)` member anomaly scores on the common scale."""
        out = []
        for member, member_model, reference in model:
            score = -member._log_prob(member_model, X)
            if self.combine == "rank":
                # Scores within float32 rounding of a training score count as ties,
                # so a row's rank does not depend on the batch it is scored in.
                tol = RANK_TIE_TOLERANCE * np.maximum(1.0, np.abs(score))
                below = np.searchsorted(reference, score - tol, side="left")
                above = np.searchsorted(reference, score + tol, side="right")
                out.append((below + above) / (2.0 * len(reference)))
            else:
                median = np.median(reference)
                mad = 1.4826 * np.median(np.abs(reference - median)) + 1e-12
                out.append((score - median) / mad)
        return np.stack(out)

    def _log_prob(self, model, X) -> np.ndarray:
        return -self._member_scores(model, X).mean(axis=0)

    def _sample(self, num: int, rng: np.random.Generator) -> np.ndarray:
        member, _, _ = self.model_[0]
        saved = getattr(member, "model_", None)
        member.model_ = self.model_[0][1]
        try:
            return member._sample(num, rng)
        finally:
            member.model_ = saved

    def anomaly_score(self, X: Any, return_std: bool = False):
        """Mean member score (higher = more anomalous); with `return_std`, also the spread."""
        X = self._checked(X)  # before `self.model_`: an unfitted ensemble raises NotFittedError
        scores = self._member_scores(self.model_, X)
        if return_std:
            return scores.mean(axis=0), scores.std(axis=0)
        return scores.mean(axis=0)

    def _checked(self, X):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        return self._validate(X, reset=False)

    def _explain(self, X: np.ndarray) -> np.ndarray:
        """The members' explanations, each scaled to unit total absolute size, averaged."""
        parts = []
        for member, member_model, _ in self.model_:
            saved = getattr(member, "model_", None)
            member.model_ = member_model
            try:
                terms = member._explain(X)
            finally:
                member.model_ = saved
            parts.append(terms / (np.abs(terms).sum(axis=1, keepdims=True) + 1e-12))
        return np.mean(parts, axis=0)

    @property
    def members_(self) -> list[Detector]:
        """The fitted members (each usable on its own; its calibration is the ensemble's)."""
        out = []
        for member, member_model, _ in self.model_:
            member.model_ = member_model
            member.calibration_scores_ = self.calibration_scores_
            member.offset_ = 0.0
            out.append(member)
        return out

    def _get_state(self) -> dict[str, np.ndarray]:
        state = {}
        for index, (member, member_model, reference) in enumerate(self.model_):
            member.model_ = member_model
            for key, value in member._get_state().items():
                state[f"m{index}/{key}"] = value
            state[f"m{index}#reference"] = reference
        return state

    def _set_state(self, state: dict[str, np.ndarray]):
        fitted = []
        for index, template in enumerate(self._members()):
            member = clone(template)
            member.n_features_in_ = self.n_features_in_
            prefix = f"m{index}/"
            sub = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
            fitted.append((member, member._set_state(sub), state[f"m{index}#reference"]))
        return fitted
