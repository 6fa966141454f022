"""The `bert` task: MLM + NSP (or MLM-only with packing) pretraining on the shared trainer, judged by
held-out MLM/NSP accuracy, pseudo-perplexity and a frozen-feature topic probe."""
from __future__ import annotations

import itertools
import math
import random
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import torch
from torch import nn
from transformers import BertForPreTraining

from selfsup.data import step_loader
from selfsup.errors import ConfigError
from selfsup.probes import probe_scores
from selfsup.results import Score
from selfsup.task import BatchPlan

from . import corpus as C
from .instances import Masker, nsp_pairs, packed_sequences, tokenize_documents
from .model import BertModelConfig, BertPretrainer, hf_config
from .stream import example_stream, split_stream, streamed_batches
from .tokenizer import TokenizerError, corpus_tokenizer, load_tokenizer


@dataclass
class CorpusConfig:
    format: str = "stdlib"        # stdlib (embedded) | bert (sentence per line, blank line between docs) | text | hf
    path: str = ""                # file or folder of .txt files; for hf, a save_to_disk folder
    text_field: str = "text"      # hf: the column holding the text
    topic_field: str = ""         # hf: a column to use as the topic-probe label
    valid_fraction: float = 0.05  # documents held out for evaluation (document-level split)
    max_documents: int = 0        # cap on documents read (0: all)
    stream: bool = False          # read the corpus from disk every pass with bounded memory
                                  # (for corpora larger than RAM)
    window: int = 10_000          # stream: documents in memory at once (NSP negatives come from the same window)
    memory_docs: int = 20_000     # stream: documents kept for tokenizer training, validation and the topic probe


@dataclass
class EvalConfig:
    max_pairs: int = 1000         # held-out examples for MLM/NSP accuracy
    pppl_sentences: int = 50      # held-out sentences for pseudo-perplexity (one forward per token)
    probe_topics: int = 8         # the most frequent topics the probe classifies
    probe_epochs: int = 100


