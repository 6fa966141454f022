"""The `glue` task: finetune a BERT checkpoint on a GLUE-style TSV task read from a local folder.

Formats (as distributed by the GLUE benchmark): SST-2 (header `sentence	label`), CoLA (no header:
source, label, original mark, sentence), MRPC (header `Quality	#1 ID	#2 ID	#1 String	#2 String`),
RTE (header `index	sentence1	sentence2	label`, labels entailment / not_entailment). Each is
scored with its own metric: accuracy, Matthews correlation (CoLA), F1 and accuracy (MRPC).

    selfsup export bert --checkpoint runs/bert --out exports/bert       # a transformers folder
    selfsup train glue --preset tiny --set task.name=sst2 task.data_dir=glue/SST-2 task.init=exports/bert
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score, matthews_corrcoef
from torch import nn
from transformers import BertForSequenceClassification

from selfsup.data import step_loader
from selfsup.results import Score
from selfsup.task import BatchPlan

from .corpus import CorpusError
from .tokenizer import TokenizerError, load_tokenizer

# name -> (has header, text columns, label column, label map or None, metrics)
FORMATS = {
    "sst2": (True, ["sentence"], "label", None, ("accuracy",)),
    "cola": (False, [3], 1, None, ("matthews_corr", "accuracy")),
    "mrpc": (True, ["#1 String", "#2 String"], "Quality", None, ("f1", "accuracy")),
    "rte": (True, ["sentence1", "sentence2"], "label", {"entailment": 0, "not_entailment": 1}, ("accuracy",)),
}


def read_glue_tsv(path: Path, name: str) -> tuple[list[tuple[str, ...]], list[int]]:
    if name not in FORMATS:
        raise CorpusError(f"unknown GLUE task '{name}'; choose one of {', '.join(FORMATS)}")
    header, text_cols, label_col, label_map, _ = FORMATS[name]
    if not path.is_file():
        raise CorpusError(f"GLUE file not found: {path}")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if header:
        names, rows = rows[0], rows[1:]
        missing = [c for c in text_cols + [label_col] if c not in names]
        if missing:
            raise CorpusError(f"{path} lacks the {name} columns {missing}; its header is {names}")
        text_cols, label_col = [names.index(c) for c in text_cols], names.index(label_col)
    texts, labels, bad = [], [], 0
    for r in rows:
        try:
            raw = r[label_col]
            labels.append(label_map[raw] if label_map else int(raw))
            texts.append(tuple(r[c] for c in text_cols))
        except (IndexError, KeyError, ValueError):
            bad += 1
    if bad:
        raise CorpusError(f"{path}: {bad} of {len(rows)} rows do not fit the {name} format (wrong task name or file?)")
    if not texts:
        raise CorpusError(f"{path} has no examples")
    return texts, labels


@dataclass
class GlueConfig:
    name: str = "sst2"          # sst2 | cola | mrpc | rte
    data_dir: str = ""          # folder with train.tsv and dev.tsv
    init: str = ""              # a transformers BERT folder with its tokenizer (e.g. from `selfsup export bert`)
    max_len: int = 128


class GlueTask:
    name = "glue"
    Config = GlueConfig
    presets = {
        "tiny": {"trainer": {"max_steps": 300, "batch_size": 32, "lr": 5e-4, "warmup_steps": 30, "weight_decay": 0.01,
                             "log_every": 25, "checkpoint_every": 300}},
        "bert-base": {"trainer": {"max_steps": 6000, "batch_size": 32, "lr": 2e-5, "warmup_steps": 600,
                                  "weight_decay": 0.01, "log_every": 50, "checkpoint_every": 2000}},
    }

    def __init__(self, cfg: GlueConfig):
        if not cfg.init or not cfg.data_dir:
            raise TokenizerError("glue needs task.init (a transformers BERT folder with its tokenizer, e.g. from "
                                 "`selfsup export bert`) and task.data_dir (with train.tsv and dev.tsv)")
        self.cfg = cfg
        self.tokenizer = load_tokenizer(cfg.init)
        self.train_x, self.train_y = read_glue_tsv(Path(cfg.data_dir) / "train.tsv", cfg.name)
        self.dev_x, self.dev_y = read_glue_tsv(Path(cfg.data_dir) / "dev.tsv", cfg.name)
        self.num_labels = max(self.train_y + self.dev_y) + 1

    def build_model(self) -> nn.Module:
        try:
            return BertForSequenceClassification.from_pretrained(self.cfg.init, num_labels=self.num_labels,
                                                                 local_files_only=True, attn_implementation="sdpa")
        except (OSError, ValueError) as e:
            raise TokenizerError(f"cannot load a BERT checkpoint from {self.cfg.init}: {e}") from None

    def _encode(self, texts: list[tuple[str, ...]]) -> dict[str, torch.Tensor]:
        cols = list(zip(*texts))
        return dict(self.tokenizer(*cols, truncation=True, max_length=self.cfg.max_len, padding="max_length",
                                   return_tensors="pt"))

    def _example(self, index: int, g: torch.Generator):
        enc = self._encode([self.train_x[index]])
        return {k: v[0] for k, v in enc.items()} | {"labels": torch.tensor(self.train_y[index])}

    def train_batches(self, plan: BatchPlan):
        return step_loader(len(self.train_x), self._example, plan)

    def loss(self, model, batch):
        labels = batch["labels"]
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        return F.cross_entropy(logits.float(), labels), {"accuracy": (logits.argmax(-1) == labels).float().mean()}

    def evaluate(self, model, out_dir: Path) -> list[Score]:
        device = next(model.parameters()).device
        preds = []
        for i in range(0, len(self.dev_x), 128):
            enc = {k: v.to(device) for k, v in self._encode(self.dev_x[i:i + 128]).items()}
            preds += model(**enc).logits.argmax(-1).cpu().tolist()
        y = self.dev_y
        values = {"accuracy": sum(p == t for p, t in zip(preds, y)) / len(y),
                  "matthews_corr": float(matthews_corrcoef(y, preds)),
                  "f1": float(f1_score(y, preds)) if self.num_labels == 2 else float("nan")}
        return [Score(f"glue-{self.cfg.name}", "dev", m, values[m], {"n": len(y), "init": self.cfg.init})
                for m in FORMATS[self.cfg.name][4]]
