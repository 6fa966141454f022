"""Masked autoencoder (He et al., 2021) on our timm ViT: `selfsup train mae`.

The encoder sees only the visible (1 - mask_ratio) patches; a narrow decoder of timm Blocks gets them back
on the full grid with a shared mask token at every hidden place and predicts each hidden patch's pixels;
the loss is the MSE on hidden patches. Its loss matches transformers' ViTMAEForPreTraining with the same
weights and noise (tests/test_mae.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import nn

from .legacy import migrate_model_to_vit
from .masking import patchify, random_masking, sincos_pos_embed, unpatchify
from .mim import MIMTask, MIMTaskConfig, tiny_preset
from .vit import ViTConfig, build_vit, encode, init_weights, vit_size


@dataclass
class MAEConfig:
    decoder_embed_dim: int = 128  # the decoder is narrow: it only serves pretraining (paper: 512)
    decoder_depth: int = 2        # paper: 8
    decoder_num_heads: int = 4    # paper: 16
    mask_ratio: float = 0.75      # fraction of patches hidden from the encoder (paper: 0.75)
    norm_pix_loss: bool = True    # targets are per-patch normalised pixels (paper §A.2: better features)


class MAE(nn.Module):
    def __init__(self, vit: ViTConfig, cfg: MAEConfig):
        super().__init__()
        self.vit_cfg, self.cfg = vit, cfg
        self.encoder = build_vit(vit)
        d = cfg.decoder_embed_dim
        self.decoder_embed = nn.Linear(vit.embed_dim, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.decoder_pos_embed = nn.Parameter(sincos_pos_embed(d, vit.grid).unsqueeze(0), requires_grad=False)
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.decoder_blocks = nn.ModuleList(Block(d, cfg.decoder_num_heads, vit.mlp_ratio, qkv_bias=True,
                                                  norm_layer=norm) for _ in range(cfg.decoder_depth))
        self.decoder_norm = norm(d)
        self.decoder_pred = nn.Linear(d, vit.patch_size ** 2 * vit.in_chans)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
            m.apply(init_weights)

    def shard_units(self) -> list[nn.Module]:
        return [*self.encoder.blocks, *self.decoder_blocks]

    # ---------------------------------------------------------------- patches

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        return patchify(imgs, self.vit_cfg.patch_size)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        return unpatchify(x, self.vit_cfg.patch_size, self.vit_cfg.in_chans)

    # ---------------------------------------------------------------- forward

    def sample_masks(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """MAE's masks are per-patch noise, (n, L): the patches with the smallest noise stay visible."""
        return torch.rand(n, self.vit_cfg.num_patches, generator=generator)

    def forward_encoder(self, imgs: torch.Tensor, noise: torch.Tensor):
        enc = self.encoder
        x = enc.patch_embed(imgs) + enc.pos_embed[:, 1:]                             # (B, L, D)
        x, mask, ids_restore = random_masking(x, noise, self.cfg.mask_ratio)         # (B, keep, D)
        return encode(enc, x), mask, ids_restore                                     # (B, 1 + keep, D)

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
            noise = torch.rand(imgs.shape[0], self.vit_cfg.num_patches, device=imgs.device)
        latent, mask, ids_restore = self.forward_encoder(imgs, noise)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred, mask), pred, mask

    def no_weight_decay(self) -> set[str]:
        return {"encoder.pos_embed", "encoder.cls_token", "mask_token", "decoder_pos_embed"}


# ------------------------------------------------------------------------------------------------ task

TINY_DECODER = {"decoder_embed_dim": 64, "decoder_depth": 2, "decoder_num_heads": 4}


@dataclass
class MAETaskConfig(MIMTaskConfig):
    mae: MAEConfig = field(default_factory=MAEConfig)


class MAETask(MIMTask):
    name = "mae"
    Config = MAETaskConfig
    presets = {
        # CPU, minutes: 32x32 scenes, 4x4 patches, a 4-block ViT of width 128 and a 2x64 decoder. Raw-pixel
        # targets: the scenes' objects are flat colours, which per-patch normalisation hides from the loss
        # (3 seeds: colour probes +0.05..0.08, the rest level; RESULTS.md evidence-mae-tiny[-normpix]).
        "tiny": tiny_preset({"beta2": 0.95, "grad_clip": 0.0}, {"mae": {**TINY_DECODER, "norm_pix_loss": False}}),
        # The paper's recipe: ViT-B/16 at 224, decoder 8x512, AdamW (0.9, 0.95), base LR 1.5e-4 x batch/256,
        # wd 0.05, cosine with warmup. Set task.data.source/path for real images (e.g. an ImageNet ImageFolder).
        "vit-b16": {"trainer": {"max_steps": 100_000, "batch_size": 1024, "lr": 1.5e-4 * 1024 / 256,
                                "warmup_steps": 5000, "weight_decay": 0.05, "beta2": 0.95, "grad_clip": 0.0,
                                "log_every": 50, "checkpoint_every": 2000, "num_workers": 8},
                    "task": {"vit": vit_size("b16"),
                             "mae": {"decoder_embed_dim": 512, "decoder_depth": 8, "decoder_num_heads": 16},
                             "data": {"num_train": 50_000, "num_test": 5000}}},
    }

    @staticmethod
    def migrate_config(data: dict) -> dict:
        """Runs saved before the ViT / method split: task.model (flat MAEConfig) -> task.vit + task.mae."""
        return migrate_model_to_vit(data, mae_to="mae")

    def build_model(self) -> nn.Module:
        return MAE(self.cfg.vit, self.cfg.mae)

    def to_hf(self, model):
        from .interop import to_hf
        return to_hf(model)
