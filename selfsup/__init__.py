"""selfsup: the shared engine — Task interface, Trainer, checkpoints, config, results, CLI."""
from .config import TrainerConfig
from .results import Result, Score
from .task import BatchPlan

__all__ = ["BatchPlan", "Result", "Score", "TrainerConfig"]
