"""Image-text alignment as rows and columns (issue 18): CLIP trained from our MAE and BERT pretrainings against
CLIP from random towers at an equal budget, judged by retrieval both ways and zero-shot classification (beside
chance and the majority class), and captioning fed by each image tower (CLIP-trained, MAE, random); the `clip`
suite."""
from __future__ import annotations

from pathlib import Path

from ..matrix import Budget, Evaluation, Metric, Representation, Suite, Train
from .language import bert_decoder
from .vision import CIFAR, has_cifar, vision_rows

DECODER = "task.text_init={export:bert@stdlib}"      # the captioner's decoder and CLIP's text tower: our BERT
ATTRIBUTES = ("shape", "colour", "count")           # zero-shot scene attributes in the headline (all five: folded)


def caption_column(steps: int, overrides: tuple[str, ...] = ()) -> Evaluation:
    """A captioner on the representation's image tower (its patch tokens into our BERT decoder)."""
    return Evaluation("caption", "image", "scenes", Metric("cider_d", "scenes-captions", "test"),
                      Train("caption", "tiny", overrides + ("task.vision_init={run}", DECODER), Budget(steps=steps)),
                      label="caption CIDEr-D")


def clip_rows(budget: Budget, overrides: tuple[str, ...] = ()) -> list[Representation]:
    """CLIP from MAE (its scenes pretraining) + BERT (its stdlib export), and from random towers of the same
    architectures and tokenizer, at one budget."""
    def clip(towers: tuple[str, ...]) -> dict[str, Train]:
        return {"scenes": Train("clip", "tiny", towers + overrides, budget)}
    return [Representation("clip", "image", clip(("task.vision_init={run:mae@scenes}", DECODER)),
                           label="CLIP from MAE + BERT"),
            Representation("clip-random", "image", clip((DECODER, "task.text_pretrained=false")),
                           label="CLIP from random towers")]


def clip_columns(data: Path | None) -> list[Evaluation]:
    """Retrieval R@1 both ways on the test split and on held-out colour-shape pairs (R@5, R@10: folded tables),
    zero-shot scene attributes, and zero-shot CIFAR-10 class names when the clip runs classify them."""
    def col(name: str, metric: str, dataset: str, split: str, label: str) -> Evaluation:
        return Evaluation(name, "image", "scenes", Metric(metric, dataset, split), label=label, tasks=("clip",))
    cols = []
    for split, where in (("test", "test"), ("test_heldout", "held-out pairs")):
        suffix = "" if split == "test" else "-heldout"
        cols += [col(f"t2i{suffix}", "image_retrieval_recall@1", "scenes-captions", split, f"text→image R@1, {where}"),
                 col(f"i2t{suffix}", "text_retrieval_recall@1", "scenes-captions", split, f"image→text R@1, {where}")]
    cols += [col(f"zs-{a}", "zeroshot_top1", f"scenes-{a}", "test", f"zero-shot {a}") for a in ATTRIBUTES]
    if has_cifar(data):
        cols.append(col("zs-cifar", "zeroshot_top1", CIFAR, "val", "zero-shot CIFAR-10 classes"))
    return cols


def chance_row(columns: list[Evaluation]) -> Representation:
    """Chance recall and the majority class, which every clip run reports beside its scores (read from the random
    towers' runs): the floor of each retrieval and zero-shot column."""
    def floor(m: Metric) -> Metric:
        name = f"{m.metric}_chance" if "recall" in m.metric else "zeroshot_majority_baseline"
        return Metric(name, m.dataset, m.split)
    return Representation("chance", "image", label="chance / majority class", baseline=True, reads="clip-random",
                          metrics={c.name: floor(c.metric) for c in columns if c.tasks == ("clip",)})


def clip(data: Path | None = Path("../shared/data")) -> Suite:
    """Issue 18: does pretraining help alignment (CLIP from MAE + BERT vs random towers, 600 steps each, the tiny
    preset), and does alignment help captioning (caption CIDEr-D from the CLIP-trained image towers, from MAE and
    from random weights, 600 caption steps)? 3 seeds. MAE, random weights and BERT are the `vision` and `language`
    suites' own runs (one folder can hold all three suites)."""
    cifar = has_cifar(data)
    zeroshot = (f"task.eval.zeroshot_folder={cifar / CIFAR / 'val'}",) if cifar else ()
    vision = {r.name: r for r in vision_rows(None)}     # their scenes pretrainings
    cols = clip_columns(data) + [caption_column(600)]
    reps = clip_rows(Budget(steps=600), zeroshot) + [vision["mae"], vision["random-vit"], bert_decoder(data),
                                                     chance_row(cols)]
    return Suite("clip", tuple(reps), tuple(cols), seeds=3,
                 description="CLIP from our MAE + BERT vs from random towers at an equal budget (600 steps), "
                             "retrieval and zero-shot beside chance; captioning from each image tower")
