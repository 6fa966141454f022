"""Where does a text encoder keep, or lose, a document's topic? The `bert` task's topic probe read layer by
layer, with the feature geometry that explains it.

    python -m benchmarks.text_probe_diagnosis --runs runs/standard/data2vec-text-stdlib-s0 \\
        runs/standard/bert-mlm-stdlib-s0 runs/standard/random-bert-stdlib-s0 ... [--write benchmarks/RESULTS.md]

Each run is a finished `selfsup train bert` run with an ``export/`` folder, or one of its exports (e.g.
``RUN/export-step234``, the encoder at step 234). The run's config.yaml gives the corpus and the probe's documents
and split (the ones its evaluation used); the export gives the weights and tokenizer. Runs are grouped by name without
the seed suffix (``data2vec-text-stdlib-s0`` and ``-s1`` form ``data2vec-text-stdlib``; an earlier export adds
`` @ step234``) and each cell is the mean ± std over the group. For the output of every layer (0 = the embeddings,
then each block), over real tokens:

- linear / kNN: the evaluation's topic probe on the layer's mean-pooled features (test top-1);
- between-document share: the part of the tokens' feature variance (summed over channels) that their documents'
  means explain. Mean pooling keeps only this part. Its chance level, (documents - 1) / (tokens - 1), is given;
- between-position share: the part that the tokens' positions explain: how much of a feature is "where", not "what";
- effective rank: exp of the entropy of the tokens' normalised singular values (centred): how many directions the
  tokens use, out of the width;
- word- and position-embedding row norms (mean over the table's rows).

What it found (README, language): data2vec 2.0's text encoder at the tiny preset spends its features on position.
"""
from __future__ import annotations

import argparse
import json
import math
import re
from collections import defaultdict
from pathlib import Path

import torch
import transformers
from torch import nn
from transformers import AutoModel

from language.model import features
from language.task import BertTask
from selfsup.config import load_saved, resolve
from selfsup.errors import UserError
from selfsup.results import stamp
from selfsup.subsets import sample_indices
from selfsup.task import build_task

from .throughput import publish, spread_table


