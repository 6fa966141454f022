"""CLIP: an image tower and a text tower projected into one embedding space (Radford et al. 2021), trained with
open_clip's contrastive loss (InfoNCE both ways) or SigLIP's pairwise sigmoid loss (Zhai et al. 2023).

    model = CLIP(image_tower, text_tower, embed_dim=512, loss="clip")
    out = model(images, input_ids, attention_mask)   # image/text features (B, E) unit-norm, logit scale (and bias)
    loss = build_loss("clip")(**out)                 # gathers features across ranks under DDP, with gradients

The towers follow the encoder contract (selfsup.encoders; multimodal.towers); ``encode_image`` / ``encode_text`` are
open_clip's names, so its zero-shot classifier builder works on this model as it does on its own.
"""
from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.distributed as dist
import torch.nn.functional as F
from open_clip.loss import ClipLoss, SigLipLoss
from torch import nn

LOSSES = ("clip", "siglip")
CLIP_LOGIT_SCALE = math.log(1 / 0.07)    # CLIP's initial temperature 0.07, learned as log(1/t)
SIGLIP_LOGIT_SCALE = math.log(10.0)      # SigLIP's initial t' = log 10 (scale 10) ...
SIGLIP_LOGIT_BIAS = -10.0                # ... and bias -10, so the many negatives start near their target
MAX_LOGIT_SCALE = 100.0                  # CLIP clips the scale at 100 to keep training stable


class CLIP(nn.Module):
    def __init__(self, image: nn.Module, text: nn.Module, embed_dim: int, image_pool: str = "cls",
                 text_pool: str = "cls", loss: str = "clip"):
        super().__init__()
        for what, pool in (("image_pool", image_pool), ("text_pool", text_pool)):
            if pool not in ("cls", "mean"):
                raise ValueError(f"task.{what} must be cls or mean, not '{pool}'")
        if loss not in LOSSES:
            raise ValueError(f"task.loss must be one of {', '.join(LOSSES)}, not '{loss}'")
        self.image, self.text = image, text
        self.image_pool, self.text_pool = image_pool, text_pool
        # linear projections without bias, initialised with std width^-0.5 as CLIP's proj / text_projection
        self.image_proj = nn.Linear(image.embed_dim, embed_dim, bias=False)
        self.text_proj = nn.Linear(text.embed_dim, embed_dim, bias=False)
        nn.init.normal_(self.image_proj.weight, std=image.embed_dim ** -0.5)
        nn.init.normal_(self.text_proj.weight, std=text.embed_dim ** -0.5)
        self.logit_scale = nn.Parameter(torch.tensor(SIGLIP_LOGIT_SCALE if loss == "siglip" else CLIP_LOGIT_SCALE))
        self.logit_bias = nn.Parameter(torch.tensor(SIGLIP_LOGIT_BIAS)) if loss == "siglip" else None

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """(B, 3, H, W) uint8 at the tower's input size (or normalised float) -> (B, E)."""
        x = self.image_proj(self.image(images)[self.image_pool])         # (B, Dv) -> (B, E)
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, text: Mapping[str, torch.Tensor], normalize: bool = False) -> torch.Tensor:
        """{"input_ids", "attention_mask"} (B, T) -> (B, E)."""
        x = self.text(text["input_ids"], text["attention_mask"])[self.text_pool]   # (B, Dt)
        x = self.text_proj(x)                                                       # (B, E)
        return F.normalize(x, dim=-1) if normalize else x

    def forward(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
        """open_clip's output dict: unit-norm features (B, E), the clamped scale exp(t) and (SigLIP) the bias."""
        return {"image_features": self.encode_image(images, normalize=True),
                "text_features": self.encode_text({"input_ids": input_ids, "attention_mask": attention_mask},
                                                  normalize=True),
                "logit_scale": self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE),
                "logit_bias": self.logit_bias}

    def head_parameters(self) -> dict[str, nn.Parameter]:
        """The projections, the temperature and (SigLIP) the bias: everything outside the two towers."""
        return {n: p for n, p in self.named_parameters() if not n.startswith(("image.", "text."))}

    def shard_units(self) -> list[nn.Module]:
        """FSDP units: every transformer block of both towers."""
        return self.image.shard_units() + self.text.shard_units()


def build_loss(kind: str = "clip", local_loss: bool = False) -> nn.Module:
    """open_clip's loss for this process group. ClipLoss all-gathers the features of every rank *with* their
    gradients, so that under DDP (which averages gradients over ranks) the update equals one process on the global
    batch; ``local_loss`` scores only this rank's rows against all columns (same gradients, less memory).
    SigLipLoss passes text features around the ring of ranks, also with gradients."""
    world, rank = (dist.get_world_size(), dist.get_rank()) if dist.is_available() and dist.is_initialized() else (1, 0)
    if kind == "clip":
        return ClipLoss(local_loss=local_loss, gather_with_grad=True, rank=rank, world_size=world)
    if kind == "siglip":
        return SigLipLoss(rank=rank, world_size=world)
    raise ValueError(f"task.loss must be one of {', '.join(LOSSES)}, not '{kind}'")
