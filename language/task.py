"""The `bert` task: text encoders pretrained with one of several objectives (``task.objective``: BERT's
mlm+nsp, ALBERT's mlm+sop, RoBERTa's mlm, ELECTRA, data2vec 2.0) on one tokenizer, corpus, trainer and
evaluation: held-out MLM accuracy where the objective has an MLM head, its other pretext task's accuracy
against the trivial baseline, pseudo-perplexity, a frozen-feature topic probe, and the training FLOPs of
one example (generator and teacher included) for equal-compute comparisons.

Data are built lazily: the corpus is read, and the tokenizer trained, only when training or an
evaluation needs them. The tokenizer a run trained travels in its checkpoints' task state, so
`selfsup export` reads no corpus and `selfsup eval` reads only what its evaluation scores.
"""
from __future__ import annotations

import copy
import functools
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

from selfsup.data import step_loader
from selfsup.errors import ConfigError
from selfsup.metrics import count_training_flops
from selfsup.probes import probe_scores
from selfsup.progress import progress
from selfsup.results import Score
from selfsup.subsets import sample_indices
from selfsup.task import BatchPlan

from . import corpus as C
from .instances import MASK_UNITS, packed_sequences, sentence_pairs, tokenize_documents
from .model import BertModelConfig, ratios
from .objectives import make_objective
from .objectives.data2vec import Data2VecSettings
from .objectives.electra import ElectraSettings
from .stream import example_stream, split_stream, streamed_batches
from .tokenizer import (
    TokenizerError,
    corpus_tokenizer,
    load_tokenizer,
    save_tokenizer,
    tokenizer_files,
    tokenizer_from_files,
)


@dataclass
class CorpusConfig:
    format: str = "stdlib"        # stdlib (embedded) | bert (sentence per line, blank line between docs) | text | hf
    path: str = ""                # file or folder of .txt files; for hf, a save_to_disk folder or parquet/json/csv,
                                  # or a dataset name (its train split; see download)
    split: str = "paragraphs"     # text: paragraphs (blank-line paragraphs grouped to doc_chars) | chunks (pieces of
                                  # doc_chars characters) | file (one document per file); see language/corpus.py
    doc_chars: int = 2000         # text: characters per document (about four 128-token sequences)
    text_field: str = "text"      # hf: the column holding the text
    topic_field: str = ""         # hf: a column to use as the topic-probe label
    download: bool = False        # hf by name: fetch it from the Hugging Face Hub when not in the local datasets cache
                                  # (nothing is downloaded otherwise; offline, the error says how to fetch it)
    valid_fraction: float = 0.05  # documents held out for evaluation (document-level split)
    max_documents: int = 0        # cap on documents read (0: all)
    stream: bool = False          # read the corpus from disk every pass with bounded memory
                                  # (for corpora larger than RAM)
    window: int = 10_000          # stream: documents in memory at once (NSP negatives come from the same window)
    memory_docs: int = 20_000     # stream: documents kept for tokenizer training, validation and the topic probe


@dataclass
class EvalConfig:
    max_pairs: int = 1000         # held-out examples for the pretext tasks' accuracy
    pppl_sentences: int = 50      # held-out sentences for pseudo-perplexity (one forward per token), a seeded sample
    probe_topics: int = 8         # the most frequent topics the probe classifies
    probe_docs: int = 10_000      # documents the probe embeds at most (a stratified seeded sample)
    probe_epochs: int = 100


@dataclass
class BertTaskConfig:
    model: BertModelConfig = field(default_factory=BertModelConfig)   # the encoder every objective trains
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    electra: ElectraSettings = field(default_factory=ElectraSettings)
    data2vec: Data2VecSettings = field(default_factory=Data2VecSettings)
    tokenizer: str = ""           # a local tokenizer folder; "" trains WordPiece on the corpus (cached)
    vocab_size: int = 8000        # WordPiece vocabulary when training one
    init: str = ""                # a local transformers folder of this objective (e.g. its export) to start from
    objective: str = "mlm+nsp"    # mlm+nsp (BERT) | mlm+sop (ALBERT) | mlm (RoBERTa: packed, no pair task)
                                  # | electra | data2vec; see language/objectives/
    max_len: int = 128            # tokens per sequence
    mask_prob: float = 0.15       # share of tokens predicted (BERT, ELECTRA: 0.15)
    max_predictions: int = 20     # masked positions per sequence (BERT uses 20 at length 128)
    masking: str = "token"        # token (BERT) | word (whole words) | span (SpanBERT: geometric p=0.2, <= 10 words)
    short_seq_prob: float = 0.1   # sentence pairs: chance of a shorter target length
    dupe_factor: int = 5          # sentence pairs: passes over the corpus with different splits/pairings
    data_seed: int = 12345        # fixes the split and the pairs (independent of trainer.seed)


