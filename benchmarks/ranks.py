"""The rank aggregate: each column ranks the rows it has (1 = best, ties share), averaged per row over the
ranked columns, with a bootstrap interval that resamples every cell's runs."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from selfsup.stats import iqm

from .board import Board

RANK_RESAMPLES = 2000


def _ranks(points: dict[str, float], higher_is_better: bool) -> dict[str, float]:
    """1 = best; ties share the mean of their places."""
    order = sorted(points, key=lambda k: points[k], reverse=higher_is_better)
    ranks, i = {}, 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and points[order[j + 1]] == points[order[i]]:
            j += 1
        for k in order[i:j + 1]:
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def mean_ranks(board: Board, resamples: int = RANK_RESAMPLES, seed: int = 0) -> dict[str, tuple]:
    """rep -> (mean rank over its ranked columns, low, high, columns): each column ranks the rows that have it;
    the interval resamples every cell's runs with replacement (no interval when every cell has one run)."""
    columns = defaultdict(dict)
    for c in board.cells.values():
        if c.ev.ranked and c.values:
            columns[c.ev.name][c.rep.name] = c
    if not columns:
        return {}

    def mean_rank(stat_of) -> dict[str, float]:
        per_rep = defaultdict(list)
        for name, cells in columns.items():
            ev = cells[next(iter(cells))].ev
            for rep, r in _ranks({k: stat_of(c) for k, c in cells.items()}, ev.higher_is_better).items():
                per_rep[rep].append(r)
        return {rep: float(np.mean(r)) for rep, r in per_rep.items()}

    point = mean_rank(lambda c: c.stat[0])
    counts = defaultdict(int)
    for cells in columns.values():
        for rep in cells:
            counts[rep] += 1
    if all(len(c.values) < 2 for cells in columns.values() for c in cells.values()):
        return {rep: (p, None, None, counts[rep]) for rep, p in point.items()}
    rng = np.random.default_rng(seed)
    boots = defaultdict(list)
    for _ in range(resamples):
        def resampled(c):
            x = np.array(c.values)[rng.integers(0, len(c.values), len(c.values))]
            return float(iqm(x) if c.ev.aggregate == "iqm" else x.mean())
        for rep, r in mean_rank(resampled).items():
            boots[rep].append(r)
    return {rep: (p, float(np.quantile(boots[rep], 0.025)), float(np.quantile(boots[rep], 0.975)), counts[rep])
            for rep, p in point.items()}
