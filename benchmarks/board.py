"""A plan's runs read into cells: each (representation, evaluation)'s values over seeds with its interval,
the runs that are not complete (and why), the best per column where its interval clears the next, and the
cells a representation does not define (its complete runs do not report the metric: "–")."""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from selfsup.metrics import read_metrics
from selfsup.results import ResultsFileError, read_results
from selfsup.stats import interval_estimate, iqm

from .matrix import RANDOM, Evaluation, Metric, Representation
from .plan import Plan
from .runner import fill_steps, job_state

# two-sided 95% Student-t quantiles by degrees of freedom (n - 1); beyond 30 the normal 1.96
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       15: 2.131, 20: 2.086, 30: 2.042}



def ci95(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval over seeds (0 for one seed)."""
    mean = statistics.mean(values)
    if len(values) < 2:
        return mean, 0.0
    df = len(values) - 1
    t = T95.get(df) or next((T95[k] for k in sorted(T95) if k >= df), 1.96)
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


def summarize(values: list[float], aggregate: str) -> tuple[float, float | None, float | None]:
    """(point, low, high): the mean with its t interval, or the IQM with its stratified-bootstrap interval;
    no interval for one run."""
    if aggregate == "iqm":
        if len(values) < 2:
            return float(iqm(np.array(values))), None, None
        return interval_estimate(values)
    mean, half = ci95(values)
    return (mean, mean - half, mean + half) if len(values) > 1 else (mean, None, None)




def read_metric(run_dir: Path, metric: Metric, absent_ok: bool = False) -> tuple[float | None, list, str]:
    """The metric's value in a run folder (the latest evaluated step), its trajectory over evaluated steps
    as (step, train_seconds or None, value), and a problem to report ("" if none; with ``absent_ok``, also when
    the results hold no such metric: the value is then None)."""
    if metric.log:
        f = run_dir / "metrics.jsonl"
        rows = read_metrics(f)          # a torn line is skipped with a warning; the rows before it still count
        values = [r[metric.metric] for r in rows[1:] or rows if isinstance(r.get(metric.metric), (int, float))]
        if not values:
            return None, [], f"{f} has no '{metric.metric}'"
        return statistics.mean(values), [], ""
    try:
        results = read_results(run_dir / "results.json")
    except ResultsFileError as e:
        return None, [], str(e)
    found = [r for r in results if r.metric == metric.metric and (not metric.dataset or r.dataset == metric.dataset)
             and (not metric.split or r.split == metric.split)]
    if not found:
        return None, [], "" if absent_ok else \
            f"{run_dir / 'results.json'} has no {metric.dataset}/{metric.split}/{metric.metric}"
    datasets = sorted({r.dataset for r in found})
    found = [r for r in found if r.dataset == datasets[0]]
    curve = sorted({(r.step or 0): (r.step or 0, getattr(r, "train_seconds", None), r.value) for r in found}.values())
    problem = f"{run_dir.name}: {metric.metric} matches {', '.join(datasets)}; shown: {datasets[0]}" \
        if len(datasets) > 1 else ""
    return curve[-1][2], curve, problem


@dataclass
class Cell:
    rep: Representation
    ev: Evaluation
    jobs: list[str]                                     # one per seed
    values: list[float] = field(default_factory=list)  # complete runs, in seed order
    curves: list[list] = field(default_factory=list)   # per complete run: (step, train_seconds, value)
    missing: dict[str, str] = field(default_factory=dict)   # job -> state (failed, interrupted, not run, ...)
    stat: tuple = ()                                    # (point, low, high) once values exist
    best: bool = False
    undefined: bool = False                             # complete, and not reported by this representation ("–")


@dataclass
class Board:
    plan: Plan
    cells: dict[tuple[str, str], Cell]
    states: dict[str, str]                      # job -> state, from disk and the journal
    reasons: dict[str, str]                     # job -> why it is not complete
    problems: list[str]                         # corrupt files, ambiguous metrics
    hardware: set[str] = field(default_factory=set)
    code: set[str] = field(default_factory=set)

    def command(self, job_id: str) -> str:
        return "selfsup " + " ".join(fill_steps(self.plan.jobs[job_id].argv, self.plan.out, missing_ok=True))



def _states(plan: Plan) -> tuple[dict[str, str], dict[str, str]]:
    try:
        journal = json.loads((plan.out / "jobs.json").read_text())
    except (OSError, ValueError):
        journal = {}
    states, reasons = {}, {}
    for job_id, job in plan.jobs.items():       # plan order: dependencies first
        state = job_state(job, plan.out)
        record = journal.get(job_id, {})
        if state != "complete":
            blocked = [d for d in job.deps if states[d] in ("failed", "interrupted", "skipped", "running")]
            if record.get("state") in ("failed", "interrupted", "skipped") and state in ("new", "failed",
                                                                                        "interrupted", "running"):
                state, reasons[job_id] = record["state"], record.get("error", "")
            elif blocked:
                state, reasons[job_id] = "skipped", "needs " + ", ".join(f"{d} ({states[d]})" for d in blocked)
            else:
                state = {"new": "not run"}.get(state, state)
        states[job_id] = state
    return states, reasons


def pretraining_seconds(run_dir: Path, step: int | None = None) -> float | None:
    """Training seconds of a run at a checkpoint's step (default: its latest Result), None when not recorded."""
    if step is not None:
        try:
            return json.loads((run_dir / "checkpoints" / f"step_{step:08d}" / "meta.json").read_text())["train_seconds"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
    try:
        latest = max(read_results(run_dir / "results.json"), key=lambda r: r.step or 0)
    except (ResultsFileError, ValueError):
        return None
    return getattr(latest, "train_seconds", None)


def _along_curves(board: Board, cell: Cell) -> list[list]:
    """Per seed with every point complete: (pretraining step, its training seconds, value) at each intermediate
    checkpoint and at the end."""
    plan, ev, rep = board.plan, cell.ev, cell.rep
    points = plan.along.get((rep.name, ev.name))
    if not points:
        return []
    pre = plan.pretrainings[(rep.name, ev.domain)]
    final = rep.pretrain[ev.domain].budget.steps
    curves = []
    for seed, job_id in enumerate(cell.jobs):
        jobs = [(step, jobs[seed]) for step, jobs in points.items()] + [(final, job_id)]
        if any(board.states.get(j) != "complete" for _, j in jobs):
            continue
        run = plan.dir(pre[min(seed, len(pre) - 1)])
        curve = [(step, pretraining_seconds(run, step if step != final else None),
                  read_metric(plan.dir(j), ev.metric)[0]) for step, j in jobs]
        if all(v is not None for *_, v in curve):
            curves.append(curve)
    return curves


def collect(plan: Plan) -> Board:
    states, reasons = _states(plan)
    board = Board(plan, {}, states, reasons, [])
    for (rep_name, ev_name), jobs in plan.cells.items():
        rep, ev = plan.suite.rep(rep_name), next(e for e in plan.suite.evaluations if e.name == ev_name)
        if ev.trained_only and rep.pretrain and all(t.budget == RANDOM for t in rep.pretrain.values()):
            continue
        cell = board.cells[(rep_name, ev_name)] = Cell(rep, ev, jobs)
        metric, undefined = rep.metrics.get(ev.name, ev.metric), 0
        for job_id in jobs:
            if states[job_id] != "complete":
                cell.missing[job_id] = states[job_id]
                continue
            value, curve, problem = read_metric(plan.dir(job_id), metric, absent_ok=ev.where_defined)
            if problem:
                board.problems.append(problem)
            if value is None and not problem:
                undefined += 1
                continue
            if value is None or not math.isfinite(value):
                cell.missing[job_id] = "no value"
                continue
            cell.values.append(value)
            cell.curves.append(curve)
        cell.undefined = undefined > 0 and not cell.values and not cell.missing
        if undefined and cell.values:
            board.problems.append(f"{rep_name}: {metric.metric} is reported by some of {', '.join(jobs)} only")
        if cell.values:
            cell.stat = summarize(cell.values, ev.aggregate)
            cell.curves = _along_curves(board, cell) or cell.curves
    for job_id, state in states.items():
        if state == "complete" and plan.jobs[job_id].kind in ("train", "eval"):
            try:
                for r in read_results(plan.dir(job_id) / "results.json"):
                    board.hardware.add(r.hardware)
                    board.code.add(r.code_version)
            except ResultsFileError:
                pass
    _mark_best(board)
    return board


def _mark_best(board: Board) -> None:
    """Bold only where the best cell's interval lies wholly beyond the next one's."""
    for ev in board.plan.suite.evaluations:
        cells = sorted((c for c in board.cells.values() if c.ev is ev and c.stat),
                       key=lambda c: c.stat[0], reverse=ev.higher_is_better)
        if len(cells) < 2 or cells[0].stat[1] is None or cells[1].stat[1] is None:
            continue
        first, second = cells[0].stat, cells[1].stat
        cells[0].best = first[1] > second[2] if ev.higher_is_better else first[2] < second[1]
