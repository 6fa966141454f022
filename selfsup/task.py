"""The one interface a domain package implements, and how the engine finds and builds tasks.

A Task is duck-typed. Required:

    name: str                                   # what `selfsup train NAME` calls it
    Config: type                                # a dataclass of the task's own settings
    presets: dict[str, dict]                    # preset name -> nested overrides ({"task": {...}, "trainer": {...}})
    __init__(self, cfg)                         # cfg: an instance of Config; the global RNGs are seeded with
                                                # trainer.seed first (build_task), so random weights drawn here
                                                # are the same in every process
    build_model(self) -> nn.Module              # on CPU, fp32; the trainer seeds, moves and wraps it
    train_batches(self, plan: BatchPlan) -> Iterator   # per-rank micro-batches from plan.start_step on
    loss(self, model, batch) -> (loss, metrics)        # loss: scalar mean over loss_count(batch) units

Optional:

    loss_count(self, batch) -> int | Tensor     # units the loss averages over (default: samples); the trainer
                                                # weights micro-batches by it so accumulation equals one big batch
    num_tokens(self, batch) -> int              # for tokens/s
    flops_per_batch(self, batch) -> float       # training FLOPs of one micro-batch (else counted once)
    param_groups(self, model, weight_decay) -> list[dict]   # AdamW groups; a group's "lr_scale" (layer decay)
                                                            # is honoured
    evaluate(self, model, out_dir) -> list[Score]           # see selfsup.results; figures go to out_dir. The model
                                                            # is in eval mode, under no_grad, on its device
    state_dict(self) / load_state_dict(self, d) # per-rank task state a resume needs beyond the data position
                                                # (e.g. RL's rollout); restored before train_batches is called

A model may declare how it is sharded (torchtitan's per-model parallelize, in one method):

    model.shard_units(self) -> list[nn.Module]  # e.g. its transformer blocks: with trainer.fsdp the trainer
                                                # wraps each with FSDP2's fully_shard, then the root

A Task never touches devices, precision, train/eval modes, the global RNG, DDP, checkpoints or logging: what
it needs comes through the BatchPlan (the device, seeded generators, the live model and a context to act with
it) and the evaluation harness.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import torch
from omegaconf import DictConfig

from .config import to_object
from .errors import ConfigError
from .rng import generator, mix_seed, seed_everything

ENTRY_POINT_GROUP = "selfsup.tasks"


@dataclass(frozen=True)
class BatchPlan:
    """What a task needs to yield this rank's micro-batches, resumably.

    Global step s uses the samples at stream positions [s*B, (s+1)*B) where B is the global batch;
    rank r's micro-step m takes the slice (m*world + r) of size ``micro_batch_size`` within it.
    A run that resumes at step s must yield exactly what the uninterrupted run yielded from there.
    """
    micro_batch_size: int
    grad_accum: int
    rank: int
    world_size: int
    seed: int
    start_step: int
    num_workers: int = 0
    pin_memory: bool = False
    device: torch.device = field(default=torch.device("cpu"), compare=False)   # where the live model runs
    model: object = field(default=None, compare=False, repr=False)   # the live (unwrapped) model, for tasks whose
                                                                     # data depends on it: RL collects rollouts with it

    @property
    def global_batch_size(self) -> int:
        return self.micro_batch_size * self.grad_accum * self.world_size

    def seed_for(self, *keys: int) -> int:
        """A seed for this rank's stream named by ``keys`` (e.g. an iteration): the same on a resume."""
        return mix_seed(self.seed, self.rank, *keys)

    def generator(self, *keys: int, device: torch.device | str | None = None) -> torch.Generator:
        """A private generator for this rank's stream named by ``keys``, on ``device`` (default: the plan's)."""
        return generator(self.seed, self.rank, *keys, device=self.device if device is None else device)

    @contextmanager
    def acting(self):
        """Use the live model to produce data (e.g. collect rollouts): eval mode, no gradients; the trainer's
        mode is restored after. Dropout and similar layers do not act while data is collected."""
        model = self.model
        if model is None:
            raise RuntimeError("BatchPlan.model is not set: this plan was not made by the trainer")
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                yield model
        finally:
            model.train(was_training)


def available_tasks() -> dict[str, object]:
    """Task name -> entry point (not yet imported), from every installed package."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def get_task_class(name: str) -> type:
    tasks = available_tasks()
    if name not in tasks:
        raise ConfigError(f"unknown task '{name}'. Available tasks: {', '.join(sorted(tasks)) or '(none installed)'}"
                          " — run `selfsup tasks` to list them with presets")
    return tasks[name].load()


def build_task(task_cls: type, cfg: DictConfig):
    """The task for a resolved config, built after seeding every global RNG with trainer.seed: a task that draws
    random weights in ``__init__`` (e.g. a random-encoder baseline) gets the same ones in every process."""
    seed_everything(int(cfg.trainer.seed))
    return task_cls(to_object(cfg).task)
