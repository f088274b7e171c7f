"""Child process of `test_sigkill.py`: train, SIGKILL itself at a chosen point, or resume.

Usage: python kill_child.py KIND DIR OUT SPEC

- KIND: `trainer` (a Trainer with BatchNorm, dropout, clipping, validation and
  checkpoints), `rl` (PPO `learn` with checkpoints) or `ensemble` (a
  DeepEnsemble `fit` with checkpoints, joint or one member after the other, or
  a `save` over an older ensemble).
- SPEC: `full` (run to the end), `resume` (continue from DIR), or `POINT:N`:
  run and die by SIGKILL at that point. The death is deterministic: a callback
  or a patched writer calls `os.kill(os.getpid(), SIGKILL)`, so no test relies on
  timing. At the end the final weights go to OUT (`.npz`), and `DONE <step>` is
  printed. `resume` takes comma-separated lists of DIRs and OUTs.

Kill points of `trainer` (N is a global step or an epoch):

- `batch:N`: end of the graph call that reaches step N, before its checkpoint;
- `epoch_end:N` / `epoch_begin:N`: between epochs, before / after the epoch's checkpoint;
- `val:N`: inside the validation pass of epoch N (in its input pipeline);
- `sidecar:N`: checkpoint N's JSON sidecar written to its temp file, not renamed;
- `data:N`: checkpoint N's TF data files written, its index not yet updated;
- `sweep:N`: checkpoint N indexed, the old ones not yet deleted;
- `cleanup:N`: checkpoint N fully written, stale sidecars not yet removed;
- `merge:N`: checkpoint N's TF files written in `ckpt-N_temp/`, not yet
  merged (renamed) into place;
- `fsize:N`: killed by the kernel in the middle of TF's write of checkpoint N's
  data file: the file-size limit (`RLIMIT_FSIZE`) is set to half the size of the
  previous checkpoint's data file, and `SIGXFSZ`'s default action ends the
  process at the `write` that crosses it (no Python code runs; prints `LIMIT <bytes>`);
- `train_end:0`: after the last checkpoint.

Kill points of `ensemble` (DIR's name says how it trains: `joint-...` or
`seq-...`; `@K` limits a point to member K, checkpoint folder `member_0K`):
the points above (`merge:N`, `batch:N@K`, `fsize:N@K`, ...), and `member:N`:
in the N-th `.keras` member file of a `save` over a saved ensemble.
"""

import os
import resource
import signal
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

import tfcraft
from tfcraft._io import write_json_atomic
from tfcraft.training import Callback, Trainer
from tfcraft.training.checkpoint import CheckpointStore

EPOCHS = 4
CURRENT = {"epoch": -1}


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class Killer(Callback):
    """Dies at a training-loop point (see the module docstring)."""

    def __init__(self, point: str, number: int, member: int | None = None) -> None:
        super().__init__()
        self.target, self.point, self.number = point, point, number
        self.member, self.fits = member, -1  # an ensemble's members: one fit each

    def on_train_begin(self, logs=None):
        self.fits += 1
        armed = self.member is None or self.fits == self.member
        self.point = self.target if armed else "disarmed"

    def on_epoch_begin(self, epoch, logs=None):
        CURRENT["epoch"] = epoch
        if self.point == "epoch_begin" and epoch == self.number:
            die()

    def on_train_batch_end(self, batch, logs=None):
        if self.point == "batch" and self.trainer.step == self.number:
            die()
        if self.point == "update" and self.trainer.updates == self.number:
            die()

    def on_epoch_end(self, epoch, logs=None):
        if self.point == "epoch_end" and epoch == self.number:
            die()
        if self.point == "update" and self.trainer.updates == self.number:
            die()  # an RL update is an epoch; this is before its checkpoint

    def on_train_end(self, logs=None):
        if self.point == "train_end":
            die()


