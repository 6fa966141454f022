"""Leaderboard suites as code: which runs, with which overrides, and what each is compared against.

A run's `arm` names its side of a comparison ("pretrained" vs "random"); runs of one `group`
are shown side by side. Runs execute in list order; `{run:NAME}` in an override is replaced by that
earlier run's folder for the same seed, `{export:NAME}` by its export (made on demand), so a suite
can chain pretraining into captioning.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunSpec:
    name: str                     # folder name (…-s{seed} per seed)
    task: str
    group: str                    # comparisons are within a group
    arm: str                      # "pretrained" | "random" | ...
    preset: str = "tiny"
    overrides: tuple[str, ...] = ()       # may name earlier runs of the list: {run:NAME}, {export:NAME}


def _pair(group: str, task: str, steps: int, extra: tuple[str, ...] = ()) -> list[RunSpec]:
    """Pretraining for `steps` vs the same architecture evaluated at step 0."""
    return [RunSpec(f"{group}-pretrained", task, group, "pretrained", overrides=(f"trainer.max_steps={steps}",) + extra),
            RunSpec(f"{group}-random", task, group, "random", overrides=("trainer.max_steps=0",) + extra)]


def quick() -> list[RunSpec]:
    """The whole story at tiny scale on a CPU (~15 minutes for one seed on 2 cores)."""
    caption = ("trainer.max_steps=400", "task.data.num_train=4000", "task.data.num_eval=300")
    return [
        *_pair("mae", "mae", 600, ("task.data.num_train=10000", "task.data.num_test=1000", "task.probe.epochs=30")),
        *_pair("bert", "bert", 400),
        RunSpec("caption-pretrained", "caption", "caption", "pretrained",
                overrides=caption + ("task.vision_init={run:mae-pretrained}", "task.text_init={export:bert-pretrained}")),
        RunSpec("caption-random", "caption", "caption", "random",
                overrides=caption + ("task.text_init={export:bert-pretrained}", "task.text_pretrained=false")),
    ]


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
                           "task.vision_model.embed_dim=768", "task.vision_model.depth=12", "task.vision_model.num_heads=12",
                           "task.text_init={export:bert-pretrained}", "task.text_pretrained=false")),
    ]


def smoke() -> list[RunSpec]:
    """Seconds per run: the machinery end to end, for the tests."""
    return [RunSpec("example-trained", "example", "example", "pretrained", overrides=("trainer.max_steps=30",)),
            RunSpec("example-random", "example", "example", "random", overrides=("trainer.max_steps=0",))]


SUITES = {"quick": quick, "full": full, "smoke": smoke}
