"""The pretrained vision encoder as the other packages use it: no masking, patch tokens and a pooled
feature, freezing, layer-wise LR decay, and export to timm.

    enc = ViTEncoder.from_checkpoint("runs/mae")            # a run, a checkpoint folder, or an export
    out = enc(images_uint8)                                 # {"tokens": (B, L, D), "cls": (B, D), "mean": (B, D)}
    enc.freeze(); enc.unfreeze(last_k=2)
    groups = enc.param_groups(weight_decay=0.05, layer_decay=0.75)
    enc.export_timm("exports/mae-tiny")                     # timm.create_model(..., checkpoint_path=...)
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from omegaconf import OmegaConf
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from selfsup.checkpoint import CheckpointError, check_fits, load_weights, resolve_checkpoint, save_weights
from selfsup.io import atomic_write_json
from selfsup.optim import no_weight_decay

from .mae import MAEConfig, build_vit
from .transforms import normalize

TIMM_BASE = "vit_base_patch16_224"   # timm's constructor; our config's sizes are passed as kwargs


def timm_kwargs(cfg: MAEConfig) -> dict:
    return dict(img_size=cfg.img_size, patch_size=cfg.patch_size, in_chans=cfg.in_chans, embed_dim=cfg.embed_dim,
                depth=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio, num_classes=0, global_pool="token")


class ViTEncoder(nn.Module):
    def __init__(self, cfg: MAEConfig, vit: VisionTransformer | None = None):
        super().__init__()
        self.cfg = cfg
        self.vit = vit if vit is not None else build_vit(cfg)
        self.embed_dim = cfg.embed_dim
        self.num_patches = self.vit.patch_embed.num_patches

    # ---------------------------------------------------------------- loading

    @classmethod
    def random(cls, cfg: MAEConfig) -> "ViTEncoder":
        """The same architecture with MAE's initialisation and no training: the honest baseline."""
        from .mae import MAE
        return cls(cfg, MAE(cfg).encoder)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> "ViTEncoder":
        """A timm export folder (encoder.json), or an MAE run/checkpoint folder."""
        path = Path(path)
        if (path / "encoder.json").is_file():
            meta = json.loads((path / "encoder.json").read_text())
            cfg = MAEConfig(**meta["mae_config"])
            enc = cls(cfg)
            enc.vit.load_state_dict(load_weights(path / "model.safetensors", expected=enc.vit.state_dict()))
            return enc
        ckpt = resolve_checkpoint(path)
        config_file = ckpt.parent.parent / "config.yaml"
        if not config_file.is_file():
            raise CheckpointError(f"{config_file} not found: an MAE checkpoint needs its run's config.yaml beside "
                                  "checkpoints/ to know the architecture")
        saved = OmegaConf.to_container(OmegaConf.load(config_file))
        try:
            cfg = MAEConfig(**saved["task"]["model"])
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{config_file} is not an MAE run's config ({e}); "
                                  "pass an MAE run, checkpoint or encoder export") from None
        state = load_weights(ckpt / "model.safetensors")
        enc = cls(cfg)
        encoder_state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
        check_fits(encoder_state, enc.vit.state_dict(), ckpt / "model.safetensors")
        enc.vit.load_state_dict(encoder_state)
        return enc

    def export_timm(self, out_dir: str | Path) -> Path:
        """Write model.safetensors + encoder.json; ``timm.create_model(TIMM_BASE, checkpoint_path=..., **kwargs)``
        with the kwargs in encoder.json rebuilds the same network."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_weights(self.vit.state_dict(), out / "model.safetensors")
        atomic_write_json(out / "encoder.json", {"timm_model": TIMM_BASE, "timm_kwargs": timm_kwargs(self.cfg),
                                                  "mae_config": asdict(self.cfg)})
        return out

    # ---------------------------------------------------------------- features

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) uint8 or normalised float -> (B, 1 + L, D) after the final norm; no masking."""
        x = normalize(images) if images.dtype == torch.uint8 else images
        return self.vit.forward_features(x)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.forward_features(images)
        tokens = x[:, 1:]
        return {"tokens": tokens, "cls": x[:, 0], "mean": tokens.mean(1)}

    # ---------------------------------------------------------------- training modes

    def freeze(self) -> "ViTEncoder":
        self.requires_grad_(False)
        return self

    def unfreeze(self, last_k: int | None = None) -> "ViTEncoder":
        """All trainable, or only the last ``last_k`` blocks and the final norm (partial finetuning)."""
        if last_k is None:
            self.requires_grad_(True)
        else:
            self.freeze()
            for blk in list(self.vit.blocks)[len(self.vit.blocks) - last_k:]:
                blk.requires_grad_(True)
            self.vit.norm.requires_grad_(True)
        self.vit.pos_embed.requires_grad_(False)   # fixed sin-cos, never trained
        return self

    def layer_id(self, name: str) -> int:
        """0 for the embeddings, i+1 for block i, depth+1 for the final norm (BEiT/MAE convention)."""
        if name.startswith(("vit.cls_token", "vit.pos_embed", "vit.patch_embed")):
            return 0
        if name.startswith("vit.blocks."):
            return int(name.split(".")[2]) + 1
        return len(self.vit.blocks) + 1

    def param_groups(self, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
        """AdamW groups with ``lr_scale = layer_decay ** (depth + 1 - layer)``; no decay on norms/biases/embeddings."""
        skip = no_weight_decay(self)
        depth = len(self.vit.blocks) + 1
        groups: dict[tuple, dict] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            layer = self.layer_id(name)
            wd = 0.0 if name in skip else weight_decay
            g = groups.setdefault((layer, wd), {"params": [], "weight_decay": wd,
                                                "lr_scale": layer_decay ** (depth - layer)})
            g["params"].append(p)
        return list(groups.values())
