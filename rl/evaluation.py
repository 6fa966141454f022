"""Evaluation episodes of a policy on fresh, separately seeded envs: greedy (argmax) or sampled actions."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch

from selfsup.errors import ConfigError
from selfsup.progress import progress

from .envs import EnvConfig, make_vector_env


@torch.no_grad()
def run_episodes(cfg: EnvConfig, policy, episodes: int, seed: int, device: torch.device, greedy: bool,
                 max_envs: int = 8) -> list[float]:
    """Returns of ``episodes`` complete episodes. Each env contributes the same number of its *first*
    episodes, so short episodes are not over-represented (as they are when taking whichever end first)."""
    if episodes <= 0:
        raise ConfigError("task.eval_episodes must be positive")
    n = min(episodes, max_envs)
    per_env = math.ceil(episodes / n)
    envs = make_vector_env(replace(cfg, num_envs=n, vector="sync" if cfg.vector == "async" else cfg.vector))
    g = torch.Generator(device).manual_seed(seed)
    bar = progress(total=n * per_env, desc=f"evaluate {episodes} episodes", min_total=16, leave=False)
    try:
        obs, _ = envs.reset(seed=seed)
        done_eps = [[] for _ in range(n)]
        running, after_done = np.zeros(n), np.zeros(n, bool)
        while min(len(d) for d in done_eps) < per_env:
            logits, _ = policy(obs=torch.as_tensor(obs, device=device))
            probs = torch.softmax(logits.float(), -1)
            action = logits.argmax(-1) if greedy else torch.multinomial(probs, 1, generator=g)[:, 0]
            obs, reward, term, trunc, _ = envs.step(action.cpu().numpy())
            valid = ~after_done
            running += np.where(valid, reward, 0.0)
            done = np.logical_or(term, trunc) & valid
            for i in np.flatnonzero(done):
                done_eps[i].append(float(running[i]))
                running[i] = 0.0
                bar.update(int(len(done_eps[i]) <= per_env))
            after_done = done
    finally:
        bar.close()
        envs.close()
    return [r for i in range(per_env) for d in done_eps for r in d[i:i + 1]][:episodes]
