"""Training engine: the compiled custom loop, clipping, callbacks and checkpoints.

Example:

>>> from tfcraft.training import Trainer, clipping
>>> clipping.get("global_norm:1.0")
ByGlobalNorm(norm=1.0)
"""

from tfcraft.training import clipping
from tfcraft.training.callbacks_base import Callback, CallbackList
from tfcraft.training.steps import make_train_step
from tfcraft.training.trainer import Trainer

__all__ = ["Callback", "CallbackList", "Trainer", "clipping", "make_train_step"]

try:  # built-in callbacks are written concurrently; re-export them once they exist
    from tfcraft.training.callbacks import *  # noqa: F403
    from tfcraft.training.callbacks import __all__ as _callbacks_all
except ImportError:  # pragma: no cover - until callbacks.py lands
    _callbacks_all = []
__all__ += [name for name in _callbacks_all if name not in __all__]
