"""VAEDetector: a variational autoencoder scored by the importance-weighted bound (IWAE).

`log p(x) >= log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x)`, `z_k ~ q(z | x)`
(Burda et al. 2016): the bound tightens as `K = num_importance_samples` grows
and equals the ELBO at `K = 1`. The encoder gives a diagonal Gaussian
`q(z | x)`, the decoder a Gaussian `p(x | z)` with a learned per-feature
scale. With `hidden_units=()` both are linear and the model is probabilistic
PCA, whose exact `log p(x)` is known (the reference test).

Scoring draws its noise from a fixed seed (stateless) and every row uses the
same `K` standard-normal draws (common random numbers, each mapped through
its own `q(z | x)`), so a row's score does not depend on the call, on the
other rows in the batch or on their order.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from sklearn.utils.validation import check_is_fitted

from tfcraft.anomaly.base import Detector
from tfcraft.anomaly.neural import (
    CompiledScorer,
    check_neural_params,
    fit_density,
    split_validation,
)

tfd = tfp.distributions

__all__ = ["VAEDetector"]

HALF_LOG_TWO_PI = 0.5 * float(np.log(2.0 * np.pi))
TRAINING_SAMPLES = 4


class VAEDetector(Detector):
    """Outlier detector whose density is a VAE, scored by the IWAE bound.

    Example:

    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(256, 3)).astype("float32")
    >>> detector = VAEDetector(hidden_units=(16,), epochs=3, seed=0).fit(X)
    >>> detector.score_samples(X[:2]).shape
    (2,)

    Args:
        latent_dim: Size of `z`; `None` gives `max(1, min(8, d // 2))`.
        hidden_units: Widths of the encoder's (and, reversed, decoder's) hidden layers.
        num_importance_samples: `K` of the scoring bound (`1` = the ELBO).
        support_fraction: Share of each batch's rows (lowest NLL) the loss counts.
        epochs: Training epochs, or `"auto"` (about 1,500 steps).
        batch_size: Rows per step.
        learning_rate: Adam's learning rate.
        patience: Early-stopping patience in epochs.
        contamination: Expected outlier share in (0, 0.5], or `"auto"`.
        calibration: `"holdout"` or `"cross_fit"`.
        seed: Integer seed.

    Attributes:
        history_: The Trainer's per-epoch logs of the final fit (`loss`, the
            trimmed NLL; `nll`; `val_loss`, ...); not kept by `save`.
    """

    _supports_streaming = True

    def __init__(
        self,
        latent_dim: int | None = None,
        *,
        hidden_units: tuple[int, ...] = (64, 64),
        num_importance_samples: int = 64,
        support_fraction: float = 0.75,
        epochs: int | str = "auto",
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        patience: int = 20,
        contamination: float | str = "auto",
        calibration: str = "holdout",
        seed: int | None = None,
    ) -> None:
        self.latent_dim = latent_dim
        self.hidden_units = hidden_units
        self.num_importance_samples = num_importance_samples
        self.support_fraction = support_fraction
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.contamination = contamination
        self.calibration = calibration
        self.seed = seed

    def _build(self, num_features: int, seed: int) -> _VAE:
        check_neural_params(self)
        k = self.num_importance_samples
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(
                "Argument `num_importance_samples` must be a positive integer. "
                f"Received: num_importance_samples={k!r}"
            )
        latent = (
            self.latent_dim if self.latent_dim is not None else max(1, min(8, num_features // 2))
        )
        if isinstance(latent, bool) or not isinstance(latent, int) or latent < 1:
            raise ValueError(
                f"Argument `latent_dim` must be a positive integer. Received: latent_dim={latent!r}"
            )
        model = _VAE(num_features, latent, tuple(self.hidden_units), seed)
        model(np.zeros((1, num_features), np.float32))
        return model

    def _fit_model(self, X, X_val, seed: int, like=None):
        model = self._build(self.n_features_in_, seed)
        if X_val is None:
            X, X_val = split_validation(X, seed)
        history = fit_density(model, X, X_val, self, seed)
        if like is None:  # the final model (not a calibration fold)
            self.history_ = history
        self._attach_scorer(model, seed)
        return model

    def _attach_scorer(self, model: _VAE, seed: int) -> None:
        k = int(self.num_importance_samples)
        model.scorer = CompiledScorer(
            lambda x: model.iwae_bound(x, k, seed=(seed, 7)), self.n_features_in_
        )
        model.scoring_seed = seed

    def _log_prob(self, model, X) -> np.ndarray:
        return model.scorer(X).astype(np.float64)

    def log_likelihood_bound(
        self, X, num_importance_samples: int, seed: int | None = None
    ) -> np.ndarray:
        """The IWAE bound of each row with `num_importance_samples` samples.

        Args:
            X: Array of shape `(n_samples, n_features)`.
            num_importance_samples: `K` (`1` gives the ELBO).
            seed: Integer seed of the noise; `None` uses the scoring seed
                (then `K = num_importance_samples` gives `score_samples`).
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        seed = (self.model_.scoring_seed if seed is None else int(seed), 7)
        return self.model_.iwae_bound(
            tf.constant(X), int(num_importance_samples), seed=seed
        ).numpy()

    def _sample(self, num: int, rng: np.random.Generator) -> np.ndarray:
        return self.model_.sample(num, int(rng.integers(2**31 - 1))).numpy()

    def _explain(self, X: np.ndarray) -> np.ndarray:
        """Per-feature reconstruction NLL `-log p(x_j | z)` at the encoder mean."""
        return -self.model_.reconstruction_terms(tf.constant(X)).numpy().astype(np.float64)

    def _get_state(self) -> dict[str, np.ndarray]:
        state = {f"w{i:03d}": w for i, w in enumerate(self.model_.get_weights())}
        state["scoring_seed"] = np.asarray(self.model_.scoring_seed)
        return state

    def _set_state(self, state: dict[str, np.ndarray]):
        seed = int(state.pop("scoring_seed"))
        model = self._build(self.n_features_in_, 0)
        model.set_weights([state[k] for k in sorted(state)])
        self._attach_scorer(model, seed)
        return model