class LayerFeatures(nn.Module):
    """An exported encoder whose ``encode`` returns every layer's mean-pooled features, ``layer0`` .. ``layerL``."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder.eval()

    @torch.no_grad()
    def hidden_states(self, input_ids, token_type_ids, attention_mask) -> tuple[torch.Tensor, ...]:
        return self.encoder(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask,
                            output_hidden_states=True).hidden_states                   # L+1 x (B, T, D)

    def encode(self, input_ids, token_type_ids, attention_mask) -> dict[str, torch.Tensor]:
        states = self.hidden_states(input_ids, token_type_ids, attention_mask)
        return {f"layer{i}": features(h, attention_mask)["mean"] for i, h in enumerate(states)}


def between_share(tokens: torch.Tensor, group: torch.Tensor) -> float:
    """Share of the tokens' total variance (N, D), summed over channels, explained by their groups' means (group:
    (N,) e.g. each token's document or position): sum_g n_g |mean_g - mean|^2 / sum_i |x_i - mean|^2. NaN when the
    tokens do not vary."""
    centred = tokens - tokens.mean(0)
    total = centred.pow(2).sum()
    if total == 0:
        return math.nan
    n = torch.bincount(group).float()                                                  # (groups,)
    means = torch.zeros(len(n), tokens.shape[1]).index_add_(0, group, centred) / n.clamp(min=1)[:, None]
    return float((n * means.pow(2).sum(1)).sum() / total)


def chance_share(group: torch.Tensor) -> float:
    """between_share's expected value for features unrelated to the groups: (groups - 1) / (tokens - 1)."""
    return (len(group.unique()) - 1) / max(len(group) - 1, 1)


def effective_rank(tokens: torch.Tensor) -> float:
    """exp(entropy of the normalised singular values) of the centred tokens (N, D) (Roy & Vetterli, 2007); 0 when
    the tokens do not vary."""
    s = torch.linalg.svdvals(tokens - tokens.mean(0))
    if s.sum() == 0:
        return 0.0
    p = s / s.sum()
    return float(torch.exp(-(p * p.clamp_min(1e-12).log()).sum()))


def geometry(model: LayerFeatures, task: BertTask, docs: int, seed: int) -> dict[str, float]:
    """Between-document and between-position shares and effective rank per layer, over the tokens of a seeded
    sample of documents; the embedding table's mean row norms (word and position embeddings)."""
    pool = task.corpus["all"]
    pick = sample_indices(len(pool), docs, seed).tolist()
    per_layer: dict[int, list[torch.Tensor]] = defaultdict(list)
    owner, position = [], []
    for i in range(0, len(pick), 64):
        texts = [" ".join(pool[j].sentences) for j in pick[i:i + 64]]
        enc = task.tokenizer(texts, truncation=True, max_length=task.cfg.max_len, padding="max_length",
                             return_tensors="pt")
        real = enc["attention_mask"].bool()                                             # (B, T)
        states = model.hidden_states(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"])
        for layer, h in enumerate(states):
            per_layer[layer].append(h[real].float())                                    # (tokens, D)
        owner.append((torch.arange(len(texts)) + i)[:, None].expand_as(real)[real])
        position.append(torch.arange(real.shape[1]).expand_as(real)[real])
    doc, position = torch.cat(owner), torch.cat(position)
    emb = model.encoder.embeddings
    out = {"layer 0: word-embedding row norm": float(emb.word_embeddings.weight.detach().norm(dim=1).mean()),
           "layer 0: position-embedding row norm": float(emb.position_embeddings.weight.detach().norm(dim=1).mean()),
           "layer 0: between-document share, chance": chance_share(doc),
           "layer 0: between-position share, chance": chance_share(position)}
    for layer, chunks in per_layer.items():
        tokens = torch.cat(chunks)
        out[f"layer {layer}: between-document share"] = between_share(tokens, doc)
        out[f"layer {layer}: between-position share"] = between_share(tokens, position)
        out[f"layer {layer}: effective rank"] = effective_rank(tokens)
    return out


def locate(path: Path) -> tuple[Path, Path]:
    """(run folder, export folder) for a run folder (its ``export/``) or one of its export folders."""
    if (path / "config.yaml").is_file():
        run, export = path, path / "export"
        make = f"selfsup export bert --checkpoint {run} --out {export}"
    else:
        run, export = path.parent, path
        make = f"selfsup export bert --checkpoint {run}/checkpoints/step_<N> --out {export}"
    if not (run / "config.yaml").is_file():
        raise UserError(f"{path} is neither a bert run folder (with config.yaml) nor an export folder inside one")
    if not (export / "config.json").is_file():
        raise UserError(f"{export} holds no exported encoder (config.json): make it with `{make}`")
    return run, export


def load_encoder(export: Path) -> nn.Module:
    """The exported encoder; an export whose encoder weights are missing (they would be drawn at random) is refused."""
    model, info = AutoModel.from_pretrained(str(export), output_loading_info=True)
    missing = [k for k in info["missing_keys"] if not k.startswith("pooler.")]
    if missing:
        raise UserError(f"{export}: the export lacks encoder weights {missing[:3]}{' ...' if len(missing) > 3 else ''}"
                        " — re-export the run with `selfsup export bert`")
    return model


def load_run(path: Path) -> tuple[str, BertTask, LayerFeatures, list[str]]:
    """(group, the run's task with the export's tokenizer, the exported encoder, the code versions that trained it).
    The group is the run's name without its seed suffix, and the export's step when it is not the final export."""
    run, export = locate(path)
    saved = load_saved(BertTask, run / "config.yaml")
    if "objective" not in saved.task:
        raise UserError(f"{run}/config.yaml is not a bert run's config (no task.objective)")
    cfg = resolve(BertTask.Config, BertTask.presets, overrides=[f"task.tokenizer={export}"], base=saved)
    task = build_task(BertTask, cfg)
    group = re.sub(r"-s\d+$", "", run.name) + ("" if export.name == "export" else f" @ {export.name[7:]}")
    results = run / "results.json"
    codes = sorted({r["code_version"] for r in json.loads(results.read_text())}) if results.is_file() else []
    return group, task, LayerFeatures(load_encoder(export)), codes


def diagnose(run: Path, geometry_docs: int) -> tuple[str, dict[str, float], list[str]]:
    """(group, {"layer K: measure": value}, the code versions that trained it) for one run or export."""
    name, task, model, codes = load_run(run)
    row = {}
    for s in task.topic_probe(model, "cpu", "topics"):
        kind = "linear" if s.metric.startswith("linear") else "kNN"
        row[f"{s.extra['pool'].replace('layer', 'layer ')}: {kind}"] = s.value
    row |= geometry(model, task, geometry_docs, task.cfg.data_seed)
    return name, row, codes


def _layer_order(measure: str) -> tuple[int, str]:
    return int(measure.split(":")[0].split()[1]), measure


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True,
                   help="finished `selfsup train bert` runs with an export/, or their export folders")
    p.add_argument("--geometry-docs", type=int, default=512, help="documents whose tokens the geometry reads")
    p.add_argument("--section", default="objectives",
                   help="the table's name: its RESULTS.md section is text-probe-diagnosis-SECTION")
    p.add_argument("--made-by", help="the command that made the runs, printed under the table's command")
    p.add_argument("--write", help="update this RESULTS.md with the table")
    args = p.parse_args(argv)
    transformers.logging.set_verbosity_error()   # unused MLM-head weights in exports: load_encoder checks what matters
    rows: dict[str, list[dict[str, float]]] = defaultdict(list)
    codes: set[str] = set()
    for run in map(Path, args.runs):
        name, row, trained_by = diagnose(run, args.geometry_docs)
        codes.update(trained_by)
        rows[name].append(row)
        print(run.name, name, {k: round(v, 3) for k, v in row.items()}, flush=True)
    measures = sorted({m for group in rows.values() for r in group for m in r}, key=_layer_order)
    lines = [f"### Where the topic lives ({args.section}): the topic probe layer by layer, and the features' geometry",
             "", stamp(torch.device("cpu")), "",
             "Mean ± std over runs: " + ", ".join(f"{n} {len(r)}" for n, r in rows.items()) + ". Layer 0 = the "
             "embeddings; probes: test top-1 of the evaluation's topic probe on mean-pooled features. Runs trained by "
             f"code {', '.join(sorted(codes)) or 'unknown'}.", "",
             f"Command: `python -m benchmarks.text_probe_diagnosis --section {args.section} --runs "
             f"{' '.join(args.runs)}`", "",
             *([f"Runs made by: `{args.made_by}`", ""] if args.made_by else []),
             *spread_table("layer: measure", rows, measures)]
    publish(lines, args.write, f"text-probe-diagnosis-{args.section}")


if __name__ == "__main__":
    main()
