"""Training engine: the compiled custom loop, clipping, callbacks and checkpoints."""
