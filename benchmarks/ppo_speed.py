"""Environment steps/s of PPO on a frozen encoder: our loop (each observation embedded once, when collected;
PPO epochs train on the stored embeddings) against a CleanRL-style loop that re-runs the encoder on every
minibatch of every epoch. Same env, network, hyperparameters and code otherwise (`task.cache_embeddings`).

    selfsup bench --suite ppo                       # MiniGrid-Empty-5x5, 8 envs x 128 steps, 4 epochs x 4 minibatches
    selfsup bench --suite ppo --device cuda --write benchmarks/RESULTS.md

An iteration is one rollout (collection) plus its PPO update. Iterations alternate between the two
loops (ours, peer, peer, ours, ...) so machine noise hits both; medians are compared.
"""
from __future__ import annotations

import statistics

import torch

from selfsup.config import resolve, to_object
from selfsup.distributed import autocast
from selfsup.task import BatchPlan

from .throughput import interleaved


def _loop(cache: bool, device: torch.device, precision: str, overrides: list[str]):
    from rl.task import PPOTask
    cfg = resolve(PPOTask.Config, PPOTask.presets, preset="minigrid",
                  overrides=[f"task.cache_embeddings={str(cache).lower()}", *overrides])
    run = to_object(cfg)
    task = PPOTask(run.task)
    torch.manual_seed(0)
    model = task.build_model().to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=run.trainer.lr, eps=run.trainer.eps,
                            fused=device.type == "cuda" or None)
    plan = BatchPlan(micro_batch_size=run.trainer.batch_size, grad_accum=1, rank=0, world_size=1, seed=0,
                     start_step=0, model=model)
    batches = task.train_batches(plan)
    steps = run.task.update_epochs * run.task.env.num_envs * run.task.num_steps // run.trainer.batch_size

    def iteration():
        for _ in range(steps):
            b = {k: v.to(device) for k, v in next(batches).items()}
            with autocast(device, precision):
                loss, _ = task.loss(model, b)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), run.trainer.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
    return iteration, run.task.env.num_envs * run.task.num_steps


def measure_ppo(device: torch.device, precision: str, repeats: int, overrides: list[str]) -> list[dict]:
    loops = {"selfsup PPO (embeddings cached)": _loop(True, device, precision, overrides),
             "CleanRL-style (re-encode every epoch)": _loop(False, device, precision, overrides)}
    for fn, _ in loops.values():
        fn()                                       # warm-up: first rollout, allocator
    times = interleaved([(name, fn) for name, (fn, _) in loops.items()], device, steps=1, repeats=repeats)
    return [{"name": name, "iteration_s": statistics.median(t),
             "env_steps_per_s": loops[name][1] / statistics.median(t),
             "spread": statistics.pstdev(t) / statistics.median(t)} for name, t in times.items()]


def render(rows: list[dict], header: list[str]) -> list[str]:
    base = rows[0]["env_steps_per_s"]
    lines = header + ["| loop | env steps/s | iteration (s) | ours ÷ this |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['env_steps_per_s']:,.0f} | "
                     f"{r['iteration_s']:.2f} ± {100 * r['spread']:.0f}% | "
                     f"{base / r['env_steps_per_s']:.2f}× |")
    return lines
