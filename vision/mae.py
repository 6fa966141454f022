"""Masked autoencoder (He et al., 2021) on timm's ViT.

The encoder *is* a timm ``VisionTransformer`` (its state_dict loads straight into
``timm.create_model``); MAE adds per-sample random masking, a narrow decoder of timm Blocks and
the pixel loss on masked patches. Attention is timm's, which runs SDPA.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn


@dataclass
class MAEConfig:
    img_size: int = 32
    patch_size: int = 4
    in_chans: int = 3
    embed_dim: int = 192          # encoder width
    depth: int = 6                # encoder blocks
    num_heads: int = 3
    mlp_ratio: float = 4.0
    decoder_embed_dim: int = 128  # the decoder is narrow: it only serves pretraining
    decoder_depth: int = 2
    decoder_num_heads: int = 4
    mask_ratio: float = 0.75      # fraction of patches hidden from the encoder
    norm_pix_loss: bool = True    # targets are per-patch normalised pixels (better features, MAE §A.2)


def sincos_pos_embed(dim: int, grid: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding, (1 + grid*grid, dim) with a zero row for [CLS]; half the
    channels encode the column, half the row (as in MAE)."""
    assert dim % 4 == 0, "embed dim must be divisible by 4 for 2-D sin-cos position embeddings"
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    coords = torch.arange(grid, dtype=torch.float64)
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")

    def embed(pos):  # (L,) -> (L, dim/2)
        out = pos.reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([out.sin(), out.cos()], dim=1)
    emb = torch.cat([embed(xs), embed(ys)], dim=1).float()
    return torch.cat([torch.zeros(1, dim), emb]) if cls_token else emb


def build_vit(cfg: MAEConfig) -> VisionTransformer:
    """The encoder: a timm ViT without a head, with fixed sin-cos position embeddings."""
    vit = VisionTransformer(img_size=cfg.img_size, patch_size=cfg.patch_size, in_chans=cfg.in_chans, num_classes=0,
                            global_pool="token", embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads,
                            mlp_ratio=cfg.mlp_ratio, qkv_bias=True)
    vit.pos_embed.requires_grad_(False)
    with torch.no_grad():
        vit.pos_embed.copy_(sincos_pos_embed(cfg.embed_dim, vit.patch_embed.grid_size[0]).unsqueeze(0))
    return vit


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class MAE(nn.Module):
    def __init__(self, cfg: MAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = build_vit(cfg)
        p, n = cfg.patch_size, self.encoder.patch_embed.num_patches
        self.decoder_embed = nn.Linear(cfg.embed_dim, cfg.decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(sincos_pos_embed(cfg.decoder_embed_dim, int(n ** 0.5)).unsqueeze(0),
                                              requires_grad=False)
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.decoder_blocks = nn.ModuleList(Block(cfg.decoder_embed_dim, cfg.decoder_num_heads, cfg.mlp_ratio,
                                                  qkv_bias=True, norm_layer=norm) for _ in range(cfg.decoder_depth))
        self.decoder_norm = norm(cfg.decoder_embed_dim)
        self.decoder_pred = nn.Linear(cfg.decoder_embed_dim, p * p * cfg.in_chans)
        self._init()

    def _init(self) -> None:
        w = self.encoder.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))   # the patch projection is a linear layer in disguise
        nn.init.normal_(self.encoder.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        self.apply(_init_weights)

    def shard_units(self) -> list[nn.Module]:
        return list(self.encoder.blocks)   # FSDP2 shards each encoder block on its own (see selfsup.task)

    # ---------------------------------------------------------------- patches

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, L, p*p*C), patches in row-major order, pixels (p, q, c) within a patch."""
        p, (B, C, H, W) = self.cfg.patch_size, imgs.shape
        x = imgs.reshape(B, C, H // p, p, W // p, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(B, (H // p) * (W // p), p * p * C)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        p, C = self.cfg.patch_size, self.cfg.in_chans
        B, L, _ = x.shape
        h = int(L ** 0.5)
        x = x.reshape(B, h, h, p, p, C)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(B, C, h * p, h * p)

    # ---------------------------------------------------------------- forward

    def random_masking(self, x: torch.Tensor, noise: torch.Tensor):
        """Keep the (1 - mask_ratio) patches with the smallest noise. x: (B, L, D), noise: (B, L)."""
        B, L, D = x.shape
        keep = int(L * (1 - self.cfg.mask_ratio))
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :keep]
        x = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))            # (B, keep, D)
        mask = torch.ones(B, L, device=x.device)
        mask[:, :keep] = 0
        return x, torch.gather(mask, 1, ids_restore), ids_restore                    # mask: 1 = hidden

    def forward_encoder(self, imgs: torch.Tensor, noise: torch.Tensor):
        enc = self.encoder
        x = enc.patch_embed(imgs) + enc.pos_embed[:, 1:]                             # (B, L, D)
        x, mask, ids_restore = self.random_masking(x, noise)
        cls = (enc.cls_token + enc.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = enc.blocks(torch.cat([cls, x], dim=1))                                   # (B, 1 + keep, D)
        return enc.norm(x), mask, ids_restore

    def forward_decoder(self, x: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(x)                                                    # (B, 1 + keep, Dd)
        B, L = ids_restore.shape
        masked = self.mask_token.expand(B, L + 1 - x.shape[1], -1)
        patches = torch.cat([x[:, 1:], masked], dim=1)
        patches = torch.gather(patches, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))  # unshuffle
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]                        # (B, L, p*p*C)

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        target = self.patchify(imgs)
        if self.cfg.norm_pix_loss:
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        per_patch = (pred.float() - target).pow(2).mean(-1)                          # (B, L)
        return (per_patch * mask).sum() / mask.sum()

    def forward(self, imgs: torch.Tensor, noise: torch.Tensor | None = None):
        """imgs: normalised (B, C, H, W). Returns (loss, pred (B, L, p*p*C), mask (B, L))."""
        if noise is None:
            noise = torch.rand(imgs.shape[0], self.encoder.patch_embed.num_patches, device=imgs.device)
        latent, mask, ids_restore = self.forward_encoder(imgs, noise)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred, mask), pred, mask

    def no_weight_decay(self) -> set[str]:
        return {"encoder.pos_embed", "encoder.cls_token", "mask_token", "decoder_pos_embed"}
