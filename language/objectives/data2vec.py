"""data2vec 2.0 for text (Baevski et al. 2022), on the teacher machinery shared with vision (selfsup.teacher).

The target is not a token but the teacher's contextualised features. An EMA copy of the encoder's blocks
(the teacher; fairseq's ``ema_encoder_only``: it reads the student's own embedding output, dropout included; with
``teacher_embeddings=true`` it keeps an EMA copy of the embeddings as well, run without dropout) encodes the
unmasked sequence once; the target at each position is the mean of the top-K blocks' FFN outputs (before
the block's last residual), each instance-normalised over the sequence. The student embeds the sequence
once, and encodes M differently masked copies of it (``clone_batch``) with the 48% hidden tokens *removed*
(as MAE does for patches). A light 1-D convolutional decoder sees the student's outputs back in place and
N(0, 0.01²) noise at the hidden positions, and regresses each hidden position's target (squared error
summed over the features, times ``loss_scale``).

The encoder is transformers' ``BertModel`` (post-LN, like fairseq's text model), so the export is a folder
``AutoModel`` reads; it has no MLM head, so this objective reports no MLM accuracy or pseudo-perplexity.
Read against fairseq's examples/data2vec/models/data2vec2.py, modalities/{base,text,modules}.py and
config/v2/base_text_only_task.yaml (the values beside each field below).

Measured at the tiny preset (benchmarks/text_probe_diagnosis.py, data2vec_text_ablations.sh): the student learns
position, not content. At a masked position it cannot see the token but knows the position, and half of a random
encoder's feature variance is position, so predicting that part is the cheapest way to lower the loss;
instance-normalised targets rule out a constant target but not this one. With a teacher frozen at random weights
position explains ~85 % of the student's token variance after 234 steps; with the EMA teacher following, 97-99 %.
Fixed position embeddings, a teacher with its own embeddings and a slower teacher keep the shortcut; layer-normed
targets trade it for collapse; position-centred targets (``teacher.centre_positions``, not in the paper) remove it,
though the topic probe then still stays below random weights' over the whole budget.

Costs, all inside the training step and so inside the counted FLOPs: the teacher's forward over B
sequences (no gradient; one more fp32 copy of the blocks), the student over B*M copies of the visible 52%,
the decoder over B*M full sequences.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertModel
from transformers.masking_utils import create_bidirectional_mask

from selfsup.config import ConfigError
from selfsup.teacher import EMATeacher, TeacherConfig, clone_batch, regression_loss

from ..instances import Layout
from ..model import features, gather, hf_config
from .common import Objective, load_pretrained


def text_teacher() -> TeacherConfig:
    """The text values of base_text_only_task.yaml."""
    return TeacherConfig(ema_decay=0.9999, ema_end_decay=0.99999, ema_anneal_end_step=100_000, top_k=12,
                         instance_norm_layers=True, final_norm="none", clone_batch=8, loss_scale=1.0)


@dataclass
class Data2VecSettings:
    teacher: TeacherConfig = field(default_factory=text_teacher)  # EMA 0.9999 -> 0.99999 over 100k updates, top 12
                                   # of 12 blocks, instance norm per block, no final norm, M=8 masks, loss scale 1
    mask_prob: float = 0.48        # share of tokens hidden from the student, single tokens (text: 0.48, length 1)
    mask_noise_std: float = 0.01   # hidden positions enter the decoder as N(0, std^2) noise (text: 0.01)
    decoder_dim: int = 0           # conv decoder width; 0 = the encoder's hidden size (text: 768 = hidden)
    decoder_layers: int = 5        # conv + layer norm + GELU blocks, no residual (text: 5, decoder_residual false)
    decoder_kernel: int = 9        # odd kernel width (text: 9)
    decoder_groups: int = 1        # grouped convolutions (text: 1)
    projection_ratio: float = 2.0  # two-layer projection to the width, hidden ratio x wider (text: 2 layers, 2.0)
    input_dropout: float = 0.1     # dropout on the decoder's input (text: 0.1)
    teacher_embeddings: bool = False  # true: the teacher keeps an EMA copy of the embeddings (no dropout) instead
                                   # of reading the student's embedding output (text: false, i.e. fairseq's
                                   # ema_encoder_only=true; true is its ema_encoder_only=false + ema_local_encoder=true)
    learn_positions: bool = True   # false: the student's position embeddings keep their initial values, an ablation
                                   # of the position shortcut (benchmarks/text_probe_diagnosis.py; text: learned)


class ConvDecoder(nn.Module):
    """fairseq's Decoder1d: convolutions along the sequence, each followed by a parameter-free layer norm over
    channels and a GELU; then Linear -> GELU -> Linear back to the encoder's width."""

    def __init__(self, dim: int, s: Data2VecSettings):
        super().__init__()
        width = s.decoder_dim or dim
        if s.decoder_kernel % 2 == 0:
            raise ConfigError(f"task.data2vec.decoder_kernel must be odd, not {s.decoder_kernel}")
        self.dropout = nn.Dropout(s.input_dropout)
        self.convs = nn.ModuleList(nn.Conv1d(dim if i == 0 else width, width, s.decoder_kernel,
                                             padding=s.decoder_kernel // 2, groups=s.decoder_groups)
                                   for i in range(s.decoder_layers))
        hidden = int(width * s.projection_ratio)
        self.proj = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x).transpose(1, 2)                                          # (B, D, T)
        for conv in self.convs:
            x = conv(x)
            x = F.gelu(F.layer_norm(x.transpose(1, 2), x.shape[1:2]).transpose(1, 2))
        return self.proj(x.transpose(1, 2))                                          # (B, T, D)


