"""Our models as transformers' models, weights mapped across (timm's fused qkv split into q/k/v projections):
MAE as ``ViTMAEForPreTraining``, SimMIM as ``ViTForMaskedImageModeling``. Used to check parity and to hand a
model to the HF ecosystem (``selfsup export mae --format hf``)."""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import ViTConfig as HFViTConfig
from transformers import ViTForMaskedImageModeling, ViTMAEConfig, ViTMAEForPreTraining

from selfsup.io import atomic_write_dir

from .vit import ViTConfig


def _common(v: ViTConfig) -> dict:
    return dict(hidden_size=v.embed_dim, num_hidden_layers=v.depth, num_attention_heads=v.num_heads,
                intermediate_size=int(v.embed_dim * v.mlp_ratio), image_size=v.img_size, patch_size=v.patch_size,
                num_channels=v.in_chans, qkv_bias=True, layer_norm_eps=1e-6, hidden_act="gelu",
                attn_implementation="sdpa")


def _block(ours: dict, prefix: str, theirs: str) -> dict:
    q, k, v = ours[f"{prefix}.attn.qkv.weight"].chunk(3)
    qb, kb, vb = ours[f"{prefix}.attn.qkv.bias"].chunk(3)
    return {
        f"{theirs}.attention.q_proj.weight": q, f"{theirs}.attention.q_proj.bias": qb,
        f"{theirs}.attention.k_proj.weight": k, f"{theirs}.attention.k_proj.bias": kb,
        f"{theirs}.attention.v_proj.weight": v, f"{theirs}.attention.v_proj.bias": vb,
        f"{theirs}.attention.o_proj.weight": ours[f"{prefix}.attn.proj.weight"],
        f"{theirs}.attention.o_proj.bias": ours[f"{prefix}.attn.proj.bias"],
        f"{theirs}.layernorm_before.weight": ours[f"{prefix}.norm1.weight"],
        f"{theirs}.layernorm_before.bias": ours[f"{prefix}.norm1.bias"],
        f"{theirs}.layernorm_after.weight": ours[f"{prefix}.norm2.weight"],
        f"{theirs}.layernorm_after.bias": ours[f"{prefix}.norm2.bias"],
        f"{theirs}.mlp.fc1.weight": ours[f"{prefix}.mlp.fc1.weight"],
        f"{theirs}.mlp.fc1.bias": ours[f"{prefix}.mlp.fc1.bias"],
        f"{theirs}.mlp.fc2.weight": ours[f"{prefix}.mlp.fc2.weight"],
        f"{theirs}.mlp.fc2.bias": ours[f"{prefix}.mlp.fc2.bias"],
    }


def _encoder(s: dict, depth: int) -> dict:
    """Our timm ViT (keys under ``encoder.``) as transformers' ``vit.*``."""
    out = {
        "vit.embeddings.cls_token": s["encoder.cls_token"],
        "vit.embeddings.position_embeddings": s["encoder.pos_embed"],
        "vit.embeddings.patch_embeddings.projection.weight": s["encoder.patch_embed.proj.weight"],
        "vit.embeddings.patch_embeddings.projection.bias": s["encoder.patch_embed.proj.bias"],
        "vit.layernorm.weight": s["encoder.norm.weight"], "vit.layernorm.bias": s["encoder.norm.bias"],
    }
    for i in range(depth):
        out.update(_block(s, f"encoder.blocks.{i}", f"vit.layers.{i}"))
    return out


# ------------------------------------------------------------------------------------------------ MAE


def mae_hf_config(model) -> ViTMAEConfig:
    c = model.cfg
    return ViTMAEConfig(**_common(model.vit_cfg), decoder_hidden_size=c.decoder_embed_dim,
                        decoder_num_hidden_layers=c.decoder_depth, decoder_num_attention_heads=c.decoder_num_heads,
                        decoder_intermediate_size=int(c.decoder_embed_dim * model.vit_cfg.mlp_ratio),
                        mask_ratio=c.mask_ratio, norm_pix_loss=c.norm_pix_loss)


def mae_hf_state_dict(model) -> dict[str, torch.Tensor]:
    s = model.state_dict()
    out = {
        **_encoder(s, model.vit_cfg.depth),
        "decoder.mask_token": s["mask_token"], "decoder.decoder_pos_embed": s["decoder_pos_embed"],
        "decoder.decoder_embed.weight": s["decoder_embed.weight"],
        "decoder.decoder_embed.bias": s["decoder_embed.bias"],
        "decoder.decoder_norm.weight": s["decoder_norm.weight"], "decoder.decoder_norm.bias": s["decoder_norm.bias"],
        "decoder.decoder_pred.weight": s["decoder_pred.weight"], "decoder.decoder_pred.bias": s["decoder_pred.bias"],
    }
    for i in range(model.cfg.decoder_depth):
        out.update(_block(s, f"decoder_blocks.{i}", f"decoder.decoder_layers.{i}"))
    return out


def to_hf(model) -> ViTMAEForPreTraining:
    """Our MAE as ``ViTMAEForPreTraining`` with the same weights."""
    hf = ViTMAEForPreTraining(mae_hf_config(model))
    hf.load_state_dict(mae_hf_state_dict(model), strict=True)
    return hf.train(model.training)


# --------------------------------------------------------------------------------------------- SimMIM


def simmim_to_hf(model) -> ViTForMaskedImageModeling:
    """Our SimMIM as ``ViTForMaskedImageModeling`` (mask token in the embeddings, 1x1-conv + pixel-shuffle head,
    L1 on masked pixels) with the same weights."""
    v = model.vit_cfg
    hf = ViTForMaskedImageModeling(HFViTConfig(**_common(v), encoder_stride=v.patch_size))
    s = model.state_dict()
    hf.load_state_dict({**_encoder(s, v.depth), "vit.embeddings.mask_token": s["mask_token"],
                        "decoder.0.weight": s["decoder.0.weight"], "decoder.0.bias": s["decoder.0.bias"]},
                       strict=True)
    return hf.train(model.training)


def save_hf(hf_model, out_dir: str | Path) -> Path:
    """``save_pretrained`` into a temporary folder, then each file moved into ``out_dir`` atomically."""
    return atomic_write_dir(out_dir, lambda tmp: hf_model.save_pretrained(str(tmp)))
