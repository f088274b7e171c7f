"""Keras 3 building blocks: deterministic, variational and distribution-output layers."""

from tfcraft.layers.linear import Linear

__all__ = ["Linear"]
