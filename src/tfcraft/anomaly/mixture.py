"""GaussianMixtureDetector: a robust (trimmed-likelihood) full-covariance Gaussian mixture.

The density is a `tfd.MixtureSameFamily` of `tfd.MultivariateNormalTriL`
components, each parameterised by its Cholesky factor (so every covariance
stays positive definite). It is fitted by trimmed EM, the mixture version of
the minimum covariance determinant (MCD) estimator:

1. *Concentration steps* (FastMCD's search): 100 small random starts get
   two EM steps each on a subsample, each step taken on the `h` rows with the
   highest likelihood under the current fit (`h = (n + d + 1) / 2` by
   default, MCD's maximal-breakdown choice); the best five are iterated to
   convergence on all rows and the highest trimmed likelihood wins. Outliers
   in the training data (up to half of it) then cannot pull the fit to them.
2. *Reweighting*: the squared Mahalanobis distances to each row's most likely
   component are rescaled so their median matches the chi-square median
   (MCD's consistency factor), rows inside the chi-square 97.5% quantile are
   kept and EM is run on them, regaining the efficiency lost by trimming.
3. *A variance floor* (`min_variance`, 1% of each feature's variance): the
   trimmed likelihood is unbounded on repeated values (zeros coding a missing
   value, discrete features), where a component would otherwise collapse.
   Optional Ledoit-Wolf `shrinkage` of each component's correlation matrix
   helps when a component has fewer rows than dimensions.

`num_components="bic"` fits 1, 2, ... components (up to `max_components`)
while the BIC of the trimmed log-likelihood improves, and keeps the best.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from scipy import special, stats

from tfcraft.anomaly.base import Detector

tfd = tfp.distributions

__all__ = ["GaussianMixtureDetector"]

RANDOM_STARTS = 100  # FastMCD-style elemental starts, screened by SCREEN_STEPS C-steps
SCREEN_ROWS = 1000  # the screening runs on a random subsample of this many rows
SCREEN_STEPS = 2
REFINED_STARTS = 5  # the best screened starts iterated to convergence on all rows
REWEIGHT_QUANTILE = 0.975
VARIANCE_FLOOR = 1e-6


class GaussianMixtureDetector(Detector):
    """Outlier detector whose density is a robustly fitted Gaussian mixture.

    Example:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(size=(300, 3)), rng.normal(6.0, 1.0, size=(30, 3))])
    >>> detector = GaussianMixtureDetector(num_components=1, seed=0).fit(X)
    >>> detector.n_components_
    1
    >>> bool(detector.anomaly_score(X[300:]).min() > detector.anomaly_score(X[:300]).max())
    True

    Args:
        num_components: Number of mixture components, or `"bic"` to choose
            1..`max_components` by the BIC of the trimmed log-likelihood.
        max_components: Largest number of components tried by `"bic"`.
        support_fraction: Share of rows each concentration step is fitted on,
            in (0, 1], or `"auto"` for MCD's `(n + d + 1) / (2 n)`. `1.0`
            turns trimming off (plain EM).
        reweight: Refit on the rows inside the chi-square 97.5% quantile after
            the trimmed fit (MCD's reweighting step).
        shrinkage: `"ledoit_wolf"` or a fixed intensity in [0, 1] towards
            uncorrelated features. The default, no shrinkage (the variance floor
            keeps components well conditioned), had the best mean ROC-AUC on the
            development sets of `benchmarks/anomaly_defaults_study.py`.
        min_variance: Floor of each component's variance of a feature, as a share
            of that feature's variance over all rows, in [0, 1): keeps a
            component from collapsing onto repeated values (zeros coding a
            missing value, a discrete feature), where the likelihood is unbounded.
        max_iter: EM iterations per stage.
        tol: Relative change of the objective that ends EM.
        contamination: Expected outlier share in (0, 0.5], or `"auto"` to
            threshold at the model's own 2.5% log-likelihood tail.
        calibration: `"cross_fit"` (5-fold cross-fitted calibration scores,
            final fit on all rows) or `"holdout"` (20% held out).
        seed: Integer seed; the fit is reproducible with a fixed seed.
    """

    def __init__(
        self,
        num_components: int | str = "bic",
        *,
        max_components: int = 4,
        support_fraction: float | str = "auto",
        reweight: bool = True,
        shrinkage: float | str = 0.0,
        min_variance: float = 0.01,
        max_iter: int = 100,
        tol: float = 1e-4,
        contamination: float | str = "auto",
        calibration: str = "cross_fit",
        seed: int | None = None,
    ) -> None:
        self.num_components = num_components
        self.max_components = max_components
        self.support_fraction = support_fraction
        self.reweight = reweight
        self.shrinkage = shrinkage
        self.min_variance = min_variance
        self.max_iter = max_iter
        self.tol = tol
        self.contamination = contamination
        self.calibration = calibration
        self.seed = seed

    # ------------------------------------------------------------------ fit
    def _check_params(self) -> None:
        k = self.num_components
        if not (
            k == "bic" or (isinstance(k, int | np.integer) and not isinstance(k, bool) and k >= 1)
        ):
            raise ValueError(
                "Argument `num_components` must be a positive integer or 'bic'. "
                f"Received: num_components={k!r}"
            )
        m = self.max_components
        if isinstance(m, bool) or not isinstance(m, int | np.integer) or m < 1:
            raise ValueError(
                "Argument `max_components` must be a positive integer. "
                f"Received: max_components={m!r}"
            )
        f = self.support_fraction
        if not (
            f == "auto" or (isinstance(f, float | int) and not isinstance(f, bool) and 0 < f <= 1)
        ):
            raise ValueError(
                "Argument `support_fraction` must be a float in (0, 1] or 'auto'. "
                f"Received: support_fraction={f!r}"
            )
        s = self.shrinkage
        if not (
            s == "ledoit_wolf"
            or (isinstance(s, float | int) and not isinstance(s, bool) and 0 <= s <= 1)
        ):
            raise ValueError(
                "Argument `shrinkage` must be 'ledoit_wolf' or a float in [0, 1]. "
                f"Received: shrinkage={s!r}"
            )

        v = self.min_variance
        if isinstance(v, bool) or not isinstance(v, float | int) or not 0 <= v < 1:
            raise ValueError(
                f"Argument `min_variance` must be a float in [0, 1). Received: min_variance={v!r}"
            )

    def _fit_model(
        self, X: np.ndarray, X_val: np.ndarray | None, seed: int, like: _Mixture | None = None
    ) -> _Mixture:
        del X_val
        self._check_params()
        X = X.astype(np.float64)
        n, d = X.shape
        self._variance_floor = float(self.min_variance) * np.maximum(X.var(axis=0), 1e-12)
        rng = np.random.default_rng(seed)
        fraction = (
            (n + d + 1) / (2 * n) if self.support_fraction == "auto" else self.support_fraction
        )
        h = int(np.clip(np.ceil(fraction * n), min(n, 2), n))
        if like is not None:  # a calibration fold keeps the final fit's number of components
            candidates = [len(like.weights)]
        elif self.num_components == "bic":
            candidates = range(1, int(self.max_components) + 1)
        else:
            candidates = [int(self.num_components)]
        best, best_bic = None, np.inf
        for k in candidates:
            if k > 1 and h < 2 * k:
                break
            params = self._fit_k(X, k, h, rng, like)
            top = np.partition(params.log_prob_np(X), n - h)[n - h :]
            num_params = (k - 1) + k * d + k * d * (d + 1) / 2
            bic = -2.0 * top.sum() + num_params * np.log(h)
            if bic >= best_bic:  # BIC stopped improving: more components will not help
                break
            best, best_bic = params, bic
        return best

    def _fit_k(
        self, X: np.ndarray, k: int, h: int, rng: np.random.Generator, like=None
    ) -> _Mixture:
        if like is not None:  # a calibration fold: warm start from the final fit
            mixture, _ = self._trimmed_em(X, like, h)
        else:
            mixture = self._best_start(X, k, h, rng)
        if self.reweight and h < len(X):
            distances = mixture.map_mahalanobis(X)
            d = X.shape[1]
            distances *= stats.chi2.median(d) / max(np.median(distances), 1e-12)
            keep = distances <= stats.chi2.ppf(REWEIGHT_QUANTILE, d)
            if keep.sum() >= max(h // 2, 2 * k):
                resp = mixture.responsibilities(X[keep])
                start = _m_step(X[keep], resp, self.shrinkage, self._variance_floor)
                mixture, _ = self._trimmed_em(X[keep], start, int(keep.sum()))
        return mixture

    def _best_start(self, X: np.ndarray, k: int, h: int, rng: np.random.Generator) -> _Mixture:
        """FastMCD's search for the trimmed fit with the highest likelihood.

        Many small random starts get two concentration steps each on a
        subsample; the best few are iterated to convergence on all rows.
        """
        n = len(X)
        sub = rng.choice(n, SCREEN_ROWS, replace=False) if n > SCREEN_ROWS else np.arange(n)
        h_sub = max(min(len(sub), 2 * k), int(np.ceil(h / n * len(sub))))
        screened = [
            self._trimmed_em(X[sub], start, h_sub, max_iter=SCREEN_STEPS)
            for start in _starts(X[sub], k, h_sub, rng, RANDOM_STARTS, self._variance_floor)
        ]
        screened.sort(key=lambda fit: -fit[1])
        fits = [self._trimmed_em(X, start, h) for start, _ in screened[:REFINED_STARTS]]
        return max(fits, key=lambda fit: fit[1])[0]

    def _trimmed_em(
        self, X: np.ndarray, mixture: _Mixture, h: int, max_iter: int | None = None
    ) -> tuple[_Mixture, float]:
        previous = -np.inf
        objective = -np.inf
        for _ in range(int(self.max_iter if max_iter is None else max_iter)):
            joint = mixture.joint_log_prob_np(X)
            log_prob = special.logsumexp(joint, axis=1)
            support = np.argpartition(-log_prob, h - 1)[:h] if h < len(X) else np.arange(len(X))
            objective = float(log_prob[support].sum())
            if np.isfinite(previous) and abs(objective - previous) <= self.tol * abs(previous):
                break
            previous = objective
            resp = np.exp(joint[support] - log_prob[support, None])
            mixture = _m_step(X[support], resp, self.shrinkage, self._variance_floor)
        return mixture, objective

    # -------------------------------------------------------------- scoring
    def _log_prob(self, model: _Mixture, X: np.ndarray) -> np.ndarray:
        return model.log_prob_np(X.astype(np.float64))

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self.model_.log_prob(X)  # the tfd.MixtureSameFamily, one cached tf.function

    def _sample(self, num: int, rng: np.random.Generator) -> np.ndarray:
        return self.model_.sample(num, rng)

    def _explain(self, X: np.ndarray) -> np.ndarray:
        """Per-feature Mahalanobis terms of the row's most likely component.

        Each is `0.5 (x - mu)_j [Sigma^-1 (x - mu)]_j`; they sum to half the
        squared Mahalanobis distance.
        """
        return self.model_.mahalanobis_terms(X.astype(np.float64))

    @property
    def n_components_(self) -> int:
        """Number of fitted components."""
        return len(self.model_.weights)

    @property
    def weights_(self) -> np.ndarray:
        """Mixture weights, shape `(k,)`."""
        return self.model_.weights

    @property
    def means_(self) -> np.ndarray:
        """Component means, shape `(k, d)`."""
        return self.model_.means

    @property
    def covariances_(self) -> np.ndarray:
        """Component covariances `L L^T`, shape `(k, d, d)`."""
        chol = self.model_.scale_trils
        return np.einsum("kij,klj->kil", chol, chol)

    def distribution(self) -> tfd.MixtureSameFamily:
        """The fitted density as a `tfd.MixtureSameFamily` (float64)."""
        return self.model_.distribution()

    def _get_state(self) -> dict[str, np.ndarray]:
        m = self.model_
        return {"weights": m.weights, "means": m.means, "scale_trils": m.scale_trils}

    def _set_state(self, state: dict[str, np.ndarray]) -> _Mixture:
        mixture = _Mixture(state["weights"], state["means"], state["scale_trils"])
        if mixture.means.shape[1] != self.n_features_in_:
            raise ValueError(
                f"means have {mixture.means.shape[1]} features, config says {self.n_features_in_}"
            )
        return mixture


class _Mixture:
    """Fitted mixture parameters; `log_prob` runs one cached `tf.function` (no retracing)."""

    def __init__(self, weights: np.ndarray, means: np.ndarray, scale_trils: np.ndarray) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        self.means = np.asarray(means, dtype=np.float64)
        self.scale_trils = np.asarray(scale_trils, dtype=np.float64)
        self._function = None

    def distribution(self) -> tfd.MixtureSameFamily:
        return tfd.MixtureSameFamily(
            mixture_distribution=tfd.Categorical(probs=tf.constant(self.weights)),
            components_distribution=tfd.MultivariateNormalTriL(
                loc=tf.constant(self.means), scale_tril=tf.constant(self.scale_trils)
            ),
        )

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        if self._function is None:
            distribution = self.distribution()
            spec = tf.TensorSpec([None, self.means.shape[1]], tf.float64)
            self._function = tf.function(distribution.log_prob, input_signature=[spec])
        return self._function(tf.constant(X, dtype=tf.float64)).numpy()

    def joint_log_prob_np(self, X: np.ndarray) -> np.ndarray:
        """`log w_k + log N(x | mu_k, L_k L_k^T)`, shape `(n, k)` (NumPy, for EM)."""
        n, d = X.shape
        out = np.empty((n, len(self.weights)))
        for k, (mean, chol) in enumerate(zip(self.means, self.scale_trils, strict=True)):
            z = (X - mean) @ _inverse_tril(chol).T  # a d x d inverse and a matmul: fast
            out[:, k] = (
                np.log(max(self.weights[k], 1e-300))
                - 0.5 * np.sum(z * z, axis=1)
                - np.log(np.diag(chol)).sum()
                - 0.5 * d * np.log(2 * np.pi)
            )
        return out

    def log_prob_np(self, X: np.ndarray) -> np.ndarray:
        return special.logsumexp(self.joint_log_prob_np(X), axis=1)

    def responsibilities(self, X: np.ndarray) -> np.ndarray:
        joint = self.joint_log_prob_np(X)
        return np.exp(joint - special.logsumexp(joint, axis=1, keepdims=True))

    def _map_residuals(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row's residual `x - mu_k` and whitened residual for its most likely component."""
        best = np.argmax(self.joint_log_prob_np(X), axis=1)
        diff = X - self.means[best]
        whitened = np.empty_like(diff)
        for k, chol in enumerate(self.scale_trils):
            rows = best == k
            if rows.any():
                whitened[rows] = diff[rows] @ _inverse_tril(chol).T
        return best, diff, whitened

    def map_mahalanobis(self, X: np.ndarray) -> np.ndarray:
        _, _, whitened = self._map_residuals(X)
        return np.sum(whitened * whitened, axis=1)

    def mahalanobis_terms(self, X: np.ndarray) -> np.ndarray:
        best, diff, whitened = self._map_residuals(X)
        precision_diff = np.empty_like(diff)
        for k, chol in enumerate(self.scale_trils):
            rows = best == k
            if rows.any():
                precision_diff[rows] = whitened[rows] @ _inverse_tril(chol)
        return 0.5 * diff * precision_diff

    def sample(self, num: int, rng: np.random.Generator) -> np.ndarray:
        component = rng.choice(len(self.weights), size=num, p=self.weights / self.weights.sum())
        noise = rng.standard_normal((num, self.means.shape[1]))
        return (
            self.means[component] + np.einsum("nij,nj->ni", self.scale_trils[component], noise)
        ).astype(np.float32)


def _inverse_tril(chol: np.ndarray) -> np.ndarray:
    """The inverse of a lower-triangular Cholesky factor.

    `np.linalg.inv` of a d x d factor: scipy's `solve_triangular` took 17 ms per
    call here (its bundled OpenBLAS spins threads), numpy's takes 10 us.
    """
    return np.tril(np.linalg.inv(chol))


def _starts(
    X: np.ndarray, k: int, h: int, rng: np.random.Generator, num_random: int, floor: np.ndarray
) -> list[_Mixture]:
    """Starting fits: all rows, a coordinate-wise-median start, and random small subsets."""
    n, d = X.shape
    starts = []
    median = np.median(X, axis=0)
    mad = np.median(np.abs(X - median), axis=0) * 1.4826
    central = np.argsort(np.sum(((X - median) / np.maximum(mad, VARIANCE_FLOOR)) ** 2, axis=1))[:h]
    seeds = [np.arange(n), central]
    size = min(n, max(d + 1, 2 * k))
    seeds += [
        rng.choice(n, size=max(size, min(n, 5 * k)), replace=False) for _ in range(num_random)
    ]
    for rows in seeds:
        resp = _kmeans_pp_responsibilities(X[rows], k, rng)
        starts.append(_m_step(X[rows], resp, "ledoit_wolf", floor))
    return starts


def _kmeans_pp_responsibilities(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Hard assignments of `X` to `k` k-means++ seeds (a few Lloyd steps)."""
    if k == 1:
        return np.ones((len(X), 1))
    centers = [X[rng.integers(len(X))]]
    for _ in range(1, k):
        dist = np.min([np.sum((X - c) ** 2, axis=1) for c in centers], axis=0)
        total = dist.sum()
        p = dist / total if total > 0 else np.full(len(X), 1.0 / len(X))
        centers.append(X[rng.choice(len(X), p=p)])
    centers = np.array(centers)
    for _ in range(10):
        labels = np.argmin(((X[:, None, :] - centers[None]) ** 2).sum(-1), axis=1)
        for j in range(k):
            if np.any(labels == j):
                centers[j] = X[labels == j].mean(axis=0)
    resp = np.full((len(X), k), 1e-3)
    resp[np.arange(len(X)), labels] = 1.0
    return resp / resp.sum(axis=1, keepdims=True)


def _m_step(X: np.ndarray, resp: np.ndarray, shrinkage: float | str, floor: np.ndarray) -> _Mixture:
    counts = resp.sum(axis=0) + 1e-10
    weights = counts / counts.sum()
    means = (resp.T @ X) / counts[:, None]
    chols = np.stack(
        [_shrunk_cholesky(X, resp[:, j], means[j], shrinkage, floor) for j in range(resp.shape[1])]
    )
    return _Mixture(weights, means, chols)


def _shrunk_cholesky(
    X: np.ndarray, weights: np.ndarray, mean: np.ndarray, shrinkage, floor: np.ndarray
) -> np.ndarray:
    """Cholesky factor of the weighted covariance, its correlation shrunk towards identity."""
    total = max(weights.sum(), 1e-10)  # an emptied component keeps the floor variance
    diff = X - mean
    variance = (weights @ (diff * diff)) / total
    scale = np.sqrt(np.maximum(variance, np.maximum(floor, VARIANCE_FLOOR * variance.max())))
    z = diff / scale
    correlation = (z * weights[:, None]).T @ z / total
    d = X.shape[1]
    if shrinkage == "ledoit_wolf":
        intensity = _ledoit_wolf_intensity(z, weights, correlation)
    else:
        intensity = float(shrinkage)
    target = np.eye(d) * np.mean(np.diag(correlation))
    shrunk = (1.0 - intensity) * correlation + intensity * target
    shrunk[np.diag_indices(d)] += 1e-9
    covariance = shrunk * np.outer(scale, scale)
    try:
        return np.linalg.cholesky(covariance)
    except np.linalg.LinAlgError:
        covariance[np.diag_indices(d)] += 1e-6 * np.mean(np.diag(covariance))
        return np.linalg.cholesky(covariance)


def _ledoit_wolf_intensity(z: np.ndarray, weights: np.ndarray, correlation: np.ndarray) -> float:
    """Ledoit-Wolf (2004) shrinkage intensity for weighted standardised rows `z`."""
    d = z.shape[1]
    mu = np.trace(correlation) / d
    delta = np.sum((correlation - mu * np.eye(d)) ** 2)
    if delta <= 0:
        return 1.0
    total = weights.sum()
    sq = np.sum(z * z, axis=1)
    quad = np.sum((z @ correlation) * z, axis=1)
    per_row = sq**2 - 2 * quad + np.sum(correlation**2)
    beta = float(np.sum(weights**2 * per_row) / total**2)
    return float(np.clip(beta / delta, 0.0, 1.0))
