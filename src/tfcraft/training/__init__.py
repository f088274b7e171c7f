"""Training engine: the compiled custom loop, clipping, callbacks and checkpoints.

Example:

>>> from tfcraft.training import Trainer, clipping
>>> clipping.get("global_norm:1.0")
ByGlobalNorm(norm=1.0)
"""

from tfcraft.training import clipping
from tfcraft.training.callbacks import (
    CSVLogger,
    EarlyStopping,
    History,
    JSONLLogger,
    LearningRateScheduler,
    NanGuard,
    ProgressBar,
    TensorBoard,
)
from tfcraft.training.callbacks_base import Callback, CallbackList
from tfcraft.training.checkpoint import CheckpointStore
from tfcraft.training.steps import make_train_step
from tfcraft.training.trainer import Trainer

__all__ = [
    "CSVLogger",
    "Callback",
    "CallbackList",
    "CheckpointStore",
    "EarlyStopping",
    "History",
    "JSONLLogger",
    "LearningRateScheduler",
    "NanGuard",
    "ProgressBar",
    "TensorBoard",
    "Trainer",
    "clipping",
    "make_train_step",
]
