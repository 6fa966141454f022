"""The captioner: an image encoder's tokens (any encoder spec: all its tokens, no masking) projected into a BERT
decoder — transformers' BertLMHeadModel: causal self-attention plus new cross-attention layers —
warm-started from a BERT pretraining checkpoint, with an optional CoCa-style contrastive loss.

Decoding (greedy, beam search with length penalty, nucleus sampling from a torch.Generator) is transformers'
`generate` on the decoder with a KV cache, batched over images: each new token costs one decoder step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertLMHeadModel, LogitsProcessor, LogitsProcessorList, TopPLogitsWarper
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from selfsup.encoders import ImageEncoder
from selfsup.errors import ConfigError

from .clip import CLIP_LOGIT_SCALE, MAX_LOGIT_SCALE, build_loss


def decoder_config(base: BertConfig, tokenizer) -> BertConfig:
    cfg = BertConfig(**{**base.to_dict(), "is_decoder": True, "add_cross_attention": True})
    cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = (tokenizer.cls_token_id, tokenizer.sep_token_id,
                                                             tokenizer.pad_token_id)
    cfg._attn_implementation = "sdpa"
    return cfg


def warm_start(decoder: BertLMHeadModel, pretrained_state: dict[str, torch.Tensor]) -> list[str]:
    """Copy a BertForPreTraining state dict into the decoder (embeddings, self-attention, FFN, MLM head);
    returns the decoder's parameters left new (the cross-attention layers)."""
    own = decoder.state_dict()
    take = {k: v for k, v in pretrained_state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in take]
    decoder.load_state_dict(take, strict=False)
    return missing


class GumbelSample(LogitsProcessor):
    """Sampling as a deterministic pick: argmax(log p + Gumbel noise) is a draw from p (the Gumbel-max trick),
    with the noise from our own generator. transformers' ``do_sample`` draws from the global RNG instead."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        u = torch.rand(scores.shape, generator=self.generator, device=self.generator.device).to(scores.device)
        gumbel = -torch.log(-torch.log(u.clamp(min=1e-20, max=1 - 1e-7)))
        return scores.float().log_softmax(-1) + gumbel   # -inf (outside the nucleus) stays -inf


def decoding_kwargs(num_beams: int, length_penalty: float, min_len: int, top_p: float | None,
                    generator: torch.Generator | None) -> dict:
    """``generate`` arguments for beam search / greedy, or for nucleus sampling from ``generator``."""
    if top_p is None:
        return dict(do_sample=False, num_beams=num_beams, length_penalty=length_penalty, min_new_tokens=min_len)
    if generator is None or not 0 < top_p <= 1:
        raise ConfigError("nucleus sampling needs 0 < top_p <= 1 and a torch.Generator (generator=...)")
    return dict(do_sample=False, num_beams=1, min_new_tokens=min_len,
                logits_processor=LogitsProcessorList([TopPLogitsWarper(top_p), GumbelSample(generator)]))


class Captioner(nn.Module):
    def __init__(self, encoder: ImageEncoder, decoder: BertLMHeadModel, contrastive_dim: int = 0):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        hidden = decoder.config.hidden_size
        self.proj = nn.Sequential(nn.Linear(encoder.token_dim, hidden), nn.LayerNorm(hidden))
        self.contrastive = contrastive_dim > 0
        if self.contrastive:
            self.image_head = nn.Linear(hidden, contrastive_dim)
            self.text_head = nn.Linear(hidden, contrastive_dim)
            self.logit_scale = nn.Parameter(torch.tensor(CLIP_LOGIT_SCALE))

    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) uint8 -> (B, prefix + L, hidden): every token of the encoder, projected."""
        return self.proj(self.encoder.forward_features(images))

    def forward(self, images, input_ids, attention_mask):
        """Teacher-forced next-token logits (B, T, V); with the contrastive head also (image, text) embeddings."""
        memory = self.image_tokens(images)
        logits = self.decoder(input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=memory).logits
        if not self.contrastive:
            return logits, None
        # the text tower is the same decoder without cross-attention (CoCa's unimodal text); its last real token
        text = self.decoder.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        last = attention_mask.sum(1) - 1
        text_emb = F.normalize(self.text_head(text[torch.arange(len(last)), last]), dim=-1)
        image_emb = F.normalize(self.image_head(memory.mean(1)), dim=-1)
        return logits, (image_emb, text_emb)

    @torch.no_grad()
    def generate(self, images: torch.Tensor, max_len: int = 24, num_beams: int = 1, length_penalty: float = 1.0,
                 top_p: float | None = None, generator: torch.Generator | None = None,
                 min_len: int = 0) -> torch.Tensor:
        """Token ids (B, <= 1 + max_len) starting with [CLS]; greedy, beam search, or nucleus sampling
        (``top_p``, drawing from ``generator``: the global RNG is not touched)."""
        memory = self.image_tokens(images)
        start = torch.full((len(images), 1), self.decoder.config.bos_token_id, device=images.device)
        kwargs = decoding_kwargs(num_beams, length_penalty, min_len, top_p, generator)
        return self.decoder.generate(input_ids=start, encoder_hidden_states=memory, max_new_tokens=max_len,
                                     cache=EncoderDecoderCache(DynamicCache(), DynamicCache()),
                                     eos_token_id=self.decoder.config.eos_token_id,
                                     pad_token_id=self.decoder.config.pad_token_id, **kwargs)


def caption_loss(logits: torch.Tensor, input_ids: torch.Tensor,
                 attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean next-token cross-entropy over real target tokens; returns (loss, number of targets)."""
    targets = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100)
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
    return loss, (targets != -100).sum()


def contrastive_loss(embs, logit_scale: torch.Tensor) -> torch.Tensor:
    """open_clip's ClipLoss, which gathers embeddings across ranks under DDP (multimodal.clip.build_loss)."""
    image, text = embs
    return build_loss("clip")(image, text, logit_scale.exp().clamp(max=MAX_LOGIT_SCALE))
