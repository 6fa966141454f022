"""The masked-image-modeling methods as rows (issues 14 and 15): MAE, SimMIM and data2vec 2.0 on one tiny ViT at
equal training time, the same ViT with random weights, raw pixels and MAE at three times its budget; probes and
finetuning on rendered scenes and on the CIFAR-10 subset of ../shared/data; and the `vision` suite."""
from __future__ import annotations

from pathlib import Path

from vision.mim import tiny_preset

from ..matrix import RANDOM, Budget, Command, Evaluation, Metric, Representation, Suite, Train

# Equal training time per method on this CPU: steps in the ratio of their measured time per step
# (`selfsup bench --suite mim --size tiny --batch 256 --steps 2 --repeats 4` with OMP_WAIT_POLICY=PASSIVE, interleaved
# in one process, 2026-11-29: MAE 1.00, SimMIM 2.57, data2vec 5.29; all three at ~0.05 TFLOP/s, so the ratios are
# those of their FLOPs). An earlier measurement (1.28, 2.45) was made while other jobs kept both cores busy with
# OpenMP's spin-waiting, which slowed MAE's small matmuls most; it gave SimMIM and data2vec twice MAE's time.
MIM_SPEED = {"mae": 1.00, "simmim": 2.57, "data2vec": 5.29}
MIM_LABELS = {"mae": "MAE", "simmim": "SimMIM", "data2vec": "data2vec 2.0"}
MIM_TASKS = tuple(MIM_SPEED)
PROBE_EPOCHS = tiny_preset({}, {})["task"]["probe"]["epochs"]     # the tiny presets' linear-probe epochs
CIFAR = "cifar10-subset"


def equal_time(mae_steps: int) -> dict[str, Budget]:
    """Each method's steps for the training time of ``mae_steps`` MAE steps."""
    return {m: Budget(steps=round(mae_steps / speed)) for m, speed in MIM_SPEED.items()}


def cifar_data(data: Path | None) -> tuple[str, ...]:
    """The overrides that train or finetune on ../shared/data's CIFAR-10 subset (none without it)."""
    return ("task.data.source=imagefolder", f"task.data.path={data / CIFAR}") if data else ()


def has_cifar(data: Path | None) -> Path | None:
    return data if data is not None and (data / CIFAR).is_dir() else None


def _probe(source: str, data_overrides: tuple[str, ...]) -> Command:
    """`selfsup probe` of an encoder spec on the images and probe settings a vision task probes with."""
    return Command(("probe", "--encoder", "{run}", "--data", source, "--seed", "{seed}", "--out", "{dir}",
                    "--set", f"task.probe.epochs={PROBE_EPOCHS}", *data_overrides))


def scene_columns(scene_data: tuple[str, ...] = (), finetune_steps: int = 0) -> list[Evaluation]:
    """Probes of the scenes pretraining (encoder specs through `selfsup probe` on the same scenes), finetuning when
    it has steps, and training speed."""
    probe = _probe("scenes", scene_data)
    cols = [
        Evaluation("linear", "image", "scenes", Metric("linear_probe_top1_mean", "scenes-shape", "test"),
                   label="scenes: linear probe, shape", tasks=MIM_TASKS, fallback=probe),
        Evaluation("knn", "image", "scenes", Metric("knn_top1_mean", "scenes-shape", "test"),
                   label="scenes: kNN, shape", tasks=MIM_TASKS, fallback=probe),
        Evaluation("linear-count", "image", "scenes", Metric("linear_probe_top1_mean", "scenes-count", "test"),
                   label="scenes: linear probe, count", tasks=MIM_TASKS, fallback=probe),
    ]
    if finetune_steps:
        cols.append(Evaluation("finetune", "image", "scenes", Metric("finetune_top1", "scenes-shape", "test"),
                               Train("vit-finetune", "tiny", ("task.init={run}", "task.data.label=shape"),
                                     Budget(steps=finetune_steps)),
                               label="scenes: finetune, shape"))
    cols.append(Evaluation("img-per-s", "image", "scenes", Metric("samples_per_s", log=True), label="train img/s",
                           ranked=False, trained_only=True, digits=0, tasks=MIM_TASKS))
    return cols


