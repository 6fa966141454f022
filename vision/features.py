"""Frozen features of a vision encoder, for the probes in selfsup.probes."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def extract_features(encoder: nn.Module, images: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """uint8 (N, 3, H, W) -> {"cls": (N, D), "mean": (N, D)} on CPU, encoder in eval mode."""
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    out: dict[str, list[torch.Tensor]] = {"cls": [], "mean": []}
    for i in range(0, len(images), batch_size):
        feats = encoder(images[i:i + batch_size].to(device))
        for k in out:
            out[k].append(feats[k].float().cpu())
    encoder.train(was_training)
    return {k: torch.cat(v) for k, v in out.items()}
