"""selfsup: the shared engine — Task interface, Trainer, checkpoints, config, results, CLI."""
from .config import TrainerConfig
from .errors import UserError
from .results import Result, Score
from .runs import run_state
from .task import BatchPlan

__all__ = ["BatchPlan", "Result", "Score", "TrainerConfig", "UserError", "run_state"]
