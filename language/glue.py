"""The `glue` task: finetune any exported text encoder on a GLUE-style TSV task read from a local folder.

The model is ``AutoModelForSequenceClassification`` on ``task.init``, a text encoder spec that transformers can
finetune: our BERT, ELECTRA or data2vec export (a folder), ``hf:DIR`` (any save_pretrained folder with its
tokenizer) or ``hf:HUB_ID`` (a released checkpoint: loaded from the local cache, downloaded only when the machine
reaches the hub, otherwise an error naming the command that fetches it). ``task.pretrained=false`` keeps its
architecture and tokenizer with random weights, the baseline that says what pretraining bought. Beside the finetuned
model's dev score, a bag-of-words logistic regression trained on the same train split is scored on the
same dev split (once per data folder, cached): the bar any encoder has to clear.

Formats (as distributed by the GLUE benchmark): SST-2 (header `sentence	label`), CoLA (no header:
source, label, original mark, sentence), MRPC (header `Quality	#1 ID	#2 ID	#1 String	#2 String`),
RTE (header `index	sentence1	sentence2	label`, labels entailment / not_entailment). Each is
scored with its own metric: accuracy, Matthews correlation (CoLA), F1 and accuracy (MRPC).

    selfsup export bert --checkpoint runs/bert --out exports/bert       # a transformers folder
    selfsup train glue --preset tiny --set task.name=sst2 task.data_dir=glue/SST-2 task.init=exports/bert
    selfsup train glue --preset tiny --set ... task.init=exports/bert task.pretrained=false   # random weights
    selfsup train glue --preset bert-base --set ... task.init=hf:google/electra-small-discriminator  # released
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score, matthews_corrcoef
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from selfsup.data import step_loader
from selfsup.encoders import EncoderSpec, parse_spec
from selfsup.encoders.hf_encoder import fetch_hint, quiet_transformers
from selfsup.encoders.hub import fetching
from selfsup.io import atomic_write_json
from selfsup.results import Score
from selfsup.task import BatchPlan

from .corpus import CorpusError, default_cache
from .tokenizer import TokenizerError

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


def scores_of(name: str, y: list[int], preds: list[int], num_labels: int) -> dict[str, float]:
    """The task's metrics (accuracy, Matthews correlation for CoLA, F1 for MRPC) of predictions against labels."""
    values = {"accuracy": sum(p == t for p, t in zip(preds, y)) / len(y),
              "matthews_corr": float(matthews_corrcoef(y, preds)),
              "f1": float(f1_score(y, preds)) if num_labels == 2 else float("nan")}
    return {m: values[m] for m in FORMATS[name][4]}


