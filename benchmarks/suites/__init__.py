"""Leaderboard suites as code: representations (rows) x evaluations (columns); see `benchmarks.matrix`.

One module per evidence suite, each reusing the others' rows where it needs them (one definition per run):

    vision.py     MAE, SimMIM, data2vec 2.0, random weights, raw pixels; probes and finetuning (scenes, CIFAR-10)
    language.py   five text objectives and random weights; SST-2, topic probe, MLM accuracy (stdlib, Shakespeare)
    clip.py       CLIP from pretrained vs random towers; retrieval, zero-shot, captioning from each image tower
    rl.py         PPO on MiniGrid from each in-domain pretraining
    zoo.py        released encoders (--specs) beside ours
    quick.py      the matrix at tiny scale (`make demo`)

`standard` is their union over one folder (`render --suite vision|language|clip|rl` shows each part). A new
pretraining method is a row in its module (`mim_rep`, `text_rep`); columns that read a pretraining run (the
probes) need nothing more, downstream columns take the new row through `{run}` / `{export}`.
"""
from __future__ import annotations

from pathlib import Path

from ..matrix import RANDOM, Budget, Command, Evaluation, Metric, Representation, Suite, SuiteError, Train, union
from .clip import clip
from .language import language
from .quick import quick
from .rl import rl
from .vision import vision
from .zoo import zoo


def standard(data: Path | None = Path("../shared/data")) -> Suite:
    """`vision` + `language` + `clip` + `rl` in one folder: the whole matrix at the evidence's budgets, 3 seeds
    (PPO 5), with ../shared/data's CIFAR-10, Tiny Shakespeare and SST-2 when present."""
    parts = [vision(data), language(data), clip(data), rl(data)]
    return union("standard", parts, description="; ".join(f"{s.name}: {s.description}" for s in parts))


def full(data: Path | None = None) -> Suite:
    """GPU scale: ViT-B/16 and BERT-base presets; set the data paths with --set (see README)."""
    base = lambda t, preset, b: Train(t, preset, (), b)  # noqa: E731
    return Suite("full", (
        Representation("mae", "image", {"scenes": base("mae", "vit-b16", None)}, label="MAE ViT-B/16"),
        Representation("random-vit", "image", {"scenes": base("mae", "vit-b16", RANDOM)}, label="random ViT-B/16",
                       baseline=True),
        Representation("bert", "text", {"stdlib": base("bert", "bert-base", None)}, label="BERT-base MLM+NSP"),
        Representation("random-bert", "text", {"stdlib": base("bert", "bert-base", RANDOM)}, label="random BERT-base",
                       baseline=True),
    ), (
        Evaluation("linear", "image", "scenes", Metric("linear_probe_top1_mean", split="test"), label="linear probe"),
        Evaluation("knn", "image", "scenes", Metric("knn_top1_mean", split="test"), label="kNN"),
        Evaluation("finetune", "image", "scenes", Metric("finetune_top1", split="test"),
                   Train("vit-finetune", "vit-b16", ("task.init={run}",)), label="finetune"),
        Evaluation("caption", "image", "scenes", Metric("cider_d", split="test"),
                   Train("caption", "base", ("task.vision_init={run}", "task.text_init={export:bert}")),
                   label="caption CIDEr-D"),
        Evaluation("img-per-s", "image", "scenes", Metric("samples_per_s", log=True), label="train img/s",
                   ranked=False, trained_only=True, digits=0),
        Evaluation("topic", "text", "stdlib", Metric("linear_probe_top1_mean", split="test"), label="topic probe"),
        Evaluation("tok-per-s", "text", "stdlib", Metric("tokens_per_s", log=True), label="train tokens/s",
                   ranked=False, trained_only=True, digits=0),
    ), seeds=3, description="GPU scale (ViT-B/16, BERT-base); data paths with --set")


def smoke(data: Path | None = None) -> Suite:
    """Seconds per run: the machinery end to end, for the tests. One pretraining read by two columns."""
    train = {"clusters": Train("example", "tiny", (), Budget(steps=30))}
    shifted = Command(("eval", "example", "--checkpoint", "{run}", "--run-dir", "{dir}",
                       "--set", "task.spread=4.5", "trainer.seed={seed}"))
    return Suite("smoke", (
        Representation("trained", "vector", train, label="MLP trained"),
        Representation("random", "vector", {"clusters": Train("example", "tiny", (), RANDOM)}, label="MLP random",
                       baseline=True),
    ), (
        Evaluation("accuracy", "vector", "clusters", Metric("accuracy", "clusters", "test")),
        Evaluation("shifted", "vector", "clusters", Metric("accuracy", "clusters", "test"), shifted,
                   label="accuracy, spread 4.5"),
    ), seeds=1)


SUITES = {"quick": quick, "standard": standard, "vision": vision, "language": language, "clip": clip, "rl": rl,
          "zoo": zoo, "full": full, "smoke": smoke}


def make(name: str, data: Path | None, specs: tuple[str, ...] = ()) -> Suite:
    """The suite called ``name`` on ``data`` (../shared/data); ``specs``: the encoders the zoo compares."""
    if name not in SUITES:
        raise SuiteError(f"unknown suite {name!r}; choose one of {', '.join(sorted(SUITES))}")
    if name == "zoo":
        return zoo(data, tuple(specs))
    if specs:
        raise SuiteError(f"--specs names the encoders of the zoo suite, not of {name}")
    return SUITES[name](data)
