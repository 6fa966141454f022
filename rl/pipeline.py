"""In-domain pretraining for RL (MVP-style, Xiao et al. 2022), one command:

    selfsup rl-pretrain --out runs/rl-minigrid            # collect frames -> pretrain MAE -> PPO on the frozen encoder

1. collect ``--frames`` observations from the env with a random policy (or ``--policy``: a ppo run whose
   latest checkpoint acts), written as PNG files to OUT/frames (an unlabelled image folder);
2. pretrain an MAE on them with the vision package (`mae` task) in OUT/mae;
3. train PPO with that encoder frozen in OUT/ppo.

Each stage that already finished is skipped and one that was interrupted resumes, so rerunning the same
command continues where it stopped. ``--mae-set`` / ``--ppo-set`` pass dotted overrides to each stage.
"""
from __future__ import annotations

import argparse
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from selfsup.checkpoint import resolve_checkpoint
from selfsup.config import ConfigError, load_saved, resolve, to_object
from selfsup.harness import model_from_checkpoint
from selfsup.progress import progress
from selfsup.runs import run_state
from selfsup.task import build_task
from selfsup.trainer import Trainer

from .envs import EnvConfig, make_vector_env
from .task import MINIGRID_VIT, PPOTask


def in_domain_vit(frames: str) -> tuple[str, ...]:
    """Overrides for any vision method (`mae`, `simmim`, `data2vec`) pretraining on a folder of env frames: one
    8-px patch per MiniGrid tile, frames kept at their 56 px, milder crops than MAE's 0.2 (a gridworld's layout
    is the signal)."""
    return (*(f"task.vit.{k}={v}" for k, v in MINIGRID_VIT.items()), "task.data.source=folder",
            f"task.data.path={frames}", f"task.data.store_size={MINIGRID_VIT['img_size']}", "task.min_crop_scale=0.5")


def in_domain_mae(frames: str) -> tuple[str, ...]:
    """`mae` on env frames with per-patch normalised targets (the recipe the RL figures in RESULTS.md were
    measured with)."""
    return (*in_domain_vit(frames), "task.mae.norm_pix_loss=true")


def collect_frames(env_cfg: EnvConfig, num_frames: int, out: Path, seed: int = 0, policy=None) -> Path:
    """Write ``num_frames`` observation frames (the newest of each stacked observation) as PNGs to ``out``.

    Written to a temporary sibling first and renamed when complete: ``out`` is never a partial set."""
    if num_frames <= 0:
        raise ConfigError("--frames must be positive")
    if out.is_dir():
        return out
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    envs = make_vector_env(env_cfg)
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    obs, _ = envs.reset(seed=seed)
    written = 0
    with progress(total=num_frames, desc="collect frames") as bar:
        while written < num_frames:
            for frame in obs[:, -1][: num_frames - written]:
                Image.fromarray(frame).save(tmp / f"{written:07d}.png")
                written += 1
            bar.update(min(len(obs), bar.total - bar.n))
            if policy is None:
                action = rng.integers(0, envs.single_action_space.n, size=envs.num_envs)
            else:
                with torch.no_grad():
                    logits, _ = policy(obs=torch.as_tensor(obs))
                action = torch.multinomial(torch.softmax(logits.float(), -1), 1, generator=g)[:, 0].numpy()
            obs, *_ = envs.step(action)
    envs.close()
    tmp.rename(out)
    return out


def run_stage(task_cls, preset: str, overrides: list[str], run_dir: Path) -> None:
    state = run_state(run_dir)
    if state == "complete":
        print(f"[rl-pretrain] {run_dir} is complete, skipped", flush=True)
        return
    resume = state != "new"
    if resume:
        cfg = resolve(task_cls.Config, {}, base=load_saved(task_cls, run_dir / "config.yaml"))
    else:
        cfg = resolve(task_cls.Config, task_cls.presets, preset=preset, overrides=overrides)
    print(f"[rl-pretrain] {'resuming' if resume else 'running'} {task_cls.name} in {run_dir}", flush=True)
    Trainer(build_task(task_cls, cfg), cfg, run_dir, resume=resume).fit()


def main(argv: list[str] | None = None) -> int:
    from vision.mae import MAETask
    p = argparse.ArgumentParser(prog="selfsup rl-pretrain", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for frames/, mae/ and ppo/")
    p.add_argument("--env", default="MiniGrid-Empty-5x5-v0", help="gymnasium env id (pixels)")
    p.add_argument("--frames", type=int, default=20_000, help="frames to collect for pretraining")
    p.add_argument("--frames-only", action="store_true", help="only collect OUT/frames, then stop")
    p.add_argument("--policy", default="", help="a ppo run dir whose latest checkpoint collects (default: random)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mae-preset", default="tiny")
    p.add_argument("--ppo-preset", default="minigrid")
    p.add_argument("--mae-set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--ppo-set", nargs="*", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    out = Path(args.out)

    ppo_overrides = [f"task.env.id={args.env}", *args.ppo_set]
    ppo_cfg = to_object(resolve(PPOTask.Config, PPOTask.presets, preset=args.ppo_preset, overrides=ppo_overrides)).task
    policy = None
    if args.policy:
        run = Path(args.policy)
        ckpt = resolve_checkpoint(run)
        policy_task = PPOTask(to_object(load_saved(PPOTask, run / "config.yaml")).task)
        policy = model_from_checkpoint(policy_task, ckpt).eval()
    frames = collect_frames(replace(ppo_cfg.env, history=1), args.frames, out / "frames", args.seed, policy)
    if args.frames_only:
        return 0

    run_stage(MAETask, args.mae_preset, [*in_domain_mae(str(frames)), f"trainer.seed={args.seed}", *args.mae_set],
              out / "mae")
    run_stage(PPOTask, args.ppo_preset, [*ppo_overrides, f"task.encoder.init={out / 'mae'}", "task.encoder.mode=frozen",
                                         f"trainer.seed={args.seed}"], out / "ppo")
    return 0
