"""Return curves of RL runs: per arm, the IQM over seeds at each env-step count with its 95% bootstrap band."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from selfsup.io import atomic_save_figure
from selfsup.stats import interval_estimate


def _latest_curve(run_dir: Path) -> dict | None:
    files = sorted(run_dir.glob("figures/step_*/return_curve.json"))
    return json.loads(files[-1].read_text()) if files else None


def arm_curves(groups: dict[str, list[Path]], points: int = 40) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """arm -> (env steps grid, (seeds, grid) returns interpolated onto it), from each arm's run folders."""
    result = {}
    for arm, run_dirs in groups.items():
        curves = [c for c in map(_latest_curve, run_dirs) if c and len(c["env_steps"]) >= 2]
        if not curves:
            continue
        end = min(c["env_steps"][-1] for c in curves)
        start = max(c["env_steps"][0] for c in curves)
        grid = np.linspace(start, end, points)
        result[arm] = (grid, np.stack([np.interp(grid, c["env_steps"], c["return"]) for c in curves]))
    return result


def plot_return_curves(groups: dict[str, list[Path]], path: Path) -> Path | None:
    curves = arm_curves(groups)
    if not curves:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for arm, (grid, runs) in curves.items():
        stats = np.array([interval_estimate(runs[:, j], reps=500) for j in range(len(grid))])
        ax.plot(grid, stats[:, 0], label=f"{arm} (n={len(runs)})", lw=1.5)
        ax.fill_between(grid, stats[:, 1], stats[:, 2], alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episodic return (training)")
    ax.set_title("IQM over seeds, 95% stratified-bootstrap band")
    ax.legend(fontsize=7)
    return atomic_save_figure(fig, path)
