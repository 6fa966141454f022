"""Leaderboard suites as code: representations (rows) x evaluations (columns). See `benchmarks.matrix`.

A new pretraining method is one line in `rows()`: `image_rep(NAME, TASK, budget)` for a vision task that
takes `task.data` / `task.probe` like `mae`, `text_rep(NAME, OBJECTIVE, budget)` for a `bert` objective.
Columns that read a pretraining run (the probes) need nothing more; downstream columns take the new row
through `{run}` / `{export}`.
"""
from __future__ import annotations

from pathlib import Path

from rl.pipeline import in_domain_mae

from .matrix import RANDOM, Budget, Command, Evaluation, Evidence, Metric, Representation, Suite, Train

ENV = "MiniGrid-Empty-5x5-v0"
QUICK_SCENES = ("task.data.num_train=10000", "task.data.num_test=1000", "task.probe.epochs=30")   # (tiny: 20k, 2k, 60)
# per vision task: its overrides for pretraining on MiniGrid frames (56 px, one patch per tile); a task without
# an entry has no PPO cells
MINIGRID = {"mae": in_domain_mae(f"{{frames:{ENV}}}")}
# placeholders for the vision methods in review:
#   "simmim": (...), "data2vec": (...)    # the same 56 px / 8 px ViT and frames folder, each method's own knobs


def _along(budget: Budget, evaluations: int) -> tuple[str, ...]:
    """Evaluate `evaluations` times along a pretraining (the learning-per-minute figure), not only at its end."""
    if not evaluations or budget.steps is None or budget.steps < evaluations:
        return ()
    return (f"trainer.eval_every={budget.steps // evaluations}",)


def image_rep(name: str, task: str, scenes: Budget, minigrid: Budget | None = None, label: str = "",
              baseline: bool = False, cifar: Budget | None = None, data: Path | None = None,
              scene_data: tuple[str, ...] = QUICK_SCENES, evaluations: int = 0, **kw) -> Representation:
    """A vision method pretrained on rendered scenes (probes, finetuning, captioning), with a budget for them on
    MiniGrid frames (PPO) and on `data`'s CIFAR-10 subset (its probes)."""
    pretrain = {"scenes": Train(task, "tiny", scene_data + _along(scenes, evaluations), scenes)}
    if minigrid is not None and task in MINIGRID:
        pretrain["minigrid"] = Train(task, "tiny", MINIGRID[task], minigrid)
    if cifar is not None and data is not None:
        pretrain["cifar10"] = Train(task, "tiny", ("task.data.source=imagefolder",
                                                   f"task.data.path={data / 'cifar10-subset'}"), cifar)
    return Representation(name, "image", pretrain, label=label, baseline=baseline, **kw)


def text_rep(name: str, objective: str, budget: Budget, label: str = "", baseline: bool = False,
             evaluations: int = 0, **kw) -> Representation:
    """A `bert` objective pretrained on the standard library's docstrings."""
    train = Train("bert", "tiny", (f"task.objective={objective}",) + _along(budget, evaluations), budget)
    return Representation(name, "text", {"stdlib": train}, label=label, baseline=baseline, **kw)


# ------------------------------------------------------------------------------------------------ columns

def _evidence_mae(metric: str) -> Evidence:
    return Evidence("evidence-mae-tiny", "scenes-shape", metric, "pretraining 2,000 steps", {"mae": "pretrained",
                                                                                  "random-vit": "random"})


