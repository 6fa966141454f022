"""The encoder every objective trains (a transformers BERT-shaped encoder), the pieces their heads share, and
BERT's pretraining model for the masked-LM objectives.

``BertPretrainer`` has exactly ``BertForPreTraining``'s parameters (tied input/output embeddings), so
``save_pretrained`` gives a directory any transformers user loads; what differs is the forward: the
vocabulary projection runs on the ~15% masked positions (gathered with fixed-size index tensors, no host
sync) instead of on every position.

Every model returns ``(loss, stats)``: ``stats`` holds sums over the batch, each ``X_*`` with its count
``X_n`` (e.g. ``mlm_correct`` / ``mlm_n``), so that training logs their ratios and evaluation adds them up
over many batches before dividing (``ratios``).
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


# ------------------------------------------------------------------------------ shared pieces


def gather(seq: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(B, T, H), (B, P) -> (B, P, H): the hidden states at the given positions."""
    return torch.gather(seq, 1, positions.unsqueeze(-1).expand(-1, -1, seq.shape[-1]))


def masked_lm_stats(logits: torch.Tensor, masked_ids: torch.Tensor, masked_weights: torch.Tensor):
    """Cross-entropy over the real masked positions of (B, P, V) logits -> (mean loss, sums)."""
    w = masked_weights.flatten()
    per_token = F.cross_entropy(logits.float().flatten(0, 1), masked_ids.flatten(), reduction="none")
    n = w.sum()
    stats = {"mlm_loss": (per_token * w).sum().detach(), "mlm_n": n,
             "mlm_acc": ((logits.argmax(-1).flatten() == masked_ids.flatten()).float() * w).sum()}
    return (per_token * w).sum() / n.clamp(min=1), stats


def features(seq: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Features for probes: the [CLS] vector and the mean over real tokens of the last layer."""
    m = attention_mask.unsqueeze(-1).to(seq.dtype)
    return {"cls": seq[:, 0], "mean": (seq * m).sum(1) / m.sum(1).clamp(min=1)}


def ratios(stats: dict) -> dict:
    """{X_y: sum, X_n: count} -> {X_y: sum / count}; counts themselves are dropped."""
    out = {}
    for k, v in stats.items():
        prefix = k.split("_")[0]
        if not k.endswith("_n") and f"{prefix}_n" in stats:
            n = stats[f"{prefix}_n"]
            out[k] = v / (n.clamp(min=1) if torch.is_tensor(n) else max(n, 1))
    return out


# ------------------------------------------------------------------------------ BERT (mlm+nsp, mlm+sop, mlm)


class BertPretrainer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.hf = BertForPreTraining(config)

    @property
    def config(self) -> BertConfig:
        return self.hf.config

    def shard_units(self) -> list[nn.Module]:
        return list(self.hf.bert.encoder.layer)

    def forward(self, input_ids, token_type_ids, attention_mask, masked_positions, masked_ids, masked_weights,
                pair_label=None):
        """MLM at the masked positions, plus the sentence-pair task (NSP or SOP: both a 2-way classifier on the
        pooled [CLS]) on rows whose pair_label is not -1. Returns (loss, stats)."""
        out = self.hf.bert(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask)
        seq, pooled = out.last_hidden_state, out.pooler_output                      # (B, T, H), (B, H)
        logits = self.hf.cls.predictions(gather(seq, masked_positions))             # (B, P, V)
        loss, stats = masked_lm_stats(logits, masked_ids, masked_weights)
        if pair_label is not None:
            use = pair_label >= 0
            pair_logits = self.hf.cls.seq_relationship(pooled).float()             # (B, 2)
            per_seq = F.cross_entropy(pair_logits, pair_label.clamp(min=0), reduction="none")
            pair_loss = (per_seq * use).sum() / use.sum().clamp(min=1)
            loss = loss + pair_loss
            stats |= {"pair_loss": (per_seq * use).sum().detach(), "pair_n": use.sum().float(),
                      "pair_acc": ((pair_logits.argmax(-1) == pair_label) & use).sum().float()}
        return loss, stats

    def mlm_logits(self, input_ids, token_type_ids, attention_mask, positions) -> torch.Tensor:
        seq = self.hf.bert(input_ids=input_ids, token_type_ids=token_type_ids,
                           attention_mask=attention_mask).last_hidden_state
        return self.hf.cls.predictions(gather(seq, positions)).float()             # (B, P, V)

    def encode(self, input_ids, token_type_ids, attention_mask) -> dict[str, torch.Tensor]:
        seq = self.hf.bert(input_ids=input_ids, token_type_ids=token_type_ids,
                           attention_mask=attention_mask).last_hidden_state
        return features(seq, attention_mask)
