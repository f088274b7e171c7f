"""The KL term's gradient per update is the same however the data is cut.

Each variational layer adds KL / N (N training examples) once per forward
pass; the Trainer averages micro-batch losses and Keras divides per-replica
losses by the replica count. So one optimizer update carries exactly KL / N
whatever the batch size (tests/layers), `accumulate_steps`, steps per graph
call or number of replicas. The loss here is the KL alone (the data term is
multiplied by zero), so updates are exact and comparable.
"""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tfcraft.layers import DenseFlipout
from tfcraft.training import Trainer


def kl_only_loss_fn(model, batch, training):
    x, _ = batch
    outputs = model(x, training=training)
    return 0.0 * keras.ops.mean(outputs) + keras.ops.sum(model.losses), {}


def _kernel_updates(batch_size=16, **trainer_kwargs):
    """How much one epoch on 64 rows moved each kernel parameter."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), DenseFlipout(5, activation="relu", seed=1), DenseFlipout(2, seed=2)]
    )
    before = [w.numpy() for w in model.trainable_weights]
    trainer = Trainer(
        model,
        keras.optimizers.SGD(0.1),
        loss_fn=kl_only_loss_fn,
        seed=0,
        jit_compile=False,
        **trainer_kwargs,
    )
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    trainer.fit((x, np.zeros((64, 2), "float32")), epochs=1, batch_size=batch_size, verbose=0)
    return {
        f"{index}:{w.name}": old - w.numpy()
        for index, (old, w) in enumerate(zip(before, model.trainable_weights, strict=True))
        if w.name.startswith("kernel")
    }


def _assert_same(a, b):
    assert a.keys() == b.keys() and a
    for path in a:
        assert np.any(a[path] != 0), path
        np.testing.assert_allclose(b[path], a[path], rtol=1e-5, atol=1e-9, err_msg=path)


def test_kl_update_does_not_depend_on_steps_per_graph_call():
    # Four updates per epoch either way: one graph call for all of them, or one each.
    _assert_same(_kernel_updates(), _kernel_updates(steps_per_execution=1))


def test_kl_update_does_not_depend_on_accumulate_steps():
    # Four micro-batches of 16 and one batch of 64: one update each, the same one.
    _assert_same(_kernel_updates(batch_size=64), _kernel_updates(accumulate_steps=4))


@pytest.mark.timeout(400)
def test_kl_update_does_not_depend_on_the_number_of_replicas():
    script = Path(__file__).with_name("replicas_script.py")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "replicas 1 and 2 give the same KL update" in result.stdout
    assert "the Trainer on 1 device and on 2 replicas gives the same KL update" in result.stdout