def install_write_fault(point: str, number: int, folder: str = "") -> None:
    """Patch the checkpoint writers so that writing checkpoint `number` dies midway.

    With `folder`, only a checkpoint whose path contains it (`member_01/`, say).
    """
    name = f"{folder}ckpt-{number}"
    if point == "sidecar":
        replace = os.replace

        def dying_replace(src, dst, *args, **kwargs):
            if str(dst).endswith(f"{name}.json"):
                die()
            return replace(src, dst, *args, **kwargs)

        os.replace = dying_replace
    elif point in ("data", "sweep"):
        manager = tf.train.CheckpointManager
        # TF-internal hooks of `CheckpointManager.save`, patched only in this child.
        hook = "_record_state" if point == "data" else "_sweep"
        original = getattr(manager, hook)

        def dying_hook(self, *args, **kwargs):
            if str(self._latest_checkpoint).endswith(name):
                die()
            return original(self, *args, **kwargs)

        setattr(manager, hook, dying_hook)
    elif point == "merge":
        from tensorflow.python.checkpoint import functional_saver

        # TF-internal: the op renaming `ckpt-N_temp/part-*` into `ckpt-N.*`, patched here only.
        merge = functional_saver.gen_io_ops.merge_v2_checkpoints

        def dying_merge(checkpoint_prefixes, destination_prefix, *args, **kwargs):
            if destination_prefix.numpy().decode().endswith(name):
                die()
            return merge(checkpoint_prefixes, destination_prefix, *args, **kwargs)

        functional_saver.gen_io_ops.merge_v2_checkpoints = dying_merge
    elif point == "fsize":
        save_tf = tf.train.CheckpointManager.save

        def limited_save(self, checkpoint_number=None, **kwargs):
            if str(Path(self.directory) / f"ckpt-{checkpoint_number}").endswith(name):
                previous = self.latest_checkpoint + ".data-00000-of-00001"
                limit = os.path.getsize(previous) // 2
                print("LIMIT", limit, flush=True)
                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
                signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it by default
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
            return save_tf(self, checkpoint_number=checkpoint_number, **kwargs)

        tf.train.CheckpointManager.save = limited_save
    elif point == "cleanup":
        save = CheckpointStore.save

        def dying_save(self, checkpoint_number, metadata):
            if checkpoint_number != number:
                return save(self, checkpoint_number, metadata)
            write_json_atomic(self.sidecar(str(self.directory / name)), metadata)
            self.manager.save(checkpoint_number=checkpoint_number)
            die()  # the real `save`'s order, up to its removal of stale sidecars

        CheckpointStore.save = dying_save
    elif point == "member":
        save = keras.Model.save
        count = {"saves": 0}

        def dying_member_save(self, filepath, *args, **kwargs):
            count["saves"] += 1
            if count["saves"] == number:
                die()
            return save(self, filepath, *args, **kwargs)

        keras.Model.save = dying_member_save


def trainer_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(52, 4)).astype("float32")
    y = (np.sin(x[:, :1]) + 0.1 * rng.normal(size=(52, 1))).astype("float32")
    xv = rng.normal(size=(24, 4)).astype("float32")
    yv = np.sin(xv[:, :1]).astype("float32")
    return (x, y), (xv, yv)


def make_trainer(directory, callbacks=(), kill_in_validation=None):
    keras.utils.set_random_seed(0)
    train, (xv, yv) = trainer_data()

    def validation():
        for i in range(3):
            if kill_in_validation is not None and CURRENT["epoch"] == kill_in_validation and i:
                die()  # in the middle of the validation pass
            yield xv[8 * i : 8 * i + 8], yv[8 * i : 8 * i + 8]

    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(16),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("relu"),
            keras.layers.Dropout(0.3, seed=1),
            keras.layers.Dense(1),
        ]
    )
    trainer = Trainer(
        model,
        keras.optimizers.Adam(0.01),
        loss="mse",
        clip=1.0,
        seed=7,
        callbacks=list(callbacks),
        checkpoint_dir=directory,
        checkpoint_every=3,
    )
    return trainer, train, validation


def run_trainer(directory, out, spec):
    if spec == "resume":  # DIR and OUT are comma-separated lists: resume each in turn
        for one_dir, one_out in zip(str(directory).split(","), out.split(","), strict=True):
            fit_trainer(Path(one_dir), one_out, [], None, resume=True)
        return
    point, _, number = spec.partition(":")
    number = int(number or 0)
    install_write_fault(point, number)
    validation_kill = number if point == "val" else None
    fit_trainer(directory, out, [Killer(point, number)], validation_kill, resume=False)


def fit_trainer(directory, out, callbacks, validation_kill, resume):
    trainer, train, validation = make_trainer(directory, callbacks, validation_kill)
    trainer.fit(
        train, epochs=EPOCHS, batch_size=8, validation_data=validation, resume=resume, verbose=0
    )
    np.savez(out, *trainer.get_weights())
    print("DONE", trainer.step, flush=True)


def run_rl(directory, out, spec):
    from tfcraft.rl import PPO

    point, _, number = spec.partition(":")
    callbacks = [Killer(point, int(number or 0))]
    agent = PPO("CartPole-v1", n_envs=2, seed=0, n_steps=16, batch_size=16, n_epochs=2)
    agent.learn(192, checkpoint_dir=directory, checkpoint_freq=2, callbacks=callbacks)
    np.savez(out, *agent.policy.get_weights(), *[v.numpy() for v in agent.optimizer.variables])
    print("DONE", agent.timesteps, flush=True)


