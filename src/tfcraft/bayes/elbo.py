"""The ELBO with per-example scaling, KL-weight schedules and their training callback.

Scaling convention (used by every variational layer, loss and log in tfcraft):
the training objective is the negative ELBO *per training example*,

    loss = mean(nll over the batch) + kl_weight * KL(q(w) || p(w)) / N,

with `N` the number of training examples. A random batch's mean NLL is an
unbiased estimate of `sum(NLL over the data set) / N`, so each step's loss is an
unbiased estimate of the whole data set's negative ELBO divided by `N`
(Blundell et al. 2015, sec. 3.4, scaled by `1 / N`), and learning rates do not
depend on the data set size. `kl_weight < 1` gives the tempered or annealed ELBO.

Example:

>>> float(elbo_loss([1.0, 3.0], kl=50.0, num_train_examples=100, kl_weight=0.5))
2.25
>>> [round(LinearWarmup(4)(step), 2) for step in range(6)]
[0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

from tfcraft._validation import (
    check_choice,
    check_float_in_range,
    check_positive_float,
    check_positive_int,
)
from tfcraft.training.callbacks_base import Callback

__all__ = [
    "ConstantKLWeight",
    "CyclicalKLWeight",
    "KLWeightSchedule",
    "KLWeightScheduler",
    "LinearWarmup",
    "elbo_loss",
    "scaled_kl",
]


def _check_kl_weight(kl_weight):
    if keras.ops.is_tensor(kl_weight):  # checked by the graph, not here
        return kl_weight
    return check_positive_float("kl_weight", kl_weight, allow_zero=True)


def scaled_kl(kl, num_train_examples: int, kl_weight: float = 1.0) -> tf.Tensor:
    """The KL term of the per-example ELBO: `kl_weight * kl / num_train_examples`.

    Example:

    >>> float(scaled_kl(10.0, num_train_examples=5))
    2.0

    Args:
        kl: Scalar `KL(q || p)` summed over all variational weights.
        num_train_examples: Positive int `N`, the size of the training set.
        kl_weight: Non-negative float or scalar tensor. Defaults to `1.0`.

    Returns:
        A scalar float tensor.
    """
    num_train_examples = check_positive_int("num_train_examples", num_train_examples)
    kl_weight = _check_kl_weight(kl_weight)
    kl = tf.convert_to_tensor(kl)
    if not kl.dtype.is_floating:
        kl = tf.cast(kl, tf.float32)
    return tf.cast(kl_weight, kl.dtype) * kl / tf.cast(num_train_examples, kl.dtype)


def elbo_loss(nll, kl, num_train_examples: int, kl_weight: float = 1.0) -> tf.Tensor:
    """Negative ELBO per training example: `mean(nll) + kl_weight * kl / N`.

    Example:

    >>> float(elbo_loss([0.5, 1.5], kl=20.0, num_train_examples=10))
    3.0

    Args:
        nll: Per-example negative log-likelihoods, shape `(batch,)`, or their mean.
        kl: Scalar `KL(q || p)` summed over all variational weights.
        num_train_examples: Positive int `N`, the size of the training set.
        kl_weight: Non-negative float or scalar tensor. Defaults to `1.0`.

    Returns:
        A scalar float tensor, the loss to minimise.
    """
    nll = tf.convert_to_tensor(nll)
    if not nll.dtype.is_floating:
        nll = tf.cast(nll, tf.float32)
    kl = tf.convert_to_tensor(kl, dtype_hint=nll.dtype)
    kl_term = scaled_kl(kl, num_train_examples, kl_weight)
    return tf.reduce_mean(nll) + tf.cast(kl_term, nll.dtype)


class KLWeightSchedule:
    """Base class: a pure map from a step (or epoch) index to a KL weight.

    Subclasses implement `__call__(step) -> float` and `get_config()`.
    """

    def __call__(self, step: int) -> float:  # pragma: no cover - abstract
        """The KL weight at `step` (an integer >= 0)."""
        raise NotImplementedError  # abstract: subclasses implement it

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> KLWeightSchedule:
        """Rebuild the schedule from `get_config()`."""
        return cls(**config)


def _check_step(step: object) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"Argument `step` must be an integer >= 0. Received: step={step!r}")
    return step


@keras.saving.register_keras_serializable(package="tfcraft")
class ConstantKLWeight(KLWeightSchedule):
    """The same KL weight at every step.

    Example:

    >>> ConstantKLWeight(0.1)(1000)
    0.1

    Args:
        value: Non-negative float. Defaults to `1.0` (the plain ELBO).
    """

    def __init__(self, value: float = 1.0) -> None:
        self.value = check_positive_float("value", value, allow_zero=True)

    def __call__(self, step: int) -> float:
        """The KL weight at `step`."""
        _check_step(step)
        return self.value

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"value": self.value}


@keras.saving.register_keras_serializable(package="tfcraft")
class LinearWarmup(KLWeightSchedule):
    """KL annealing: rise linearly from `start` to `end` over `warmup_steps`, then stay.

    `weight(step) = start + (end - start) * min(step / warmup_steps, 1)`
    (Bowman et al. 2016; Sønderby et al. 2016).

    Example:

    >>> round(LinearWarmup(10, start=0.2)(5), 6)
    0.6

    Args:
        warmup_steps: Positive int; steps until the weight reaches `end`.
        start: Non-negative float; weight at step 0. Defaults to `0.0`.
        end: Non-negative float; weight after the warm-up. Defaults to `1.0`.
    """

    def __init__(self, warmup_steps: int, start: float = 0.0, end: float = 1.0) -> None:
        self.warmup_steps = check_positive_int("warmup_steps", warmup_steps)
        self.start = check_positive_float("start", start, allow_zero=True)
        self.end = check_positive_float("end", end, allow_zero=True)

    def __call__(self, step: int) -> float:
        """The KL weight at `step`."""
        progress = min(_check_step(step) / self.warmup_steps, 1.0)
        return self.start + (self.end - self.start) * progress

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"warmup_steps": self.warmup_steps, "start": self.start, "end": self.end}


@keras.saving.register_keras_serializable(package="tfcraft")
class CyclicalKLWeight(KLWeightSchedule):
    """Cyclical annealing: in each cycle rise linearly from 0 to 1, then hold at 1.

    With `tau = (step mod cycle_steps) / cycle_steps`, the weight is
    `tau / ratio` while `tau < ratio` and `1` afterwards (Fu et al. 2019,
    "Cyclical Annealing Schedule", eq. 4 with the linear monotone function).

    Example:

    >>> [CyclicalKLWeight(4, ratio=0.5)(step) for step in range(6)]
    [0.0, 0.5, 1.0, 1.0, 0.0, 0.5]

    Args:
        cycle_steps: Positive int; length of one cycle in steps.
        ratio: Float in (0, 1]; fraction of the cycle spent rising. Defaults to `0.5`.

    References:
        Fu, Li, Liu, Gao, Celikyilmaz, Carin (2019). Cyclical Annealing Schedule:
        A Simple Approach to Mitigating KL Vanishing. NAACL.
    """

    def __init__(self, cycle_steps: int, ratio: float = 0.5) -> None:
        self.cycle_steps = check_positive_int("cycle_steps", cycle_steps)
        self.ratio = check_float_in_range("ratio", ratio, 0.0, 1.0, high_inclusive=True)

    def __call__(self, step: int) -> float:
        """The KL weight at `step`."""
        tau = (_check_step(step) % self.cycle_steps) / self.cycle_steps
        return min(tau / self.ratio, 1.0)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"cycle_steps": self.cycle_steps, "ratio": self.ratio}


class KLWeightScheduler(Callback):
    """Training callback: set every variational layer's `kl_weight` from a schedule.

    With `update="batch"` the schedule is indexed by the Trainer's global step
    (`trainer.step`, restored on resume, so the schedule continues correctly);
    with `update="epoch"` by the epoch. The weight in use is added to the epoch
    logs as `kl_weight`. The callback is stateless: the weight is a pure function
    of the step, so nothing needs saving in a checkpoint. When the Trainer runs
    several steps per graph call, the weight changes once per call: pass
    `steps_per_execution=1` (or a small number) to the Trainer for a per-step
    warm-up, since `"auto"` runs a whole epoch in one call.

    Example:

    >>> scheduler = KLWeightScheduler(LinearWarmup(1000), update="batch")
    >>> scheduler.schedule(250)
    0.25

    Args:
        schedule: A `KLWeightSchedule` or any callable `int -> float`.
        update: `"batch"` or `"epoch"`. Defaults to `"batch"`.
    """

    def __init__(self, schedule, update: str = "batch") -> None:
        super().__init__()
        if not callable(schedule):
            raise TypeError(
                "Argument `schedule` must be a callable `step -> float` such as "
                f"`tfcraft.bayes.LinearWarmup`. Received: schedule={schedule!r}"
            )
        self.schedule = schedule
        self.update = check_choice("update", update, ("batch", "epoch"))
        self.value: float | None = None
        self._layers: list = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Collect the variational layers of the trainer's model."""
        from tfcraft.layers.variational import variational_layers

        self._layers = list(variational_layers(self.trainer.model))
        self.value = None
        if not self._layers:
            raise ValueError(
                "KLWeightScheduler found no variational layer (`is_variational = True`) "
                f"in model {self.trainer.model.name!r}; there is no KL weight to schedule."
            )

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Set the weight for this epoch (`update="epoch"`)."""
        if self.update == "epoch":
            self._assign(self.schedule(epoch))

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Set the weight for the next step (`update="batch"`)."""
        if self.update == "batch":
            self._assign(self.schedule(int(self.trainer.step)))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Report the weight in use."""
        if logs is not None and self.value is not None:
            logs["kl_weight"] = self.value

    def _assign(self, value: float) -> None:
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"The KL-weight schedule must return a finite float >= 0. Received: {value!r}"
            )
        if value != self.value:  # skip redundant assignments once the warm-up is over
            for layer in self._layers:
                layer.kl_weight.assign(value)
            self.value = value
