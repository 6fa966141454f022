"""Pretraining examples: sentence pairs (BERT's next-sentence prediction or ALBERT's sentence order),
packed sequences (RoBERTa's FULL-SENTENCES), and dynamic masking drawn per sample with a caller-owned
generator: single tokens, whole words, or SpanBERT's spans.

A masked example has a fixed shape, so batches never change shape (good for compilers):
    input_ids, token_type_ids, attention_mask    (T,)
    masked_positions, masked_ids, masked_weights (P,)   P = max predictions; weight 0 = padding
    pair_label                                   ()     NSP: 1 = B is a random segment; SOP: 1 = A and B swapped;
                                                        -1 = no sentence-pair task
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from selfsup.config import ConfigError

from .corpus import Document

PAIR_TASKS = ("nsp", "sop")
MASK_UNITS = ("token", "word", "span")


@dataclass
class Pair:
    a: list[int]
    b: list[int]
    label: int          # NSP: B is a random segment (1) or A's continuation (0); SOP: swapped (1) or in order (0)


def _truncate_pair(a: list[int], b: list[int], max_tokens: int, rng: random.Random) -> None:
    """Trim the longer segment, from the front or the back at random, until both fit."""
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def sentence_pairs(docs: list[list[list[int]]], max_len: int, rng: random.Random, short_seq_prob: float = 0.1,
                   task: str = "nsp") -> list[Pair]:
    """One pass of google-research/bert's `create_instances_from_document` over every document.

    docs: tokenised documents (lists of sentences of token ids). Fill a chunk of sentences up to the
    target length and split it at a random sentence boundary into A and B, two consecutive segments of
    one document. ``nsp`` (BERT): half of the time B is instead taken from a random other document, and
    the unused sentences are put back. ``sop`` (ALBERT): half of the time A and B are swapped; a chunk of
    one sentence is split inside it (ALBERT would draw a random B there, mixing NSP into the task).
    """
    if task not in PAIR_TASKS:
        raise ValueError(f"sentence-pair task must be one of {PAIR_TASKS}, not '{task}'")
    max_tokens = max_len - 3                          # [CLS] A [SEP] B [SEP]
    pairs: list[Pair] = []
    for d, doc in enumerate(docs):
        target = rng.randint(2, max_tokens) if rng.random() < short_seq_prob else max_tokens
        chunk: list[list[int]] = []
        length, i = 0, 0
        while i < len(doc):
            chunk.append(doc[i])
            length += len(doc[i])
            if i == len(doc) - 1 or length >= target:
                a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                a = [t for s in chunk[:a_end] for t in s]
                if task == "sop":
                    b = [t for s in chunk[a_end:] for t in s]
                    if not b and len(a) >= 2:             # one sentence: two segments of it
                        cut = rng.randint(1, len(a) - 1)
                        a, b = a[:cut], a[cut:]
                    label = int(rng.random() < 0.5)
                    if label:
                        a, b = b, a
                elif len(chunk) == 1 or rng.random() < 0.5:
                    b, label = [], 1
                    target_b = target - len(a)
                    for _ in range(10):                   # a different document
                        other = rng.randrange(len(docs))
                        if other != d:
                            break
                    start = rng.randrange(len(docs[other]))
                    for s in docs[other][start:]:
                        b += s
                        if len(b) >= target_b:
                            break
                    i -= len(chunk) - a_end               # put the unused sentences back
                else:
                    b, label = [t for s in chunk[a_end:] for t in s], 0
                _truncate_pair(a, b, max_tokens, rng)
                if a and b:
                    pairs.append(Pair(a, b, label))
                chunk, length = [], 0
                target = rng.randint(2, max_tokens) if rng.random() < short_seq_prob else max_tokens
            i += 1
    return pairs


def packed_sequences(docs: list[list[list[int]]], max_len: int, sep_id: int) -> list[Pair]:
    """RoBERTa-style FULL-SENTENCES: documents concatenated with [SEP] between them and cut into full-length
    sequences, so no position is wasted on padding."""
    stream: list[int] = []
    for doc in docs:
        for s in doc:
            stream += s
        stream.append(sep_id)
    n = max_len - 2
    return [Pair(stream[i:i + n], [], -1) for i in range(0, len(stream) - n + 1, n)] or \
        ([Pair(stream[:n], [], -1)] if stream else [])


class Layout:
    """[CLS] A [SEP] (B [SEP]) padded to ``max_len``: the unmasked part of every example."""

    def __init__(self, tokenizer, max_len: int):
        self.max_len = max_len
        self.cls, self.sep, self.pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id

    def ids(self, pair: Pair) -> tuple[list[int], list[int]]:
        ids = [self.cls] + pair.a + [self.sep] + (pair.b + [self.sep] if pair.b else [])
        types = [0] * (len(pair.a) + 2) + [1] * (len(pair.b) + 1 if pair.b else 0)
        return ids, types

    def padded(self, ids: torch.Tensor, types: list[int]) -> dict[str, torch.Tensor]:
        T, n = self.max_len, len(ids)
        out = {"input_ids": torch.full((T,), self.pad), "token_type_ids": torch.zeros(T, dtype=torch.long),
               "attention_mask": torch.zeros(T, dtype=torch.long)}
        out["input_ids"][:n] = ids
        out["token_type_ids"][:n] = torch.tensor(types)
        out["attention_mask"][:n] = 1
        return out


class Masker:
    """Turns a Pair into a masked, padded example with a caller-owned generator.

    ``unit``: ``token`` (BERT), ``word`` (whole-word masking: a word's ## pieces go together), or ``span``
    (SpanBERT: spans of whole words with lengths from a geometric distribution, p=0.2, clipped at 10 words).
    Of the chosen positions, ``mask_token_prob`` show [MASK], ``random_token_prob`` a random token, the
    rest the original (BERT: 0.8 / 0.1 / 0.1, decided per token; SpanBERT decides once per span).
    """

    def __init__(self, tokenizer, max_len: int, mask_prob: float = 0.15, max_predictions: int = 20,
                 unit: str = "token", mask_token_prob: float = 0.8, random_token_prob: float = 0.1,
                 span_p: float = 0.2, span_max: int = 10):
        if unit not in MASK_UNITS:
            raise ConfigError(f"task.masking must be one of {', '.join(MASK_UNITS)}, not '{unit}'")
        if not (0 <= mask_token_prob and 0 <= random_token_prob and mask_token_prob + random_token_prob <= 1):
            raise ConfigError(f"masking replacement probabilities {mask_token_prob} + {random_token_prob} must lie "
                             "in [0, 1]")
        self.layout = Layout(tokenizer, max_len)
        self.max_len, self.mask_prob, self.max_predictions, self.unit = max_len, mask_prob, max_predictions, unit
        self.mask_token_prob, self.random_token_prob = mask_token_prob, random_token_prob
        self.mask = tokenizer.mask_token_id
        vocab = tokenizer.get_vocab()
        self.vocab_size = len(tokenizer)
        self.special = set(tokenizer.all_special_ids)
        self.is_subword = torch.zeros(self.vocab_size, dtype=torch.bool)
        for tok, i in vocab.items():
            if tok.startswith("##"):
                self.is_subword[i] = True
        self.random_pool = torch.tensor([i for i in range(self.vocab_size) if i not in self.special])
        lengths = torch.arange(1, span_max + 1, dtype=torch.float64)
        self.span_lengths = span_p * (1 - span_p) ** (lengths - 1)          # geometric, clipped and renormalised
        self.span_lengths /= self.span_lengths.sum()

    def _units(self, ids: list[int]) -> list[list[int]]:
        """Positions grouped into maskable units: single tokens, or whole words (a token plus the ## pieces
        after it) for word and span masking. Special tokens are never masked."""
        units: list[list[int]] = []
        for pos, tok in enumerate(ids):
            if tok in self.special:
                continue
            if self.unit != "token" and units and self.is_subword[tok] and units[-1][-1] == pos - 1:
                units[-1].append(pos)
            else:
                units.append([pos])
        return units

    def _choose(self, units: list[list[int]], n_predict: int, g: torch.Generator) -> list[list[int]]:
        """Groups of positions to predict, at most ``n_predict`` positions in all; a group shares its replacement
        decision when masking spans."""
        groups: list[list[int]] = []
        taken = 0
        if self.unit != "span":
            for u in torch.randperm(len(units), generator=g).tolist():
                if taken + len(units[u]) > n_predict:
                    continue
                groups += [[p] for p in units[u]]
                taken += len(units[u])
                if taken >= n_predict:
                    break
            return groups
        # SpanBERT: draw a length, an anchor word; mask whole words from the anchor on until the budget is spent
        used: set[int] = set()
        for _ in range(20 * n_predict):
            if taken >= n_predict:
                break
            length = int(torch.multinomial(self.span_lengths, 1, generator=g)) + 1
            start = int(torch.randint(len(units), (1,), generator=g))
            if units[start][0] in used:
                continue
            span = []
            for u in units[start:start + length]:
                for p in u:
                    if taken < n_predict and p not in used:
                        used.add(p)
                        span.append(p)
                        taken += 1
            groups.append(span)
        return groups

    def __call__(self, pair: Pair, g: torch.Generator, pair_task: bool) -> dict[str, torch.Tensor]:
        ids, types = self.layout.ids(pair)
        ids_t = torch.tensor(ids)
        units = self._units(ids)
        n_predict = min(self.max_predictions, max(1, round(len(ids) * self.mask_prob)))
        groups = self._choose(units, n_predict, g) if units else []
        roll = torch.rand(len(groups), generator=g)
        for k, group in enumerate(groups):
            if roll[k] < self.mask_token_prob:
                ids_t[group] = self.mask
            elif roll[k] < self.mask_token_prob + self.random_token_prob:
                ids_t[group] = self.random_pool[torch.randint(len(self.random_pool), (len(group),), generator=g)]
        chosen = sorted(p for group in groups for p in group)
        P = self.max_predictions
        out = self.layout.padded(ids_t, types) | {
            "masked_positions": torch.zeros(P, dtype=torch.long), "masked_ids": torch.zeros(P, dtype=torch.long),
            "masked_weights": torch.zeros(P), "pair_label": torch.tensor(pair.label if pair_task else -1)}
        out["masked_positions"][:len(chosen)] = torch.tensor(chosen, dtype=torch.long)
        out["masked_ids"][:len(chosen)] = torch.tensor([ids[p] for p in chosen], dtype=torch.long)
        out["masked_weights"][:len(chosen)] = 1.0
        return out


def tokenize_documents(docs: list[Document], tokenizer, progress: bool = True) -> list[list[list[int]]]:
    """Sentences -> token ids (no special tokens), batched through the fast tokenizer."""
    from selfsup.progress import progress as bar
    flat = [s for d in docs for s in d.sentences]
    ids: list[list[int]] = []
    for i in bar(range(0, len(flat), 4096), desc="tokenize", unit=" x4096 sentences", min_total=2, enabled=progress):
        ids += tokenizer(flat[i:i + 4096], add_special_tokens=False)["input_ids"]
    out, k = [], 0
    for d in docs:
        sents = [s for s in ids[k:k + len(d.sentences)] if s]
        k += len(d.sentences)
        out.append(sents)
    return out
