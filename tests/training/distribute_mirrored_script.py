"""Run by test_distribute.py in a fresh process: 2 logical CPUs must exist before TF starts.

Trains the same small models with the Trainer on one device and under a
2-replica `MirroredStrategy` (same global batch) and checks that weights and
logs agree to 1e-5: default step with a metric and validation, a `loss_fn`,
accumulation with global-norm clipping, a tf.data input, a NaN example
skipped by `NanGuard("skip")` on every replica, and a one-replica strategy.
Prints one `ok <case>` line per case.
"""

import contextlib
import sys
import time

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfcraft.training import NanGuard, Trainer  # noqa: E402
from tfcraft.training.distribute import global_batch_size  # noqa: E402


def build():
    init = keras.initializers.GlorotUniform
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(8, activation="tanh", kernel_initializer=init(seed=1)),
            keras.layers.Dense(1, kernel_initializer=init(seed=2)),
        ]
    )


def data(n=21):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.1 * rng.normal(size=(n, 1))).astype("float32")
    return x, y


def l1_loss_fn(model, batch, training):
    x, y = batch
    y_pred = model(x, training=training)
    l1 = 0.01 * tf.add_n([tf.reduce_sum(tf.abs(w)) for w in model.trainable_weights])
    return tf.reduce_mean(tf.square(y - y_pred)) + l1, {"y_pred": y_pred, "l1": l1}


class AverageStep(tf.Module):
    """A custom train_step: loss averaged over the global batch, a Keras optimizer."""

    def __init__(self, model):
        super().__init__()
        self.optimizer = keras.optimizers.Adam(0.05)
        self.optimizer.build(model.trainable_variables)

    def __call__(self, model, batch):
        x, y = batch
        with tf.GradientTape() as tape:
            per_example = tf.reduce_mean(tf.square(model(x, training=True) - y), axis=-1)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size())
        grads = tape.gradient(loss, model.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return {"loss": loss}


def custom_step_trainer(strategy, seed=3):
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = build()
        step = AverageStep(model)
    return Trainer(
        model,
        optimizer=None,
        loss="mse",
        metrics=["mae"],
        train_step=step,
        seed=seed,
        strategy=strategy,
    )


CASES = {
    "default": dict(loss="mse", metrics=["mae"]),
    "loss_fn": dict(loss_fn=l1_loss_fn, metrics=["mae"]),
    "accumulate_clip": dict(loss="mse", accumulate_steps=2, clip="global_norm:0.5"),
}


def train(strategy, case, fit_data=None, nan=False, **extra):
    kwargs = {**CASES.get(case, {}), **extra}
    if case == "custom_step":
        trainer, kwargs = custom_step_trainer(strategy), {"loss": "mse"}
    else:
        trainer = Trainer(
            build, optimizer=keras.optimizers.Adam(0.05), seed=3, strategy=strategy, **kwargs
        )
    x, y = data()
    if nan:
        x = x.copy()
        x[9] = np.nan  # one bad example: the replica holding it and the other both skip
    validation = (x[:7], y[:7])
    if fit_data is not None:  # a tf.data validation set too, with a partial batch
        validation = tf.data.Dataset.from_tensor_slices(validation).batch(4)
    history = trainer.fit(
        fit_data if fit_data is not None else (x, y),
        epochs=3,
        batch_size=8,
        validation_data=validation if "loss" in kwargs or "loss_fn" in kwargs else None,
        verbose=0,
    )
    extra_logs = {f"evaluate_{k}": [v] for k, v in trainer.evaluate((x, y), batch_size=8).items()}
    if fit_data is not None:
        evaluated = trainer.evaluate(tf.data.Dataset.from_tensor_slices((x, y)).batch(6))
        extra_logs.update({f"evaluate_dataset_{k}": [v] for k, v in evaluated.items()})
    extra_logs["predict"] = trainer.predict(x[:5], batch_size=4).ravel().tolist()
    return trainer.get_weights(), {**history.history, **extra_logs}


def compare(case, one, two):
    (w1, h1), (w2, h2) = one, two
    for a, b in zip(w1, w2, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5, err_msg=case)
    assert sorted(h1) == sorted(h2), (case, sorted(h1), sorted(h2))
    for key in h1:
        np.testing.assert_allclose(h2[key], h1[key], rtol=1e-5, atol=1e-5, err_msg=f"{case}:{key}")
    moved = max(float(np.abs(a - b).max()) for a, b in zip(w1, build().get_weights(), strict=True))
    assert moved > 1e-3, (case, moved)


def main(cases):
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    references = {}  # one-device runs, shared by cases
    for case in cases:
        start = time.perf_counter()
        if case == "dataset":
            x, y = data()
            dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
            one = train(None, "default", fit_data=dataset)
            two = train(mirrored, "default", fit_data=dataset)
        elif case in ("custom_step", "custom_step_dataset"):
            x, y = data()
            dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
            fit_data = dataset if case == "custom_step_dataset" else None
            one = train(None, "custom_step", fit_data=fit_data)
            two = train(mirrored, "custom_step", fit_data=fit_data)
        elif case == "nan_skip":
            one = train(None, "default", nan=True, callbacks=[NanGuard(policy="skip")])
            two = train(mirrored, "default", nan=True, callbacks=[NanGuard(policy="skip")])
            skipped = one[1]["nonfinite_steps"]
            assert skipped == [1, 1, 1], skipped  # once per epoch, on both
        elif case == "one_replica":
            one = references.get("default") or train(None, "default")
            two = train(tf.distribute.MirroredStrategy(["/cpu:0"]), "default")
        elif case == "one_replica_dataset":  # fed without a distributed iterator
            x, y = data()
            dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
            one = train(None, "default", fit_data=dataset)
            two = train(tf.distribute.MirroredStrategy(["/cpu:0"]), "default", fit_data=dataset)
        else:
            one = references[case] = train(None, case)
            two = train(mirrored, case)
        compare(case, one, two)
        print("ok", case, f"{time.perf_counter() - start:.1f}s", flush=True)


if __name__ == "__main__":
    main(
        sys.argv[1:]
        or [
            *CASES,
            "dataset",
            "custom_step",
            "custom_step_dataset",
            "nan_skip",
            "one_replica",
            "one_replica_dataset",
        ]
    )
