"""Masked language modelling as BERT does it, and the variants RoBERTa, ALBERT and SpanBERT settled on.

    mlm+nsp   BERT: MLM + next-sentence prediction (B follows A, or comes from another document)
    mlm+sop   ALBERT: MLM + sentence-order prediction (A and B in order, or swapped): the same
              2-way head on the pooled [CLS], a harder task that does not reward topic matching
    mlm       RoBERTa: MLM alone on packed full-length sequences (FULL-SENTENCES)

Whole-word and SpanBERT span masking are ``task.masking=word|span`` for any of them. The model is
transformers' ``BertForPreTraining`` (language.model.BertPretrainer), exported as it is.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn
from transformers import BertForPreTraining

from ..model import BertPretrainer, hf_config
from .common import Objective, load_pretrained

PAIR_TASK = {"mlm+nsp": "nsp", "mlm+sop": "sop", "mlm": None}


class MLM(Objective):
    mlm_head = "its"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.name = cfg.objective
        self.pair_task = PAIR_TASK[cfg.objective]

    def _ready(self, model: BertPretrainer) -> BertPretrainer:
        if self.pair_task is None:   # the pooler and pair head get no gradient: freeze them (DDP needs every
            model.hf.bert.pooler.requires_grad_(False)                        # trainable parameter used)
            model.hf.cls.seq_relationship.requires_grad_(False)
        return model

    def build(self, vocab_size: int) -> nn.Module:
        return self._ready(BertPretrainer(hf_config(self.cfg.model, vocab_size)))

    def from_pretrained(self, path: str) -> nn.Module:
        hf = load_pretrained(BertForPreTraining, path)
        model = BertPretrainer(hf.config)
        model.hf = hf
        return self._ready(model)

    def forward(self, model, batch, rng=None):
        return model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], batch["masked_positions"],
                     batch["masked_ids"], batch["masked_weights"], batch["pair_label"] if self.pair_task else None)

    def loss_count(self, batch) -> int:
        """Masked tokens: the MLM loss averages over them (the pair term rides along per micro-batch)."""
        return int(batch["masked_weights"].sum())

    def save(self, model, out_dir: Path) -> list[Path]:
        model.hf.save_pretrained(str(out_dir), safe_serialization=True)
        return [out_dir]
