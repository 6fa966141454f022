"""data2vec 2.0 (Baevski et al., 2022) for images on our timm ViT: `selfsup train data2vec`.

The target is not pixels but the teacher's contextualised features: an EMA copy of the encoder (the teacher,
selfsup.teacher) encodes the *unmasked* image once; the target of each patch is the mean of its top-K block
outputs, each instance-normalised over the patches, then layer-normed. The student encodes only the visible
patches of M differently masked copies of each image (inverse block masks: a few visible squares), a light
convolutional decoder fills the grid (visible outputs + small noise at hidden places) and predicts each
hidden patch's target; the loss is the MSE scaled by 1/sqrt(D), plus a small loss tying the student's CLS to
the mean target. Read against fairseq's examples/data2vec/models/data2vec2.py and modalities/images.py.

Where ours differs from fairseq's image model, on purpose: the encoder is the same pre-LN timm ViT with MAE's
initialisation that every method here trains (fairseq's is post-LN with a 2-block pre-net, BERT init), and
the block output averaged into the target is the FFN output before its residual (fairseq's
``end_of_block_targets=False``) of that pre-LN block.

Costs, all inside the training step and so inside the counted FLOPs and MFU: one teacher forward over B
images (no gradient, one more fp32 copy of the encoder's weights), the student over B*M masked copies (only
the visible ~20% of patches), the decoder over B*M full grids.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from selfsup.config import ConfigError
from selfsup.teacher import EMATeacher, TeacherConfig, clone_batch, regression_loss

from .masking import gather_visible, inverse_block_mask, restore
from .mim import MIMTask, MIMTaskConfig, tiny_preset
from .transforms import normalize
from .vit import ViTConfig, build_vit, embed_patches, encode, prepend_cls, vit_size


@dataclass
class Data2VecConfig:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)   # EMA schedule, top-K, target norms, M, loss
                                                                    # scale: the image paper's values by default
    mask_ratio: float = 0.8          # fraction of patches hidden from the student (paper: 0.8)
    mask_block: int = 3              # side of each visible square, in patches (paper: 3 on the 14x14 grid)
    mask_adjust: float = 0.07        # extra visible squares placed before trimming to the exact ratio (paper: 0.07)
    mask_noise_std: float = 0.01     # hidden places enter the decoder as N(0, std^2) noise (paper: 0.01)
    decoder_dim: int = 768           # conv decoder width (paper: 768)
    decoder_layers: int = 6          # conv + layer norm + GELU blocks, each with a residual (paper: 6)
    decoder_kernel: int = 3          # odd kernel side (paper: 3)
    decoder_groups: int = 16         # grouped convolutions (paper: 16)
    cls_loss: float = 2.56           # weight of the CLS-to-mean-target loss, averaged over samples (paper: 0.01 summed
                                     # over its 16 x 16 samples per GPU = 2.56 averaged; see Data2Vec.forward)
    end_of_block_targets: bool = False  # average block outputs instead of FFN outputs (paper: false)


class ConvDecoder(nn.Module):
    """fairseq's Decoder2d: grouped convolutions on the token grid, each followed by a parameter-free layer
    norm over channels and a GELU, with a residual around each; a linear projection back to the width."""

    def __init__(self, dim: int, cfg: Data2VecConfig, grid: int):
        super().__init__()
        if cfg.decoder_kernel % 2 == 0:
            raise ConfigError(f"data2vec.decoder_kernel must be odd, not {cfg.decoder_kernel}")
        if dim % cfg.decoder_groups or cfg.decoder_dim % cfg.decoder_groups:
            raise ConfigError(f"data2vec.decoder_groups={cfg.decoder_groups} must divide vit.embed_dim={dim} and "
                             f"data2vec.decoder_dim={cfg.decoder_dim}")
        self.grid = grid
        self.convs = nn.ModuleList(
            nn.Conv2d(dim if i == 0 else cfg.decoder_dim, cfg.decoder_dim, cfg.decoder_kernel,
                      padding=cfg.decoder_kernel // 2, groups=cfg.decoder_groups) for i in range(cfg.decoder_layers))
        self.proj = nn.Linear(cfg.decoder_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:                              # (B, L, D) -> (B, L, D)
        B, L, D = x.shape
        x = x.transpose(1, 2).reshape(B, D, self.grid, self.grid)                   # (B, D, h, w)
        for conv in self.convs:
            y = conv(x)
            y = nn.functional.layer_norm(y.transpose(1, 3), y.shape[1:2]).transpose(1, 3)   # over channels
            y = nn.functional.gelu(y)
            x = y + x if y.shape == x.shape else y                                    # residual where shapes agree
        return self.proj(x.flatten(2).transpose(1, 2))                               # (B, L, D)


def teacher_layers(vit: VisionTransformer, imgs: torch.Tensor, ffn: bool = True) -> list[torch.Tensor]:
    """The teacher's per-block outputs on the whole image, patch tokens only: [(B, L, D)] * depth. With ``ffn``,
    each block's FFN output before its residual (fairseq's targets); else the block's output."""
    x = prepend_cls(vit, embed_patches(vit, imgs))                                  # (B, 1 + L, D)
    out = []
    for blk in vit.blocks:                                                          # timm's Block.forward, opened
        x = x + blk.drop_path1(blk.ls1(blk.attn(blk.norm1(x))))
        f = blk.ls2(blk.mlp(blk.norm2(x)))
        x = x + blk.drop_path2(f)
        out.append((f if ffn else x)[:, 1:])
    return out


