"""Patches, position embeddings and the masks of each masked-image-modeling method.

Masks are (B, L) over the patch grid in row-major order, True (or 1) = hidden from the encoder.

- ``random_masking``: MAE — keep the (1 - ratio) patches with the smallest noise, per sample.
- ``block_mask``: SimMIM — hide random square blocks of ``block`` x ``block`` patches.
- ``inverse_block_mask``: data2vec 2.0 — *keep* a few random blocks, hide the rest.

Every mask draws from a ``torch.Generator`` when given one (fixed masks for evaluation and figures), else
from torch's global RNG (which the trainer seeds and restores on resume).
"""
from __future__ import annotations

import math

import torch


def patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, L, p*p*C), patches in row-major order, pixels (p, q, c) within a patch."""
    B, C, H, W = imgs.shape
    x = imgs.reshape(B, C, H // p, p, W // p, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(B, (H // p) * (W // p), p * p * C)


def unpatchify(x: torch.Tensor, p: int, channels: int = 3) -> torch.Tensor:
    """(B, L, p*p*C) -> (B, C, H, W), the inverse of ``patchify`` (square grid)."""
    B, L, _ = x.shape
    h = int(L ** 0.5)
    x = x.reshape(B, h, h, p, p, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(B, channels, h * p, h * p)


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


# --------------------------------------------------------------------------------------------- MAE


def random_masking(x: torch.Tensor, noise: torch.Tensor, mask_ratio: float):
    """Keep the (1 - mask_ratio) patches with the smallest noise. x: (B, L, D), noise: (B, L).
    Returns the kept tokens (B, keep, D), the mask (B, L) float (1 = hidden) and ids_restore (B, L)."""
    B, L, D = x.shape
    keep = int(L * (1 - mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    x = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))            # (B, keep, D)
    mask = torch.ones(B, L, device=x.device)
    mask[:, :keep] = 0
    return x, torch.gather(mask, 1, ids_restore), ids_restore


def gather_visible(x: torch.Tensor, mask: torch.Tensor):
    """The visible tokens of x (B, L, D) under a bool mask (B, L) hiding the same number in every row.
    Returns (B, keep, D) in grid order, and ids_restore (B, L) for ``restore``."""
    counts = mask.sum(1)
    if not bool((counts == counts[0]).all()):
        raise ValueError("every sample must hide the same number of patches")
    ids_shuffle = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)          # visible first, in grid order
    keep = mask.shape[1] - int(counts[0])
    ids_keep = ids_shuffle[:, :keep]
    return torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1])), torch.argsort(ids_shuffle, dim=1)


def restore(visible: torch.Tensor, fill: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
    """Put visible tokens (B, keep, D) back on the grid, hidden places taken by ``fill`` (B, L - keep, D)."""
    x = torch.cat([visible, fill], dim=1)
    return torch.gather(x, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))          # (B, L, D)


# ------------------------------------------------------------------------------------------ SimMIM


def block_mask(batch: int, grid: int, mask_ratio: float, block: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """SimMIM's MaskGenerator: cut the grid into ``block`` x ``block``-patch squares, hide ceil(ratio * squares)
    of them at random, per sample. A grid that is not a multiple of ``block`` gets partial squares at its
    right and bottom edges. (B, L) bool."""
    side = math.ceil(grid / block)
    count = math.ceil(side * side * mask_ratio)
    order = torch.rand(batch, side * side, generator=generator).argsort(dim=1)
    small = torch.zeros(batch, side * side, dtype=torch.bool)
    small.scatter_(1, order[:, :count], True)
    full = small.view(batch, side, side).repeat_interleave(block, 1).repeat_interleave(block, 2)
    return full[:, :grid, :grid].reshape(batch, grid * grid)


# ---------------------------------------------------------------------------------- data2vec 2.0


def inverse_block_mask(batch: int, grid: int, mask_ratio: float, block: int, adjust: float = 0.07,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """data2vec 2.0's inverse block mask (fairseq ``compute_block_mask_2d`` with ``inverse_mask=True`` and
    ``require_same_masks=True``): place int(L * (1 - ratio + adjust) / block^2) random ``block`` x ``block``
    squares of *visible* patches (clipped at the edges), then make every sample keep exactly
    int(L * (1 - ratio)) patches by dropping (or adding) visible patches at random. Returns (B, L) bool, True =
    hidden: contiguous visible regions, so the student cannot fill a hole from its immediate neighbours."""
    if block < 2:
        raise ValueError("inverse block masking needs blocks of at least 2 patches (fairseq asserts it)")
    L = grid * grid
    keep_target = int(L * (1 - mask_ratio))
    centers = int(L * ((1 - mask_ratio + adjust) / block ** 2))
    visible = torch.zeros(batch, grid, grid)
    idx = torch.randint(0, L, (batch, centers), generator=generator)
    rows, cols = idx // grid, idx % grid                                         # (B, centers)
    offsets = torch.arange(block) - block // 2
    r = (rows[..., None, None] + offsets[:, None]).clamp(0, grid - 1)           # (B, centers, block, 1)
    c = (cols[..., None, None] + offsets[None, :]).clamp(0, grid - 1)           # (B, centers, 1, block)
    b = torch.arange(batch)[:, None, None, None]
    visible[b, r, c] = 1                                                         # broadcast to every square's cells
    # exactly keep_target visible patches per sample: placed ones first in random order, then random others
    score = visible.view(batch, L) + torch.rand(batch, L, generator=generator)
    keep = score.argsort(dim=1, descending=True)[:, :keep_target]
    mask = torch.ones(batch, L, dtype=torch.bool)
    mask.scatter_(1, keep, False)
    return mask