def ensemble_build(seed):
    init = keras.initializers.GlorotUniform
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu", kernel_initializer=init(seed)),
            keras.layers.Dense(1, kernel_initializer=init(seed + 1)),
        ]
    )


def fit_ensemble(directory, joint, callbacks=(), resume=False):
    """3 members, 3 epochs of 7 steps, a checkpoint every 4 steps and at each epoch end."""
    from tfcraft.bayes import DeepEnsemble

    (x, y), _ = trainer_data()
    ensemble = DeepEnsemble(ensemble_build, num_members=3, seed=0)
    ensemble.fit(
        x,
        y,
        epochs=3,
        batch_size=8,
        loss="mse",
        vectorize=joint,
        callbacks=list(callbacks),
        checkpoint_dir=directory,
        checkpoint_every=4,
        resume=resume,
        jit_compile=False,  # compiles in a third of XLA's time; each run is 21 steps
    )
    return ensemble


def save_weights(out, ensemble):
    np.savez(out, *[w for member in ensemble.members for w in member.get_weights()])


def run_ensemble(directory, out, spec):
    """`resume` or a kill point of an ensemble fit; `member:N`: a killed `save`.

    `resume` continues each DIR of its list; a DIR named `full` instead gets the
    uninterrupted runs (DIR/joint, DIR/seq, weights in OUT-joint.npz, OUT-seq.npz).
    """
    if spec == "resume":
        for one_dir, one_out in zip(str(directory).split(","), out.split(","), strict=True):
            one_dir = Path(one_dir)
            if one_dir.name == "full":
                for mode in ("joint", "seq"):
                    ensemble = fit_ensemble(one_dir / mode, joint=mode == "joint")
                    save_weights(one_out.replace(".npz", f"-{mode}.npz"), ensemble)
            else:
                joint = one_dir.name.startswith("joint")
                save_weights(one_out, fit_ensemble(one_dir, joint, resume=True))
            print("DONE", flush=True)
        return
    point, _, number = spec.partition(":")
    number, _, member = number.partition("@")
    if point == "member":  # a saved ensemble, trained further and saved over: dies in `save`
        from tfcraft.bayes import DeepEnsemble

        (x, y), _ = trainer_data()
        ensemble = DeepEnsemble(ensemble_build, num_members=3, seed=0)
        fit = {"batch_size": 8, "loss": "mse", "vectorize": True, "jit_compile": False}
        ensemble.fit(x, y, epochs=1, **fit)
        ensemble.save(directory / "saved")
        save_weights(out, ensemble)
        print("SAVED", flush=True)
        install_write_fault(point, int(number))
        ensemble.fit(x, y, epochs=2, **fit)
        ensemble.save(directory / "saved")  # over the first one; dies in here
        return
    joint = directory.name.startswith("joint")
    install_write_fault(point, int(number), f"member_{int(member):02d}/" if member else "")
    killer = Killer(point, int(number), int(member) if member else None)
    fit_ensemble(directory, joint, callbacks=() if joint else [killer])
    print("DONE", flush=True)


class HoldAfterFirstCheckpoint(Callback):
    """Prints READY after the first checkpoint, then waits until the file `release` exists."""

    def __init__(self, release: Path) -> None:
        super().__init__()
        self.release, self.ready = release, False

    def on_train_batch_end(self, batch, logs=None):
        if not self.ready and self.trainer.step >= 3:
            self.ready = True
            print("READY", flush=True)
            deadline = time.monotonic() + 120
            while not self.release.exists() and time.monotonic() < deadline:
                time.sleep(0.05)


def run_hold(directory, out, spec):
    """Train into DIR (checkpoints) or hold the run directory DIR, until OUT exists."""
    release = Path(out)
    if spec == "run":
        from tfcraft.runs import RunDirectory

        with RunDirectory.open(directory) as run:
            run.write_json("results.json", {"loss": 0.5})
            print("READY", flush=True)
            while not release.exists():
                time.sleep(0.05)
        return
    trainer, train, _ = make_trainer(directory, [HoldAfterFirstCheckpoint(release)])
    trainer.fit(train, epochs=2, batch_size=8, verbose=0)
    np.savez(directory / "final.npz", *trainer.get_weights())
    print("DONE", trainer.step, flush=True)


def main(kind, directory, out, spec):
    tfcraft.enable_determinism(0)
    runners = {"trainer": run_trainer, "rl": run_rl, "ensemble": run_ensemble, "hold": run_hold}
    runner = runners[kind]
    runner(Path(directory) if "," not in directory else directory, out, spec)


if __name__ == "__main__":
    main(*sys.argv[1:5])
