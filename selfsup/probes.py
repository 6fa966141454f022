"""Judging frozen features: a linear probe (MAE protocol) and a weighted kNN classifier. Shared by
the vision and language packages. Long probes show a progress bar (selfsup.progress)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .progress import progress
from .results import Score

PROGRESS_STEPS = 2000    # linear-probe optimizer steps from which a progress bar shows
PROGRESS_QUERIES = 20_000  # kNN test features from which a progress bar shows


def _bar(total: int, threshold: int, desc: str):
    """A progress bar over ``total`` units when it is long (see selfsup.progress)."""
    return progress(total=total, desc=desc, min_total=threshold, leave=False)


def probe_scores(train: dict[str, torch.Tensor], train_y: torch.Tensor, test: dict[str, torch.Tensor],
                 test_y: torch.Tensor, dataset: str, epochs: int = 100, lr: float = 1e-3, k: int = 20,
                 temperature: float = 0.07) -> list[Score]:
    """Linear probe and kNN top-1 for each pooling of frozen features ({"cls": (N, D), "mean": (N, D)})."""
    scores = []
    for pool in train:
        extra = {"pool": pool, "n_train": len(train_y), "n_test": len(test_y)}
        acc = linear_probe(train[pool], train_y, test[pool], test_y, epochs=epochs, lr=lr)
        scores.append(Score(dataset, "test", f"linear_probe_top1_{pool}", acc, extra))
        knn = knn_accuracy(train[pool], train_y, test[pool], test_y, k=k, temperature=temperature)
        scores.append(Score(dataset, "test", f"knn_top1_{pool}", knn, {**extra, "k": k, "t": temperature}))
    return scores


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 epochs: int = 100, lr: float = 1e-3, weight_decay: float = 0.0, batch_size: int = 256,
                 seed: int = 0) -> float:
    """Top-1 accuracy of BatchNorm(affine=False) + Linear trained on frozen features (MAE's protocol,
    with AdamW instead of LARS at this scale)."""
    g = torch.Generator().manual_seed(seed)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    head = nn.Sequential(nn.BatchNorm1d(train_x.shape[1], affine=False, eps=1e-6),
                         nn.Linear(train_x.shape[1], num_classes))
    with torch.no_grad():
        head[1].weight.normal_(0, 0.01, generator=g)
        head[1].bias.zero_()
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * max(1, -(-len(train_x) // batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    head.train()
    with torch.enable_grad(), _bar(steps, PROGRESS_STEPS, "linear probe") as bar:   # the probe trains
        _fit(head, opt, sched, train_x, train_y, epochs, batch_size, g, bar)
    head.eval()
    with torch.no_grad():
        return (head(test_x).argmax(-1) == test_y).float().mean().item()


def _fit(head, opt, sched, train_x, train_y, epochs, batch_size, g, bar) -> None:
    for _ in range(epochs):
        perm = torch.randperm(len(train_x), generator=g)
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            bar.update(1)
            if len(idx) < 2:
                continue   # BatchNorm needs two samples
            loss = F.cross_entropy(head(train_x[idx]), train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()


def nearest(train_x: torch.Tensor, test_x: torch.Tensor, k: int = 20, chunk: int = 1024,
            groups: tuple[torch.Tensor, torch.Tensor] | None = None):
    """Yield (start, similarities (b, k), indices (b, k)) of each test chunk's k nearest training features by
    cosine similarity. ``groups=(train_g, test_g)`` keeps only neighbours of another group than the query's."""
    train_x, test_x = F.normalize(train_x, dim=1), F.normalize(test_x, dim=1)
    k = min(k, len(train_x))
    with _bar(len(test_x), PROGRESS_QUERIES, "nearest neighbours") as bar:
        for i in range(0, len(test_x), chunk):
            sim = test_x[i:i + chunk] @ train_x.T                      # (b, N)
            if groups is not None:
                sim = sim.masked_fill(groups[1][i:i + chunk, None] == groups[0][None], float("-inf"))
            yield i, *sim.topk(k, dim=1)
            bar.update(len(sim))


def knn_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 k: int = 20, temperature: float = 0.07, chunk: int = 1024,
                 groups: tuple[torch.Tensor, torch.Tensor] | None = None) -> float:
    """Weighted kNN on cosine similarity (Wu et al. 2018; DINO's protocol): each of the k nearest
    training features votes for its class with weight exp(similarity / temperature).

    ``groups=(train_g, test_g)`` keeps only neighbours of another group than the query's (e.g. the
    shape of an object of a *different* colour): it tells a feature that encodes the class from one
    that finds look-alikes."""
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    correct = 0
    for i, top_sim, top_idx in nearest(train_x, test_x, k, chunk, groups):
        votes = torch.zeros(len(top_sim), num_classes)
        votes.scatter_add_(1, train_y[top_idx], (top_sim / temperature).exp())
        correct += (votes.argmax(1) == test_y[i:i + chunk]).sum().item()
    return correct / len(test_x)
