"""PPO (Schulman et al., 2017) as a Task on the shared trainer: `selfsup train ppo --preset minigrid`.

The task collects rollouts with the live policy and yields PPO minibatches; the trainer does the rest
(precision, devices, DDP, checkpoints, logging). One trainer step = one minibatch gradient step, so

    trainer.batch_size  = the PPO minibatch (global)      e.g. num_envs * num_steps * world / num_minibatches
    trainer.max_steps   = iterations * update_epochs * num_minibatches
    environment steps   = iterations * num_envs * num_steps * world

CleanRL's ppo.py is the reference for every default (noted per field). Two differences, on purpose:
the LR follows the trainer's warmup + cosine schedule instead of a linear anneal, and gradient clipping
is the trainer's (`trainer.grad_clip`, 0.5 in the presets).

Resume: weights, optimizer, RNG, counters, the return curve and — when a checkpoint falls inside an
iteration — that iteration's rollout are restored, so the rest of the iteration replays exactly. Env
internals cannot be saved safely (no pickle), so episodes in flight at the checkpoint restart from a reset.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from selfsup.encoders import describe
from selfsup.errors import CheckpointError, ConfigError
from selfsup.io import atomic_write_json
from selfsup.optim import merge_groups
from selfsup.results import Score
from selfsup.task import BatchPlan
from vision.legacy import migrate_vit_section
from vision.vit import vit_size

from .envs import EnvConfig, make_vector_env, num_actions
from .policy import EncoderConfig, build_policy
from .rollout import collect, gae, start

MINIGRID_VIT = vit_size("minigrid")   # one 8-px patch per grid tile


@dataclass
class PPOConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    num_steps: int = 128          # steps per env per rollout (CleanRL: 128)
    update_epochs: int = 4        # passes over each rollout (CleanRL: 4)
    gamma: float = 0.99           # discount (CleanRL: 0.99)
    gae_lambda: float = 0.95      # GAE lambda (CleanRL: 0.95)
    clip_coef: float = 0.2        # surrogate clipping (CleanRL: 0.2 classic control, 0.1 Atari)
    clip_vloss: bool = True       # clip the value update like the policy's (CleanRL: true)
    ent_coef: float = 0.01        # entropy bonus (CleanRL: 0.01)
    vf_coef: float = 0.5          # value loss weight (CleanRL: 0.5)
    norm_adv: bool = True         # normalise advantages per minibatch (CleanRL: true)
    obs_norm: bool = False        # running mean/std normalisation of the policy's input features
    clip_rewards: bool = False    # train on sign(reward) (CleanRL's Atari ClipRewardEnv); returns stay raw
    cache_embeddings: bool = True # frozen backbone: embed each env step once and train on the stored embeddings
                                  # (false: re-encode every minibatch of every epoch, as CleanRL's loop does)
    eval_episodes: int = 32       # evaluation episodes per mode (deterministic argmax, stochastic sampling)
    eval_seed: int = 1_000_000    # evaluation envs are seeded from here: disjoint from training seeds


class PPOTask:
    name = "ppo"
    Config = PPOConfig
    presets = {
        # CPU, minutes: MiniGrid's empty 5x5 room from its 56x56 RGB partial view, 8 envs x 128 steps,
        # 4 minibatches of 256, 4 epochs: 40 iterations = 40,960 env steps. The encoder is a random ViT
        # unless task.encoder.init names an MAE run (see `selfsup rl-pretrain`).
        "minigrid": {"trainer": {"max_steps": 640, "batch_size": 256, "lr": 2.5e-4, "eps": 1e-5, "grad_clip": 0.5,
                                 "log_every": 16, "checkpoint_every": 160, "count_flops": False},
                     "task": {"env": {"id": "MiniGrid-Empty-5x5-v0", "num_envs": 8},
                              "encoder": {"kind": "vit", "model": MINIGRID_VIT}}},
        "doorkey": {"trainer": {"max_steps": 3200, "batch_size": 256, "lr": 2.5e-4, "eps": 1e-5, "grad_clip": 0.5,
                                "log_every": 16, "checkpoint_every": 320, "count_flops": False},
                    "task": {"env": {"id": "MiniGrid-DoorKey-5x5-v0", "num_envs": 8},
                             "encoder": {"kind": "vit", "model": MINIGRID_VIT}}},
        # CartPole from rendered frames, 4 stacked 64x64 frames, NatureCNN from scratch.
        "cartpole-pixels": {"trainer": {"max_steps": 2000, "batch_size": 128, "lr": 2.5e-4, "eps": 1e-5,
                                        "grad_clip": 0.5, "log_every": 20, "checkpoint_every": 500},
                            "task": {"env": {"id": "CartPole-v1", "num_envs": 4, "frame_size": 64, "history": 4},
                                     "encoder": {"kind": "cnn"}}},
        # CleanRL's Atari setting (ppo_atari.py): 8 envs x 128 steps, 4 minibatches, clip 0.1, 10M frames
        # = 2,441 iterations; ale-py's native vector env, 84x84 RGB, 4 frames.
        "atari": {"trainer": {"max_steps": 39_056, "batch_size": 256, "lr": 2.5e-4, "eps": 1e-5, "grad_clip": 0.5,
                              "log_every": 100, "checkpoint_every": 2000},
                  "task": {"env": {"id": "ALE/Breakout-v5", "num_envs": 8, "frame_size": 84, "history": 4,
                                   "vector": "ale"},
                           "encoder": {"kind": "cnn"}, "clip_coef": 0.1, "clip_rewards": True}},
    }

    @staticmethod
    def migrate_config(data: dict) -> dict:
        """Runs saved before the ViT / method split: task.encoder.model was a flat MAEConfig (decoder_* keys)."""
        return migrate_vit_section(data, "task", "encoder", "model")

    def __init__(self, cfg: PPOConfig):
        self.cfg = cfg
        probe = make_vector_env(replace(cfg.env, num_envs=1,
                                        vector="sync" if cfg.env.vector == "async" else cfg.env.vector))
        self.obs_shape = tuple(probe.single_observation_space.shape)
        self.num_actions = num_actions(probe)
        probe.close()
        self.curve: list[list[float]] = []     # [env_steps, mean return, episodes] per rollout with episodes
                                               # (this rank)
        self.env_steps = 0                     # over all ranks
        self.rollout: dict | None = None       # the current iteration's rollout, flattened to (T*N, ...)
        self.iteration = -1                    # which iteration self.rollout belongs to
        self.last_return = float("nan")

    def build_model(self):
        return build_policy(self.cfg.encoder, self.obs_shape, self.num_actions, self.cfg.obs_norm)

    def param_groups(self, model, weight_decay: float) -> list[dict]:
        """The image encoder (when it trains) at trainer.lr * encoder.lr_scale, grouped by its own ``param_groups``
        (no weight decay on norms, biases and embeddings); CNN/flat backbones train at full LR."""
        ids = {id(p) for p in model.backbone.parameters()}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        groups = [{"params": rest, "weight_decay": weight_decay}]
        if self.cfg.encoder.kind != "vit":
            backbone = [p for p in model.backbone.parameters() if p.requires_grad]
            return groups + ([{"params": backbone, "weight_decay": weight_decay}] if backbone else [])
        encoder = model.backbone.encoder.param_groups(weight_decay)
        for g in encoder:
            g["lr_scale"] = g.get("lr_scale", 1.0) * self.cfg.encoder.lr_scale
        return groups + merge_groups(encoder)

    # ------------------------------------------------------------------ rollouts -> minibatches

    def train_batches(self, plan: BatchPlan):
        cfg, model, device = self.cfg, plan.model, plan.device
        per_rollout = cfg.env.num_envs * cfg.num_steps
        minibatch = plan.micro_batch_size * plan.grad_accum
        if per_rollout % minibatch:
            raise ConfigError(f"a rollout of {per_rollout} steps per rank (task.env.num_envs x task.num_steps) "
                             f"must split into minibatches of {minibatch} (trainer.batch_size / world size); choose "
                             "trainer.batch_size = num_envs x num_steps x world / num_minibatches")
        n_minibatches = per_rollout // minibatch
        steps_per_iteration = cfg.update_epochs * n_minibatches
        iteration, offset = divmod(plan.start_step, steps_per_iteration)
        envs = make_vector_env(cfg.env)
        try:
            with plan.acting():
                carry = start(envs, model, plan.seed_for(iteration), device)
            if offset:
                if self.rollout is None or self.iteration != iteration:
                    raise CheckpointError(f"resuming at step {plan.start_step}, inside PPO iteration {iteration}, "
                                     "needs that iteration's rollout in the checkpoint's task state, which is missing; "
                                     "resume with the same number of ranks, from a checkpoint this code wrote")
                yield from self._minibatches(plan, iteration, n_minibatches, offset)
                iteration += 1
            while True:
                with plan.acting():            # eval mode, no gradients; the trainer's mode after
                    rollout, carry, episodes = collect(envs, model, carry, cfg.num_steps, device,
                                                       plan.generator(iteration, 1),
                                                       model.frozen and cfg.cache_embeddings,
                                                       update_norm=cfg.obs_norm, clip_rewards=cfg.clip_rewards)
                self.env_steps = (iteration + 1) * per_rollout * plan.world_size
                if episodes:
                    self.last_return = float(np.mean([r for r, _ in episodes]))
                    self.curve.append([self.env_steps, self.last_return, len(episodes)])
                self.rollout, self.iteration = self._flatten(rollout), iteration
                yield from self._minibatches(plan, iteration, n_minibatches, 0)
                iteration += 1
        finally:
            envs.close()

    def _flatten(self, r: dict) -> dict:
        adv = gae(r["rewards"], r["values"], r["terminated"], r["truncated"], r["last_value"],
                  self.cfg.gamma, self.cfg.gae_lambda)
        out = {"advantages": adv, "returns": adv + r["values"]}
        for k in ("obs", "emb", "actions", "logprobs", "values", "valid"):
            if k in r:
                out[k] = r[k]
        return {k: v.flatten(0, 1) for k, v in out.items()}

    def _minibatches(self, plan: BatchPlan, iteration: int, n_minibatches: int, skip: int):
        """Epochs of shuffled minibatches, each split into grad_accum micro-batches; skips the first ``skip`` steps."""
        size = plan.micro_batch_size
        n = n_minibatches * size * plan.grad_accum
        for epoch in range(self.cfg.update_epochs):
            perm = torch.randperm(n, generator=plan.generator(iteration, 2, epoch, device="cpu"))
            for m in range(n_minibatches):
                if epoch * n_minibatches + m < skip:
                    continue
                for a in range(plan.grad_accum):
                    idx = perm[(m * plan.grad_accum + a) * size:(m * plan.grad_accum + a + 1) * size]
                    yield {k: v[idx] for k, v in self.rollout.items()}

    # ------------------------------------------------------------------ the loss

    def loss_count(self, batch) -> torch.Tensor:
        return batch["valid"].sum()

    def loss(self, model, batch):
        cfg = self.cfg
        logits, value = model(emb=batch["emb"]) if "emb" in batch else model(obs=batch["obs"])
        logp_all = torch.log_softmax(logits.float(), -1)
        logp = logp_all.gather(-1, batch["actions"][:, None]).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        mask = batch["valid"].float()
        count = mask.sum().clamp(min=1.0)
        mean = lambda x: (x * mask).sum() / count  # noqa: E731

        log_ratio = logp - batch["logprobs"]
        ratio = log_ratio.exp()
        adv = batch["advantages"]
        if cfg.norm_adv:
            adv_mean = mean(adv)
            adv_std = torch.sqrt(mean((adv - adv_mean) ** 2) * count / (count - 1).clamp(min=1.0))
            adv = (adv - adv_mean) / (adv_std + 1e-8)
        pg_loss = mean(torch.max(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)))
        value = value.float()
        if cfg.clip_vloss:
            clipped = batch["values"] + (value - batch["values"]).clamp(-cfg.clip_coef, cfg.clip_coef)
            v_loss = 0.5 * mean(torch.max((value - batch["returns"]) ** 2, (clipped - batch["returns"]) ** 2))
        else:
            v_loss = 0.5 * mean((value - batch["returns"]) ** 2)
        ent = mean(entropy)
        loss = pg_loss - cfg.ent_coef * ent + cfg.vf_coef * v_loss
        with torch.no_grad():
            metrics = {"policy_loss": pg_loss, "value_loss": v_loss, "entropy": ent,
                       "approx_kl": mean((ratio - 1) - log_ratio),
                       "clipfrac": mean(((ratio - 1).abs() > cfg.clip_coef).float()),
                       "env_steps": float(self.env_steps)}
        if self.last_return == self.last_return:     # known once an episode has ended
            metrics["episodic_return"] = self.last_return
        return loss, metrics

    # ------------------------------------------------------------------ evaluation and resume

    def evaluate(self, model, out_dir: Path) -> list[Score]:
        from .evaluation import run_episodes
        cfg, device = self.cfg, next(model.parameters()).device
        extra = {"env_steps": self.env_steps, "episodes": cfg.eval_episodes, "encoder": self.cfg.encoder.kind,
                 "mode": self.cfg.encoder.mode}
        if self.cfg.encoder.kind == "vit":    # what the backbone is and how frames reach it
            extra.update(describe(model.backbone.encoder), encoder_init=cfg.encoder.init or "random ViT",
                         pretrained=bool(cfg.encoder.init) and cfg.encoder.pretrained, pool=cfg.encoder.pool)
        scores = []
        for greedy in (True, False):
            returns = run_episodes(cfg.env, model, cfg.eval_episodes, cfg.eval_seed, device, greedy)
            name = "deterministic" if greedy else "stochastic"
            scores.append(Score(cfg.env.id, "eval", f"return_{name}", float(np.mean(returns)), extra))
        if self.curve:   # mean return over training: the area under the learning curve (learning speed)
            scores.append(Score(cfg.env.id, "train", "return_auc", float(np.mean([c[1] for c in self.curve])), extra))
        atomic_write_json(Path(out_dir) / "return_curve.json",
                          {"env_steps": [c[0] for c in self.curve], "return": [c[1] for c in self.curve],
                           "episodes": [c[2] for c in self.curve]})
        return scores

    def state_dict(self) -> dict:
        return {"curve": self.curve, "env_steps": self.env_steps, "iteration": self.iteration,
                "last_return": self.last_return, "rollout": self.rollout}

    def load_state_dict(self, state: dict) -> None:
        self.curve, self.env_steps = [list(c) for c in state["curve"]], int(state["env_steps"])
        self.iteration, self.last_return = int(state["iteration"]), float(state["last_return"])
        self.rollout = state["rollout"]