def cifar_columns(data: Path, finetune_steps: int = 300) -> list[Evaluation]:
    probe = _probe(f"imagefolder:{data / CIFAR}", ())
    return [Evaluation("cifar-linear", "image", "cifar10", Metric("linear_probe_top1_mean", CIFAR, "test"),
                       label="CIFAR-10: linear probe", tasks=MIM_TASKS, fallback=probe),
            Evaluation("cifar-knn", "image", "cifar10", Metric("knn_top1_mean", CIFAR, "test"),
                       label="CIFAR-10: kNN", tasks=MIM_TASKS, fallback=probe),
            Evaluation("cifar-finetune", "image", "cifar10", Metric("finetune_top1", CIFAR, "test"),
                       Train("vit-finetune", "tiny", ("task.init={run}",) + cifar_data(data),
                             Budget(steps=finetune_steps)),
                       label="CIFAR-10: finetune")]


PROBES = ("linear", "knn", "linear-count", "cifar-linear", "cifar-knn")
# Raw pixels (the `pixels` encoder spec, run at the tiny ViT's 32 px): what the probes find without any encoder.
PIXELS = Representation("pixels", "image", spec="pixels", label="raw pixels", baseline=True, only=PROBES,
                        extra={col: ("image_size=32",) for col in PROBES})


def along(budget: Budget, evaluations: int) -> tuple[str, ...]:
    """Evaluate `evaluations` times along a pretraining (the learning-per-minute figure), not only at its end."""
    return (f"trainer.eval_every={budget.steps // evaluations}",) if budget.steps and evaluations else ()


def mim_rep(method: str, scenes: Budget, cifar: Budget | None = None, data: Path | None = None,
            scene_data: tuple[str, ...] = (), evaluations: int = 2) -> Representation:
    """A MIM method (or random weights: budget RANDOM, the `mae` task) pretrained on rendered scenes and, with
    `data`, on the CIFAR-10 subset; evaluated `evaluations` times along each pretraining."""
    pretrain = {"scenes": Train(method, "tiny", scene_data + along(scenes, evaluations), scenes)}
    if cifar is not None and data is not None:
        pretrain = {"cifar10": Train(method, "tiny", cifar_data(data) + along(cifar, evaluations), cifar), **pretrain}
    if scenes == RANDOM:
        return Representation("random-vit", "image", pretrain, label="random ViT", baseline=True)
    return Representation(method, "image", pretrain, label=MIM_LABELS[method])


def mae_3x(data: Path) -> Representation:
    """Issue 14's 3x budget: MAE on the CIFAR-10 subset for 6,000 steps, evaluated at 2,000 and 4,000 too."""
    budget = Budget(steps=6000)
    return Representation("mae-3x", "image", {"cifar10": Train("mae", "tiny", cifar_data(data) + along(budget, 3),
                                                                 budget)},
                          label="MAE, 3x budget", only=("cifar-linear", "cifar-knn"))


def vision_rows(data: Path | None) -> list[Representation]:
    """MAE, SimMIM and data2vec 2.0 at equal training time on scenes (half the tiny preset's budget) and on the
    CIFAR-10 subset (MAE's preset budget, 2,000 steps), and random weights."""
    scenes, cifar = equal_time(1000), equal_time(2000)
    reps = [mim_rep(m, scenes[m], cifar[m], data) for m in MIM_SPEED]
    return reps + [mim_rep("mae", RANDOM, RANDOM, data)]


def vision(data: Path | None = Path("../shared/data")) -> Suite:
    """Issue 15 (and the MAE rows of issue 14): MAE, SimMIM and data2vec 2.0 on one tiny ViT at equal training time,
    against the same ViT with random weights and raw pixels; probes and finetuning on the CIFAR-10 subset (MAE's
    preset budget, 2,000 steps; and MAE at 3x, 6,000 steps) and on rendered scenes (half the preset). 3 seeds."""
    data = has_cifar(data)
    reps = vision_rows(data) + [PIXELS]
    cols = scene_columns(finetune_steps=300)
    if data:
        reps.append(mae_3x(data))
        cols = cifar_columns(data) + cols
    return Suite("vision", tuple(reps), tuple(cols), seeds=3,
                 description="MIM methods at equal training time on this CPU (steps from the interleaved time per "
                             "step: " + ", ".join(f"{MIM_LABELS[m]} {s:.2f}" for m, s in MIM_SPEED.items())
                             + ") against random weights and raw pixels"
                             + (", and MAE at 3x its CIFAR-10 budget" if data else ""))
