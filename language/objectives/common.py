"""What every pretraining objective provides to the `bert` task (one tokenizer, corpus, trainer and evaluation).

An objective decides how examples are cut and masked and what the model is:

    name                      task.objective
    pair_task                 "nsp" | "sop": sentence pairs from consecutive segments of one document;
                              None: packed full-length sequences (RoBERTa's FULL-SENTENCES)
    mlm_head                  whose masked-LM head the MLM metrics and pseudo-perplexity come from; None: none
    examples(tokenizer)       -> fn(pair, generator) -> example dict (masking drawn with the sample's generator)
    build(vocab_size)         -> the model, randomly initialised
    from_pretrained(path)     -> the model from a transformers folder (task.init), e.g. an export of this objective
    forward(model, batch, rng=None) -> (loss, stats)     stats: sums with their counts (language.model.ratios)
    loss_count(batch)         units the loss averages over (the trainer weights micro-batches by it)
    save(model, out_dir)      -> folders written in transformers' format (each gets the tokenizer)

Its model exposes ``encode(input_ids, token_type_ids, attention_mask) -> {"cls", "mean"}`` (the probes),
``shard_units()`` (FSDP), and where it has an MLM head ``mlm_logits(input_ids, token_type_ids,
attention_mask, positions) -> (B, P, V)``.
"""
from __future__ import annotations

from pathlib import Path

from ..instances import Masker
from ..tokenizer import TokenizerError


def load_pretrained(cls, path: str | Path):
    """A transformers model class from a local folder, with an error that says what is wrong."""
    try:
        return cls.from_pretrained(str(path), local_files_only=True, attn_implementation="sdpa")
    except (OSError, ValueError) as e:
        raise TokenizerError(f"cannot load a {cls.__name__} from {path}: {str(e).splitlines()[0]}") from None


class Objective:
    name = ""
    pair_task: str | None = None
    mlm_head: str | None = None

    def __init__(self, cfg):
        self.cfg = cfg                  # the task's config (model, masking, per-objective settings)
        self.accumulate = 1             # micro-batches per optimizer step (the batch plan's grad_accum)

    def masker_options(self) -> dict:
        return {}

    def examples(self, tokenizer):
        cfg = self.cfg
        masker = Masker(tokenizer, cfg.max_len, cfg.mask_prob, cfg.max_predictions, cfg.masking,
                        **self.masker_options())
        pair_task = self.pair_task is not None
        return lambda pair, g: masker(pair, g, pair_task)

    def loss_count(self, batch) -> int:
        return len(batch["input_ids"])