def ffn_outputs(encoder: nn.Module, x: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
    """Run a BERT encoder on embeddings (B, T, D) and return each block's FFN output before its residual and
    LayerNorm (fairseq's ``ffn_targets``, the default ``end_of_block_targets=False``)."""
    outs: list[torch.Tensor] = []
    hooks = [layer.output.dense.register_forward_hook(lambda m, i, o: outs.append(o)) for layer in encoder.layer]
    try:
        encoder(x, attention_mask=create_bidirectional_mask(encoder.config, x, attention_mask))
    finally:
        for h in hooks:
            h.remove()
    return outs


def teacher_ffn_outputs(bert: BertModel, input_ids, token_type_ids, attention_mask) -> list[torch.Tensor]:
    """``ffn_outputs`` of a whole BERT (a teacher that keeps its own embeddings) on token ids."""
    return ffn_outputs(bert.encoder, bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids),
                       attention_mask)


class Data2VecText(nn.Module):
    def __init__(self, student: BertModel, s: Data2VecSettings):
        super().__init__()
        depth = student.config.num_hidden_layers
        if not 1 <= s.teacher.top_k <= depth:
            raise ConfigError(f"task.data2vec.teacher.top_k={s.teacher.top_k} must be between 1 and the encoder's "
                             f"{depth} layers")
        self.settings = s
        self.student = student
        self.decoder = ConvDecoder(student.config.hidden_size, s)
        if not s.learn_positions:
            student.embeddings.position_embeddings.weight.requires_grad_(False)
        self.teacher = EMATeacher(self.followed(), s.teacher)

    def followed(self) -> nn.Module:
        """What the teacher is an EMA copy of: the encoder's blocks, or the whole encoder with its embeddings."""
        return self.student if self.settings.teacher_embeddings else self.student.encoder

    def shard_units(self) -> list[nn.Module]:
        return list(self.student.encoder.layer)

    def encode_visible(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        enc = self.student.encoder
        return enc(x, attention_mask=create_bidirectional_mask(enc.config, x, attention_mask)).last_hidden_state

    def forward(self, input_ids, token_type_ids, attention_mask, hidden, keep, accumulate: int = 1,
                rng: torch.Generator | None = None):
        """hidden: (B, M, T) bool, True = hidden from the student; keep: (B, M, K) the visible positions, sorted;
        rng: for the decoder's noise (else the global generator). Returns (loss, stats)."""
        s = self.settings
        B, M, T = hidden.shape
        self.teacher.maybe_update(self.followed(), accumulate)    # the EMA step after each optimizer step
        x = self.student.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)            # (B, T, D)
        pad = attention_mask == 0
        pad_mask = pad if bool(pad.any()) else None
        if s.teacher_embeddings:                    # the teacher's own embeddings, then its blocks
            y = self.teacher.targets(teacher_ffn_outputs, input_ids, token_type_ids, attention_mask,
                                     padding_mask=pad_mask)
        else:                                       # the teacher's blocks on the student's embedding output
            y = self.teacher.targets(ffn_outputs, x.detach(), attention_mask, padding_mask=pad_mask)  # (B, T, D)

        keep, hidden = keep.flatten(0, 1), hidden.flatten(0, 1)                                    # (BM, K), (BM, T)
        visible = gather(clone_batch(x, M), keep)                                                  # (BM, K, D)
        h = self.encode_visible(visible, clone_batch(attention_mask, M).gather(1, keep))           # (BM, K, D)
        noise = torch.randn(B * M, T, h.shape[-1], generator=rng, device="cpu" if rng else h.device)
        full = noise.to(h.device, h.dtype) * s.mask_noise_std
        full = full.scatter(1, keep.unsqueeze(-1).expand(-1, -1, h.shape[-1]), h)                  # back in place
        pred = self.decoder(full)                                                                  # (BM, T, D)

        target = hidden & clone_batch(~pad, M)                                                     # (BM, T)
        per_token = regression_loss(pred[target], clone_batch(y, M)[target], s.teacher.loss_scale)
        n = target.sum()
        with torch.no_grad():   # fairseq's collapse diagnostics: per-dimension std of targets and predictions
            stats = {"d2v_loss": per_token.sum().detach(), "d2v_n": n.float(),
                     "d2v_target_std": y[~pad].std(0).mean() * n,
                     "d2v_pred_std": pred[target].float().std(0).mean() * n}
        return per_token.sum() / n.clamp(min=1), stats

    def encode(self, input_ids, token_type_ids, attention_mask) -> dict[str, torch.Tensor]:
        seq = self.student(input_ids=input_ids, token_type_ids=token_type_ids,
                           attention_mask=attention_mask).last_hidden_state
        return features(seq, attention_mask)


