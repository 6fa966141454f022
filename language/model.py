"""BERT pretraining: transformers' BERT with the masked-LM head applied only at masked positions.

The parameters are exactly ``BertForPreTraining``'s (tied input/output embeddings), so
``save_pretrained`` gives a directory any transformers user loads; what differs is the forward:
the vocabulary projection runs on the ~15% masked positions (gathered with fixed-size index
tensors, no host sync) instead of on every position.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertForPreTraining


@dataclass
class BertModelConfig:
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 512
    max_position: int = 128          # longest sequence the position embeddings cover
    dropout: float = 0.1             # hidden and attention dropout, as BERT
    vocab_size: int = 0              # 0: taken from the tokenizer


def hf_config(cfg: BertModelConfig, vocab_size: int) -> BertConfig:
    return BertConfig(vocab_size=vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
                      num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
                      max_position_embeddings=cfg.max_position, hidden_dropout_prob=cfg.dropout,
                      attention_probs_dropout_prob=cfg.dropout, type_vocab_size=2, tie_word_embeddings=True,
                      attn_implementation="sdpa")


class BertPretrainer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.hf = BertForPreTraining(config)

    def shard_units(self) -> list[nn.Module]:
        return list(self.hf.bert.encoder.layer)   # FSDP2 shards each layer on its own (see selfsup.task)

    @property
    def config(self) -> BertConfig:
        return self.hf.config

    def forward(self, input_ids, token_type_ids, attention_mask, masked_positions, masked_ids, masked_weights,
                nsp_label=None):
        """Returns (loss, mlm_loss, nsp_loss, mlm_correct, nsp_correct); nsp terms are 0 when nsp_label is -1."""
        out = self.hf.bert(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
        seq, pooled = out.last_hidden_state, out.pooler_output                      # (B, T, H), (B, H)
        gathered = torch.gather(seq, 1, masked_positions.unsqueeze(-1).expand(-1, -1, seq.shape[-1]))  # (B, P, H)
        logits = self.hf.cls.predictions(gathered).float()                           # (B, P, V)
        per_token = F.cross_entropy(logits.flatten(0, 1), masked_ids.flatten(), reduction="none")
        w = masked_weights.flatten()
        mlm_loss = (per_token * w).sum() / w.sum().clamp(min=1)
        mlm_correct = ((logits.argmax(-1).flatten() == masked_ids.flatten()).float() * w).sum()
        nsp_loss = mlm_loss.new_zeros(())
        nsp_correct = mlm_loss.new_zeros(())
        if nsp_label is not None:
            use = nsp_label >= 0
            nsp_logits = self.hf.cls.seq_relationship(pooled).float()               # (B, 2)
            per_seq = F.cross_entropy(nsp_logits, nsp_label.clamp(min=0), reduction="none")
            nsp_loss = (per_seq * use).sum() / use.sum().clamp(min=1)
            nsp_correct = ((nsp_logits.argmax(-1) == nsp_label) & use).sum().float()
        return mlm_loss + nsp_loss, mlm_loss, nsp_loss, mlm_correct, nsp_correct

    def encode(self, input_ids, token_type_ids, attention_mask) -> dict[str, torch.Tensor]:
        """Features for probes: the [CLS] vector and the mean over real tokens of the last layer."""
        seq = self.hf.bert(input_ids=input_ids, token_type_ids=token_type_ids,
                           attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(seq.dtype)
        return {"cls": seq[:, 0], "mean": (seq * m).sum(1) / m.sum(1).clamp(min=1)}