class Data2Vec(nn.Module):
    def __init__(self, vit: ViTConfig, cfg: Data2VecConfig):
        super().__init__()
        if not 1 <= cfg.teacher.top_k <= vit.depth:
            raise ConfigError(f"data2vec.teacher.top_k={cfg.teacher.top_k} must be between 1 and vit.depth={vit.depth}")
        if not 2 <= cfg.mask_block <= vit.grid or cfg.teacher.final_norm not in ("none", "layer", "instance"):
            raise ConfigError(f"data2vec.mask_block={cfg.mask_block} must be between 2 and the grid side {vit.grid}, "
                              f"data2vec.teacher.final_norm one of none, layer, instance")
        self.vit_cfg, self.cfg = vit, cfg
        self.encoder = build_vit(vit)                                               # the student
        self.decoder = ConvDecoder(vit.embed_dim, cfg, vit.grid)
        self.teacher = EMATeacher(self.encoder, cfg.teacher)

    def shard_units(self) -> list[nn.Module]:
        return list(self.encoder.blocks)

    def sample_masks(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, M, L) bool, True = hidden: M inverse block masks per image."""
        m, v = self.cfg.teacher.clone_batch, self.vit_cfg
        masks = inverse_block_mask(n * m, v.grid, self.cfg.mask_ratio, self.cfg.mask_block, self.cfg.mask_adjust,
                                   generator)
        return masks.view(n, m, v.num_patches)

    def forward(self, imgs: torch.Tensor, masks: torch.Tensor | None = None, accumulate: int = 1):
        """imgs: normalised (B, C, H, W); masks: (B, M, L) from ``sample_masks``. Returns (loss, metrics, masks)."""
        cfg, tcfg = self.cfg, self.cfg.teacher
        B, M = imgs.shape[0], tcfg.clone_batch
        self.teacher.maybe_update(self.encoder, accumulate)       # the EMA step after each optimizer step
        y = self.teacher.targets(teacher_layers, imgs, ffn=not cfg.end_of_block_targets)   # (B, L, D)
        if masks is None:
            masks = self.sample_masks(B).to(imgs.device)
        mask = masks.reshape(B * M, -1)                                              # (BM, L)

        x = clone_batch(embed_patches(self.encoder, imgs), M)                       # (BM, L, D): embed once
        visible, ids_restore = gather_visible(x, mask)                              # (BM, keep, D)
        h = encode(self.encoder, visible)                                           # (BM, 1 + keep, D)
        noise = torch.randn(B * M, int(mask[0].sum()), h.shape[-1], device=h.device, dtype=h.dtype)
        pred = self.decoder(restore(h[:, 1:], noise * cfg.mask_noise_std, ids_restore))   # (BM, L, D)

        target = clone_batch(y, M)                                                  # (BM, L, D)
        loss = regression_loss(pred[mask], target[mask], tcfg.loss_scale).mean()   # mean over hidden patches
        metrics = {"loss_regression": loss.detach()}
        if cfg.cls_loss > 0:
            # fairseq weights the CLS loss by cls_loss * (hidden patches in the batch) and sums it over samples
            # before dividing everything by the hidden-patch count: cls_loss per sample, summed over a GPU's
            # batch. We take the mean over samples, so the weight does not grow with the batch: the paper's
            # 0.01 at 16 images x 16 masks per GPU is 0.01 * 256 = 2.56 here.
            cls = regression_loss(h[:, 0], clone_batch(y.mean(1), M), tcfg.loss_scale).mean()
            loss = loss + cfg.cls_loss * cls
            metrics["loss_cls"] = cls.detach()
        with torch.no_grad():   # fairseq's collapse diagnostics: per-dimension std of targets and predictions
            metrics["target_std"] = target[mask].float().std(0).mean()
            metrics["pred_std"] = pred[mask].float().std(0).mean()
        return loss, metrics, masks

    def no_weight_decay(self) -> set[str]:
        return {"encoder.pos_embed", "encoder.cls_token"}


# ------------------------------------------------------------------------------------------------ task

# The paper's EMA time constants as fractions of its 375,300 updates, kept for a 2,000-step run: 1/(1 - 0.9998)
# = 5,000 updates (1.3%) -> 27 steps, decay 0.962; 1/(1 - 0.99999) = 100k (27%) -> 533 steps, decay 0.998,
# annealed over 100k updates (27%) -> 533 steps.
TINY = {"mask_block": 2, "decoder_dim": 128, "decoder_layers": 3, "decoder_groups": 16,
        "teacher": {"top_k": 3, "clone_batch": 4, "ema_decay": 0.962, "ema_end_decay": 0.998,
                    "ema_anneal_end_step": 533}}


@dataclass
class Data2VecTaskConfig(MIMTaskConfig):
    data2vec: Data2VecConfig = field(default_factory=Data2VecConfig)


class Data2VecTask(MIMTask):
    name = "data2vec"
    Config = Data2VecTaskConfig
    predicts_pixels = False
    presets = {
        # CPU, minutes: the same ViT, data, batch and schedule as `mae --preset tiny` (mim.TINY_TRAINER), AdamW
        # (0.9, 0.95) and clip 4 as the paper; a scaled-down method: 2x2-patch visible squares on the 8x8 grid
        # (the paper's 3 on 14x14), M=4 masks per image, top 3 of 4 blocks (the paper: all but the first 1/6), a
        # 3-layer decoder of the encoder's width (the paper's is too), the paper's EMA schedule scaled to the
        # run's length (TINY).
        "tiny": tiny_preset({"beta2": 0.95, "grad_clip": 4.0}, {"data2vec": TINY}),
        # The paper's ViT-B recipe (fairseq config/v2/base_images_only_task.yaml): 16 images x 16 masks on each of
        # 16 GPUs (batch 256 images), Adam (0.9, 0.95), lr 1e-3, wd 0.05, cosine with 50,040 warmup updates of
        # 375,300, grad clip 4, EMA 0.9998 -> 0.99999 over 100k updates, top 10 of 12 blocks, mask 0.8 with 3x3
        # blocks (+0.07), conv decoder 6x768 (kernel 3, 16 groups), CLS loss 0.01 (x256: see Data2Vec.forward).
        "vit-b16": {"trainer": {"max_steps": 375_300, "batch_size": 256, "lr": 1e-3, "warmup_steps": 50_040,
                                "weight_decay": 0.05, "beta2": 0.95, "grad_clip": 4.0, "log_every": 50,
                                "checkpoint_every": 2000, "num_workers": 8},
                    "task": {"vit": vit_size("b16"), "data": {"num_train": 50_000, "num_test": 5000}}},
    }

    def build_model(self) -> nn.Module:
        return Data2Vec(self.cfg.vit, self.cfg.data2vec)

    def loss(self, model, images):
        loss, metrics, _ = model(normalize(images), accumulate=self.accumulate)
        return loss, metrics
