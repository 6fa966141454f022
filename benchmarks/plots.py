"""The leaderboard's figures, as small multiples: one axis per column (its own scale, only the rows that have
it, the baseline as a dashed line), metric against training minutes where runs evaluated along the way,
training loss per pretraining domain, and PPO return curves."""
from __future__ import annotations

import math
from pathlib import Path

from selfsup.io import atomic_save_figure
from selfsup.metrics import read_metrics

from .board import Board
from .curves import plot_return_curves


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _grid(n: int, width: float = 3.6, height: float = 2.6):
    plt = _pyplot()
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def plot_headline(board: Board, path: Path) -> Path | None:
    """Each column's point and 95% interval per representation; dashed: the baseline rows."""
    columns = [(ev, [c for c in board.cells.values() if c.ev is ev and c.values])
               for ev in board.plan.suite.evaluations]
    columns = [(ev, cells) for ev, cells in columns if cells]
    if not columns:
        return None
    fig, axes = _grid(len(columns), height=0.5 + 0.42 * max(len(c) for _, c in columns))
    for ax, (ev, cells) in zip(axes, columns):
        points = [c.stat[0] for c in cells]
        y = list(range(len(cells)))[::-1]
        ax.barh(y, points, color=["#bbbbbb" if c.rep.baseline else "#4c72b0" for c in cells])
        for yi, c in zip(y, cells):
            if c.stat[1] is not None:   # one run has no interval: no error bar either
                ax.errorbar(c.stat[0], yi, xerr=[[c.stat[0] - c.stat[1]], [c.stat[2] - c.stat[0]]], fmt="none",
                            ecolor="black", capsize=3, lw=1)
            if c.rep.baseline:
                ax.axvline(c.stat[0], ls="--", lw=1, color="#555555")
        ax.set_yticks(y)
        ax.set_yticklabels([f"{c.rep.title} (n={len(c.values)})" for c in cells], fontsize=7)
        lo = min(c.stat[1] if c.stat[1] is not None else c.stat[0] for c in cells)
        hi = max(c.stat[2] if c.stat[2] is not None else c.stat[0] for c in cells)
        span = (hi - lo) or abs(hi) or 1.0
        ax.set_xlim(0 if lo >= 0 else lo - 0.1 * span, hi + 0.1 * span)
        ax.set_title(f"{ev.title} {'↑' if ev.higher_is_better else '↓'}", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    axes[0].set_xlabel("bars: mean or IQM; whiskers: 95% CI; dashed: baseline", fontsize=7)
    return atomic_save_figure(fig, path)


def _x(curve) -> tuple[list[float], bool]:
    if all(t is not None for _, t, _ in curve):
        return [t / 60 for _, t, _ in curve], True
    return [s for s, _, _ in curve], False


def plot_learning(board: Board, path: Path) -> Path | None:
    """Which learns most per minute: each column read from a pretraining run that evaluated along the way, or
    made from its intermediate checkpoints (`Evaluation.along`), against pretraining minutes (`train_seconds`
    of the Results and checkpoints; training steps when the runs predate it); baseline rows as dashed levels."""
    columns = [(ev, [c for c in board.cells.values() if c.ev is ev and any(len(k) > 1 for k in c.curves)])
               for ev in board.plan.suite.evaluations if ev.run is None or ev.along > 1]
    columns = [(ev, cells) for ev, cells in columns if cells]
    if not columns:
        return None
    fig, axes = _grid(len(columns))
    for ax, (ev, cells) in zip(axes, columns):
        minutes = True
        for i, cell in enumerate(cells):
            for j, curve in enumerate(cell.curves):
                x, in_minutes = _x(curve)
                minutes &= in_minutes
                ax.plot(x, [v for _, _, v in curve], marker=".", lw=1, color=f"C{i}",
                        ls="--" if cell.rep.baseline else "-", label=cell.rep.title if j == 0 else None)
        for k, base in enumerate(c for c in board.cells.values()      # baselines have no curve: a level line
                                 if c.ev is ev and c.values and c.rep.baseline and c not in cells):
            ax.axhline(base.stat[0], ls="--", lw=1, color=f"{0.2 + 0.2 * (k % 3):.1f}",
                       label=f"{base.rep.title} (n={len(base.values)})")
        ax.set_xlabel("pretraining minutes" if minutes else "pretraining step", fontsize=8)
        ax.set_title(ev.title, fontsize=9)
        ax.legend(fontsize=6)
    return atomic_save_figure(fig, path)


def _loss(run_dir: Path) -> tuple[list, list]:
    steps, losses = [], []
    for r in read_metrics(run_dir / "metrics.jsonl"):
        if isinstance(r.get("loss"), (int, float)):
            steps.append(r["step"])
            losses.append(r["loss"])
    return steps, losses


def plot_training_loss(board: Board, path: Path) -> Path | None:
    """Training loss of every pretraining that trained, one axis per domain and task."""
    panels: dict[str, list] = {}
    plan = board.plan
    for (rep_name, domain), jobs in plan.pretrainings.items():
        rep = plan.suite.rep(rep_name)
        for seed, job_id in enumerate(jobs):
            steps, losses = _loss(plan.dir(job_id))
            if len(steps) > 1:
                panels.setdefault(f"{rep.pretrain[domain].task} on {domain}", []).append((rep, seed, steps, losses))
    if not panels:
        return None
    fig, axes = _grid(len(panels))
    for ax, (title, lines) in zip(axes, panels.items()):
        reps = list(dict.fromkeys(rep.name for rep, *_ in lines))
        for rep, seed, steps, losses in lines:
            ax.plot(steps, losses, lw=1, color=f"C{reps.index(rep.name)}", label=rep.title if seed == 0 else None)
        ax.set_title(f"{title}: training loss", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.legend(fontsize=6)
    return atomic_save_figure(fig, path)


def plot_returns(board: Board, path: Path) -> Path | None:
    """PPO return curves of every column whose runs wrote them, per representation."""
    groups = {}
    for cell in board.cells.values():
        runs = [board.plan.dir(j) for j in cell.jobs if board.states.get(j) == "complete"]
        if cell.ev.run is not None and any(next(r.glob("figures/step_*/return_curve.json"), None) for r in runs):
            groups[f"{cell.rep.title}, {cell.ev.title}"] = runs
    return plot_return_curves(groups, path)


def figures(board: Board, out: Path) -> list[Path]:
    made = [plot_headline(board, out / "leaderboard-headline.png"),
            plot_learning(board, out / "learning-per-minute.png"),
            plot_training_loss(board, out / "training-curves.png"),
            plot_returns(board, out / "return-curves.png")]
    return [p for p in made if p is not None]

