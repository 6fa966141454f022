"""Collecting rollouts from vector envs, and generalised advantage estimation under next-step autoreset.

gymnasium 1.x vector envs autoreset on the *next* step: if step t ends an episode it returns the
episode's true final observation, and step t+1 ignores its action and returns the reset observation
with reward 0. So in a rollout

    position t     obs o_t, action a_t -> reward r_t, terminated/truncated, next obs o_{t+1} (the final obs)
    position t+1   obs o_{t+1} (final obs, its value is V(final)), action ignored -> reset obs   [invalid]

Position t+1 is not a transition of the MDP: it is masked out of every loss (``valid``). And position t
bootstraps from V(o_{t+1}) = V(final obs) when the episode was truncated (time limit), and from 0 when it
terminated — which is what a same-step-autoreset loop computes from ``info["final_obs"]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Carry:
    """What continues from one rollout to the next, per env."""
    obs: np.ndarray                 # (N, ...) the current observation
    emb: torch.Tensor               # (N, ...) its embedding: every observation is embedded exactly once
    after_done: np.ndarray          # (N,) bool: the last step ended an episode, so the next one is the autoreset step
    ep_return: np.ndarray           # (N,) running undiscounted return of the current episode
    ep_length: np.ndarray           # (N,) steps so far in the current episode


def start(envs, policy, seed: int, device: torch.device) -> Carry:
    obs, _ = envs.reset(seed=seed)
    n = envs.num_envs
    return Carry(obs, policy.embed(torch.as_tensor(obs, device=device)), np.zeros(n, bool),
                 np.zeros(n), np.zeros(n, np.int64))


@torch.no_grad()
def collect(envs, policy, carry: Carry, num_steps: int, device: torch.device, generator: torch.Generator,
            store_embeddings: bool, update_norm: bool = False, clip_rewards: bool = False, reuse_frames: bool = True):
    """Run ``num_steps`` steps of every env with the current policy.

    Returns (rollout, carry, episodes): rollout is a dict of CPU tensors with leading (T, N) dims —
    "obs" (or "emb" when ``store_embeddings``), actions, logprobs, values, rewards, terminated, truncated,
    valid — plus "last_value" (N,); episodes is a list of (return, length) of the episodes that ended.
    With a frozen per-frame backbone and stacked frames, each new frame is embedded once (``embed_history``).
    """
    store_key = "emb" if store_embeddings else "obs"
    stored, keys = [], ("actions", "logprobs", "values", "rewards", "terminated", "truncated", "valid")
    cols: dict[str, list] = {k: [] for k in keys}
    episodes = []
    for _ in range(num_steps):
        logits, value = policy.heads(carry.emb, update_norm=update_norm)
        logp_all = torch.log_softmax(logits.float(), -1)
        action = torch.multinomial(logp_all.exp(), 1, generator=generator).squeeze(-1)
        stored.append(carry.emb.cpu() if store_embeddings else torch.as_tensor(carry.obs))
        valid = ~carry.after_done
        obs, reward, term, trunc, _ = envs.step(action.cpu().numpy())
        reward = np.asarray(reward, dtype=np.float64)
        carry.ep_return += np.where(valid, reward, 0.0)
        carry.ep_length += valid
        done = np.logical_or(term, trunc)
        for i in np.flatnonzero(done & valid):
            episodes.append((float(carry.ep_return[i]), int(carry.ep_length[i])))
            carry.ep_return[i], carry.ep_length[i] = 0.0, 0
        train_reward = np.sign(reward) if clip_rewards else reward
        for k, v in (("actions", action.cpu()), ("logprobs", logp_all.gather(-1, action[:, None]).squeeze(-1).cpu()),
                     ("values", value.float().cpu()), ("rewards", torch.as_tensor(train_reward, dtype=torch.float32)),
                     ("terminated", torch.as_tensor(term)), ("truncated", torch.as_tensor(trunc)),
                     ("valid", torch.as_tensor(valid))):
            cols[k].append(v)
        carry.emb = embed_history(policy, obs, carry.obs, carry.emb, device) if reuse_frames else \
            policy.embed(torch.as_tensor(obs, device=device))
        carry.obs, carry.after_done = obs, done & valid
    _, last_value = policy.heads(carry.emb)
    rollout = {store_key: torch.stack(stored), **{k: torch.stack(v) for k, v in cols.items()},
               "last_value": last_value.float().cpu()}
    return rollout, carry, episodes


def embed_history(policy, obs: np.ndarray, prev_obs: np.ndarray, prev_emb: torch.Tensor,
                  device: torch.device) -> torch.Tensor:
    """Embeddings of stacked observations (N, k, H, W, 3), reusing the previous step's per-frame embeddings
    wherever the stack only shifted by one frame: the embedding history costs one frame per env step.
    Stacks that did not shift (a reset, padded with the first frame) are embedded whole."""
    per_frame = getattr(policy, "frozen", False) and obs.ndim == 5 and obs.shape[1] > 1 and prev_emb.ndim >= 3
    if not per_frame:
        return policy.embed(torch.as_tensor(obs, device=device))
    shifted = torch.as_tensor((obs[:, :-1] == prev_obs[:, 1:]).reshape(len(obs), -1).all(1), device=device)
    emb = torch.empty_like(prev_emb)
    x = torch.as_tensor(obs, device=device)
    if shifted.any():
        emb[shifted] = torch.cat([prev_emb[shifted, 1:], policy.embed(x[shifted][:, -1:])], 1)
    if (~shifted).any():
        emb[~shifted] = policy.embed(x[~shifted])
    return emb


def gae(rewards: torch.Tensor, values: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor,
        last_value: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Advantages (T, N) from a next-step-autoreset rollout (see the module docstring).

    delta_t = r_t + gamma * V(o_{t+1}) * (1 - terminated_t) - V(o_t); the sum stops at any episode end.
    """
    T = rewards.shape[0]
    next_values = torch.cat([values[1:], last_value[None]])
    not_term = 1.0 - terminated.float()
    not_done = 1.0 - (terminated | truncated).float()
    delta = rewards + gamma * next_values * not_term - values
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(last_value)
    for t in reversed(range(T)):
        running = delta[t] + gamma * lam * not_done[t] * running
        adv[t] = running
    return adv
