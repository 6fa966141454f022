"""SimMIM (Xie et al., 2022) on our timm ViT: `selfsup train simmim`.

Unlike MAE, the encoder sees the whole grid: hidden patches enter it as a learned mask token (in place of
their patch embedding, before the position embedding is added). Masks are random square blocks; a linear
head (a 1x1 convolution) maps each output token to its patch's pixels (pixel-shuffled back to an image),
and the loss is the L1 distance on hidden pixels only, on ImageNet-normalised pixels. Its loss matches
transformers' ViTForMaskedImageModeling with the same weights and mask (tests/test_simmim.py).

Block size: the paper masks 32-px squares at 224 px; with ViT-B's 16-px patches that is 2x2 patches. We keep
the block in patch units at any image size (``mask_block=2``): at 32 px with 4-px patches the 8x8 grid is
cut into 4x4 blocks of 2x2 patches, of which ceil(0.6 * 16) = 10 are hidden (62.5% of the patches).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .masking import block_mask, patchify
from .mim import MIMTask, MIMTaskConfig, tiny_preset
from .vit import ViTConfig, build_vit, vit_size


@dataclass
class SimMIMConfig:
    mask_ratio: float = 0.6       # fraction of blocks hidden (paper: 0.6)
    mask_block: int = 2           # side of a hidden square in patches (paper: 32 px / 16-px patches = 2)


class SimMIM(nn.Module):
    def __init__(self, vit: ViTConfig, cfg: SimMIMConfig):
        super().__init__()
        self.vit_cfg, self.cfg = vit, cfg
        self.encoder = build_vit(vit)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, vit.embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02, a=-0.02, b=0.02)   # as SimMIM's ViT
        p = vit.patch_size
        self.decoder = nn.Sequential(nn.Conv2d(vit.embed_dim, p * p * vit.in_chans, kernel_size=1),
                                     nn.PixelShuffle(p))                  # the linear prediction head

    def shard_units(self) -> list[nn.Module]:
        return list(self.encoder.blocks)

    def sample_masks(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, L) bool, True = hidden: random blocks of mask_block x mask_block patches."""
        return block_mask(n, self.vit_cfg.grid, self.cfg.mask_ratio, self.cfg.mask_block, generator)

    def forward(self, imgs: torch.Tensor, mask: torch.Tensor | None = None):
        """imgs: normalised (B, C, H, W). Returns (loss, pred (B, L, p*p*C), mask (B, L) float, 1 = hidden)."""
        B, C, H, W = imgs.shape
        v, enc = self.vit_cfg, self.encoder
        if mask is None:
            mask = self.sample_masks(B).to(imgs.device)
        x = enc.patch_embed(imgs)                                                   # (B, L, D)
        w = mask.unsqueeze(-1).to(x.dtype)
        x = x * (1 - w) + self.mask_token.to(x.dtype) * w                           # mask tokens in the encoder
        x = torch.cat([enc.cls_token.expand(B, -1, -1), x], dim=1) + enc.pos_embed  # (B, 1 + L, D)
        z = enc.norm(enc.blocks(x))[:, 1:]                                           # (B, L, D)
        z = z.transpose(1, 2).reshape(B, v.embed_dim, v.grid, v.grid)               # (B, D, h, w)
        rec = self.decoder(z)                                                        # (B, C, H, W)
        pixel_mask = mask.view(B, v.grid, v.grid).repeat_interleave(v.patch_size, 1) \
            .repeat_interleave(v.patch_size, 2).unsqueeze(1).to(rec.dtype)         # (B, 1, H, W)
        l1 = F.l1_loss(imgs, rec.float(), reduction="none")
        loss = (l1 * pixel_mask).sum() / (pixel_mask.sum() + 1e-5) / C
        return loss, patchify(rec, v.patch_size), mask.float()

    def no_weight_decay(self) -> set[str]:
        return {"encoder.pos_embed", "encoder.cls_token", "mask_token"}


# ------------------------------------------------------------------------------------------------ task


@dataclass
class SimMIMTaskConfig(MIMTaskConfig):
    simmim: SimMIMConfig = field(default_factory=SimMIMConfig)


class SimMIMTask(MIMTask):
    name = "simmim"
    Config = SimMIMTaskConfig
    presets = {
        # CPU, minutes: the same ViT, data, batch, schedule and budget as `mae --preset tiny` (mim.TINY_TRAINER),
        # the paper's betas and clipping, its 2x2-patch blocks and mask ratio.
        "tiny": tiny_preset({"beta2": 0.999, "grad_clip": 5.0}, {}),
        # The paper's ViT-B/16 recipe (configs/vit_base__800ep): AdamW (0.9, 0.999), wd 0.05, base LR 1e-4 x
        # batch/512 (so 4e-4 at the paper's 2048), warmup 10 of 800 epochs, grad clip 5.0, mask 0.6 of 32-px
        # blocks. The paper decays the LR in steps (x0.1 at epoch 700); our trainer's schedule is cosine.
        # (Its Swin-B recipe: 8e-4 x batch/2048, 100 epochs.)
        "vit-b16": {"trainer": {"max_steps": 500_000, "batch_size": 2048, "lr": 1e-4 * 2048 / 512,
                                "warmup_steps": 6250, "weight_decay": 0.05, "beta2": 0.999, "grad_clip": 5.0,
                                "log_every": 50, "checkpoint_every": 2000, "num_workers": 8},
                    "task": {"vit": vit_size("b16"), "data": {"num_train": 50_000, "num_test": 5000}}},
    }

    def build_model(self) -> nn.Module:
        return SimMIM(self.cfg.vit, self.cfg.simmim)

    def to_hf(self, model):
        from .interop import simmim_to_hf
        return simmim_to_hf(model)
