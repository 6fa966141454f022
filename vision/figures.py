"""The MAE figure: rows of original / masked input / reconstruction (visible patches pasted back)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from selfsup.io import atomic_write

from .transforms import denormalize, normalize


@torch.no_grad()
def reconstruction_grid(model, images: torch.Tensor, noise: torch.Tensor, path: Path, scale: int = 4) -> Path:
    """images: uint8 (n, 3, H, W); noise fixes the masks so figures from different steps compare."""
    device = next(model.parameters()).device
    x = normalize(images.to(device))
    _, pred, mask = model(x, noise.to(device))
    target = model.patchify(x)
    if model.cfg.norm_pix_loss:   # predictions are in per-patch normalised units: undo with the target's stats
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        pred = pred * (var + 1e-6) ** 0.5 + mean
    m = mask.unsqueeze(-1)
    masked = model.unpatchify(target * (1 - m))
    recon = model.unpatchify(target * (1 - m) + pred.float() * m)
    rows = [denormalize(t) for t in (x, masked, recon)]
    for r in rows[1:2]:   # hidden patches show grey, not the normalised zero
        r.masked_fill_(model.unpatchify(m.expand_as(target)).bool(), 0.5)
    grid = torch.cat([torch.cat(list(r), dim=-1) for r in rows], dim=-2)           # (3, 3H, nW)
    arr = (grid.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    img = Image.fromarray(arr).resize((arr.shape[1] * scale, arr.shape[0] * scale), Image.NEAREST)
    atomic_write(path, lambda p: img.save(p, format="PNG"))
    return path
