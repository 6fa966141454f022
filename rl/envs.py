"""Pixel environments for PPO: any gymnasium env that renders RGB, as vector envs.

Every pixel observation has the layout (history, H, W, 3) uint8 per env — the layout of ale-py's own
AtariVectorEnv too — so encoders see the same thing whatever the source:

    MiniGrid-*      the agent's partial view rendered as RGB (7 x 7 tiles of 8 px = 56 x 56)
    ALE/*           Atari through ale-py (ROMs ship with the package); `vector: ale` uses ale-py's native vector env
    anything else   gym.make(id, render_mode="rgb_array") with the rendered frame as the observation (CartPole...)

Vector envs keep gymnasium 1.x's default next-step autoreset: the step after an episode ends returns
the reset observation (reward 0, not done) and ignores its action. rl.rollout masks that transition out.
"""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from PIL import Image

from selfsup.errors import UserError

VECTORS = ("sync", "async", "ale")


@dataclass
class EnvConfig:
    id: str = "MiniGrid-Empty-5x5-v0"
    num_envs: int = 8              # parallel envs per rank (CleanRL: 4 classic control, 8 Atari)
    frame_size: int = 0            # resize frames to frame_size x frame_size; 0 keeps the env's size
    history: int = 1               # frames stacked per observation (the policy embeds each and concatenates)
    max_episode_steps: int = 0     # time limit, i.e. truncation (0: the env's own; MiniGrid: 10 x size^2)
    pixels: bool = True            # false: the env's own observations (state vectors), for the `flat` encoder
    vector: str = "sync"           # sync | async (gymnasium vector envs) | ale (ale-py's AtariVectorEnv, ALE/ ids)
    minigrid_tile: int = 8         # MiniGrid: pixels per tile of the rendered partial view


class EnvError(UserError, ValueError):
    """An env id or setting that cannot be built; the message says what to change."""


class ResizeFrame(gym.ObservationWrapper):
    """Resize an (H, W, 3) uint8 frame with PIL's area-averaging (no OpenCV needed)."""

    def __init__(self, env: gym.Env, size: int):
        super().__init__(env)
        self.size = size
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)

    def observation(self, obs):
        return np.asarray(Image.fromarray(obs).resize((self.size, self.size), Image.BOX))


def _register(env_id: str) -> None:
    if env_id.startswith(("MiniGrid", "BabyAI")):
        import minigrid  # noqa: F401  (registers the MiniGrid envs)
    elif env_id.startswith("ALE/"):
        import ale_py
        gym.register_envs(ale_py)


def make_env(cfg: EnvConfig):
    """A thunk building one env with cfg's wrappers (what gymnasium vector envs take)."""
    _register(cfg.id)
    if cfg.id not in gym.registry:
        raise EnvError(f"unknown env id '{cfg.id}'. MiniGrid ids look like MiniGrid-DoorKey-5x5-v0, Atari ones like "
                       "ALE/Pong-v5 (needs ale-py); any registered gymnasium id that renders rgb_array works")

    def thunk() -> gym.Env:
        limit = {"max_episode_steps": cfg.max_episode_steps} if cfg.max_episode_steps else {}
        if cfg.id.startswith(("MiniGrid", "BabyAI")):
            from minigrid.wrappers import ImgObsWrapper, RGBImgPartialObsWrapper
            env = gym.make(cfg.id, **limit)
            if cfg.pixels:
                env = ImgObsWrapper(RGBImgPartialObsWrapper(env, tile_size=cfg.minigrid_tile))
        elif cfg.id.startswith("ALE/") or not cfg.pixels:
            env = gym.make(cfg.id, **limit)
        else:
            env = gym.wrappers.AddRenderObservation(gym.make(cfg.id, render_mode="rgb_array", **limit),
                                                    render_only=True)
        if cfg.pixels:
            if cfg.frame_size:
                env = ResizeFrame(env, cfg.frame_size)
            env = gym.wrappers.FrameStackObservation(env, cfg.history)   # (history, H, W, 3)
        return env
    return thunk


def make_vector_env(cfg: EnvConfig) -> gym.vector.VectorEnv:
    if cfg.vector not in VECTORS:
        raise EnvError(f"unknown task.env.vector '{cfg.vector}'; choose one of {', '.join(VECTORS)}")
    if cfg.num_envs <= 0:
        raise EnvError("task.env.num_envs must be positive")
    if cfg.vector == "ale":
        if not cfg.id.startswith("ALE/"):
            raise EnvError(f"task.env.vector=ale runs Atari games only (ALE/<Game>-v5), not '{cfg.id}'")
        from ale_py.vector_env import AtariVectorEnv
        game = cfg.id.split("/")[1].split("-")[0]
        game = "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(game))
        size = cfg.frame_size or 84
        return AtariVectorEnv(game, cfg.num_envs, grayscale=False, stack_num=cfg.history, img_height=size,
                              img_width=size, reward_clipping=False, autoreset_mode=AutoresetMode.NEXT_STEP)
    fns = [make_env(cfg) for _ in range(cfg.num_envs)]
    cls = gym.vector.AsyncVectorEnv if cfg.vector == "async" else gym.vector.SyncVectorEnv
    return cls(fns, autoreset_mode=AutoresetMode.NEXT_STEP)


def num_actions(envs: gym.vector.VectorEnv) -> int:
    space = envs.single_action_space
    if not isinstance(space, gym.spaces.Discrete):
        raise EnvError(f"PPO here takes discrete actions; this env's action space is {space}")
    return int(space.n)