def bow_baseline(name: str, train: tuple[list, list], dev: tuple[list, list], num_labels: int) -> dict[str, float]:
    """Bag-of-words (lower-cased unigram counts) logistic regression (C=1, fixed beforehand: nothing is tuned on
    dev), trained on train and scored on dev; a pair's two texts share one bag, joined by a separator word."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    vec = CountVectorizer(lowercase=True)
    x = vec.fit_transform([" xxsep ".join(t) for t in train[0]])
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(x, train[1])
    preds = clf.predict(vec.transform([" xxsep ".join(t) for t in dev[0]])).tolist()
    return scores_of(name, dev[1], preds, num_labels)


@dataclass
class GlueConfig:
    name: str = "sst2"          # sst2 | cola | mrpc | rte
    data_dir: str = ""          # folder with train.tsv and dev.tsv
    init: str = ""              # text encoder spec: our export folder (`selfsup export bert`), hf:DIR or hf:HUB_ID
    pretrained: bool = True     # false: init's architecture and tokenizer, random weights (the baseline)
    bow_baseline: bool = True   # also score a bag-of-words logistic regression on the same train/dev split
    max_len: int = 128          # longer inputs are truncated; batches are padded to their longest input


def classifier_spec(init: str) -> EncoderSpec:
    """``task.init`` as a transformers model: our export folders are transformers folders (read as ``hf:DIR``);
    other libraries' encoders have no sequence-classification head here, and a training run is not yet one."""
    spec = parse_spec(init)
    if spec.library == "ours":
        path = Path(spec.name)
        if (path / "config.yaml").is_file() and not (path / "config.json").is_file():
            raise TokenizerError(f"task.init={init} is a training run; export its encoder first: selfsup export "
                                 f"bert --checkpoint {init} --out EXPORT_DIR, then task.init=EXPORT_DIR")
        if not (path / "config.json").is_file():
            raise TokenizerError(f"task.init={init}: no transformers folder there (config.json and a tokenizer); "
                                 "give an export folder, hf:DIR or hf:HUB_ID")
        spec = EncoderSpec("hf", spec.name, text=spec.text)
    if spec.library == "hf" and Path(spec.name).is_dir() and not any(
            (Path(spec.name) / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")):
        raise TokenizerError(f"task.init={init}: {spec.name} has no tokenizer (tokenizer.json, tokenizer_config.json "
                             "or vocab.txt); save the tokenizer beside the model (tokenizer.save_pretrained)")
    if spec.library != "hf":
        raise TokenizerError(f"task.init={init} is a {spec.library} encoder; glue finetunes transformers models "
                             "(AutoModelForSequenceClassification): give an export folder, hf:DIR or hf:HUB_ID")
    return spec


class GlueTask:
    name = "glue"
    Config = GlueConfig
    presets = {
        # minutes on 2 CPU cores on all of SST-2's 67k training sentences: the steps are capped, not the data
        "tiny": {"trainer": {"max_steps": 300, "batch_size": 32, "lr": 5e-4, "warmup_steps": 30, "weight_decay": 0.01,
                             "log_every": 25, "checkpoint_every": 300}},
        "bert-base": {"trainer": {"max_steps": 6000, "batch_size": 32, "lr": 2e-5, "warmup_steps": 600,
                                  "weight_decay": 0.01, "log_every": 50, "checkpoint_every": 2000}},
    }

    def __init__(self, cfg: GlueConfig):
        if not cfg.init or not cfg.data_dir:
            raise TokenizerError("glue needs task.init (an export folder from `selfsup export bert`, hf:DIR or "
                                 "hf:HUB_ID) and task.data_dir (with train.tsv and dev.tsv)")
        self.cfg = cfg
        self.spec = classifier_spec(cfg.init)
        with fetching(self.spec.text, fetch_hint(self.spec.name)):
            self.tokenizer = AutoTokenizer.from_pretrained(self.spec.name)
        if self.tokenizer.pad_token is None:
            raise TokenizerError(f"the tokenizer of task.init={cfg.init} has no padding token; glue pads batches")
        self.train_x, self.train_y = read_glue_tsv(Path(cfg.data_dir) / "train.tsv", cfg.name)
        self.dev_x, self.dev_y = read_glue_tsv(Path(cfg.data_dir) / "dev.tsv", cfg.name)
        self.num_labels = max(self.train_y + self.dev_y) + 1

    def build_model(self) -> nn.Module:
        """The classifier: the encoder's weights and a fresh head (transformers' own head per architecture)."""
        name = self.spec.name
        with fetching(self.spec.text, fetch_hint(name)), quiet_transformers():
            config = AutoConfig.from_pretrained(name, num_labels=self.num_labels)
            if not self.cfg.pretrained:
                return AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")
            # a classifier finetuned for another label count (MNLI's 3 -> SST-2's 2) gets a fresh head, as it should
            model, info = AutoModelForSequenceClassification.from_pretrained(
                name, config=config, dtype=torch.float32, attn_implementation="sdpa", output_loading_info=True,
                ignore_mismatched_sizes=True)
        prefix = f"{model.base_model_prefix}."
        lost = sorted(k for k in info.get("missing_keys", ()) if k.startswith(prefix) and ".pooler." not in k)
        lost += sorted(f"{m[0]} (shape)" for m in info.get("mismatched_keys", ()) if str(m[0]).startswith(prefix))
        if lost:
            raise TokenizerError(f"task.init={self.cfg.init} lacks weights of its own encoder ({', '.join(lost[:4])}):"
                                 " a truncated or foreign checkpoint; re-export or re-download it")
        return model

    def _encode(self, texts: list[tuple[str, ...]], padding="longest") -> dict[str, torch.Tensor]:
        cols = list(zip(*texts))
        return dict(self.tokenizer(*cols, truncation=True, max_length=self.cfg.max_len, padding=padding,
                                   return_tensors="pt"))

    def _example(self, index: int, g: torch.Generator):
        return index

    def _collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """A batch padded to its longest input: SST-2's median sentence is ~13 tokens, not max_len."""
        return self._encode([self.train_x[i] for i in indices]) | {"labels": torch.tensor([self.train_y[i]
                                                                                           for i in indices])}

    def train_batches(self, plan: BatchPlan):
        return step_loader(len(self.train_x), self._example, plan, collate_fn=self._collate)

    def loss(self, model, batch):
        labels = batch["labels"]
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        return F.cross_entropy(logits.float(), labels), {"accuracy": (logits.argmax(-1) == labels).float().mean()}

    def num_tokens(self, batch) -> int:
        return int(batch["attention_mask"].sum())

    def evaluate(self, model, out_dir: Path) -> list[Score]:
        device = next(model.parameters()).device
        preds = []
        for i in range(0, len(self.dev_x), 128):
            enc = {k: v.to(device) for k, v in self._encode(self.dev_x[i:i + 128]).items()}
            preds += model(**enc).logits.argmax(-1).cpu().tolist()
        ds, n = f"glue-{self.cfg.name}", len(self.dev_y)
        extra = {"n": n, "init": self.cfg.init, "pretrained": self.cfg.pretrained,
                 "model": type(model).__name__}
        scores = [Score(ds, "dev", m, v, extra) for m, v in scores_of(self.cfg.name, self.dev_y, preds,
                                                                     self.num_labels).items()]
        if self.cfg.bow_baseline:
            scores += [Score(ds, "dev", f"bow_logreg_{m}", v, {"n": n, "features": "unigram counts", "C": 1.0})
                       for m, v in self.bow_scores().items()]
        return scores

    def bow_scores(self) -> dict[str, float]:
        """The bag-of-words baseline, computed once per (task, train.tsv, dev.tsv) and cached."""
        h = hashlib.sha256(f"{self.cfg.name}|bow-v1".encode())
        for split in ("train", "dev"):
            h.update((Path(self.cfg.data_dir) / f"{split}.tsv").read_bytes())
        cache = default_cache() / "glue-bow" / f"{h.hexdigest()[:16]}.json"
        if cache.is_file():
            return json.loads(cache.read_text())
        values = bow_baseline(self.cfg.name, (self.train_x, self.train_y), (self.dev_x, self.dev_y), self.num_labels)
        atomic_write_json(cache, values)
        return values