def columns(caption_steps: int, ppo_steps: int, finetune_steps: int = 0, ppo_seeds: int = 0,
            caption_images: int = 300, data: Path | None = None) -> tuple[Evaluation, ...]:
    """Every use a suite measures (finetuning when it has steps); `data` (../shared/data) adds the real-data
    columns."""
    # encoder-spec rows (wave 2) reach the probe columns with fallback=Command(("probe", "--encoder", "{run}",
    # "--data", "scenes", "--out", "{dir}")) once `selfsup probe` writes the same Result records
    cols = [
        Evaluation("linear", "image", "scenes", Metric("linear_probe_top1_mean", "scenes-shape", "test"),
                   label="linear probe: shape", evidence=_evidence_mae("linear_probe_top1_mean")),
        Evaluation("knn", "image", "scenes", Metric("knn_top1_mean", "scenes-shape", "test"),
                   label="kNN: shape", evidence=_evidence_mae("knn_top1_mean")),
        Evaluation("caption", "image", "scenes", Metric("cider_d", "scenes-captions", "test"),
                   Train("caption", "tiny", ("task.data.num_train=4000", f"task.data.num_eval={caption_images}",
                                             "task.vision_init={run}", "task.text_init={export:bert}"),
                         Budget(steps=caption_steps)),
                   label="caption CIDEr-D",
                   evidence=Evidence("evidence-caption-tiny", "scenes-captions", "cider_d",
                                     "pretraining 2,000 (MAE) and 1,000 (BERT) steps, caption 600 steps",
                                     {"mae": "pretrained", "random-vit": "random init"}, split="test",
                                     note="the evidence varies both towers; this column only the vision tower "
                                          "(decoder: the suite's BERT)")),
        Evaluation("ppo", "image", "minigrid", Metric("return_auc", ENV, "train"),
                   Train("ppo", "minigrid", ("task.eval_episodes=32", f"task.env.id={ENV}",
                                             "task.encoder.init={run}"), Budget(steps=ppo_steps)),
                   label="PPO return (frozen)", aggregate="iqm", seeds=ppo_seeds,
                   evidence=Evidence("leaderboard-rl", ENV, "return_auc",
                                     "pretraining 1,500 steps, ppo 320 steps (20,480 env steps)",
                                     {"mae": "mae-frozen", "random-vit": "random-vit-frozen",
                                      "scratch-cnn": "scratch-cnn"}, split="train")),
        Evaluation("img-per-s", "image", "scenes", Metric("samples_per_s", log=True), label="train img/s",
                   ranked=False, trained_only=True, digits=0),
        Evaluation("topic", "text", "stdlib", Metric("linear_probe_top1_mean", "stdlib-corpus-topics", "test"),
                   label="topic probe",
                   evidence=Evidence("evidence-bert-tiny", "stdlib-corpus-topics", "linear_probe_top1_mean",
                                     "pretraining 1,000 steps", {"bert": "pretrained", "random-bert": "random init"})),
        Evaluation("tok-per-s", "text", "stdlib", Metric("tokens_per_s", log=True), label="train tokens/s",
                   ranked=False, trained_only=True, digits=0),
    ]
    if finetune_steps:
        cols.insert(2, Evaluation(
            "finetune", "image", "scenes", Metric("finetune_top1", "scenes-shape", "test"),
            Train("vit-finetune", "tiny", ("task.init={run}", "task.data.label=shape"), Budget(steps=finetune_steps)),
            label="finetune: shape",
            evidence=Evidence("evidence-vit-finetune-tiny-shape", "scenes-shape", "finetune_top1",
                              "pretraining 2,000 steps, vit-finetune 600 steps",
                              {"mae": "pretrained", "random-vit": "random"})))
    if data is not None and (data / "cifar10-subset").is_dir():
        cols += [Evaluation("cifar-linear", "image", "cifar10", Metric("linear_probe_top1_mean", "cifar10-subset",
                                                                       "test"), label="linear probe: CIFAR-10"),
                 Evaluation("cifar-knn", "image", "cifar10", Metric("knn_top1_mean", "cifar10-subset", "test"),
                            label="kNN: CIFAR-10")]
    if data is not None and (data / "glue" / "SST-2").is_dir():
        cols.append(Evaluation("sst2", "text", "stdlib", Metric("accuracy", "glue-sst2", "dev"),
                               Train("glue", "tiny", ("task.name=sst2", f"task.data_dir={data / 'glue' / 'SST-2'}",
                                                      "task.init={export}")),
                               label="SST-2 finetune"))
    return tuple(cols)


SCRATCH_CNN = Representation("scratch-cnn", "image", label="NatureCNN from scratch", baseline=True,
                             only=("ppo",), extra={"ppo": ("task.encoder.kind=cnn",)})


