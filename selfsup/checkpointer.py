"""The checkpointer: what a checkpoint holds, when one is written, how many are kept, and which one a resume
starts from (the newest intact one: damaged ones are skipped with a warning). The folder format is
selfsup.checkpoint's."""
from __future__ import annotations

from pathlib import Path

from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from . import distributed as D
from .checkpoint import (
    clean_stale,
    load_state,
    load_weights,
    newest_intact,
    save_checkpoint,
    verify_checkpoint,
)
from .config import TrainerConfig
from .errors import CheckpointError
from .train_state import TrainState

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


class Checkpointer:
    def __init__(self, run_dir: Path, tc: TrainerConfig, env: D.Env, meta: dict):
        self.root, self.env = Path(run_dir) / "checkpoints", env
        self.every, self.keep_last = tc.checkpoint_every, tc.keep_last
        self.meta = meta                      # task, config hash, code version: recorded in every meta.json

    # ---------------------------------------------------------------- resume

    def tidy(self) -> list[str]:
        """Rank 0, before a resume looks for its checkpoint: what killed writers left in checkpoints/."""
        return clean_stale(self.root)

    def find(self) -> tuple[Path, dict] | tuple[None, None]:
        """The newest checkpoint that verifies and whose state loads, with that state; reads only."""
        ckpt, read = newest_intact(self.root, lambda c: (verify_checkpoint(c), load_state(c)))
        if ckpt is None:
            return None, None
        meta, saved = read
        if meta.get("task", self.meta["task"]) != self.meta["task"]:
            raise CheckpointError(f"{ckpt} was saved by task '{meta['task']}', not '{self.meta['task']}'; "
                                  "resume it with the task that wrote it")
        return ckpt, saved

    @staticmethod
    def load_model(ckpt: Path, raw: nn.Module) -> None:
        raw.load_state_dict(load_weights(ckpt / "model.safetensors", expected=raw.state_dict()))

    def load_training(self, ckpt: Path, saved: dict, training) -> None:
        """Optimizer, scheduler, scaler and EMA from a checkpoint; an error names the file that does not fit."""
        try:
            model = training.model.module if isinstance(training.model, nn.parallel.DistributedDataParallel) \
                else training.model
            set_optimizer_state_dict(model, training.optimizer, saved["optimizer"], options=FULL)
            training.scheduler.load_state_dict(saved["scheduler"])
            training.scaler.load_state_dict(saved["scaler"])
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise CheckpointError(f"{ckpt / 'state.pt'} does not fit this run's optimizer "
                                  f"({type(e).__name__}: {(str(e).splitlines() or [''])[0]})") from None
        if training.ema is not None:
            ema_path = ckpt / "ema.safetensors"
            ema = training.ema
            ema.load(load_weights(ema_path, expected=ema.shadow) if ema_path.exists() else ema.shadow)

    # ---------------------------------------------------------------- save

    def due(self, step: int, last_step: int, stop: bool) -> bool:
        return stop or step == last_step or bool(self.every and step % self.every == 0)

    def save(self, training, state: TrainState, task, throughput: float | None) -> Path:
        """A collective: every rank contributes its shards, RNG and task state; rank 0 writes."""
        env = self.env
        model_state = get_model_state_dict(training.raw, options=FULL)
        optim_state = get_optimizer_state_dict(training.raw, training.optimizer, options=FULL)
        train_state = state.state_dict(env, task)
        path = self.root / f"step_{state.step:08d}"
        if env.is_main:
            saved = {"optimizer": optim_state, "scheduler": training.scheduler.state_dict(),
                     "scaler": training.scaler.state_dict(), **train_state}
            meta = {**self.meta, "world_size": env.world_size, "throughput": throughput,
                    "train_seconds": train_state["train_seconds"]}
            ema = training.ema.state_dict(training.raw) if training.ema is not None else None
            path = save_checkpoint(self.root, state.step, model_state, saved, meta, ema_state=ema,
                                   keep_last=self.keep_last)
        D.barrier(env)
        return path
