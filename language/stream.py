"""Pretraining from a corpus larger than memory: documents stream from disk through a bounded window.

The corpus is read document by document; every ``valid_every``-th document is held out (a
document-level split decided without reading ahead). Training documents are gathered into windows
of ``window`` documents; each window is tokenised, turned into NSP pairs (negatives drawn from the
same window) or packed sequences, shuffled with a seed of (data seed, epoch, window), emitted, and
dropped. Memory holds one window, never the corpus.

Example positions follow the trainer's BatchPlan layout, so every rank takes its own slice of each
global batch, and a resumed run skips the positions already trained on (re-reading, not re-masking,
them) and continues with exactly the examples the uninterrupted run would have seen.
"""
from __future__ import annotations

import itertools
import random
from typing import Callable, Iterable, Iterator

import torch

from selfsup.data import sample_generator
from selfsup.task import BatchPlan

from .corpus import CorpusError, Document
from .instances import Pair, tokenize_documents


def split_stream(docs: Iterable[Document], valid_every: int, train: bool) -> Iterator[Document]:
    """Document i is validation when i % valid_every == 0."""
    for i, d in enumerate(docs):
        if (i % valid_every == 0) != train:
            yield d


def windows(docs: Iterable[Document], size: int) -> Iterator[list[Document]]:
    it = iter(docs)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def example_stream(open_docs: Callable[[], Iterable[Document]], make_pairs: Callable[[list, random.Random], list[Pair]],
                   tokenizer, window: int, seed: int) -> Iterator[Pair]:
    """Pairs forever, epoch after epoch, one window of documents in memory at a time."""
    for epoch in itertools.count():
        produced = False
        for w, docs in enumerate(windows(open_docs(), window)):
            rng = random.Random(f"{seed}-{epoch}-{w}")
            pairs = make_pairs(tokenize_documents(docs, tokenizer, progress=False), rng)
            rng.shuffle(pairs)
            produced |= bool(pairs)
            yield from pairs
        if not produced:
            raise CorpusError("the streamed corpus produced no training examples")


def streamed_batches(pairs: Iterator[Pair], to_example: Callable[[Pair, torch.Generator], dict],
                     plan: BatchPlan) -> Iterator[dict]:
    """This rank's micro-batches from ``plan.start_step`` on (positions as in selfsup.data.StepSampler)."""
    B, b = plan.global_batch_size, plan.micro_batch_size
    skip = plan.start_step * B
    for _ in range(skip):               # resume: the examples before the checkpoint were already trained on
        next(pairs)
    position = skip
    while True:
        block = [next(pairs) for _ in range(B)]                  # one global batch
        for m in range(plan.grad_accum):
            offset = (m * plan.world_size + plan.rank) * b
            examples = [to_example(block[offset + i], sample_generator(plan.seed, position + offset + i))
                        for i in range(b)]
            yield {k: torch.stack([e[k] for e in examples]) for k in examples[0]}
        position += B
