"""ELECTRA (Clark et al. 2020): replaced-token detection.

A small masked-LM generator fills the masked positions with tokens sampled from its softmax; the
discriminator, the encoder we keep, classifies every token of the result as original or replaced, so
every position gives signal. Both train jointly: loss = generator MLM + λ · discriminator BCE. The
generator shares the discriminator's embeddings (token, position, type and their LayerNorm), as in the
paper and google-research/electra; sampling is not differentiated through (Gumbel-max, stopped gradient).

Both networks are transformers' own classes (``ElectraForPreTraining``, ``ElectraForMaskedLM``), so the
export is a folder ``AutoModel`` / ``ElectraForPreTraining`` read, with the generator in ``generator/``
(``pipeline("fill-mask", "export/generator")``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining

from ..model import BertModelConfig, features, gather, masked_lm_stats
from .common import Objective, load_pretrained


@dataclass
class ElectraSettings:
    generator_size: float = 0.25   # generator width / discriminator width, same depth (paper: 1/4 Small and Large,
                                   # 1/3 Base); its FFN is 4x its width, one head per 64 dims (google's code)
    embedding_size: int = 0        # shared embedding width; 0 = the discriminator's hidden size (paper: 128 for Small
                                   # with hidden 256, = hidden for Base and Large)
    disc_weight: float = 50.0      # λ, weight of the replaced-token-detection loss (paper: 50)
    gen_weight: float = 1.0        # weight of the generator's MLM loss (paper: 1)
    mask_token_prob: float = 0.85  # masked positions shown to the generator as [MASK]; the rest keep their token
                                   # (google's code: 0.85, no random tokens)
    temperature: float = 1.0       # generator sampling temperature (paper: 1)


def hf_configs(cfg: BertModelConfig, e: ElectraSettings, vocab_size: int) -> tuple[ElectraConfig, ElectraConfig]:
    """(discriminator, generator) transformers configs."""
    common = dict(vocab_size=vocab_size, embedding_size=e.embedding_size or cfg.hidden_size,
                  max_position_embeddings=cfg.max_position, type_vocab_size=2, hidden_dropout_prob=cfg.dropout,
                  attention_probs_dropout_prob=cfg.dropout, tie_word_embeddings=True, attn_implementation="sdpa")
    disc = ElectraConfig(hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
                         num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size, **common)
    width = max(1, round(cfg.hidden_size * e.generator_size))
    heads = max(1, width // 64)
    while width % heads:
        heads -= 1
    gen = ElectraConfig(hidden_size=width, num_hidden_layers=cfg.num_layers, num_attention_heads=heads,
                        intermediate_size=4 * width, **common)
    return disc, gen


def gumbel_sample(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of (..., V) logits, drawn from softmax(logits) by the Gumbel-max trick."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device if generator is None else "cpu")
    u = u.to(logits.device)
    return (logits - torch.log(-torch.log(u + 1e-9) + 1e-9)).argmax(-1)


class ElectraPretrainer(nn.Module):
    def __init__(self, disc_config: ElectraConfig, gen_config: ElectraConfig, settings: ElectraSettings,
                 discriminator: ElectraForPreTraining | None = None, generator: ElectraForMaskedLM | None = None):
        super().__init__()
        self.settings = settings
        self.discriminator = discriminator or ElectraForPreTraining(disc_config)
        self.generator = generator or ElectraForMaskedLM(gen_config)
        # tied embeddings: the generator reads (and trains) the discriminator's, and predicts tokens with its table
        self.generator.electra.embeddings = self.discriminator.electra.embeddings
        self.generator.generator_lm_head.weight = self.discriminator.electra.embeddings.word_embeddings.weight

    def shard_units(self) -> list[nn.Module]:
        return list(self.discriminator.electra.encoder.layer) + list(self.generator.electra.encoder.layer)

    def generate(self, input_ids, token_type_ids, attention_mask, masked_positions):
        """The generator's logits at the masked positions: (B, P, V)."""
        seq = self.generator.electra(input_ids=input_ids, token_type_ids=token_type_ids,
                                     attention_mask=attention_mask).last_hidden_state          # (B, T, Hg)
        return self.generator.generator_lm_head(self.generator.generator_predictions(gather(seq, masked_positions)))

    @torch.no_grad()
    def corrupt(self, input_ids, masked_positions, masked_ids, masked_weights, gen_logits, rng=None):
        """The discriminator's input: the original tokens with a generator sample at every masked position, and
        the labels (1 where the token differs from the original; a sample equal to it counts as original)."""
        real = masked_weights > 0                                                  # (B, P); padding points at 0
        original = input_ids.scatter(1, masked_positions,
                                     torch.where(real, masked_ids, input_ids.gather(1, masked_positions)))
        sampled = gumbel_sample(gen_logits.float() / self.settings.temperature, rng)               # (B, P)
        fake = original.scatter(1, masked_positions,
                                torch.where(real, sampled, original.gather(1, masked_positions)))  # (B, T)
        return fake, (fake != original).long()

    def discriminate(self, fake, is_fake, token_type_ids, attention_mask):
        """Replaced-token detection over every real token: (mean BCE, sums)."""
        logits = self.discriminator(input_ids=fake, token_type_ids=token_type_ids,
                                    attention_mask=attention_mask).logits.float()                 # (B, T)
        m = attention_mask.float()
        per_token = F.binary_cross_entropy_with_logits(logits, is_fake.float(), reduction="none") * m
        stats = {"rtd_loss": per_token.sum().detach(), "rtd_n": m.sum(),
                 "rtd_acc": (((logits > 0).long() == is_fake).float() * m).sum(),
                 "rtd_replaced": (is_fake.float() * m).sum()}
        return per_token.sum() / m.sum().clamp(min=1), stats

    def forward(self, input_ids, token_type_ids, attention_mask, masked_positions, masked_ids, masked_weights,
                rng: torch.Generator | None = None):
        gen_logits = self.generate(input_ids, token_type_ids, attention_mask, masked_positions)      # (B, P, V)
        gen_loss, stats = masked_lm_stats(gen_logits, masked_ids, masked_weights)
        fake, is_fake = self.corrupt(input_ids, masked_positions, masked_ids, masked_weights, gen_logits, rng)
        disc_loss, disc_stats = self.discriminate(fake, is_fake, token_type_ids, attention_mask)
        s = self.settings
        return s.gen_weight * gen_loss + s.disc_weight * disc_loss, stats | disc_stats

    def mlm_logits(self, input_ids, token_type_ids, attention_mask, positions) -> torch.Tensor:
        return self.generate(input_ids, token_type_ids, attention_mask, positions).float()

    def encode(self, input_ids, token_type_ids, attention_mask) -> dict[str, torch.Tensor]:
        seq = self.discriminator.electra(input_ids=input_ids, token_type_ids=token_type_ids,
                                         attention_mask=attention_mask).last_hidden_state
        return features(seq, attention_mask)