def _mlp(units: tuple, out: int, seed: int, name: str) -> keras.Sequential:
    layers = [
        keras.layers.Dense(
            u, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(seed + i)
        )
        for i, u in enumerate(units)
    ]
    layers.append(
        keras.layers.Dense(out, kernel_initializer=keras.initializers.GlorotUniform(seed + 50))
    )
    return keras.Sequential(layers, name=name)


class _VAE(keras.Model):
    def __init__(self, num_features: int, latent_dim: int, hidden_units: tuple, seed: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.latent_dim = latent_dim
        self.encoder = _mlp(hidden_units, 2 * latent_dim, seed, "encoder")
        self.decoder = _mlp(tuple(reversed(hidden_units)), num_features, seed + 1000, "decoder")
        self.log_scale = self.add_weight(
            name="log_scale", shape=(num_features,), initializer="zeros"
        )
        self.noise = keras.random.SeedGenerator(seed)

    def call(self, x):
        loc, _ = self._encode(x)
        return self.decoder(loc)

    def _encode(self, x):
        out = self.encoder(x)
        loc, raw = out[:, : self.latent_dim], out[:, self.latent_dim :]
        return loc, tf.nn.softplus(raw) + 1e-4

    def _log_weights(self, x, eps):
        """`log p(x|z) + log p(z) - log q(z|x)` for noise `eps` of shape `(K, n, latent)`."""
        loc, scale = self._encode(x)
        z = loc + scale * eps
        k, n = tf.shape(eps)[0], tf.shape(x)[0]
        mean = tf.reshape(
            self.decoder(tf.reshape(z, (-1, self.latent_dim))), (k, n, self.num_features)
        )
        sigma = tf.exp(self.log_scale)
        log_px = tf.reduce_sum(
            -0.5 * tf.square((x - mean) / sigma) - self.log_scale - HALF_LOG_TWO_PI, axis=-1
        )
        log_pz = tf.reduce_sum(-0.5 * tf.square(z) - HALF_LOG_TWO_PI, axis=-1)
        log_qz = tf.reduce_sum(
            -0.5 * tf.square(eps) - tf.math.log(scale) - HALF_LOG_TWO_PI, axis=-1
        )
        return log_px + log_pz - log_qz

    def iwae_bound(self, x, num_samples: int, seed):
        x = tf.cast(x, tf.float32)
        # (K, 1, latent): the same draws for every row, so a row's score is its own.
        eps = tf.random.stateless_normal((num_samples, 1, self.latent_dim), seed=seed)
        log_w = self._log_weights(x, eps)
        return tf.reduce_logsumexp(log_w, axis=0) - tf.math.log(float(num_samples))

    def nll(self, x, training=False):
        x = tf.cast(x, tf.float32)
        eps = keras.random.normal(
            (TRAINING_SAMPLES, tf.shape(x)[0], self.latent_dim), seed=self.noise
        )
        log_w = self._log_weights(x, eps)
        return -(tf.reduce_logsumexp(log_w, axis=0) - tf.math.log(float(TRAINING_SAMPLES)))

    def reconstruction_terms(self, x):
        loc, _ = self._encode(x)
        mean = self.decoder(loc)
        return (
            -0.5 * tf.square((x - mean) / tf.exp(self.log_scale)) - self.log_scale - HALF_LOG_TWO_PI
        )

    def sample(self, num: int, seed: int):
        z = tf.random.stateless_normal((num, self.latent_dim), seed=(seed, 1))
        noise = tf.random.stateless_normal((num, self.num_features), seed=(seed, 2))
        return self.decoder(z) + tf.exp(self.log_scale) * noise
