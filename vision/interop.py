"""Our MAE as transformers' ``ViTMAEForPreTraining``: the same network with the weights mapped across
(timm's fused qkv split into q/k/v projections). Used to check parity and to hand a model to the HF
ecosystem."""
from __future__ import annotations

import torch
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from .mae import MAE


def hf_config(model: MAE) -> ViTMAEConfig:
    c = model.cfg
    return ViTMAEConfig(
        hidden_size=c.embed_dim, num_hidden_layers=c.depth, num_attention_heads=c.num_heads,
        intermediate_size=int(c.embed_dim * c.mlp_ratio), image_size=c.img_size, patch_size=c.patch_size,
        num_channels=c.in_chans, qkv_bias=True, decoder_hidden_size=c.decoder_embed_dim,
        decoder_num_hidden_layers=c.decoder_depth, decoder_num_attention_heads=c.decoder_num_heads,
        decoder_intermediate_size=int(c.decoder_embed_dim * c.mlp_ratio), mask_ratio=c.mask_ratio,
        norm_pix_loss=c.norm_pix_loss, layer_norm_eps=1e-6, hidden_act="gelu", attn_implementation="sdpa")


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


def hf_state_dict(model: MAE) -> dict[str, torch.Tensor]:
    s = model.state_dict()
    out = {
        "vit.embeddings.cls_token": s["encoder.cls_token"],
        "vit.embeddings.position_embeddings": s["encoder.pos_embed"],
        "vit.embeddings.patch_embeddings.projection.weight": s["encoder.patch_embed.proj.weight"],
        "vit.embeddings.patch_embeddings.projection.bias": s["encoder.patch_embed.proj.bias"],
        "vit.layernorm.weight": s["encoder.norm.weight"], "vit.layernorm.bias": s["encoder.norm.bias"],
        "decoder.mask_token": s["mask_token"], "decoder.decoder_pos_embed": s["decoder_pos_embed"],
        "decoder.decoder_embed.weight": s["decoder_embed.weight"],
        "decoder.decoder_embed.bias": s["decoder_embed.bias"],
        "decoder.decoder_norm.weight": s["decoder_norm.weight"], "decoder.decoder_norm.bias": s["decoder_norm.bias"],
        "decoder.decoder_pred.weight": s["decoder_pred.weight"], "decoder.decoder_pred.bias": s["decoder_pred.bias"],
    }
    for i in range(model.cfg.depth):
        out.update(_block(s, f"encoder.blocks.{i}", f"vit.layers.{i}"))
    for i in range(model.cfg.decoder_depth):
        out.update(_block(s, f"decoder_blocks.{i}", f"decoder.decoder_layers.{i}"))
    return out


def to_hf(model: MAE) -> ViTMAEForPreTraining:
    hf = ViTMAEForPreTraining(hf_config(model))
    hf.load_state_dict(hf_state_dict(model), strict=True)
    return hf.eval() if not model.training else hf