class Data2Vec(Objective):
    """Packed sequences; M masks per sequence drawn with the sample's generator (so resumes are exact)."""
    name = "data2vec"
    mlm_head = None

    def examples(self, tokenizer):
        layout, cfg = Layout(tokenizer, self.cfg.max_len), self.cfg
        M, T = cfg.data2vec.teacher.clone_batch, cfg.max_len
        K = int(T * (1 - cfg.data2vec.mask_prob))                  # visible per copy, as fairseq's random_masking

        def example(pair, g):
            ids, types = layout.ids(pair)
            out = layout.padded(torch.tensor(ids), types)
            noise = torch.rand(M, T, generator=g) + (out["attention_mask"] == 0)   # padding is hidden first
            keep = noise.argsort(1)[:, :K].sort(1).values                           # (M, K)
            hidden = torch.ones(M, T, dtype=torch.bool).scatter(1, keep, False)     # (M, T)
            return out | {"hidden": hidden, "keep": keep}
        return example

    def _model(self, student: BertModel) -> nn.Module:
        return Data2VecText(student, self.cfg.data2vec)

    def build(self, vocab_size: int) -> nn.Module:
        return self._model(BertModel(hf_config(self.cfg.model, vocab_size), add_pooling_layer=False))

    def from_pretrained(self, path: str) -> nn.Module:
        return self._model(load_pretrained(BertModel, path))

    def forward(self, model, batch, rng=None):
        return model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], batch["hidden"],
                     batch["keep"], accumulate=self.accumulate, rng=rng)

    def loss_count(self, batch) -> int:
        """Hidden real tokens: the regression loss averages over them."""
        return int((batch["hidden"] & batch["attention_mask"].bool().unsqueeze(1)).sum())

    def save(self, model, out_dir: Path) -> list[Path]:
        model.student.save_pretrained(str(out_dir), safe_serialization=True)
        return [out_dir]
