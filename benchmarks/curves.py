"""Return curves of RL runs: per arm, the IQM over seeds at each env-step count with its 95% bootstrap band."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from selfsup.io import atomic_save_figure
from selfsup.stats import interval_estimate

from .suites import RunSpec


def _latest_curve(run_dir: Path) -> dict | None:
    files = sorted(run_dir.glob("figures/step_*/return_curve.json"))
    return json.loads(files[-1].read_text()) if files else None


def arm_curves(out: Path, specs: list[RunSpec], points: int = 40) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """arm -> (env steps grid, (seeds, grid) returns interpolated onto it)."""
    by_arm: dict[str, list[dict]] = {}
    for spec in specs:
        for run_dir in sorted(out.glob(f"{spec.name}-s*")):
            curve = _latest_curve(run_dir)
            if curve and len(curve["env_steps"]) >= 2:
                by_arm.setdefault(spec.arm, []).append(curve)
    result = {}
    for arm, curves in by_arm.items():
        end = min(c["env_steps"][-1] for c in curves)
        start = max(c["env_steps"][0] for c in curves)
        grid = np.linspace(start, end, points)
        result[arm] = (grid, np.stack([np.interp(grid, c["env_steps"], c["return"]) for c in curves]))
    return result


def plot_return_curves(out: Path, specs: list[RunSpec]) -> Path | None:
    curves = arm_curves(out, specs)
    if not curves:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for arm, (grid, runs) in sorted(curves.items()):
        stats = np.array([interval_estimate(runs[:, j], reps=500) for j in range(len(grid))])
        ax.plot(grid, stats[:, 0], label=f"{arm} (n={len(runs)})", lw=1.5)
        ax.fill_between(grid, stats[:, 1], stats[:, 2], alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episodic return (training)")
    ax.set_title("IQM over seeds, 95% stratified-bootstrap band")
    ax.legend(fontsize=7)
    return atomic_save_figure(fig, out / "return-curves.png")
