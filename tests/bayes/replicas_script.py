"""Run by test_kl_invariance.py in a fresh process: 2 logical CPUs must exist before TF starts.

Trains a `DenseFlipout` layer one step with `model.fit` on the KL term alone,
under one device and under a 2-replica `MirroredStrategy`, and checks that the
kernel updates are the same; then the same with the tfcraft Trainer
(`strategy=`), which must also agree with `model.fit`.
"""

import keras
import numpy as np
import tensorflow as tf

from tfcraft.layers import DenseFlipout


def kl_only(y_true, y_pred):
    return 0.0 * keras.ops.mean(y_pred)


def kernel_update(strategy) -> dict:
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((4,)), DenseFlipout(3, seed=1, num_train_examples=64)]
        )
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=kl_only)
    before = {w.name: w.numpy() for w in model.trainable_weights}
    x, y = np.ones((64, 4), "float32"), np.zeros((64, 3), "float32")
    model.fit(x, y, batch_size=64, verbose=0)
    return {
        w.name: before[w.name] - w.numpy()
        for w in model.trainable_weights
        if w.name.startswith("kernel")
    }


def trainer_kernel_update(strategy) -> dict:
    from tfcraft.training import Trainer

    def build():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((4,)), DenseFlipout(3, seed=1, num_train_examples=64)])

    trainer = Trainer(
        build, optimizer=keras.optimizers.SGD(0.1), loss=kl_only, seed=0, strategy=strategy
    )
    model = trainer.model
    before = {w.name: w.numpy() for w in model.trainable_weights}
    x, y = np.ones((64, 4), "float32"), np.zeros((64, 3), "float32")
    history = trainer.fit((x, y), batch_size=64, verbose=0)
    assert history.history["kl"][0] > 0
    return {
        w.name: before[w.name] - w.numpy()
        for w in model.trainable_weights
        if w.name.startswith("kernel")
    }


def main() -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    one = kernel_update(tf.distribute.OneDeviceStrategy("/cpu:0"))
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    two = kernel_update(mirrored)
    for name in one:
        assert np.any(one[name] != 0), name
        np.testing.assert_allclose(two[name], one[name], rtol=1e-5, atol=1e-8, err_msg=name)
    print("replicas 1 and 2 give the same KL update:", sorted(one))
    trainer_one = trainer_kernel_update(None)
    trainer_two = trainer_kernel_update(mirrored)
    for name in one:
        np.testing.assert_allclose(trainer_one[name], one[name], rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(trainer_two[name], one[name], rtol=1e-5, atol=1e-8)
    print("the Trainer on 1 device and on 2 replicas gives the same KL update")


if __name__ == "__main__":
    main()