def rows(vision: Budget, minigrid: Budget, text: Budget, cifar: Budget | None = None, data: Path | None = None,
         scene_data: tuple[str, ...] = QUICK_SCENES, evaluations: int = 0) -> tuple[Representation, ...]:
    """The representations of quick and standard, one line per method."""
    real = {"cifar": cifar, "data": data, "scene_data": scene_data}
    return (
        image_rep("mae", "mae", vision, minigrid, label="MAE", evaluations=evaluations, **real),
        # image_rep("simmim", "simmim", vision, minigrid, label="SimMIM", evaluations=evaluations, **real),
        # image_rep("data2vec", "data2vec", vision, minigrid, label="data2vec 2.0", evaluations=evaluations, **real),
        image_rep("random-vit", "mae", RANDOM, RANDOM, label="random ViT", baseline=True,
                  **real | {"cifar": RANDOM if cifar else None}),
        SCRATCH_CNN,
        text_rep("bert", "mlm+nsp", text, label="BERT MLM+NSP", evaluations=evaluations),
        # text_rep("bert-mlm", "mlm", text, label="MLM (RoBERTa-style)", evaluations=evaluations),   (wave 2)
        # text_rep("bert-sop", "mlm+sop", text, label="MLM+SOP (ALBERT)", evaluations=evaluations),
        # text_rep("electra", "electra", text, label="ELECTRA", evaluations=evaluations),
        # text_rep("data2vec-text", "data2vec", text, label="data2vec 2.0 (text)", evaluations=evaluations),
        text_rep("random-bert", "mlm+nsp", RANDOM, label="random BERT", baseline=True),
        # Representation("clip", "image", {"scenes": Train("clip", ...)}, label="CLIP"),  (+ retrieval, zero-shot)
        # Representation("timm-vit-tiny", "image", spec="timm:vit_tiny_patch16_224"),    (encoder specs, wave 2)
    )


def quick(data: Path | None = None) -> Suite:
    """The matrix at tiny scale on a CPU, one seed (`make demo`): no finetuning column (`standard` has it),
    shorter budgets than the evidence's (the verdicts name the budget the evidence needed)."""
    return Suite("quick", rows(Budget(steps=500), Budget(steps=300), Budget(steps=300)),
                 columns(caption_steps=300, ppo_steps=160, caption_images=200), seeds=1, shared=("minigrid",),
                 description="tiny budgets on the embedded data (rendered scenes, MiniGrid frames, the standard "
                             "library's docstrings), one seed")


def standard(data: Path | None = Path("../shared/data")) -> Suite:
    """The tiny presets' budgets and data (the evidence's) at 3 seeds, PPO at 5 on one in-domain pretraining,
    pretrainings evaluated 4 times along the way; with `data` (../shared/data) also MAE on its CIFAR-10 subset
    and SST-2 finetuning."""
    data = data if data is not None and data.is_dir() else None
    return Suite("standard", rows(Budget(steps=2000), Budget(steps=1500), Budget(steps=1000), Budget(steps=2000),
                                  data, scene_data=(), evaluations=4),
                 columns(caption_steps=600, ppo_steps=320, finetune_steps=600, ppo_seeds=5, data=data),
                 seeds=3, shared=("minigrid",),
                 description="the tiny presets' budgets, 3 seeds (PPO 5)" + (f", and real data from {data}"
                                                                             if data else ""))


# Equal training time per method on this CPU: steps in the ratio of their measured time per image
# (`selfsup bench --suite mim --size tiny`, interleaved in one process: MAE 1.00, SimMIM 1.28, data2vec 2.45).
MIM_SPEED = {"mae": 1.00, "simmim": 1.28, "data2vec": 2.45}
MIM_LABELS = {"mae": "MAE", "simmim": "SimMIM", "data2vec": "data2vec 2.0"}


def _equal_time(mae_steps: int) -> dict[str, Budget]:
    return {m: Budget(steps=round(mae_steps / speed)) for m, speed in MIM_SPEED.items()}


