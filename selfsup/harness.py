"""The evaluation harness: run a task's evaluation on a model and record Result rows."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from .checkpoint import load_state, load_weights, read_meta, resolve_checkpoint
from .config import config_hash
from .results import Result, Score, code_version, hardware, write_results


def evaluate(task, model: nn.Module, cfg: DictConfig, run_dir: Path, device: torch.device, *,
             world_size: int = 1, step: int | None = None, throughput: float | None = None,
             train_seconds: float | None = None) -> list[Result]:
    """``task.evaluate(model)`` -> Result records, merged into ``run_dir/results.json``."""
    if not hasattr(task, "evaluate"):
        return []
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        out_dir = Path(run_dir) / "figures" / (f"step_{step:08d}" if step is not None else "eval")
        scores: list[Score] = list(task.evaluate(model, out_dir))
    wall = time.perf_counter() - start
    model.train(was_training)
    common = dict(task=task.name, seed=int(cfg.trainer.seed), config_hash=config_hash(cfg), code_version=code_version(),
                  hardware=hardware(device, world_size), wall_time_s=round(wall, 3), throughput=throughput, step=step,
                  train_seconds=None if train_seconds is None else round(train_seconds, 3))
    results = [Result(dataset=s.dataset, split=s.split, metric=s.metric, value=float(s.value), extra=s.extra, **common)
               for s in scores]
    write_results(Path(run_dir) / "results.json", results)
    return results


def model_from_checkpoint(task, ckpt: Path, use_ema: bool = False) -> nn.Module:
    """The task's model with a checkpoint folder's (or its EMA) weights, names and shapes checked.

    Rank 0's task state is restored first: a task may need it to build its model without its data (e.g. the
    tokenizer a text task trained on its corpus), and its evaluation may need it (e.g. RL's counters)."""
    if hasattr(task, "load_state_dict") and (ckpt / "state.pt").is_file():
        states = load_state(ckpt).get("task")
        if states:
            task.load_state_dict(states[0])
    model = task.build_model()
    weights = ckpt / ("ema.safetensors" if use_ema else "model.safetensors")
    model.load_state_dict(load_weights(weights, expected=model.state_dict()))
    return model


def evaluate_checkpoint(task, cfg: DictConfig, checkpoint: str | Path, run_dir: Path, device: torch.device,
                        use_ema: bool = False) -> list[Result]:
    ckpt = resolve_checkpoint(checkpoint)
    model = model_from_checkpoint(task, ckpt, use_ema).to(device)
    meta = read_meta(ckpt)
    return evaluate(task, model, cfg, run_dir, device, step=meta.get("step"), throughput=meta.get("throughput"),
                    train_seconds=meta.get("train_seconds"))