class Electra(Objective):
    """Packed sequences, masked as ELECTRA masks them, through generator and discriminator."""
    name = "electra"
    mlm_head = "the generator's"

    def masker_options(self) -> dict:
        return {"mask_token_prob": self.cfg.electra.mask_token_prob, "random_token_prob": 0.0}

    def build(self, vocab_size: int) -> nn.Module:
        return ElectraPretrainer(*hf_configs(self.cfg.model, self.cfg.electra, vocab_size), self.cfg.electra)

    def from_pretrained(self, path: str) -> nn.Module:
        """Our export: the discriminator at ``path``, the generator in ``path/generator``."""
        disc = load_pretrained(ElectraForPreTraining, path)
        gen = load_pretrained(ElectraForMaskedLM, Path(path) / "generator")
        return ElectraPretrainer(disc.config, gen.config, self.cfg.electra, disc, gen)

    def forward(self, model, batch, rng=None):
        return model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], batch["masked_positions"],
                     batch["masked_ids"], batch["masked_weights"], rng=rng)

    def loss_count(self, batch) -> int:
        """Real tokens: the dominant term (λ · RTD) averages over them."""
        return int(batch["attention_mask"].sum())

    def save(self, model, out_dir: Path) -> list[Path]:
        model.discriminator.save_pretrained(str(out_dir), safe_serialization=True)
        model.generator.save_pretrained(str(out_dir / "generator"), safe_serialization=True)
        return [out_dir, out_dir / "generator"]