def vision(data: Path | None = Path("../shared/data")) -> Suite:
    """Issue 15 (and the MAE rows of issue 14): MAE, SimMIM and data2vec 2.0 on one tiny ViT at equal training time,
    against the same ViT with random weights; probes and finetuning on the CIFAR-10 subset (MAE's preset budget,
    2,000 steps) and on rendered scenes (half the preset). 3 seeds."""
    data = data if data is not None and (data / "cifar10-subset").is_dir() else None
    cifar = ("task.data.source=imagefolder", f"task.data.path={data / 'cifar10-subset'}") if data else ()
    scenes_time, cifar_time = _equal_time(1000), _equal_time(2000)

    def rep(method: str) -> Representation:
        pretrain = {"scenes": Train(method, "tiny", ("trainer.eval_every=" + str(scenes_time[method].steps // 2),),
                                    scenes_time[method])}
        if data:
            pretrain = {"cifar10": Train(method, "tiny", cifar + ("trainer.eval_every="
                                                                  + str(cifar_time[method].steps // 2),),
                                         cifar_time[method]), **pretrain}
        return Representation(method, "image", pretrain, label=MIM_LABELS[method])

    reps = [rep(m) for m in MIM_SPEED]
    reps.append(Representation("random-vit", "image", {**({"cifar10": Train("mae", "tiny", cifar, RANDOM)}
                                                          if data else {}),
                                                       "scenes": Train("mae", "tiny", (), RANDOM)},
                               label="random ViT", baseline=True))
    finetune = ("vit-finetune", "tiny")
    cols = [
        Evaluation("linear", "image", "scenes", Metric("linear_probe_top1_mean", "scenes-shape", "test"),
                   label="scenes: linear probe, shape"),
        Evaluation("knn", "image", "scenes", Metric("knn_top1_mean", "scenes-shape", "test"),
                   label="scenes: kNN, shape"),
        Evaluation("linear-count", "image", "scenes", Metric("linear_probe_top1_mean", "scenes-count", "test"),
                   label="scenes: linear probe, count"),
        Evaluation("finetune", "image", "scenes", Metric("finetune_top1", "scenes-shape", "test"),
                   Train(*finetune, ("task.init={run}", "task.data.label=shape"), Budget(steps=300)),
                   label="scenes: finetune, shape"),
        Evaluation("img-per-s", "image", "scenes", Metric("samples_per_s", log=True), label="train img/s",
                   ranked=False, trained_only=True, digits=0),
    ]
    if data:
        cols = [Evaluation("cifar-linear", "image", "cifar10", Metric("linear_probe_top1_mean", "cifar10-subset",
                                                                      "test"), label="CIFAR-10: linear probe"),
                Evaluation("cifar-knn", "image", "cifar10", Metric("knn_top1_mean", "cifar10-subset", "test"),
                           label="CIFAR-10: kNN"),
                Evaluation("cifar-finetune", "image", "cifar10", Metric("finetune_top1", "cifar10-subset", "test"),
                           Train(*finetune, ("task.init={run}",) + cifar, Budget(steps=300)),
                           label="CIFAR-10: finetune")] + cols
    return Suite("vision", tuple(reps), tuple(cols), seeds=3,
                 description="MIM methods at equal training time on this CPU (steps from the interleaved speed "
                             "ratios: MAE 1.00, SimMIM 1.28, data2vec 2.45 per image), 3 seeds")


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


def rl(data: Path | None = None) -> Suite:
    """The RL evidence: 20,480 env steps per policy run, five seeds on one in-domain MAE."""
    ppo = ("task.eval_episodes=32", f"task.env.id={ENV}", "task.encoder.init={run}")
    return Suite("rl", (
        Representation("mae", "image", {"minigrid": Train("mae", "tiny", MINIGRID["mae"], Budget(steps=1500))},
                       label="MAE (in-domain)"),
        Representation("random-vit", "image", {"minigrid": Train("mae", "tiny", MINIGRID["mae"], RANDOM)},
                       label="random ViT", baseline=True, only=("ppo",)),
        SCRATCH_CNN,
    ), (
        Evaluation("ppo", "image", "minigrid", Metric("return_auc", ENV, "train"),
                   Train("ppo", "minigrid", ppo, Budget(steps=320)), label="PPO return (frozen)", aggregate="iqm"),
        Evaluation("ppo-finetune", "image", "minigrid", Metric("return_auc", ENV, "train"),
                   Train("ppo", "minigrid", ppo + ("task.encoder.mode=finetune",), Budget(steps=320)),
                   label="PPO return (finetuned)", aggregate="iqm"),
    ), seeds=5, shared=("minigrid",), description="PPO on MiniGrid from 56x56 RGB views, 20,480 env steps per run")


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


SUITES = {"quick": quick, "standard": standard, "vision": vision, "full": full, "rl": rl, "smoke": smoke}
