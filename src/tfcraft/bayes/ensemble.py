"""`DeepEnsemble`: several independently initialised and trained networks, one predictive.

Each member is built by `build_model(seed)` with its own seed and trained
through the tfcraft `Trainer`; `predict` returns the uniform mixture of the
members' predictive distributions (Lakshminarayanan, Pritzel & Blundell 2017).
Members ending in a distribution head give both aleatoric and epistemic
uncertainty. By default the members train side by side as one Keras model (one
graph call runs a step of every member; each still gets exactly its own
gradient), which `benchmarks/ensemble_joint.py` measures; `vectorize=False`
trains them one after the other, each with its own shuffling seed.

`fit(..., checkpoint_dir=d)` checkpoints through the `Trainer`: the joint model
in `d/joint`, or member `i` in `d/member_<ii>`, beside a `d/manifest.json`
(written atomically) naming the ensemble and the members that finished.
`fit(..., checkpoint_dir=d, resume=True)` after a crash loads the finished
members, continues the interrupted one from its last checkpoint and trains the
rest: the weights equal an uninterrupted fit's, bit for bit under
`tfcraft.enable_determinism`.

Example:

>>> import keras, numpy as np
>>> from tfcraft.layers import NormalHead
>>> def build_model(seed):
...     return keras.Sequential([keras.Input((2,)), NormalHead(seed=seed)])
>>> ensemble = DeepEnsemble(build_model, num_members=3, seed=0)
>>> ensemble.predict(np.zeros((4, 2), "float32")).samples.shape
(3, 4, 1)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np

from tfcraft._io import replace_folder_atomic, write_json_atomic
from tfcraft._locks import hold_folder_lock
from tfcraft._validation import check_positive_int, check_seed
from tfcraft.bayes._joint import (
    joint_data,
    joint_model,
    member_loss_key,
    member_sum_loss_fn,
    single_input,
)
from tfcraft.bayes.predictive import Predictive, predict
from tfcraft.layers import find_head
from tfcraft.saving import load_model
from tfcraft.training import clipping
from tfcraft.training.callbacks import History
from tfcraft.training.steps import get_loss
from tfcraft.training.trainer import Trainer

__all__ = ["DeepEnsemble"]

_FORMAT = "tfcraft.DeepEnsemble"
_CHECKPOINTS_FORMAT = "tfcraft.DeepEnsemble.checkpoints"
_MANIFEST = "manifest.json"


def member_seeds(seed: int, num_members: int) -> list[int]:
    """Distinct, well-spread 31-bit seeds for the members of an ensemble seeded `seed`.

    `numpy.random.SeedSequence` keeps ensembles with nearby seeds (0 and 1)
    from sharing members, which `seed + i` would do.

    Example:

    >>> len(set(member_seeds(0, 5))), member_seeds(0, 2) == member_seeds(0, 2)
    (5, True)
    """
    state = np.random.SeedSequence(seed).generate_state(num_members)
    return [int(value) >> 1 for value in state]


class DeepEnsemble:
    """An ensemble of Keras models trained from different random seeds.

    Example:

    >>> from tfcraft.layers import NormalHead
    >>> def build_model(seed):
    ...     return keras.Sequential([keras.Input((1,)), NormalHead(seed=seed)])
    >>> ensemble = DeepEnsemble(build_model, num_members=2, seed=1)
    >>> x, y = np.ones((8, 1), "float32"), np.ones((8, 1), "float32")
    >>> histories = ensemble.fit(x, y, epochs=2, batch_size=4)
    >>> len(histories), len(ensemble.members)
    (2, 2)

    Args:
        build_model: `build_model(seed) -> keras.Model`, a new model whose
            random initialisation depends on `seed`. Use a top-level function
            (lambdas work but cannot be named in a saved ensemble).
        num_members: Positive int. Defaults to `5`.
        seed: Int; the members' seeds are derived from it (`member_seeds`).
            Defaults to `0`.

    Attributes:
        members: The `keras.Model`s.
        seeds: The seed of each member (initialisation and shuffling).
        trainers: The `tfcraft.training.Trainer`s of the last `fit`: one per
            member, or a single one for the joint model when vectorised.
    """

    def __init__(self, build_model: Callable[[int], keras.Model], num_members: int = 5, seed=0):
        if not callable(build_model):
            raise TypeError(
                "Argument `build_model` must be a callable `seed -> keras.Model`. "
                f"Received: build_model={build_model!r}"
            )
        self.seed = check_seed("seed", seed, allow_none=False)
        self.build_model = build_model
        self.num_members = check_positive_int("num_members", num_members)
        self.seeds = member_seeds(seed, self.num_members)
        self.members = [_checked_model(build_model(s), s) for s in self.seeds]
        self.trainers: list[Trainer] = []
        self._settings = None

    def fit(
        self,
        x,
        y,
        epochs: int = 1,
        batch_size: int = 32,
        loss=None,
        optimizer="adam",
        metrics: Sequence | None = None,
        validation_data=None,
        callbacks: Sequence | None = None,
        verbose: int = 0,
        vectorize: bool | str = "auto",
        checkpoint_dir: str | os.PathLike | None = None,
        resume: bool = False,
        **trainer_kwargs,
    ) -> list:
        """Train every member on `(x, y)`; return their histories.

        A further call with the same settings continues training with the same
        `trainers` (compiled steps and optimizer state kept), as Keras' `fit`
        does; different settings start new Trainers from the current weights.

        Args:
            x: Training inputs.
            y: Training targets.
            epochs: Positive int. Defaults to `1`.
            batch_size: Positive int. Defaults to `32`.
            loss: A loss for the Trainer. Defaults to the negative log-likelihood
                of the members' distribution head.
            optimizer: Optimizer name or instance; an instance is cloned from
                its config for each member. Defaults to `"adam"`.
            metrics: Metrics for the Trainer (names, or instances reused per member).
            validation_data: Optional `(x_val, y_val)`.
            callbacks: Callbacks given to every member's Trainer (they are reset
                at the start of each member's training, as in Keras).
            verbose: `0` silent, `1` progress bars. Defaults to `0`.
            vectorize: `True`: train the members as one joint model, each on
                its own random batch order (`tfcraft.bayes._joint`), with one
                optimizer and sample weights not supported; `False`: one after
                the other, each by its own Trainer;
                `"auto"` (default): joint when nothing couples or splits the
                members (no `metrics`, `callbacks`, global-norm `clip` or
                validation sample weights) and
                each has one symbolic input (Sequential or functional).
            checkpoint_dir: Optional folder for checkpoints: the joint model's
                Trainer writes to `checkpoint_dir/joint`, member `i`'s to
                `checkpoint_dir/member_<ii>` (`member_00`, ...), and
                `manifest.json` (atomic) records the ensemble (seeds, how it
                trains) and which members finished. `checkpoint_every`,
                `max_to_keep` go in `trainer_kwargs`.
            resume: Continue an interrupted `fit` from `checkpoint_dir` (same
                ensemble seed, members and `vectorize`, as the manifest
                checks): finished members are loaded from their last
                checkpoint, the interrupted one continues from its own (same
                epoch, batch and shuffling) and the others train from the
                start. `epochs` is the total, as for `Trainer.fit`. Starts
                fresh, with a warning, if there is no checkpoint.
            **trainer_kwargs: Further `tfcraft.training.Trainer` arguments
                (`clip`, `jit_compile`, `steps_per_execution`, ...).

        Returns:
            The `History` of each member (`loss`, and `val_loss` with validation data).

        Raises:
            ValueError: bad arguments, or `resume=True` with a `checkpoint_dir`
                of another ensemble, or with a finished member's checkpoints missing.
        """
        joint = self._use_joint(
            vectorize, metrics, callbacks, trainer_kwargs.get("clip"), validation_data
        )
        if not isinstance(resume, bool):
            raise TypeError(f"Argument `resume` must be a bool. Received: resume={resume!r}")
        if resume and checkpoint_dir is None:
            raise ValueError("`resume=True` needs `checkpoint_dir`. Received: checkpoint_dir=None")
        store = None
        if checkpoint_dir is not None:
            store = _EnsembleCheckpoints(checkpoint_dir, self, joint)
        settings = (
            loss,
            optimizer,
            list(metrics or ()),
            list(callbacks or ()),
            trainer_kwargs,
            joint,
            None if store is None else str(store.directory),
        )
        if not self.trainers or settings != self._settings:
            member_loss = self._default_loss() if loss is None else loss
            folders = [None] * self.num_members if store is None else store.paths()
            if joint:
                self.trainers = [
                    Trainer(
                        joint_model(self.members),
                        optimizer=_fresh_optimizer(optimizer),
                        loss_fn=member_sum_loss_fn(get_loss(member_loss), self.members),
                        seed=self.seed,
                        checkpoint_dir=folders[0],
                        **trainer_kwargs,
                    )
                ]
            else:
                self.trainers = self._member_trainers(
                    member_loss, optimizer, metrics, callbacks, folders, trainer_kwargs
                )
            self._settings = settings
        resumes = [False] * len(self.trainers) if store is None else store.open(resume)
        fit_args = {"epochs": epochs, "batch_size": batch_size, "verbose": verbose}
        if joint:
            if validation_data is not None:
                validation_data = joint_data(*validation_data, None, self.num_members)
            history = self.trainers[0].fit(
                joint_data(x, y, self.seeds),
                validation_data=validation_data,
                resume=resumes[0],
                **fit_args,
            )
            if store is not None:
                store.finish(0)
            return [_member_history(history, i) for i in range(self.num_members)]
        histories = []
        for index, trainer in enumerate(self.trainers):
            histories.append(
                trainer.fit(
                    (x, y), validation_data=validation_data, resume=resumes[index], **fit_args
                )
            )
            if store is not None:
                store.finish(index)
        return histories

    def _use_joint(self, vectorize, metrics, callbacks, clip, validation_data) -> bool:
        if vectorize not in (True, False, "auto"):
            raise ValueError(
                f"Argument `vectorize` must be True, False or 'auto'. Received: {vectorize!r}"
            )
        couplers = []
        if metrics:
            couplers.append("metrics")
        if callbacks:
            couplers.append("callbacks")
        if isinstance(clipping.get(clip), clipping.ByGlobalNorm):
            couplers.append("a global-norm clip")
        if validation_data is not None and len(validation_data) != 2:
            couplers.append("validation sample weights")
        if vectorize == "auto":
            joinable = all(single_input(member) is not None for member in self.members)
            return self.num_members > 1 and joinable and not couplers
        if vectorize and couplers:
            raise ValueError(
                "`vectorize=True` trains the members as one model, which "
                f"{', '.join(couplers)} would see as one (or couple). Use vectorize=False."
            )
        return bool(vectorize)

    def _member_trainers(self, member_loss, optimizer, metrics, callbacks, folders, kwargs):
        return [
            Trainer(
                member,
                optimizer=_fresh_optimizer(optimizer),
                loss=member_loss,
                metrics=metrics,
                seed=member_seed,
                callbacks=callbacks,
                checkpoint_dir=folder,  # each member its own folder: never shared
                **kwargs,
            )
            for member, member_seed, folder in zip(self.members, self.seeds, folders, strict=True)
        ]

    def predict(
        self, x, num_samples: int = 100, batch_size: int | None = None, seed: int | None = None
    ) -> Predictive:
        """The ensemble's predictive mixture at `x`; see `tfcraft.bayes.predict`."""
        return predict(self, x, num_samples=num_samples, batch_size=batch_size, seed=seed)

    def _default_loss(self):
        from tfcraft.losses import NegativeLogLikelihood

        head = find_head(self.members[0])
        if head is None:
            raise ValueError(
                "The members have no distribution head, so there is no default loss. "
                "Pass `loss=` to `fit`. Received: loss=None"
            )
        return NegativeLogLikelihood(head.family)

    def save(self, path: str | os.PathLike) -> None:
        """Write `member_<i>.keras` files and `manifest.json` into the folder `path`.

        The folder is written under a temporary name and renamed into place, so
        after a crash `path` holds the old ensemble or the new one, never a mix.
        """
        import tfcraft

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        try:
            files = []
            for index, member in enumerate(self.members):
                files.append(f"member_{index}.keras")
                member.save(tmp / files[-1])
            manifest = {
                "format": _FORMAT,
                "tfcraft_version": tfcraft.__version__,
                "num_members": self.num_members,
                "seed": self.seed,
                "seeds": self.seeds,
                "members": files,
                "build_model": getattr(self.build_model, "__qualname__", None),
            }
            (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
            replace_folder_atomic(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> DeepEnsemble:
        """Load an ensemble written by `save` (`tfcraft.saving.load_model`: safe mode).

        The loaded ensemble predicts and can be trained further; its
        `build_model` is None.
        """
        import tfcraft

        path = Path(path)
        manifest_path = path / _MANIFEST
        if not manifest_path.is_file():
            raise ValueError(
                f"No DeepEnsemble at {str(path)!r}: {_MANIFEST} is missing. "
                f"Received: path={str(path)!r}"
            )
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != _FORMAT:
            raise ValueError(
                f"{str(manifest_path)!r} is not a DeepEnsemble manifest. "
                f"Received: format={manifest.get('format')!r}"
            )
        if manifest.get("tfcraft_version") != tfcraft.__version__:
            warnings.warn(
                f"Loading a DeepEnsemble saved by tfcraft {manifest.get('tfcraft_version')} "
                f"with tfcraft {tfcraft.__version__}; results may differ.",
                stacklevel=2,
            )
        ensemble = cls.__new__(cls)
        ensemble.build_model = None
        ensemble.num_members = int(manifest["num_members"])
        ensemble.seed = manifest["seed"]
        ensemble.seeds = [int(s) for s in manifest["seeds"]]
        ensemble.members = [load_model(path / name) for name in manifest["members"]]
        ensemble.trainers, ensemble._settings = [], None
        return ensemble


class _EnsembleCheckpoints:
    """An ensemble fit's checkpoint folder: one Trainer folder per member (or joint model).

    `manifest.json` names the ensemble (seed, member seeds, joint or one after
    the other) and which folders finished their `fit`; it is written
    atomically before training and after each member, and checked on resume.
    """

    def __init__(self, directory, ensemble: DeepEnsemble, joint: bool) -> None:
        if not isinstance(directory, str | os.PathLike):
            raise TypeError(
                "Argument `checkpoint_dir` must be a path (str or os.PathLike). "
                f"Received: checkpoint_dir={directory!r}"
            )
        self.directory = Path(directory)
        self.folders = (
            ["joint"] if joint else [f"member_{i:02d}" for i in range(ensemble.num_members)]
        )
        self.identity = {
            "format": _CHECKPOINTS_FORMAT,
            "num_members": ensemble.num_members,
            "seed": ensemble.seed,
            "seeds": list(ensemble.seeds),
            "training": "joint" if joint else "one after the other",
        }
        self.finished = [False] * len(self.folders)

    @property
    def manifest(self) -> Path:
        """Path of the manifest file."""
        return self.directory / _MANIFEST

    def paths(self) -> list[Path]:
        """The Trainers' checkpoint folders, one per member (or one, joint)."""
        return [self.directory / folder for folder in self.folders]

    def open(self, resume: bool) -> list[bool]:
        """Lock the folder, check and (re)write the manifest; `resume` flag of each Trainer."""
        hold_folder_lock(self.directory)  # a second process is refused at once
        started = [(path / "checkpoint").exists() for path in self.paths()]
        if resume:
            self.finished = self._read_finished(any(started))
            for folder, finished, has_checkpoint in zip(
                self.folders, self.finished, started, strict=True
            ):
                if finished and not has_checkpoint:
                    raise ValueError(
                        f"{self.manifest} says {folder!r} finished training, but "
                        f"{self.directory / folder} holds no checkpoint; its weights are lost. "
                        "Nothing was changed; fit again without `resume`."
                    )
        else:
            self.finished = [False] * len(self.folders)
        self._write()
        return [resume and has_checkpoint for has_checkpoint in started]

    def finish(self, index: int) -> None:
        """Record that folder `index`'s `fit` returned."""
        self.finished[index] = True
        self._write()

    def _read_finished(self, started: bool) -> list[bool]:
        if not self.manifest.exists():
            if started:
                raise ValueError(
                    f"{self.manifest} is missing, so the checkpoints in {self.directory} "
                    "cannot be matched to this ensemble. Received: resume=True"
                )
            warnings.warn(
                f"`resume=True` but {self.directory} has no ensemble checkpoint; starting fresh.",
                stacklevel=4,
            )
            return [False] * len(self.folders)
        try:
            manifest = json.loads(self.manifest.read_text())
            saved = {key: manifest.get(key) for key in self.identity}
        except (OSError, ValueError, AttributeError) as error:
            raise self._corrupt(error) from error
        for key, expected in self.identity.items():
            if saved[key] != expected:
                raise ValueError(
                    f"{self.directory} holds the checkpoints of another ensemble fit: "
                    f"{self.manifest} has {key}={saved[key]!r}, this fit has "
                    f"{key}={expected!r}. Resume with the same `seed`, `num_members` and "
                    "`vectorize`, or use another `checkpoint_dir`."
                )
        try:
            return [bool(manifest["finished"][folder]) for folder in self.folders]
        except (KeyError, TypeError) as error:
            raise self._corrupt(error) from error

    def _corrupt(self, error: Exception) -> ValueError:
        return ValueError(
            f"Ensemble checkpoint manifest {self.manifest} is corrupt "
            f"({type(error).__name__}: {error}). Nothing was changed."
        )

    def _write(self) -> None:
        finished = dict(zip(self.folders, self.finished, strict=True))
        write_json_atomic(self.manifest, {**self.identity, "finished": finished})


def _checked_model(model: object, seed: int) -> keras.Model:
    if not isinstance(model, keras.Model):
        raise TypeError(f"`build_model({seed})` must return a `keras.Model`. Received: {model!r}")
    return model


def _member_history(joint: History, index: int) -> History:
    """Member `index`'s `loss` (and `val_loss`) out of a joint run's History."""
    history = History()
    history.epoch = list(joint.epoch)
    key = member_loss_key(index)
    for prefix in ("", "val_"):
        if prefix + key in joint.history:
            history.history[prefix + "loss"] = list(joint.history[prefix + key])
    return history


def _fresh_optimizer(optimizer):
    """A new optimizer per member: optimizer state must not be shared."""
    if isinstance(optimizer, str):
        return optimizer
    return type(optimizer).from_config(optimizer.get_config())