def iter_corpus(cfg: CorpusConfig) -> Iterator[C.Document]:
    """The corpus's documents, lazily (each call reads from the start)."""
    readers = {"bert": C.read_bert_format,
               "text": lambda p: C.read_plain_text(p, cfg.split, cfg.doc_chars),
               "hf": lambda p: C.read_hf_dataset(p, cfg.text_field, cfg.topic_field, cfg.download)}
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
    docs = list(progress(iter_corpus(cfg), desc="read corpus", unit=" docs"))
    if not docs:
        raise C.CorpusError(f"the corpus ({cfg.format} {cfg.path}) has no documents with text")
    return docs


class BertTask:
    name = "bert"
    Config = BertTaskConfig
    presets = {
        # CPU, minutes: a 2-layer, 128-wide encoder on the stdlib docstrings, 8k WordPiece vocabulary.
        # Any objective: --set task.objective=electra (or mlm+sop, mlm, data2vec). data2vec, scaled down: the
        # teacher averages all (2) blocks, as the text paper's 12 of 12; M=2 masks per sequence (paper 8) and one
        # decoder layer (paper 5 on 12 encoder layers: the same decoder/encoder cost ratio), which keeps its step
        # within 2x BERT's FLOPs; the paper's EMA time constants as fractions of its 1M updates, kept for 1,000
        # steps: 1/(1-0.9999) = 10k (1%) -> 10 steps, decay 0.9; 1/(1-0.99999) = 100k (10%) -> 100 steps, decay
        # 0.99, annealed over 100k updates (10%) -> 100 steps.
        "tiny": {"trainer": {"max_steps": 1000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 100,
                             "weight_decay": 0.01, "beta2": 0.98, "eps": 1e-6, "log_every": 50,
                             "checkpoint_every": 500},
                 "task": {"data2vec": {"decoder_layers": 1,
                                       "teacher": {"top_k": 2, "clone_batch": 2, "ema_decay": 0.9,
                                                   "ema_end_decay": 0.99, "ema_anneal_end_step": 100}}}},
        # BERT-base at sequence 128 (the phase-1 recipe): 12x768, AdamW 1e-4, wd 0.01, warmup 10k.
        # Set task.corpus / task.tokenizer for a real corpus (e.g. a BERT-format Wikipedia dump).
        "bert-base": {"trainer": {"max_steps": 900_000, "batch_size": 256, "lr": 1e-4, "warmup_steps": 10_000,
                                  "weight_decay": 0.01, "beta2": 0.999, "eps": 1e-6, "log_every": 100,
                                  "checkpoint_every": 5000, "num_workers": 4},
                      "task": {"vocab_size": 30522, "model": {"hidden_size": 768, "num_layers": 12, "num_heads": 12,
                                                              "intermediate_size": 3072, "max_position": 512}}},
        # ELECTRA-Small (paper Table 6): 12x256, 4 heads, embeddings 128, generator 1/4, batch 128, lr 5e-4,
        # warmup 10k, 1M steps, linear decay in the paper (cosine here).
        "electra-small": {"trainer": {"max_steps": 1_000_000, "batch_size": 128, "lr": 5e-4, "warmup_steps": 10_000,
                                      "weight_decay": 0.01, "beta2": 0.999, "eps": 1e-6, "log_every": 100,
                                      "checkpoint_every": 5000, "num_workers": 4},
                          "task": {"objective": "electra", "vocab_size": 30522,
                                   "electra": {"embedding_size": 128},
                                   "model": {"hidden_size": 256, "num_layers": 12, "num_heads": 4,
                                             "intermediate_size": 1024, "max_position": 512}}},
        # data2vec 2.0 text base (base_text_only_task.yaml): 12x768, 512-token sequences, 4 per GPU x 16 GPUs,
        # Adam (0.9, 0.98) eps 1e-6 wd 0.01, lr 2e-4, warmup 4k, cosine, 1M updates, clip 1; teacher and decoder
        # as in Data2VecSettings' defaults (the paper's).
        "data2vec-base": {"trainer": {"max_steps": 1_000_000, "batch_size": 64, "lr": 2e-4, "warmup_steps": 4000,
                                      "weight_decay": 0.01, "beta2": 0.98, "eps": 1e-6, "grad_clip": 1.0,
                                      "log_every": 100, "checkpoint_every": 5000, "num_workers": 4},
                          "task": {"objective": "data2vec", "vocab_size": 30522, "max_len": 512,
                                   "model": {"hidden_size": 768, "num_layers": 12, "num_heads": 12,
                                             "intermediate_size": 3072, "max_position": 512}}},
    }

    @staticmethod
    def migrate_config(data: dict) -> dict:
        """Runs saved before the objectives: task.whole_word (bool) -> task.masking (word | token)."""
        task = data.get("task")
        if isinstance(task, dict) and "whole_word" in task and "masking" not in task:
            task["masking"] = "word" if task.pop("whole_word") else "token"
        return data

    def __init__(self, cfg: BertTaskConfig):
        if cfg.masking not in MASK_UNITS:
            raise ConfigError(f"task.masking must be one of {', '.join(MASK_UNITS)}, not '{cfg.masking}'")
        if cfg.max_len > cfg.model.max_position:
            raise ConfigError(f"task.max_len={cfg.max_len} exceeds task.model.max_position={cfg.model.max_position}")
        if cfg.corpus.format == "text" and cfg.corpus.split not in C.SPLITS:
            raise C.CorpusError(f"unknown task.corpus.split '{cfg.corpus.split}'; choose {', '.join(C.SPLITS)}")
        self.cfg = cfg
        self.objective = make_objective(cfg)
        self._tokenizer = None
        self._unigram_top: int | None = None

    # ------------------------------------------------------------------------------ data, built when first needed

    @functools.cached_property
    def corpus(self) -> dict[str, list[C.Document]]:
        """{"all", "train", "valid"} documents; sentence-pair objectives keep documents of two sentences or more."""
        cc = self.cfg.corpus
        if cc.stream:
            # bounded memory: only samples of the corpus are held (tokenizer training, validation, probes)
            every = max(2, round(1 / cc.valid_fraction))
            train = list(itertools.islice(split_stream(iter_corpus(cc), every, train=True), cc.memory_docs))
            valid = list(itertools.islice(split_stream(iter_corpus(cc), every, train=False), cc.memory_docs))
            if not train or not valid:
                raise C.CorpusError(f"the streamed corpus ({cc.format} {cc.path}) gave {len(train)} training and "
                                    f"{len(valid)} held-out documents; both need at least one")
            docs = train + valid
        else:
            docs = read_corpus(cc)
            train, valid = C.split_documents(docs, cc.valid_fraction, self.cfg.data_seed,
                                             what=f"the corpus ({cc.format} {cc.path or 'stdlib'})")
        if self.objective.pair_task == "nsp":
            train = C.keep_nsp_documents(train, "training corpus")
            valid = C.keep_nsp_documents(valid, "validation corpus")
        return {"all": docs, "train": train, "valid": valid}

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            cfg = self.cfg
            source = cfg.tokenizer or (cfg.init if cfg.init and (Path(cfg.init) / "tokenizer.json").is_file() else "")
            if source:
                self._tokenizer = load_tokenizer(source)
            else:
                self._tokenizer = corpus_tokenizer([s for d in self.corpus["train"] for s in d.sentences],
                                                   cfg.vocab_size, C.default_cache() / "tokenizers")
        return self._tokenizer

    @functools.cached_property
    def example(self):
        """pair, generator -> the objective's masked example."""
        return self.objective.examples(self.tokenizer)

    def _pairs(self, ids, passes: int, rng: random.Random | None = None, desc: str = "") -> list:
        cfg, rng = self.cfg, rng or random.Random(self.cfg.data_seed)
        if self.objective.pair_task is None:
            return packed_sequences(ids, cfg.max_len, self.tokenizer.sep_token_id)
        return [p for _ in progress(range(passes), desc=desc or "sentence pairs", enabled=bool(desc))
                for p in sentence_pairs(ids, cfg.max_len, rng, cfg.short_seq_prob, self.objective.pair_task)]

    @functools.cached_property
    def train_ids(self) -> list[list[list[int]]]:
        """Tokenised training documents (with streaming: the in-memory sample)."""
        ids = tokenize_documents(self.corpus["train"], self.tokenizer)
        self._unigram_top = Counter(t for d in ids for s in d for t in s).most_common(1)[0][0]
        return ids

    @functools.cached_property
    def valid_ids(self) -> list[list[list[int]]]:
        return tokenize_documents(self.corpus["valid"], self.tokenizer)

    @functools.cached_property
    def valid_pairs(self) -> list:
        """Held-out examples built like the training ones (dupe_factor passes), a seeded sample of max_pairs."""
        pairs = self._pairs(self.valid_ids, self.cfg.dupe_factor)
        return [pairs[i] for i in sample_indices(len(pairs), self.cfg.eval.max_pairs, self.cfg.data_seed).tolist()]

    @property
    def unigram_top(self) -> int:
        if self._unigram_top is None:
            _ = self.train_ids      # computes it
        return self._unigram_top

    def _stream_documents(self) -> Iterator[C.Document]:
        """Training documents, lazily; NSP drops one-sentence documents and says how many at each pass's end."""
        cc = self.cfg.corpus
        dropped = total = 0
        for d in split_stream(iter_corpus(cc), max(2, round(1 / cc.valid_fraction)), train=True):
            total += 1
            if self.objective.pair_task == "nsp" and len(d.sentences) < 2:
                dropped += 1
                continue
            yield d
        if dropped:
            warnings.warn(f"streamed training corpus: dropped {dropped} of {total} documents with fewer than two "
                          "sentences (next-sentence prediction needs two)")

    # ------------------------------------------------------------------------------ state: what a checkpoint keeps

    def state_dict(self) -> dict:
        """The tokenizer (as its files) and the unigram baseline's token, so that export and eval of a checkpoint
        need no corpus to rebuild the model."""
        if not hasattr(self, "_tokenizer_files"):
            self._tokenizer_files = tokenizer_files(self.tokenizer)
        return {"tokenizer": self._tokenizer_files, "unigram_top": self._unigram_top}

    def load_state_dict(self, state: dict) -> None:
        if state.get("tokenizer"):
            self._tokenizer = tokenizer_from_files(state["tokenizer"])
            self._tokenizer_files = state["tokenizer"]
        if state.get("unigram_top") is not None:
            self._unigram_top = int(state["unigram_top"])

    # ------------------------------------------------------------------------------ model

    def build_model(self) -> nn.Module:
        cfg, vocab = self.cfg, len(self.tokenizer)
        if cfg.init:
            model = self.objective.from_pretrained(cfg.init)
            if model_vocab(model) != vocab:
                raise TokenizerError(f"the tokenizer has {vocab} tokens but the checkpoint at {cfg.init} has "
                                     f"{model_vocab(model)} embeddings: use the tokenizer saved with it "
                                     "(task.tokenizer=<its folder>)")
            return model
        if cfg.model.vocab_size and cfg.model.vocab_size != vocab:
            raise TokenizerError(f"task.model.vocab_size={cfg.model.vocab_size} but the tokenizer has {vocab} tokens; "
                                 "set it to 0 to follow the tokenizer")
        return self.objective.build(vocab)

    def train_batches(self, plan: BatchPlan):
        self.objective.accumulate = plan.grad_accum
        if self.cfg.corpus.stream:
            _ = self.train_ids      # the in-memory sample gives the unigram baseline
            pairs = example_stream(self._stream_documents, lambda ids, rng: self._pairs(ids, 1, rng), self.tokenizer,
                                   self.cfg.corpus.window, self.cfg.data_seed)
            return streamed_batches(pairs, self.example, plan)
        pairs = self._pairs(self.train_ids, self.cfg.dupe_factor, desc="training pairs")
        if not pairs:
            raise C.CorpusError("the training corpus produced no examples; it is too small for task.max_len")
        return step_loader(len(pairs), lambda i, g: self.example(pairs[i], g), plan)

    def loss(self, model, batch):
        loss, stats = self.objective.forward(model, batch)
        pair = f"{self.objective.pair_task}_"      # logged as nsp_acc / sop_acc
        return loss, {k.replace("pair_", pair, 1): v for k, v in ratios(stats).items()}

    def loss_count(self, batch) -> int:
        return self.objective.loss_count(batch)

    def num_tokens(self, batch) -> int:
        return int(batch["attention_mask"].sum())

    # ------------------------------------------------------------------------------ evaluation

    def evaluate(self, model, out_dir: Path) -> list[Score]:
        device = next(model.parameters()).device
        ds = f"{self.cfg.corpus.format}-corpus"
        examples = [self.example(p, torch.Generator().manual_seed(i)) for i, p in enumerate(self.valid_pairs)]
        rng = torch.Generator().manual_seed(self.cfg.data_seed)        # ELECTRA's generator samples
        sums: Counter = Counter()
        for i in range(0, len(examples), 64):
            batch = {k: torch.stack([e[k] for e in examples[i:i + 64]]).to(device) for k in examples[0]}
            _, stats = self.objective.forward(model, batch, rng=rng)
            sums.update({k: float(v) for k, v in stats.items()})
        r = ratios(sums)
        extra = {"n_sequences": len(examples), "objective": self.cfg.objective}
        scores = []
        if "mlm_n" in sums:
            e = extra | {"n_tokens": int(sums["mlm_n"]), "head": self.objective.mlm_head}
            scores += [Score(ds, "valid", "mlm_accuracy", r["mlm_acc"], e),
                       Score(ds, "valid", "mlm_loss", r["mlm_loss"], e),
                       Score(ds, "valid", "mlm_accuracy_unigram_baseline", self._unigram_baseline(examples), e)]
        if "pair_n" in sums:
            task = self.objective.pair_task
            scores.append(Score(ds, "valid", f"{task}_accuracy", r["pair_acc"], extra))
            # NSP: one-chunk documents always get a random B, so "random" can be the majority: the bar to clear
            positive = sum(p.label for p in self.valid_pairs) / len(self.valid_pairs)
            scores.append(Score(ds, "valid", f"{task}_accuracy_majority_baseline", max(positive, 1 - positive), extra))
        if "rtd_n" in sums:
            e = extra | {"n_tokens": int(sums["rtd_n"])}
            scores += [Score(ds, "valid", "rtd_accuracy", r["rtd_acc"], e),
                       Score(ds, "valid", "rtd_accuracy_all_original_baseline", 1 - r["rtd_replaced"], e),
                       Score(ds, "valid", "rtd_loss", r["rtd_loss"], e)]
        if "d2v_n" in sums:
            scores.append(Score(ds, "valid", "data2vec_loss", r["d2v_loss"], extra | {"n_tokens": int(sums["d2v_n"])}))
        if hasattr(model, "mlm_logits"):
            scores += self._pseudo_perplexity(model, device, ds)
        scores += self.topic_probe(model, device, ds)
        scores.append(Score(ds, "train", "train_flops_per_example", self._flops_per_example(model, examples),
                            {"objective": self.cfg.objective, "counted": "torch.utils.flop_counter, forward+backward"}))
        return scores

    def _unigram_baseline(self, examples) -> float:
        """Accuracy of always predicting the most frequent training token at every masked position."""
        top = self.unigram_top
        hits = sum(((e["masked_ids"] == top).float() * e["masked_weights"]).sum().item() for e in examples)
        return hits / max(1.0, sum(e["masked_weights"].sum().item() for e in examples))

    def _pseudo_perplexity(self, model, device, ds) -> list[Score]:
        """exp of the mean negative log-likelihood of each token with only that token masked (Salazar et al. 2020),
        on a seeded sample of held-out sentences; no Score (and a warning) when no sentence fits."""
        fits = [s for d in self.valid_ids for s in d if 2 <= len(s) <= self.cfg.max_len - 2]
        if not fits:
            warnings.warn("pseudo-perplexity not reported: no held-out sentence has 2 to task.max_len - 2 tokens")
            return []
        sentences = [fits[i] for i in sample_indices(len(fits), self.cfg.eval.pppl_sentences,
                                                     self.cfg.data_seed).tolist()]
        nll, count = 0.0, 0
        tok = self.tokenizer
        for s in progress(sentences, desc="pseudo-perplexity", leave=False):
            ids = torch.tensor([tok.cls_token_id] + s + [tok.sep_token_id], device=device)
            L = len(s)
            batch = ids.repeat(L, 1)                                       # one copy per masked token
            positions = torch.arange(1, L + 1, device=device)
            batch[torch.arange(L), positions] = tok.mask_token_id
            logits = model.mlm_logits(batch, torch.zeros_like(batch), torch.ones_like(batch), positions[:, None])
            nll += torch.nn.functional.cross_entropy(logits[:, 0], ids[1:L + 1], reduction="sum").item()
            count += L
        return [Score(ds, "valid", "pseudo_perplexity", math.exp(nll / count),
                      {"sentences": len(sentences), "tokens": count, "head": self.objective.mlm_head})]

    def topic_probe(self, model, device, ds) -> list[Score]:
        """Linear probe and kNN on frozen document features, predicting the document's topic: one pair of scores
        per feature ``model.encode`` returns (the objectives return ``cls`` and ``mean``; any named (B, D)
        features work, e.g. one per layer in ``benchmarks/text_probe_diagnosis.py``)."""
        docs = self.corpus["all"]
        topics = Counter(d.topic for d in docs if d.topic)
        keep = [t for t, n in topics.most_common(self.cfg.eval.probe_topics) if n >= 10]
        if len(keep) < 2:
            return []
        docs = [d for d in docs if d.topic in keep]
        labels = torch.tensor([keep.index(d.topic) for d in docs])
        pick = sample_indices(len(docs), self.cfg.eval.probe_docs, self.cfg.data_seed, labels)
        order = pick[torch.randperm(len(pick), generator=torch.Generator().manual_seed(self.cfg.data_seed))]
        docs, labels = [docs[i] for i in order.tolist()], labels[order]
        feats: dict[str, list[torch.Tensor]] = {}
        for i in progress(range(0, len(docs), 64), desc="topic probe features", leave=False):
            enc = self.tokenizer([" ".join(d.sentences) for d in docs[i:i + 64]], truncation=True,
                                 max_length=self.cfg.max_len, padding="max_length", return_tensors="pt")
            out = model.encode(enc["input_ids"].to(device), enc["token_type_ids"].to(device),
                               enc["attention_mask"].to(device))
            for k, v in out.items():
                feats.setdefault(k, []).append(v.float().cpu())
        split = int(0.7 * len(docs))
        x = {k: torch.cat(v) for k, v in feats.items()}
        scores = probe_scores({k: v[:split] for k, v in x.items()}, labels[:split],
                              {k: v[split:] for k, v in x.items()}, labels[split:], f"{ds}-topics",
                              epochs=self.cfg.eval.probe_epochs)
        for s in scores:
            s.extra["topics"] = keep
        return scores

    def _flops_per_example(self, model, examples) -> float:
        """Training FLOPs (forward + backward, generator and teacher included) of one example, counted on a copy."""
        probe = copy.deepcopy(model).train()
        batch = {k: torch.stack([e[k] for e in examples[:2]]).to(next(model.parameters()).device) for k in examples[0]}
        with torch.enable_grad(), torch.random.fork_rng(devices=[]):
            flops = count_training_flops(lambda: self.objective.forward(probe, batch)[0].backward())
        return flops / len(batch["input_ids"])

    # ------------------------------------------------------------------------------ export

    def export(self, model, out_dir: Path) -> Path:
        """transformers folders (AutoModel / AutoTokenizer.from_pretrained(out_dir)), readable by everyone; the
        tokenizer's model_max_length is the model's position count, so pipelines truncate long input."""
        out_dir.mkdir(parents=True, exist_ok=True)
        for folder in self.objective.save(model, out_dir):
            save_tokenizer(self.tokenizer, folder, model_positions(model))
        for p in [out_dir, *out_dir.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        return out_dir


def model_vocab(model: nn.Module) -> int:
    return next(m for m in model.modules() if isinstance(m, nn.Embedding)).num_embeddings


def model_positions(model: nn.Module) -> int:
    return next(m for n, m in model.named_modules() if n.endswith("position_embeddings")).num_embeddings
