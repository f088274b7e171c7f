"""Which loop runs the data, and how much of it each graph call runs.

- `LoopCache` builds the training loop (`ArrayLoop` for in-memory arrays,
  `IteratorLoop` for datasets and generators) and the validation evaluator,
  and hands back the same objects on the next `fit` when they still fit the
  data, so a repeated `fit` traces nothing.
- `plan_epochs_per_call` decides how many whole epochs one call may run.
- `steps_this_call` decides how many steps a call runs within an epoch.

Example:

>>> steps_this_call("auto", position=0, steps=10, checkpoint_every=4, global_step=0)
4
"""

from __future__ import annotations

import dataclasses

from tfcraft.training import data as data_lib
from tfcraft.training.callbacks_base import CallbackList
from tfcraft.training.evaluation import ArrayEvaluator, DatasetEvaluator
from tfcraft.training.iterator_loop import IteratorLoop
from tfcraft.training.loops import MAX_EPOCHS_PER_CALL, ArrayLoop

__all__ = ["EpochPlan", "LoopCache", "plan_epochs_per_call", "steps_this_call"]

DEFAULT_ITERATOR_STEPS = 64  # steps per call when a dataset's length is unknown
# "auto" epochs_per_execution: enough tiny epochs per call to reach this many steps.
TARGET_STEPS_PER_CALL = 64


@dataclasses.dataclass(frozen=True)
class EpochPlan:
    """Epochs per graph call, and the callbacks whose epoch-end rule runs in the graph."""

    epochs_per_call: int
    stoppers: tuple = ()


class LoopCache:
    """The loops and evaluators of one Trainer, reused across `fit` calls."""

    def __init__(self) -> None:
        self.array_loop: ArrayLoop | None = None
        self.iterator_loop: IteratorLoop | None = None
        self.array_evaluator: ArrayEvaluator | None = None
        self.dataset_evaluator: DatasetEvaluator | None = None

    def training_loop(self, step, data, batch_size, shuffle, drop_remainder, seed, use_xla):
        """An `ArrayLoop` or `IteratorLoop` for `data`, reused when it still fits."""
        if isinstance(data, data_lib.ArrayData):
            loop = self.array_loop
            if (
                loop is not None
                and loop.step is step
                and loop.matches(data.tensors, batch_size, shuffle, drop_remainder)
            ):
                loop.set_data(data.tensors)  # no retracing across `fit` calls
                return loop
            self.array_loop = ArrayLoop(
                step,
                data.tensors,
                batch_size,
                seed,
                shuffle=shuffle,
                drop_remainder=drop_remainder,
                jit_compile=use_xla,
            )
            return self.array_loop
        sample = data.first_batch()
        loop = self.iterator_loop
        if (
            loop is not None
            and loop.step is step
            and loop.matches(data.dataset.element_spec, sample)
        ):
            return loop
        self.iterator_loop = IteratorLoop(
            step, data.dataset.element_spec, sample, jit_compile=use_xla
        )
        return self.iterator_loop

    def evaluator(self, test_step, data, batch_size: int, use_xla: bool):
        """An `ArrayEvaluator` for arrays, else a `DatasetEvaluator`; reused when possible."""
        if isinstance(data, data_lib.ArrayData):
            evaluator = self.array_evaluator
            if evaluator is not None and evaluator.matches(test_step, data.tensors, batch_size):
                evaluator.set_data(data.tensors)
                return evaluator
            self.array_evaluator = ArrayEvaluator(
                test_step, data.tensors, batch_size, jit_compile=use_xla
            )
            return self.array_evaluator
        if self.dataset_evaluator is None or self.dataset_evaluator.step is not test_step:
            self.dataset_evaluator = DatasetEvaluator(test_step)
        return self.dataset_evaluator


def plan_epochs_per_call(
    setting: int | str,
    loop,
    evaluator,
    callbacks: CallbackList,
    *,
    checkpoint_every: int | None,
    steps_per_execution: int | str,
) -> EpochPlan:
    """Whole epochs per graph call: 1 unless the data is in memory and nothing needs a pause.

    A callback needs a pause (`epoch_sync`) unless it only records logs or its
    epoch-end rule can run in the graph on logs the graph has (`EarlyStopping`
    on `val_loss` with array validation data, say).
    """
    available = (
        set(loop.epoch_logs_spec(_in_graph(evaluator))) if isinstance(loop, ArrayLoop) else set()
    )
    stoppers, blockers = [], []
    for callback in callbacks.callbacks:
        if not callback.epoch_sync:
            continue
        needed = callback.graph_logs_needed
        if needed is not None and set(needed) <= available:
            stoppers.append(callback)
        else:
            blockers.append(type(callback).__name__)
    if evaluator is not None and _in_graph(evaluator) is None:
        blockers.append("validation_data (not arrays)")
    if checkpoint_every:
        blockers.append("checkpoint_every")
    if steps_per_execution != "auto":
        blockers.append("steps_per_execution")
    if not isinstance(loop, ArrayLoop):
        blockers.append("non-array data")
    if setting == "auto":
        if blockers:
            return EpochPlan(1)
        count = min(MAX_EPOCHS_PER_CALL, -(-TARGET_STEPS_PER_CALL // loop.steps_per_epoch))
        return EpochPlan(count, tuple(stoppers))
    if setting > 1 and blockers:
        raise ValueError(
            f"`epochs_per_execution={setting}` runs several epochs "
            "without pausing between them, which these need: "
            f"{', '.join(blockers)}. Use epochs_per_execution='auto' or 1, or set "
            "`epoch_sync = False` on callbacks that only record logs."
        )
    return EpochPlan(setting, tuple(stoppers))


def _in_graph(evaluator):
    return evaluator if isinstance(evaluator, ArrayEvaluator) else None


def steps_this_call(
    setting: int | str,
    position: int,
    steps: int | None,
    checkpoint_every: int | None,
    global_step: int,
) -> int:
    """Steps of the next graph call within an epoch; ends on epoch ends and checkpoints."""
    num = setting
    if setting == "auto":
        num = steps if steps is not None else DEFAULT_ITERATOR_STEPS
    if steps is not None:
        num = min(num, steps - position)
    if checkpoint_every:
        num = min(num, checkpoint_every - global_step % checkpoint_every)
    return max(num, 1)
