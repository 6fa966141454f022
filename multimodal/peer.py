"""transformers' VisionEncoderDecoderModel behind the Captioner interface: the baseline our captioner is
measured against, trained by the same task on the same data, budget and initial weights
(`selfsup train caption --set task.impl=transformers`).

Its encoder is transformers' ViTMAEModel holding our ViT's weights (vision.interop) with mask_ratio 0:
every patch token, in a shuffled order — which cross-attention cannot tell apart, as it has no notion
of memory order. The decoder is the same BertLMHeadModel (warm-started the same way).
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import BertLMHeadModel, VisionEncoderDecoderModel

from vision.encoder import ViTEncoder
from vision.interop import to_hf
from vision.mae import MAE, MAEConfig
from vision.transforms import normalize

from .model import decoding_kwargs


class HFCaptioner(nn.Module):
    contrastive = False

    def __init__(self, encoder: ViTEncoder, decoder: BertLMHeadModel):
        super().__init__()
        mae = MAE(encoder.cfg, MAEConfig())
        mae.encoder.load_state_dict(encoder.vit.state_dict())
        vit = to_hf(mae).vit
        vit.config.mask_ratio = 0.0
        if not any(p.requires_grad for p in encoder.parameters()):
            vit.requires_grad_(False)
        self.model = VisionEncoderDecoderModel(encoder=vit, decoder=decoder)
        c, d = self.model.config, decoder.config
        c.decoder_start_token_id, c.pad_token_id, c.eos_token_id = d.bos_token_id, d.pad_token_id, d.eos_token_id

    def forward(self, images, input_ids, attention_mask):
        out = self.model(pixel_values=normalize(images), decoder_input_ids=input_ids,
                         decoder_attention_mask=attention_mask)
        return out.logits, None

    @torch.no_grad()
    def generate(self, images: torch.Tensor, max_len: int = 24, num_beams: int = 1, length_penalty: float = 1.0,
                 top_p: float | None = None, generator: torch.Generator | None = None,
                 min_len: int = 0) -> torch.Tensor:
        kwargs = decoding_kwargs(num_beams, length_penalty, min_len, top_p, generator)
        return self.model.generate(pixel_values=normalize(images), max_new_tokens=max_len, **kwargs)
