"""What each `tfcraft` sub-command does, as plain functions the CLI calls."""

from tfcraft.commands.train import evaluate_run, predict_run, report_run, train

__all__ = ["evaluate_run", "predict_run", "report_run", "train"]
