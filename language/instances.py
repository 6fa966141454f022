"""Pretraining examples: NSP sentence pairs with google-research/bert's semantics, packed MLM-only
sequences, and dynamic masking (15%, 80/10/10, optional whole-word) drawn per sample.

A masked example has a fixed shape, so batches never change shape (good for compilers):
    input_ids, token_type_ids, attention_mask    (T,)
    masked_positions, masked_ids, masked_weights (P,)   P = max predictions; weight 0 = padding
    nsp_label                                    ()     1 = B is a random segment, 0 = B follows A, -1 = no NSP
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from .corpus import Document


@dataclass
class Pair:
    a: list[int]
    b: list[int]
    random_next: bool


def _truncate_pair(a: list[int], b: list[int], max_tokens: int, rng: random.Random) -> None:
    """Trim the longer segment, from the front or the back at random, until both fit."""
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def nsp_pairs(docs: list[list[list[int]]], max_len: int, rng: random.Random, short_seq_prob: float = 0.1) -> list[Pair]:
    """One pass of google-research/bert's `create_instances_from_document` over every document.

    docs: tokenised documents (lists of sentences of token ids). Fill a chunk of sentences up to the
    target length, split it at a random sentence boundary into A and B; half of the time B is
    instead taken from a random other document, and the unused sentences are put back.
    """
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
                if chunk:
                    a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                    a = [t for s in chunk[:a_end] for t in s]
                    if len(chunk) == 1 or rng.random() < 0.5:
                        b, random_next = [], True
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
                        b, random_next = [t for s in chunk[a_end:] for t in s], False
                    _truncate_pair(a, b, max_tokens, rng)
                    if a and b:
                        pairs.append(Pair(a, b, random_next))
                chunk, length = [], 0
                target = rng.randint(2, max_tokens) if rng.random() < short_seq_prob else max_tokens
            i += 1
    return pairs


def packed_sequences(docs: list[list[list[int]]], max_len: int, sep_id: int) -> list[Pair]:
    """MLM-only (RoBERTa-style FULL-SENTENCES): documents concatenated with [SEP] between them and cut into
    full-length sequences, so no position is wasted on padding."""
    stream: list[int] = []
    for doc in docs:
        for s in doc:
            stream += s
        stream.append(sep_id)
    n = max_len - 2
    return [Pair(stream[i:i + n], [], False) for i in range(0, len(stream) - n + 1, n)] or \
        ([Pair(stream[:n], [], False)] if stream else [])


class Masker:
    """Turns a Pair into a masked, padded example with a caller-owned generator."""

    def __init__(self, tokenizer, max_len: int, mask_prob: float = 0.15, max_predictions: int = 20,
                 whole_word: bool = False):
        self.max_len, self.mask_prob, self.max_predictions, self.whole_word = (max_len, mask_prob, max_predictions,
                                                                               whole_word)
        self.cls, self.sep = tokenizer.cls_token_id, tokenizer.sep_token_id
        self.pad, self.mask = tokenizer.pad_token_id, tokenizer.mask_token_id
        vocab = tokenizer.get_vocab()
        self.vocab_size = len(tokenizer)
        self.special = set(tokenizer.all_special_ids)
        self.is_subword = torch.zeros(self.vocab_size, dtype=torch.bool)
        for tok, i in vocab.items():
            if tok.startswith("##"):
                self.is_subword[i] = True
        self.random_pool = torch.tensor([i for i in range(self.vocab_size) if i not in self.special])

    def __call__(self, pair: Pair, g: torch.Generator, nsp: bool) -> dict[str, torch.Tensor]:
        ids = [self.cls] + pair.a + [self.sep] + (pair.b + [self.sep] if pair.b else [])
        types = [0] * (len(pair.a) + 2) + [1] * (len(pair.b) + 1 if pair.b else 0)
        ids_t = torch.tensor(ids)
        # candidate units: single tokens, or whole words (a token plus the ## pieces after it)
        units: list[list[int]] = []
        for pos, tok in enumerate(ids):
            if tok in self.special:
                continue
            if self.whole_word and units and self.is_subword[tok] and units[-1][-1] == pos - 1:
                units[-1].append(pos)
            else:
                units.append([pos])
        n_predict = min(self.max_predictions, max(1, round(len(ids) * self.mask_prob)))
        chosen: list[int] = []
        for u in torch.randperm(len(units), generator=g).tolist():
            if len(chosen) + len(units[u]) > n_predict:
                continue
            chosen += units[u]
            if len(chosen) >= n_predict:
                break
        chosen.sort()
        labels = ids_t[chosen].clone()
        roll = torch.rand(len(chosen), generator=g)
        random_tokens = self.random_pool[torch.randint(len(self.random_pool), (len(chosen),), generator=g)]
        for k, pos in enumerate(chosen):
            if roll[k] < 0.8:
                ids_t[pos] = self.mask
            elif roll[k] < 0.9:
                ids_t[pos] = random_tokens[k]
        T, P = self.max_len, self.max_predictions
        out = {
            "input_ids": torch.full((T,), self.pad), "token_type_ids": torch.zeros(T, dtype=torch.long),
            "attention_mask": torch.zeros(T, dtype=torch.long),
            "masked_positions": torch.zeros(P, dtype=torch.long), "masked_ids": torch.zeros(P, dtype=torch.long),
            "masked_weights": torch.zeros(P), "nsp_label": torch.tensor(int(pair.random_next) if nsp else -1),
        }
        out["input_ids"][:len(ids)] = ids_t
        out["token_type_ids"][:len(ids)] = torch.tensor(types)
        out["attention_mask"][:len(ids)] = 1
        out["masked_positions"][:len(chosen)] = torch.tensor(chosen, dtype=torch.long)
        out["masked_ids"][:len(chosen)] = labels
        out["masked_weights"][:len(chosen)] = 1.0
        return out


def tokenize_documents(docs: list[Document], tokenizer, progress: bool = True) -> list[list[list[int]]]:
    """Sentences -> token ids (no special tokens), batched through the fast tokenizer."""
    from tqdm.auto import tqdm
    flat = [s for d in docs for s in d.sentences]
    ids: list[list[int]] = []
    for i in tqdm(range(0, len(flat), 4096), desc="tokenize", disable=not progress or len(flat) < 50_000):
        ids += tokenizer(flat[i:i + 4096], add_special_tokens=False)["input_ids"]
    out, k = [], 0
    for d in docs:
        sents = [s for s in ids[k:k + len(d.sentences)] if s]
        k += len(d.sentences)
        out.append(sents)
    return out
