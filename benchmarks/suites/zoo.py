"""Released encoders beside ours (issue 17): every image encoder spec the user lists (`--specs`: timm:, hf:,
open_clip:, a run or export folder) probed with `selfsup probe` on the rendered scenes, used as a captioner's
vision tower and as PPO's frozen encoder, beside our MIM pretrainings, raw pixels, random weights and a scratch
CNN, at the same seeds and with the same intervals. A spec written `text:SPEC` is a text encoder (a transformers
model: hf:NAME_OR_DIR or one of our exports): finetuned on SST-2 (`glue`) beside our MLM+NSP and ELECTRA
pretrainings, random BERT and the bag-of-words baseline (with --data holding glue/SST-2). Our rows are the
`vision`, `language`, `clip` and `rl` suites' own runs, so the zoo can share their folder.

    selfsup leaderboard run --suite zoo --specs timm:vit_small_patch14_dinov2.lvd142m hf:facebook/vit-mae-base
    selfsup leaderboard run --suite zoo --specs text:hf:google/electra-small-discriminator --data ../shared/data
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from ..matrix import Representation, Suite, SuiteError
from .clip import caption_column
from .language import bert_decoder, bow_row, text_columns, text_rows
from .rl import SCRATCH_CNN, ppo_column
from .rl import rl as rl_suite
from .vision import PIXELS, scene_columns, vision_rows


def spec_name(spec: str, taken: set[str]) -> str:
    """A row id for a spec: lowercase words of it (a folder by its last parts), unique among ``taken``."""
    family, _, rest = spec.rpartition(":") if ":" in spec else ("", "", spec)
    words = re.sub(r"[^a-z0-9]+", "-", f"{family} {'-'.join(Path(rest).parts[-2:])}".lower()).strip("-")[:48]
    name, k = words or "spec", 2
    while name in taken:
        name, k = f"{words}-{k}", k + 1
    return name


TEXT = "text:"      # a --specs entry naming a text encoder


def spec_rows(specs: tuple[str, ...], taken: set[str]) -> list[Representation]:
    rows = []
    for given in specs:
        kind, spec = ("text", given[len(TEXT):]) if given.startswith(TEXT) else ("image", given)
        if not spec.strip():
            raise SuiteError(f"--specs: an empty encoder spec{' after text:' if kind == 'text' else ''}")
        rows.append(Representation(spec_name(spec, taken), kind, spec=spec, label=spec))
        taken.add(rows[-1].name)
    return rows


def text_part(data: Path | None) -> tuple[list[Representation], list]:
    """What text specs are compared with besides our MLM+NSP row (`bert_decoder`): SST-2 finetuning (the
    `language` suite's column, without its points along the pretraining) of our ELECTRA stdlib pretraining, random
    BERT, and the bag-of-words baseline. The same runs as the `language` suite's, so they share its folder."""
    cols = [replace(c, along=0) for c in text_columns(data) if c.name == "sst2"]
    if not cols:
        raise SuiteError("text specs are compared on SST-2: give --data with glue/SST-2 (train.tsv, dev.tsv) in it")
    ours = [Representation(r.name, r.kind, {"stdlib": r.pretrain["stdlib"]}, label=r.label, baseline=r.baseline)
            for r in text_rows(data) if r.name in ("electra", "random-bert")]
    return ours + [bow_row(cols)], cols


def zoo(data: Path | None = None, specs: tuple[str, ...] = ()) -> Suite:
    """The listed encoder specs against our MAE, SimMIM, data2vec 2.0 (scenes), raw pixels, random weights and a
    scratch CNN: scene probes, captioning (600 steps) and PPO on MiniGrid (frozen, the RL evidence's budget; our
    MAE and random ViT pretrained in-domain, a spec used as it is). 3 seeds (PPO 5)."""
    if not specs:
        raise SuiteError("the zoo suite compares the encoders you name: selfsup leaderboard run --suite zoo "
                         "--specs SPEC [SPEC ...] (timm:NAME, hf:NAME_OR_DIR, open_clip:ARCH[:TAG], a run or export)")
    ours = {r.name: r for r in vision_rows(None)}
    rl = rl_suite()
    for name in ("mae", "random-vit"):      # their MiniGrid pretrainings, for PPO
        rep = ours[name]
        ours[name] = Representation(rep.name, rep.kind, {**rep.pretrain, **rl.rep(name).pretrain}, label=rep.label,
                                    baseline=rep.baseline)
    specs_rows = spec_rows(tuple(specs), set(ours) | {PIXELS.name, SCRATCH_CNN.name, "bert", "electra",
                                                      "random-bert", "bow"})
    cols = [c for c in scene_columns() if c.name != "img-per-s"] + [caption_column(600), ppo_column(320, seeds=5)]
    reps = list(ours.values()) + [PIXELS, SCRATCH_CNN, bert_decoder(data)] + specs_rows
    if any(r.kind == "text" for r in specs_rows):
        text_reps, text_cols = text_part(data)
        reps += text_reps
        cols += text_cols
    return Suite("zoo", tuple(reps), tuple(cols), seeds=3,
                 shared=("minigrid",),
                 description=f"encoder specs ({', '.join(specs)}) beside our pretrainings, raw pixels and random "
                             "weights: scene probes, captioning and PPO (frozen), 3 seeds (PPO 5)")
