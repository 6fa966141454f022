"""The one interface a domain package implements, and how the engine finds tasks.

A Task is duck-typed. Required:

    name: str                                   # what `selfsup train NAME` calls it
    Config: type                                # a dataclass of the task's own settings
    presets: dict[str, dict]                    # preset name -> nested overrides ({"task": {...}, "trainer": {...}})
    __init__(self, cfg)                         # cfg: an instance of Config
    build_model(self) -> nn.Module              # on CPU, fp32; the trainer moves and wraps it
    train_batches(self, plan: BatchPlan) -> Iterator   # per-rank micro-batches from plan.start_step on
    loss(self, model, batch) -> (loss, metrics)        # loss: scalar mean over loss_count(batch) units

Optional:

    loss_count(self, batch) -> int | Tensor     # units the loss averages over (default: samples); the trainer
                                                # weights micro-batches by it so accumulation equals one big batch
    num_tokens(self, batch) -> int              # for tokens/s
    flops_per_batch(self, batch) -> float       # training FLOPs of one micro-batch (else counted once)
    param_groups(self, model, weight_decay) -> list[dict]   # AdamW groups; a group's "lr_scale" (layer decay)
                                                            # is honoured
    evaluate(self, model, out_dir) -> list[Score]           # see selfsup.results; figures go to out_dir
    state_dict(self) / load_state_dict(self, d) # per-rank task state a resume needs beyond the data position
                                                # (e.g. RL's rollout); restored before train_batches is called

A Task never touches devices, precision, DDP, checkpoints or logging.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points

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
    model: object = field(default=None, compare=False, repr=False)   # the live (unwrapped) model, for tasks whose
                                                                     # data depends on it: RL collects rollouts with it

    @property
    def global_batch_size(self) -> int:
        return self.micro_batch_size * self.grad_accum * self.world_size


def available_tasks() -> dict[str, object]:
    """Task name -> entry point (not yet imported), from every installed package."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def get_task_class(name: str) -> type:
    tasks = available_tasks()
    if name not in tasks:
        raise KeyError(f"unknown task '{name}'. Available tasks: {', '.join(sorted(tasks)) or '(none installed)'}"
                       " — run `selfsup tasks` to list them with presets")
    return tasks[name].load()
