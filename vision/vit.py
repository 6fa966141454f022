"""The Vision Transformer every vision method trains: its architecture alone (``ViTConfig``), a few named
sizes, and the timm ``VisionTransformer`` built from it.

    cfg = ViTConfig(**VIT_SIZES["b16"])        # or ViTConfig() / a preset's task.vit
    vit = build_vit(cfg)                        # timm ViT, no head, fixed 2-D sin-cos position embedding,
                                                # MAE's initialisation

Methods (MAE, SimMIM, data2vec 2.0), finetuning, RL and captioning all take a ``ViTConfig``; what a method
adds (a decoder, a mask token, a teacher) lives in the method's own config. The encoder's state_dict loads
straight into ``timm.create_model`` (see vision.export).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from selfsup.config import ConfigError

from .masking import sincos_pos_embed


@dataclass
class ViTConfig:
    img_size: int = 32       # input side in pixels (square images)
    patch_size: int = 4      # side of a patch; the token grid is img_size / patch_size
    in_chans: int = 3
    embed_dim: int = 192     # width
    depth: int = 6           # transformer blocks
    num_heads: int = 3
    mlp_ratio: float = 4.0   # MLP hidden width / embed_dim

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid ** 2


VIT_SIZES: dict[str, dict] = {
    # CPU minutes: 32-px images in 4-px patches (an 8x8 grid), 4 blocks of width 128.
    "tiny": {"img_size": 32, "patch_size": 4, "embed_dim": 128, "depth": 4, "num_heads": 4},
    # RL on MiniGrid: 56-px views, one 8-px patch per grid tile.
    "minigrid": {"img_size": 56, "patch_size": 8, "embed_dim": 128, "depth": 4, "num_heads": 4},
    # The standard sizes at 224 px with 16-px patches (Dosovitskiy et al.; DeiT's S).
    "s16": {"img_size": 224, "patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6},
    "b16": {"img_size": 224, "patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12},
    "l16": {"img_size": 224, "patch_size": 16, "embed_dim": 1024, "depth": 24, "num_heads": 16},
}


def vit_size(name: str) -> dict:
    """A named size's fields (for presets and ``ViTConfig(**vit_size(name))``)."""
    if name not in VIT_SIZES:
        raise ConfigError(f"unknown ViT size '{name}'; choose one of {', '.join(VIT_SIZES)}")
    return dict(VIT_SIZES[name])


def check(cfg: ViTConfig) -> None:
    if cfg.img_size % cfg.patch_size:
        raise ConfigError(f"vit.img_size={cfg.img_size} must be a multiple of vit.patch_size={cfg.patch_size}")
    if cfg.embed_dim % cfg.num_heads or cfg.embed_dim % 4:
        raise ConfigError(f"vit.embed_dim={cfg.embed_dim} must be a multiple of vit.num_heads={cfg.num_heads} "
                         "and of 4 (2-D sin-cos position embeddings)")


def init_weights(m: nn.Module) -> None:
    """MAE's initialisation of linear layers and norms (xavier-uniform weights, zero biases, unit norms)."""
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def build_vit(cfg: ViTConfig) -> VisionTransformer:
    """The encoder: a timm ViT without a head (pooled feature = CLS), fixed sin-cos position embeddings, and
    MAE's initialisation — the same starting point for every method and for the random-weights baseline."""
    check(cfg)
    vit = VisionTransformer(img_size=cfg.img_size, patch_size=cfg.patch_size, in_chans=cfg.in_chans, num_classes=0,
                            global_pool="token", embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads,
                            mlp_ratio=cfg.mlp_ratio, qkv_bias=True)
    vit.pos_embed.requires_grad_(False)
    with torch.no_grad():
        vit.pos_embed.copy_(sincos_pos_embed(cfg.embed_dim, cfg.grid).unsqueeze(0))
    w = vit.patch_embed.proj.weight
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))   # the patch projection is a linear layer in disguise
    nn.init.normal_(vit.cls_token, std=0.02)
    vit.blocks.apply(init_weights)
    vit.norm.apply(init_weights)
    return vit


def embed_patches(vit: VisionTransformer, imgs: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) normalised -> patch tokens with their position embedding, (B, L, D); no CLS yet."""
    return vit.patch_embed(imgs) + vit.pos_embed[:, 1:]


def prepend_cls(vit: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """(B, n, D) -> (B, 1 + n, D): the CLS token (with its position embedding) in front."""
    cls = (vit.cls_token + vit.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
    return torch.cat([cls, x], dim=1)


def encode(vit: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """Tokens (B, n, D) without CLS -> the blocks and final norm over (CLS, tokens), (B, 1 + n, D)."""
    return vit.norm(vit.blocks(prepend_cls(vit, x)))
