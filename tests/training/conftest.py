import pytest

from tfcraft.training import Callback


class StopAfterCalls(Callback):
    """Sets `stop_training` after the given number of graph calls (batch-end hooks)."""

    def __init__(self, calls):
        super().__init__()
        self.calls = calls

    def on_train_batch_end(self, batch, logs=None):
        self.calls -= 1
        if self.calls == 0:
            self.trainer.stop_training = True


@pytest.fixture
def stop_after_calls():
    """The `StopAfterCalls` callback class."""
    return StopAfterCalls
