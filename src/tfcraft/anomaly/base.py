"""The Detector contract: one scikit-learn outlier-detector API for every density model.

A detector models the density of the normal data. `score_samples` is the
log-likelihood (higher = more normal, as `sklearn.mixture.GaussianMixture`),
`anomaly_score` its negative (higher = more anomalous, as PyOD),
`decision_function` the log-likelihood minus the threshold `offset_` (negative =
outlier) and `predict` gives +1 for inliers and -1 for outliers (as
`sklearn.ensemble.IsolationForest`).

`predict_proba` is a probability that means something: the share of held-out
(or cross-fitted) training scores below the row's anomaly score, i.e. one minus
a conformal p-value, so on new data from the training distribution it is
uniform on [0, 1] and `P(proba > 0.99) ~ 1%`.

Subclasses implement three hooks: `_fit_model(X, X_val, seed) -> model`,
`_log_prob(model, X) -> (n,)` and `_explain(X) -> (n, d)`, plus the
`_get_state` / `_set_state` pair that `save` / `load` use (arrays only, no pickle).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from tfcraft._io import replace_folder_atomic

__all__ = ["Detector", "check_contamination", "load_detector"]

_CONFIG = "config.json"
_WEIGHTS = "weights.npz"
_FORMAT = "tfcraft.anomaly.Detector"
_MEMBERS = "__detectors__"
_TUPLE = "__tuple__"
_PICKLED_STATE = "__tfcraft_state__"
AUTO_TAIL = 0.025  # "auto" threshold: the model's own 2.5% tail, aligned to held-out scores
SCALE_RATIO_WARNING = 1e3
CROSS_FIT_FOLDS = 5
HOLDOUT_FRACTION = 0.2


def check_contamination(contamination: object) -> float | str:
    """Return `contamination` if it is `"auto"` or a float in (0, 0.5], else raise.

    Example:

    >>> check_contamination(0.1), check_contamination("auto")
    (0.1, 'auto')
    """
    if isinstance(contamination, str):
        if contamination == "auto":
            return contamination
    elif (
        isinstance(contamination, int | float)
        and not isinstance(contamination, bool)
        and 0.0 < contamination <= 0.5
    ):
        return float(contamination)
    raise ValueError(
        "Argument `contamination` must be a float in (0, 0.5] or 'auto'. "
        f"Received: contamination={contamination!r}"
    )


class Detector(OutlierMixin, BaseEstimator):
    """Base class of the tfcraft density detectors (not used directly).

    Subclasses declare every constructor argument explicitly (scikit-learn's
    `get_params` reads the signature) and always have `contamination`,
    `calibration` and `seed`.
    """

    _min_samples = 2
    _calibration_default = "cross_fit"

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: object = None) -> Detector:
        """Fit the density on `X` (labels, if given, are ignored).

        Args:
            X: Array of shape `(n_samples, n_features)`.
            y: Ignored; present for scikit-learn compatibility.

        Returns:
            `self`.

        Raises:
            ValueError: bad `contamination`, NaN/Inf, 1-D or empty `X`, or too few rows.
                A failed fit leaves the detector as it was (fitted or not).
        """
        del y
        before = dict(self.__dict__)
        try:
            return self._fit(X)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise

    def _fit(self, X: Any) -> Detector:
        check_contamination(self.contamination)
        calibration = self.calibration
        if calibration not in ("cross_fit", "holdout"):
            raise ValueError(
                "Argument `calibration` must be one of ['cross_fit', 'holdout']. "
                f"Received: calibration={calibration!r}"
            )
        rng = np.random.default_rng(self.seed)
        seed = int(rng.integers(2**31 - 1))
        if _is_dataset(X):
            return self._fit_stream(X, rng, seed)
        X = self._validate(X, reset=True)
        self._warn_on_scales(X)
        if calibration == "cross_fit":
            folds = np.array_split(rng.permutation(len(X)), min(CROSS_FIT_FOLDS, len(X)))
            model = self._fit_model(X, None, seed)
            held_out = []
            for index, fold in enumerate(folds):
                rest = np.setdiff1d(np.arange(len(X)), fold)
                fold_model = self._fit_model(X[rest], None, seed + 1 + index, like=model)
                held_out.append(-self._log_prob(fold_model, X[fold]))
            calibration_scores = np.concatenate(held_out)
        else:
            order = rng.permutation(len(X))
            num_val = max(1, round(HOLDOUT_FRACTION * len(X)))
            val, train = X[order[:num_val]], X[order[num_val:]]
            model = self._fit_model(train, val, seed)
            calibration_scores = -self._log_prob(model, val)
        self.model_ = model
        self.calibration_scores_ = np.sort(np.asarray(calibration_scores, dtype=np.float64))
        self.offset_ = self._choose_offset(X, rng)
        return self

    def _fit_stream(self, dataset, rng: np.random.Generator, seed: int) -> Detector:
        """Fit on a `tf.data.Dataset` of feature batches (memory bounded by a batch).

        Every 5th batch is held out (early stopping and calibration), the rest
        trains; `contamination` then thresholds the held-out scores.
        """
        import tensorflow as tf

        if not getattr(self, "_supports_streaming", False):
            raise TypeError(
                f"{type(self).__name__} fits in-memory arrays only; pass a NumPy array. "
                f"Received: X of type {type(dataset).__name__}"
            )
        first = next(iter(dataset.take(1)), None)
        if first is None:
            raise ValueError("X is an empty dataset. Received: X with 0 batches")
        first = first[0] if isinstance(first, tuple | list) else first
        if len(first.shape) != 2:
            raise ValueError(
                "X must yield 2-D batches (rows, features). "
                f"Received: batch shape {tuple(first.shape)}"
            )
        self.n_features_in_ = int(first.shape[1])
        if isinstance(dataset.element_spec, tuple | list):  # (x, y[, w]) batches: keep x
            dataset = dataset.map(lambda *parts: parts[0])
        # every batch, held out or not, is checked as it streams by
        dataset = dataset.map(
            lambda b: tf.debugging.assert_all_finite(b, "X contains NaN or inf values")
        )
        indexed = dataset.enumerate()
        train = indexed.filter(lambda i, _: i % 5 != 4).map(lambda _, b: b)
        val = indexed.filter(lambda i, _: i % 5 == 4).map(lambda _, b: b)
        if next(iter(val.take(1)), None) is None:
            val = dataset.take(1)
        model = self._fit_model(train, val, seed)
        self.model_ = model
        scores = -self._log_prob(model, val)
        self.calibration_scores_ = np.sort(np.asarray(scores, dtype=np.float64))
        if self.contamination == "auto":
            self.offset_ = self._choose_offset(None, rng)
        else:
            self.offset_ = float(np.quantile(-self.calibration_scores_, self.contamination))
        return self

    def _validate(self, X: Any, reset: bool) -> np.ndarray:
        """Check `X` (2-D, finite, enough rows, right width) and return it as float32."""
        array = np.asarray(X) if not hasattr(X, "__array__") else X
        shape = getattr(array, "shape", None)
        if shape is not None and len(shape) == 2 and shape[0] < self._min_samples and reset:
            raise ValueError(
                f"X has {shape[0]} sample(s), but {type(self).__name__} needs at least "
                f"{self._min_samples} samples. Received: X.shape={tuple(shape)}"
            )
        try:
            complex_values = np.iscomplexobj(array)  # validate_data rejects these below
            values = (
                np.asarray(array, dtype=np.float64)
                if shape is not None and not complex_values
                else None
            )
        except (TypeError, ValueError):
            values = None
        if (
            values is not None
            and values.ndim == 2
            and values.size
            and not np.isfinite(values).all()
        ):
            bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
            raise ValueError(
                f"X contains NaN or inf values in {bad.size} row(s) "
                f"(first rows {bad[:5].tolist()}); "
                f"drop or impute them first. Received: X.shape={values.shape}"
            )
        X = validate_data(
            self,
            X,
            reset=reset,
            dtype=[np.float64, np.float32],
            ensure_min_samples=self._min_samples if reset else 1,
        )
        return np.ascontiguousarray(X, dtype=np.float32)

    def _warn_on_scales(self, X: np.ndarray) -> None:
        scales = X.std(axis=0)
        scales = scales[scales > 0]
        if scales.size > 1 and scales.max() / scales.min() > SCALE_RATIO_WARNING:
            warnings.warn(
                f"The features' standard deviations range from {scales.min():.3g} to "
                f"{scales.max():.3g} (ratio > {SCALE_RATIO_WARNING:g}); put a "
                "`sklearn.preprocessing.StandardScaler` before the detector in a Pipeline.",
                stacklevel=3,
            )

    def _choose_offset(self, X: np.ndarray, rng: np.random.Generator) -> float:
        if self.contamination == "auto":
            return -self._auto_threshold(-self._log_prob(self.model_, self._sample(4096, rng)))
        return float(np.quantile(self._log_prob(self.model_, X), self.contamination))

    def _auto_threshold(self, model_scores: np.ndarray) -> float:
        """The anomaly score of the model's own `AUTO_TAIL` tail, aligned to the held-out scores.

        The upper `AUTO_TAIL` quantile of the anomaly scores of rows sampled
        from the model, after matching their median and lower quartile spread
        to the held-out calibration scores' (MCD's consistency correction: a
        model fitted on the central rows is too narrow for real, non-Gaussian
        normal data). Outliers (fewer than half the rows, and on the high side)
        move neither statistic much.
        """
        cal = self.calibration_scores_
        cal_mid, cal_low = np.quantile(cal, 0.5), np.quantile(cal, 0.25)
        mid, low, tail = np.quantile(model_scores, [0.5, 0.25, 1.0 - AUTO_TAIL])
        scale = (cal_mid - cal_low) / (mid - low) if mid > low and cal_mid > cal_low else 1.0
        return float(cal_mid + (tail - mid) * scale)

    # -------------------------------------------------------------- scoring
    def score_samples(self, X: Any) -> np.ndarray:
        """Log-likelihood of each row under the fitted density (higher = more normal).

        `X` is an array, or for the detectors that fit from `tf.data` also a
        `tf.data.Dataset` of feature batches (scored batch by batch).
        """
        check_is_fitted(self)
        if _is_dataset(X):
            return self._score_stream(X)
        return self._score(self._validate(X, reset=False))

    def _score_stream(self, dataset) -> np.ndarray:
        """Scores of a `tf.data.Dataset` of `(rows, features)` batches, memory bounded by one."""
        import tensorflow as tf

        if not getattr(self, "_supports_streaming", False):
            raise TypeError(
                f"{type(self).__name__} scores in-memory arrays only; pass a NumPy array. "
                f"Received: X of type {type(dataset).__name__}"
            )
        spec = dataset.element_spec
        spec = spec[0] if isinstance(spec, tuple | list) else spec
        width = spec.shape[-1] if spec.shape.rank == 2 else None
        if spec.shape.rank != 2 or (width is not None and width != self.n_features_in_):
            raise ValueError(
                f"X must yield 2-D batches with {self.n_features_in_} features, as "
                f"{type(self).__name__} was fitted with. Received: batch shape {spec.shape}"
            )
        if isinstance(dataset.element_spec, tuple | list):
            dataset = dataset.map(lambda *parts: parts[0])
        dataset = dataset.map(
            lambda b: tf.debugging.assert_all_finite(b, "X contains NaN or inf values")
        )
        return np.asarray(self._log_prob(self.model_, dataset), dtype=np.float64)

    def anomaly_score(self, X: Any) -> np.ndarray:
        """Negative log-likelihood of each row (higher = more anomalous, as PyOD)."""
        return -self.score_samples(X)

    def decision_function(self, X: Any) -> np.ndarray:
        """`score_samples(X) - offset_`: negative for outliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """+1 for inliers, -1 for outliers (rows below the `contamination` threshold)."""
        return np.where(self.decision_function(X) >= 0, 1, -1)

    def predict_proba(self, X: Any, return_std: bool = False):
        """Columns `[P(inlier), P(outlier)]`, calibrated on held-out normal-data scores.

        `P(outlier)` is the share of the calibration scores (held-out or
        cross-fitted anomaly scores of the training rows) below the row's
        anomaly score: on new rows from the training distribution it is
        uniform on [0, 1].

        Args:
            X: Array of shape `(n_samples, n_features)`.
            return_std: Also return the standard error of `P(outlier)` (a
                binomial proportion over the calibration scores).

        Returns:
            `(n, 2)` probabilities, and `(n,)` standard errors when `return_std`.
        """
        outlier = self._tail_probability(self.anomaly_score(X))
        proba = np.stack([1.0 - outlier, outlier], axis=1)
        if not return_std:
            return proba
        count = len(self.calibration_scores_) + 1
        return proba, np.sqrt(outlier * (1.0 - outlier) / count)

    def _tail_probability(self, scores: np.ndarray) -> np.ndarray:
        calibration = self.calibration_scores_
        below = np.searchsorted(calibration, scores, side="left")
        ties = np.searchsorted(calibration, scores, side="right") - below
        # The new row is one more in the ranking (+0.5: its own mid-rank): P is
        # (rank - 0.5) / (n + 1), symmetric in [0.5/(n+1), (n+0.5)/(n+1)] with
        # mean 1/2 on normal data, never exactly 0 or 1.
        return (below + 0.5 * ties + 0.5) / (len(calibration) + 1)

    def threshold_for_fpr(self, X_normal: Any, fpr: float) -> float:
        """The anomaly-score threshold that flags a share `fpr` of `X_normal`.

        Args:
            X_normal: Rows known to be normal (not used in `fit`).
            fpr: Target false-positive rate in (0, 1).

        Returns:
            A threshold `t`: rows with `anomaly_score(X) > t` are called outliers.
        """
        if isinstance(fpr, bool) or not isinstance(fpr, int | float) or not 0.0 < fpr < 1.0:
            raise ValueError(f"Argument `fpr` must be a float in (0, 1). Received: fpr={fpr!r}")
        return float(np.quantile(self.anomaly_score(X_normal), 1.0 - fpr, method="higher"))

    def explain(self, X: Any) -> np.ndarray:
        """Each feature's contribution to each row's anomaly score, shape `(n, d)`.

        Larger = that feature makes the row more anomalous; see each detector
        for what the terms are.
        """
        check_is_fitted(self)
        return self._explain(self._validate(X, reset=False))

    # --------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted detector to the folder `path` (config JSON + weights `.npz`).

        The folder is written under a temporary name and renamed into place:
        after a crash `path` holds the old detector or the new one.
        """
        import tfcraft

        check_is_fitted(self)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"state/{k}": np.asarray(v) for k, v in self._get_state().items()}
        arrays["calibration_scores_"] = self.calibration_scores_
        config = {
            "format": _FORMAT,
            "class": type(self).__name__,
            "tfcraft_version": tfcraft.__version__,
            "params": _json_params(self.get_params(deep=False)),
            "n_features_in_": int(self.n_features_in_),
            "offset_": float(self.offset_),
        }
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        try:
            np.savez(tmp / _WEIGHTS, **arrays)
            (tmp / _CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
            replace_folder_atomic(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> Detector:
        """Load a detector written by `save`; refuses another class or tfcraft version.

        Raises:
            ValueError: no detector folder, a corrupt one, another class or version.
        """
        import tfcraft

        path = Path(path)
        config = _read_config(path)
        if config.get("class") != cls.__name__ and cls is not Detector:
            raise ValueError(
                f"{str(path)!r} holds a {config.get('class')}, not a {cls.__name__}. "
                f"Received: class={config.get('class')!r}"
            )
        if config.get("tfcraft_version") != tfcraft.__version__:
            raise ValueError(
                f"{str(path)!r} was saved by tfcraft {config.get('tfcraft_version')}, "
                f"this is tfcraft {tfcraft.__version__}; refit and save it again. "
                f"Received: tfcraft_version={config.get('tfcraft_version')!r}"
            )
        target = cls if cls is not Detector else _detector_class(config.get("class"), path)
        try:
            with np.load(path / _WEIGHTS, allow_pickle=False) as archive:
                arrays = {k: archive[k] for k in archive.files}
            detector = target(**_params_from_json(config["params"], path))
            detector.n_features_in_ = int(config["n_features_in_"])
            detector.offset_ = float(config["offset_"])
            detector.calibration_scores_ = arrays.pop("calibration_scores_")
            state = {k.removeprefix("state/"): v for k, v in arrays.items()}
            detector.model_ = detector._set_state(state)
        except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile) as error:
            raise ValueError(
                f"The detector folder {str(path)!r} is corrupt or incomplete ({error}). "
                f"Received: path={str(path)!r}"
            ) from error
        return detector

    # ------------------------------------------------------- subclass hooks
    def _fit_model(self, X: np.ndarray, X_val: np.ndarray | None, seed: int, like=None):
        """Fit one model; `like` is the final model when fitting a calibration fold."""
        raise NotImplementedError  # abstract: each detector implements it

    def _log_prob(self, model, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError  # abstract: each detector implements it

    def _score(self, X: np.ndarray) -> np.ndarray:
        """Log-likelihood under the final model (a subclass may use a compiled path)."""
        return self._log_prob(self.model_, X)

    def _sample(self, num: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError  # abstract: each detector implements it

    def _explain(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError  # abstract: each detector implements it

    def _get_state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError  # abstract: each detector implements it

    def _set_state(self, state: dict[str, np.ndarray]):
        raise NotImplementedError  # abstract: each detector implements it

    # Pickling (joblib, sklearn's clone-and-ship habits) goes through the same
    # arrays-only state as `save`: Keras models and cached tf.functions do not pickle.
    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        if "model_" in state:
            state["model_"] = {_PICKLED_STATE: self._get_state()}
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        model = self.__dict__.get("model_")
        if isinstance(model, dict) and _PICKLED_STATE in model:
            self.model_ = self._set_state(dict(model[_PICKLED_STATE]))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.seed is None
        return tags


def _is_dataset(X: object) -> bool:
    return type(X).__module__.startswith("tensorflow") and hasattr(X, "element_spec")


def load_detector(path: str | os.PathLike) -> Detector:
    """Load any tfcraft detector folder written by `save` (the class is read from it).

    Example:

    >>> import tempfile, numpy as np
    >>> from tfcraft.anomaly import GaussianMixtureDetector
    >>> X = np.random.default_rng(0).normal(size=(200, 2))
    >>> detector = GaussianMixtureDetector(num_components=1, seed=0).fit(X)
    >>> folder = tempfile.mkdtemp() + "/gmm"
    >>> detector.save(folder)
    >>> type(load_detector(folder)).__name__
    'GaussianMixtureDetector'
    """
    return Detector.load(path)


def _detector_class(name: object, path: Path) -> type:
    from tfcraft import anomaly

    target = getattr(anomaly, str(name), None)
    if not (isinstance(target, type) and issubclass(target, Detector)):
        raise ValueError(f"{str(path)!r} names no tfcraft detector class. Received: class={name!r}")
    return target


def _read_config(path: Path) -> dict:
    config_path = path / _CONFIG
    if not config_path.is_file():
        raise ValueError(
            f"No tfcraft detector at {str(path)!r}: {_CONFIG} is missing. "
            f"Received: path={str(path)!r}"
        )
    try:
        config = json.loads(config_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{str(config_path)!r} is not valid JSON ({error}).") from error
    if not isinstance(config, dict) or config.get("format") != _FORMAT:
        fmt = config.get("format") if isinstance(config, dict) else None
        raise ValueError(
            f"{str(config_path)!r} is not a tfcraft detector config. Received: format={fmt!r}"
        )
    return config


def _json_params(params: dict) -> dict:
    """Constructor arguments as JSON; member detectors become `{"class", "params"}` records."""
    out = {}
    for key, value in params.items():
        if (
            isinstance(value, list | tuple)
            and value
            and all(isinstance(v, Detector) for v in value)
        ):
            value = {
                _MEMBERS: [
                    {"class": type(v).__name__, "params": _json_params(v.get_params(deep=False))}
                    for v in value
                ]
            }
        elif isinstance(value, tuple):
            value = {_TUPLE: list(value)}
        out[key] = value.tolist() if isinstance(value, np.ndarray) else value
    json.dumps(out)  # fail before anything is written
    return out


def _params_from_json(params: dict, path: Path) -> dict:
    out = {}
    for key, value in params.items():
        if isinstance(value, dict) and _MEMBERS in value:
            value = [
                _detector_class(m["class"], path)(**_params_from_json(m["params"], path))
                for m in value[_MEMBERS]
            ]
        elif isinstance(value, dict) and _TUPLE in value:
            value = tuple(value[_TUPLE])
        out[key] = value
    return out
