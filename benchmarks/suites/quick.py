"""`quick`: the representation x use matrix at tiny scale on the embedded data (`make demo`): MAE, SimMIM, data2vec
2.0 and random weights with scene probes, captioning and PPO (each method pretrained on MiniGrid frames too); BERT's
MLM+NSP, ELECTRA and random weights with the topic probe and MLM accuracy; one seed, CPU-sized budgets and data.
Each column that an evidence suite measures names its RESULTS.md section, so the page sets this table's verdict
beside the evidence's (and says where they disagree, at which budgets)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..matrix import RANDOM, Evidence, Representation, Suite, Train
from ..verdicts import section_key
from .clip import caption_column
from .clip import clip as clip_suite
from .language import OBJECTIVES, text_columns, text_rep
from .language import equal_time as text_time
from .language import language as language_suite
from .rl import MINIGRID, RL_EVIDENCE, SCRATCH_CNN, ppo_column
from .vision import MIM_LABELS, mim_rep, scene_columns
from .vision import equal_time as image_time
from .vision import vision as vision_suite

# Smaller than the evidence's (tiny presets: 20k/2k scenes, batch 256, probes of 60 epochs on three attributes):
# a quarter of the scenes, probes of shape only (the columns here), a quarter of the batch.
SCENES = ("task.data.num_train=5000", "task.data.num_test=1000", "task.probe.epochs=30",
          "task.probe.scene_labels=[shape]")
IMAGE_BATCH = ("trainer.batch_size=64",)
TEXT = ("trainer.batch_size=32", "task.eval.pppl_sentences=20", "task.eval.probe_docs=2000",
        "task.eval.max_pairs=500")
CAPTION = ("task.data.num_train=4000", "task.data.num_eval=200")
QUICK_OBJECTIVES = ("mlm+nsp", "electra")
# steps of MAE (the others at equal time), of MAE on MiniGrid frames, of MLM+NSP (ELECTRA at equal time)
VISION_STEPS, MINIGRID_STEPS, TEXT_STEPS, CAPTION_STEPS, PPO_STEPS = 300, 200, 300, 200, 160


def _budgets(suite: Suite, domain: str) -> str:
    """What an evidence suite spends per row on a domain, e.g. "MAE 1,000 steps, SimMIM 781 steps"."""
    return ", ".join(f"{r.title} {r.pretrain[domain].budget}" for r in suite.representations
                     if domain in r.pretrain and r.pretrain[domain].budget not in (None, RANDOM))


def quick_rows() -> list[Representation]:
    image, minigrid, text = image_time(VISION_STEPS), image_time(MINIGRID_STEPS), text_time(TEXT_STEPS)
    reps = []
    for method in list(MIM_LABELS) + ["random"]:
        task = "mae" if method == "random" else method
        budget = (RANDOM, RANDOM) if method == "random" else (image[method], minigrid[method])
        rep = mim_rep(task, budget[0], scene_data=SCENES + IMAGE_BATCH, evaluations=0)
        frames = Train(task, "tiny", MINIGRID[task] + IMAGE_BATCH, budget[1])
        reps.append(replace(rep, pretrain={**rep.pretrain, "minigrid": frames}))
    reps.append(SCRATCH_CNN)
    stdlib = {"stdlib": TEXT}
    return reps + [text_rep(o, text[o], stdlib) for o in QUICK_OBJECTIVES] + [text_rep("mlm+nsp", RANDOM, stdlib)]


def quick(data: Path | None = None) -> Suite:
    """The matrix at tiny scale on a CPU, one seed: shorter budgets, smaller batches and fewer scenes than the
    evidence suites (`vision`, `language`, `clip`, `rl`), whose numbers each column's verdict sets beside its own."""
    vision, language, clip = vision_suite(None), language_suite(None), clip_suite(None)
    at = {"vision": Evidence(section_key("vision"), "scenes pretraining " + _budgets(vision, "scenes")),
          "language": Evidence(section_key("language"), "stdlib pretraining " + _budgets(language, "stdlib")),
          "clip": Evidence(section_key("clip"), "scenes pretraining as in `vision`, caption "
                           + str(next(c for c in clip.evaluations if c.name == "caption").run.budget))}
    evidence = {"linear": at["vision"], "knn": at["vision"], "caption": at["clip"], "topic": at["language"],
                "mlm": at["language"]}
    cols = [c for c in scene_columns(SCENES) if c.name in ("linear", "knn", "img-per-s")]
    cols += [caption_column(CAPTION_STEPS, CAPTION), ppo_column(PPO_STEPS, evidence=RL_EVIDENCE)]
    cols += text_columns(None)
    cols = [replace(c, evidence=evidence[c.name]) if c.name in evidence else c for c in cols]
    names = ", ".join(OBJECTIVES[o][1] for o in QUICK_OBJECTIVES)
    return Suite("quick", tuple(quick_rows()), tuple(cols), seeds=1, shared=("minigrid",),
                 description=f"tiny budgets on the embedded data (rendered scenes, MiniGrid frames, the standard "
                             f"library's docstrings): {', '.join(MIM_LABELS.values())} and {names} at equal "
                             "training time against random weights, one seed")
