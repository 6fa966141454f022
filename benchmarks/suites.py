"""Leaderboard suites as code: which runs, with which overrides, and what each is compared against.

A run's `arm` names its side of a comparison ("pretrained" vs "random"); runs of one `group`
are shown side by side. Runs execute in list order; `{run:NAME}` in an override is replaced by that
earlier run's folder for the same seed, `{export:NAME}` by its export (made on demand), so a suite
can chain pretraining into captioning. `{frames:ENV}` is a folder of frames collected from a gymnasium env
(made once, by `selfsup rl-pretrain --frames-only`). A spec with ``once=True`` runs for seed 0 only and every
seed's `{run:NAME}` points at that run (e.g. one pretrained encoder under several policy seeds).
"""
from __future__ import annotations

from dataclasses import dataclass

from rl.pipeline import in_domain_mae


@dataclass(frozen=True)
class RunSpec:
    name: str                     # folder name (…-s{seed} per seed)
    task: str
    group: str                    # comparisons are within a group
    arm: str                      # "pretrained" | "random" | ...
    preset: str = "tiny"
    overrides: tuple[str, ...] = ()       # may name earlier runs of the list: {run:NAME}, {export:NAME}
    once: bool = False                    # run for seed 0 only; shared by every seed's {run:NAME}
    baseline: str = "random"              # the arm of this group that "probability of improvement" is against


def _pair(group: str, task: str, steps: int, extra: tuple[str, ...] = ()) -> list[RunSpec]:
    """Pretraining for `steps` vs the same architecture evaluated at step 0."""
    return [RunSpec(f"{group}-pretrained", task, group, "pretrained",
                    overrides=(f"trainer.max_steps={steps}",) + extra),
            RunSpec(f"{group}-random", task, group, "random", overrides=("trainer.max_steps=0",) + extra)]


def quick() -> list[RunSpec]:
    """The whole story at tiny scale on a CPU (13 minutes for one seed on 2 cores, measured with `make demo`)."""
    caption = ("trainer.max_steps=400", "task.data.num_train=4000", "task.data.num_eval=300")
    return [
        *_pair("mae", "mae", 600, ("task.data.num_train=10000", "task.data.num_test=1000", "task.probe.epochs=30")),
        *_pair("bert", "bert", 400),
        RunSpec("caption-pretrained", "caption", "caption", "pretrained",
                overrides=caption + ("task.vision_init={run:mae-pretrained}",
                                     "task.text_init={export:bert-pretrained}")),
        RunSpec("caption-random", "caption", "caption", "random",
                overrides=caption + ("task.text_init={export:bert-pretrained}", "task.text_pretrained=false")),
        *_rl(300, 160, ("mae-frozen", "scratch-cnn")),      # PPO, 10,240 env steps per run
    ]


ALL_ARMS = ("mae-frozen", "random-vit-frozen", "mae-finetune", "scratch-cnn")


def _rl(mae_steps: int, ppo_steps: int, arms: tuple[str, ...], env: str = "MiniGrid-Empty-5x5-v0",
        preset: str = "minigrid") -> list[RunSpec]:
    """An MAE pretrained in-domain on 20k random-policy MiniGrid frames (one, shared by every policy seed), then
    PPO from 56x56 RGB views with the chosen encoder arms; scratch-cnn is the baseline."""
    ppo = ("task.eval_episodes=32", f"trainer.max_steps={ppo_steps}", f"task.env.id={env}")
    mae = ("task.encoder.init={run:rl-mae}",)
    specs = {
        "mae-frozen": ppo + mae,
        "random-vit-frozen": ppo,
        "mae-finetune": ppo + mae + ("task.encoder.mode=finetune",),
        "scratch-cnn": ppo + ("task.encoder.kind=cnn",),
    }
    return [RunSpec("rl-mae", "mae", "rl-mae", "in-domain", once=True,
                    overrides=(f"trainer.max_steps={mae_steps}", *in_domain_mae(f"{{frames:{env}}}")))] + \
        [RunSpec(f"rl-{arm.replace('-vit', '')}", "ppo", "rl", arm, preset, specs[arm], baseline="scratch-cnn")
         for arm in arms]


def rl() -> list[RunSpec]:
    """The RL evidence: 20,480 env steps per policy run, four encoder arms. ~10 min for the MAE, then ~7 min
    per seed on 2 cores (finetuning re-encodes every sample in every PPO epoch: most of it)."""
    return _rl(1500, 320, ALL_ARMS)


def full() -> list[RunSpec]:
    """The same at real scale, for GPUs (ViT-B/16, BERT-base); set the data paths with --set."""
    return [
        RunSpec("mae-pretrained", "mae", "mae", "pretrained", preset="vit-b16"),
        RunSpec("mae-random", "mae", "mae", "random", preset="vit-b16", overrides=("trainer.max_steps=0",)),
        RunSpec("bert-pretrained", "bert", "bert", "pretrained", preset="bert-base"),
        RunSpec("bert-random", "bert", "bert", "random", preset="bert-base", overrides=("trainer.max_steps=0",)),
        RunSpec("caption-pretrained", "caption", "caption", "pretrained", preset="base",
                overrides=("task.vision_init={run:mae-pretrained}", "task.text_init={export:bert-pretrained}")),
        RunSpec("caption-random", "caption", "caption", "random", preset="base",
                overrides=("task.vision_model.img_size=224", "task.vision_model.patch_size=16",
                           "task.vision_model.embed_dim=768", "task.vision_model.depth=12",
                           "task.vision_model.num_heads=12",
                           "task.text_init={export:bert-pretrained}", "task.text_pretrained=false")),
        *_rl(10_000, 3200, ALL_ARMS, env="MiniGrid-DoorKey-5x5-v0", preset="doorkey"),   # 204,800 env steps
    ]


def smoke() -> list[RunSpec]:
    """Seconds per run: the machinery end to end, for the tests."""
    return [RunSpec("example-trained", "example", "example", "pretrained", overrides=("trainer.max_steps=30",)),
            RunSpec("example-random", "example", "example", "random", overrides=("trainer.max_steps=0",))]


SUITES = {"quick": quick, "rl": rl, "full": full, "smoke": smoke}