@dataclass
class BertTaskConfig:
    model: BertModelConfig = field(default_factory=BertModelConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tokenizer: str = ""           # a local tokenizer folder; "" trains WordPiece on the corpus (cached)
    vocab_size: int = 8000        # WordPiece vocabulary when training one
    init: str = ""                # a local BERT checkpoint folder (transformers format) to start from
    objective: str = "mlm+nsp"    # mlm+nsp (BERT) | mlm (RoBERTa-style: no NSP, packed full sequences)
    max_len: int = 128            # tokens per sequence
    mask_prob: float = 0.15
    max_predictions: int = 20     # masked positions per sequence (BERT uses 20 at length 128)
    whole_word: bool = False      # mask all pieces of a word together
    short_seq_prob: float = 0.1   # NSP: chance of a shorter target length
    dupe_factor: int = 5          # NSP: passes over the corpus with different splits/pairings
    data_seed: int = 12345        # fixes the split and the pairs (independent of trainer.seed)


def iter_corpus(cfg: CorpusConfig) -> Iterator[C.Document]:
    """The corpus's documents, lazily (each call reads from the start)."""
    readers = {"bert": C.read_bert_format, "text": C.read_plain_text,
               "hf": lambda p: C.read_hf_dataset(p, cfg.text_field, cfg.topic_field)}
    if cfg.format == "stdlib":
        docs: Iterable[C.Document] = C.stdlib_corpus()
    elif cfg.format in readers:
        if not cfg.path:
            raise C.CorpusError(f"task.corpus.format={cfg.format} needs task.corpus.path")
        docs = readers[cfg.format](cfg.path)
    else:
        raise C.CorpusError(f"unknown task.corpus.format '{cfg.format}'; choose stdlib, bert, text or hf")
    return itertools.islice(docs, cfg.max_documents or None)


def read_corpus(cfg: CorpusConfig) -> list[C.Document]:
    docs = list(iter_corpus(cfg))
    if not docs:
        raise C.CorpusError(f"the corpus ({cfg.format} {cfg.path}) has no documents with text")
    return docs


class BertTask:
    name = "bert"
    Config = BertTaskConfig
    presets = {
        # CPU, minutes: a 2-layer, 128-wide BERT on the stdlib docstrings, 8k WordPiece vocabulary
        "tiny": {"trainer": {"max_steps": 1000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 100,
                             "weight_decay": 0.01, "beta2": 0.98, "eps": 1e-6, "log_every": 50,
                             "checkpoint_every": 500}},
        # BERT-base at sequence 128 (the phase-1 recipe): 12x768, AdamW 1e-4, wd 0.01, warmup 10k.
        # Set task.corpus / task.tokenizer for a real corpus (e.g. a BERT-format Wikipedia dump).
        "bert-base": {"trainer": {"max_steps": 900_000, "batch_size": 256, "lr": 1e-4, "warmup_steps": 10_000,
                                  "weight_decay": 0.01, "beta2": 0.999, "eps": 1e-6, "log_every": 100,
                                  "checkpoint_every": 5000, "num_workers": 4},
                      "task": {"vocab_size": 30522, "model": {"hidden_size": 768, "num_layers": 12, "num_heads": 12,
                                                              "intermediate_size": 3072, "max_position": 512}}},
    }

    def __init__(self, cfg: BertTaskConfig):
        if cfg.objective not in ("mlm+nsp", "mlm"):
            raise ConfigError(f"task.objective must be mlm+nsp or mlm, not '{cfg.objective}'")
        if cfg.max_len > cfg.model.max_position:
            raise ConfigError(f"task.max_len={cfg.max_len} exceeds task.model.max_position={cfg.model.max_position}")
        self.cfg = cfg
        self.nsp = cfg.objective == "mlm+nsp"
        cc = cfg.corpus
        if cc.stream:
            # bounded memory: only samples of the corpus are held (tokenizer training, validation, probes)
            every = max(2, round(1 / cc.valid_fraction))
            train_docs = list(itertools.islice(split_stream(iter_corpus(cc), every, train=True), cc.memory_docs))
            valid_docs = list(itertools.islice(split_stream(iter_corpus(cc), every, train=False), cc.memory_docs))
            docs = train_docs + valid_docs
        else:
            docs = read_corpus(cc)
            train_docs, valid_docs = C.split_documents(docs, cc.valid_fraction, cfg.data_seed)
        if not train_docs:
            raise C.CorpusError(f"the corpus ({cc.format} {cc.path}) has no documents with text")
        if self.nsp:
            train_docs = C.keep_nsp_documents(train_docs, "training corpus")
            valid_docs = C.keep_nsp_documents(valid_docs, "validation corpus")
        self.tokenizer = self._tokenizer(train_docs)
        self.masker = Masker(self.tokenizer, cfg.max_len, cfg.mask_prob, cfg.max_predictions, cfg.whole_word)
        self.valid_ids = tokenize_documents(valid_docs, self.tokenizer)
        self.valid_pairs = self._pairs(self.valid_ids, 1)[:cfg.eval.max_pairs]
        self.docs = docs
        train_ids = tokenize_documents(train_docs, self.tokenizer)   # in stream mode: the in-memory sample
        self.unigram_top = Counter(t for d in train_ids for s in d for t in s).most_common(1)[0][0]
        self.pairs = [] if cc.stream else self._pairs(train_ids, cfg.dupe_factor)
        if not cc.stream and not self.pairs:
            raise C.CorpusError("the training corpus produced no examples; it is too small for task.max_len")

    def _tokenizer(self, train_docs):
        cfg = self.cfg
        source = cfg.tokenizer or (cfg.init if cfg.init and (Path(cfg.init) / "tokenizer.json").is_file() else "")
        if source:
            return load_tokenizer(source)
        return corpus_tokenizer([s for d in train_docs for s in d.sentences], cfg.vocab_size,
                                C.default_cache() / "tokenizers")

    def _pairs(self, ids, passes, rng=None):
        rng = rng or random.Random(self.cfg.data_seed)
        if not self.nsp:
            return packed_sequences(ids, self.cfg.max_len, self.tokenizer.sep_token_id)
        return [p for _ in range(passes) for p in nsp_pairs(ids, self.cfg.max_len, rng, self.cfg.short_seq_prob)]

    def _stream_documents(self) -> Iterator[C.Document]:
        """Training documents, lazily; NSP drops one-sentence documents and says how many at each pass's end."""
        cc = self.cfg.corpus
        dropped = total = 0
        for d in split_stream(iter_corpus(cc), max(2, round(1 / cc.valid_fraction)), train=True):
            total += 1
            if self.nsp and len(d.sentences) < 2:
                dropped += 1
                continue
            yield d
        if dropped:
            warnings.warn(f"streamed training corpus: dropped {dropped} of {total} documents with fewer than two "
                          "sentences (next-sentence prediction needs two)")

    # ------------------------------------------------------------------------------ model

    def build_model(self) -> nn.Module:
        cfg = self.cfg
        if cfg.init:
            try:
                hf = BertForPreTraining.from_pretrained(cfg.init, local_files_only=True, attn_implementation="sdpa")
            except (OSError, ValueError) as e:
                raise TokenizerError(f"cannot load a BERT checkpoint from {cfg.init}: {e}") from None
            if hf.config.vocab_size != len(self.tokenizer):
                raise TokenizerError(f"the tokenizer has {len(self.tokenizer)} tokens but the checkpoint at {cfg.init} "
                                     f"has {hf.config.vocab_size} embeddings: use the tokenizer saved with it "
                                     "(task.tokenizer=<its folder>)")
            model = BertPretrainer(hf.config)
            model.hf = hf
            return model
        if cfg.model.vocab_size and cfg.model.vocab_size != len(self.tokenizer):
            raise TokenizerError(f"task.model.vocab_size={cfg.model.vocab_size} but the tokenizer has "
                                 f"{len(self.tokenizer)} tokens; set it to 0 to follow the tokenizer")
        return BertPretrainer(hf_config(cfg.model, len(self.tokenizer)))

    def _example(self, index: int, g: torch.Generator):
        return self.masker(self.pairs[index], g, self.nsp)

    def train_batches(self, plan: BatchPlan):
        if not self.cfg.corpus.stream:
            return step_loader(len(self.pairs), self._example, plan)
        pairs = example_stream(self._stream_documents, lambda ids, rng: self._pairs(ids, 1, rng), self.tokenizer,
                               self.cfg.corpus.window, self.cfg.data_seed)
        return streamed_batches(pairs, lambda p, g: self.masker(p, g, self.nsp), plan)

    def _forward(self, model, batch):
        return model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], batch["masked_positions"],
                     batch["masked_ids"], batch["masked_weights"], batch["nsp_label"] if self.nsp else None)

    def loss(self, model, batch):
        loss, mlm, nsp, mlm_correct, nsp_correct = self._forward(model, batch)
        metrics = {"mlm_loss": mlm.detach(), "mlm_acc": mlm_correct / batch["masked_weights"].sum().clamp(min=1)}
        if self.nsp:
            metrics |= {"nsp_loss": nsp.detach(), "nsp_acc": nsp_correct / len(batch["nsp_label"])}
        return loss, metrics

    def loss_count(self, batch) -> int:
        """Masked tokens: the MLM loss averages over them (the NSP term rides along per micro-batch)."""
        return int(batch["masked_weights"].sum())

    def num_tokens(self, batch) -> int:
        return int(batch["attention_mask"].sum())

    # ------------------------------------------------------------------------------ evaluation

    def evaluate(self, model, out_dir: Path) -> list[Score]:
        device = next(model.parameters()).device
        ds = f"{self.cfg.corpus.format}-corpus"
        examples = [self.masker(p, torch.Generator().manual_seed(i), self.nsp) for i, p in enumerate(self.valid_pairs)]
        sums = Counter()
        for i in range(0, len(examples), 64):
            batch = {k: torch.stack([e[k] for e in examples[i:i + 64]]).to(device) for k in examples[0]}
            _, mlm, nsp, mlm_correct, nsp_correct = self._forward(model, batch)
            n_tok = batch["masked_weights"].sum().item()
            sums["tokens"] += n_tok
            sums["mlm_loss"] += mlm.item() * n_tok
            sums["mlm_correct"] += mlm_correct.item()
            sums["nsp_correct"] += nsp_correct.item()
            sums["seqs"] += len(batch["nsp_label"])
        extra = {"n_tokens": int(sums["tokens"]), "n_sequences": int(sums["seqs"])}
        scores = [Score(ds, "valid", "mlm_accuracy", sums["mlm_correct"] / sums["tokens"], extra),
                  Score(ds, "valid", "mlm_loss", sums["mlm_loss"] / sums["tokens"], extra),
                  Score(ds, "valid", "mlm_accuracy_unigram_baseline", self._unigram_baseline(examples), extra)]
        if self.nsp:
            scores.append(Score(ds, "valid", "nsp_accuracy", sums["nsp_correct"] / sums["seqs"], extra))
            # one-chunk documents always get a random B, so "random" can be the majority: the bar to clear
            random_share = sum(p.random_next for p in self.valid_pairs) / len(self.valid_pairs)
            scores.append(Score(ds, "valid", "nsp_accuracy_majority_baseline", max(random_share, 1 - random_share),
                                extra))
        scores.append(Score(ds, "valid", "pseudo_perplexity", self._pseudo_perplexity(model, device),
                            {"sentences": self.cfg.eval.pppl_sentences}))
        scores += self._topic_probe(model, device, ds)
        return scores

    def _unigram_baseline(self, examples) -> float:
        """Accuracy of always predicting the most frequent training token at every masked position."""
        top = self.unigram_top
        hits = sum(((e["masked_ids"] == top).float() * e["masked_weights"]).sum().item() for e in examples)
        return hits / sum(e["masked_weights"].sum().item() for e in examples)

    def _pseudo_perplexity(self, model, device) -> float:
        """exp of the mean negative log-likelihood of each token with only that token masked (Salazar et al. 2020)."""
        sentences = [s for d in self.valid_ids for s in d if 2 <= len(s) <= self.cfg.max_len - 2]
        sentences = sentences[:self.cfg.eval.pppl_sentences]
        nll, count = 0.0, 0
        tok = self.tokenizer
        for s in sentences:
            ids = torch.tensor([tok.cls_token_id] + s + [tok.sep_token_id], device=device)
            L = len(s)
            batch = ids.repeat(L, 1)                                       # one copy per masked token
            positions = torch.arange(1, L + 1, device=device)
            batch[torch.arange(L), positions] = tok.mask_token_id
            seq = model.hf.bert(input_ids=batch, token_type_ids=torch.zeros_like(batch),
                                attention_mask=torch.ones_like(batch)).last_hidden_state
            logits = model.hf.cls.predictions(seq[torch.arange(L), positions]).float()
            nll += torch.nn.functional.cross_entropy(logits, ids[1:L + 1], reduction="sum").item()
            count += L
        return math.exp(nll / max(count, 1))

    def _topic_probe(self, model, device, ds) -> list[Score]:
        """Linear probe and kNN on frozen document features, predicting the document's topic."""
        topics = Counter(d.topic for d in self.docs if d.topic)
        keep = [t for t, n in topics.most_common(self.cfg.eval.probe_topics) if n >= 10]
        if len(keep) < 2:
            return []
        docs = [d for d in self.docs if d.topic in keep]
        random.Random(self.cfg.data_seed).shuffle(docs)
        labels = torch.tensor([keep.index(d.topic) for d in docs])
        feats = {"cls": [], "mean": []}
        for i in range(0, len(docs), 64):
            enc = self.tokenizer([" ".join(d.sentences) for d in docs[i:i + 64]], truncation=True,
                                 max_length=self.cfg.max_len, padding="max_length", return_tensors="pt")
            out = model.encode(enc["input_ids"].to(device), enc["token_type_ids"].to(device),
                               enc["attention_mask"].to(device))
            for k in feats:
                feats[k].append(out[k].float().cpu())
        split = int(0.7 * len(docs))
        x = {k: torch.cat(v) for k, v in feats.items()}
        scores = probe_scores({k: v[:split] for k, v in x.items()}, labels[:split],
                              {k: v[split:] for k, v in x.items()}, labels[split:], f"{ds}-topics",
                              epochs=self.cfg.eval.probe_epochs)
        for s in scores:
            s.extra["topics"] = keep
        return scores

    # ------------------------------------------------------------------------------ export

    def export(self, model, out_dir: Path) -> Path:
        """A transformers folder: AutoModel / BertForPreTraining / AutoTokenizer.from_pretrained(out_dir)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        model.hf.save_pretrained(str(out_dir), safe_serialization=True)
        self.tokenizer.save_pretrained(str(out_dir))
        return out_dir
