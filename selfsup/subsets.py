"""Seeded subsets: every cap, held-out batch and figure takes a random or stratified sample, never "the first N".

Real datasets are often stored sorted by class (an ImageFolder, a GLUE file grouped by label); the first N
of such a set holds only the first classes. ``sample_indices`` draws k of n positions with a private
generator, stratified by label when labels are given, so each class keeps its share.
"""
from __future__ import annotations

import torch


def sample_indices(n: int, k: int, seed: int, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Sorted indices of ``k`` of ``n`` items (all of them when k <= 0 or k >= n), drawn with ``seed``.

    With ``labels`` (n,), each class gets its proportional share (largest remainders first), so a
    class-sorted set is sampled evenly."""
    if n < 0:
        raise ValueError(f"cannot sample from {n} items")
    if k <= 0 or k >= n:
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed)
    if labels is None:
        return torch.randperm(n, generator=g)[:k].sort().values
    labels = torch.as_tensor(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), not {tuple(labels.shape)}")
    classes, counts = labels.unique(return_counts=True)
    exact = counts.double() * k / n
    share = exact.floor().long()
    short = k - int(share.sum())
    if short:   # the classes with the largest remainders take the leftover places
        order = torch.argsort(exact - share, descending=True, stable=True)
        share[order[:short]] += 1
    picked = []
    for c, m in zip(classes.tolist(), share.tolist()):
        members = (labels == c).nonzero().flatten()
        picked.append(members[torch.randperm(len(members), generator=g)[:m]])
    return torch.cat(picked).sort().values
