"""Aggregate scores over seeds the way Agarwal et al. (2021, "Deep RL at the edge of the statistical precipice")
recommend: interquartile mean (IQM) with 95% stratified-bootstrap intervals, and the probability of improvement.

Scores are arrays of shape (runs,) or (runs, tasks). The bootstrap resamples runs with replacement *within each
task* (stratified), vectorised with numpy: 2000 resamples of 10 runs take milliseconds.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def iqm(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean of the middle 50% (scipy.stats.trim_mean(x, 0.25)): robust like the median, less noisy than it."""
    x = np.sort(np.asarray(scores, dtype=np.float64), axis=axis)
    n = x.shape[axis]
    cut = int(0.25 * n)
    return np.take(x, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def _as_runs_by_tasks(scores) -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"scores must have shape (runs,) or (runs, tasks) with at least one run, not {x.shape}")
    return x


def _resample(x: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """(reps, runs, tasks): runs drawn with replacement independently for each task."""
    runs, tasks = x.shape
    idx = rng.integers(0, runs, size=(reps, runs, tasks))
    return np.take_along_axis(x[None].repeat(reps, 0), idx, axis=1)


def pooled_iqm(x: np.ndarray) -> np.ndarray:
    """IQM of all (run, task) scores pooled; on (..., runs, tasks)."""
    return iqm(x.reshape(*x.shape[:-2], -1), axis=-1)


def _percentile_interval(point: float, boot: np.ndarray, confidence: float) -> tuple[float, float, float]:
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    return point, float(lo), float(hi)


def interval_estimate(scores, statistic: Callable[[np.ndarray], np.ndarray] = pooled_iqm, reps: int = 2000,
                      confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(point, low, high): the statistic and its percentile stratified-bootstrap interval."""
    x = _as_runs_by_tasks(scores)
    point = float(statistic(x))
    return _percentile_interval(point, statistic(_resample(x, reps, np.random.default_rng(seed))), confidence)


def _prob_greater(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y)/2 per task, averaged over tasks; x (..., n, tasks), y (..., m, tasks)."""
    gt = (x[..., :, None, :] > y[..., None, :, :]).mean(axis=(-3, -2))
    eq = (x[..., :, None, :] == y[..., None, :, :]).mean(axis=(-3, -2))
    return (gt + 0.5 * eq).mean(axis=-1)


def probability_of_improvement(x, y, reps: int = 2000, confidence: float = 0.95,
                               seed: int = 0) -> tuple[float, float, float]:
    """P(a run of X beats a run of Y) — the Mann-Whitney statistic — with a stratified-bootstrap interval."""
    x, y = _as_runs_by_tasks(x), _as_runs_by_tasks(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must cover the same tasks: {x.shape[1]} vs {y.shape[1]} columns")
    rng = np.random.default_rng(seed)
    point = float(_prob_greater(x, y))
    return _percentile_interval(point, _prob_greater(_resample(x, reps, rng), _resample(y, reps, rng)), confidence)
