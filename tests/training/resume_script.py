"""Helper for test_resume.py: train a small dropout model, optionally get killed.

Usage: python resume_script.py CKPT_DIR OUT_NPZ MODE  (MODE: full | kill | resume)
In `kill` mode it prints READY once a mid-epoch checkpoint exists and then keeps
training slowly so the parent can SIGKILL it in the middle of an epoch.
"""

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import tfcraft
from tfcraft.training import Callback, Trainer


class SignalWhenMidEpochCheckpointExists(Callback):
    def __init__(self, directory):
        super().__init__()
        self.directory = Path(directory)
        self.ready = False

    def on_train_batch_end(self, batch, logs=None):
        if self.ready:
            time.sleep(0.5)  # stay killable in the middle of training
            return
        for sidecar in self.directory.glob("ckpt-*.json"):
            if json.loads(sidecar.read_text())["position"] > 0:
                self.ready = True
                print("READY", flush=True)
                return


def main(directory, out, mode):
    tfcraft.enable_determinism(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 4)).astype("float32")
    y = np.sin(x[:, :1]) + 0.1 * rng.normal(size=(100, 1)).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dropout(0.3, seed=1),
            keras.layers.Dense(1),
        ]
    )
    callbacks = [SignalWhenMidEpochCheckpointExists(directory)] if mode == "kill" else []
    trainer = Trainer(
        model,
        keras.optimizers.Adam(0.01),
        loss="mse",
        clip=1.0,
        accumulate_steps=2,
        seed=7,
        callbacks=callbacks,
        checkpoint_dir=directory,
        checkpoint_every=5,
    )
    trainer.fit((x, y), epochs=4, batch_size=8, resume=mode == "resume", verbose=0)
    np.savez(out, *trainer.get_weights())
    print("DONE", trainer.step, flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
