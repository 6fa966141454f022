"""The reconstruction figure of pixel-predicting methods (MAE, SimMIM): rows of original / masked input /
reconstruction (visible patches pasted back)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from selfsup.io import atomic_write

from .masking import patchify, unpatchify
from .transforms import denormalize, normalize


@torch.no_grad()
def reconstruction_grid(model, images: torch.Tensor, masks: torch.Tensor, path: Path, scale: int = 4) -> Path:
    """images: uint8 (n, 3, H, W); ``masks`` (the model's ``sample_masks``) fix what is hidden, so figures from
    different steps compare. The model returns (loss, pred (n, L, p*p*3), mask (n, L))."""
    device = next(model.parameters()).device
    p, c = model.vit_cfg.patch_size, model.vit_cfg.in_chans
    x = normalize(images.to(device))
    _, pred, mask = model(x, masks.to(device))
    target = patchify(x, p)
    if getattr(model.cfg, "norm_pix_loss", False):   # predictions in per-patch normalised units: undo with target stats
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        pred = pred * (var + 1e-6) ** 0.5 + mean
    m = mask.float().unsqueeze(-1)
    masked = unpatchify(target * (1 - m), p, c)
    recon = unpatchify(target * (1 - m) + pred.float() * m, p, c)
    rows = [denormalize(t) for t in (x, masked, recon)]
    for r in rows[1:2]:   # hidden patches show grey, not the normalised zero
        r.masked_fill_(unpatchify(m.expand_as(target), p, c).bool(), 0.5)
    grid = torch.cat([torch.cat(list(r), dim=-1) for r in rows], dim=-2)           # (3, 3H, nW)
    arr = (grid.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    img = Image.fromarray(arr).resize((arr.shape[1] * scale, arr.shape[0] * scale), Image.NEAREST)
    atomic_write(path, lambda f: img.save(f, format="PNG"))
    return path
