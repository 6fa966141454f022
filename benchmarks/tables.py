"""From run folders to tables: each cell's values over seeds with its interval, the best per column where its
interval clears the next, the mean rank with a bootstrap interval, and every run that is not complete.

The tables are data (`Grid` of `Entry`); `benchmarks.markdown` and `benchmarks.page` draw them.
"""
from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from selfsup.results import ResultsFileError, read_results
from selfsup.stats import interval_estimate, iqm

from .matrix import RANDOM, Evaluation, Metric, Representation
from .plan import Job, Plan
from .runner import calibrated_steps, job_state

# two-sided 95% Student-t quantiles by degrees of freedom (n - 1); beyond 30 the normal 1.96
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       15: 2.131, 20: 2.086, 30: 2.042}
RANK_RESAMPLES = 2000


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


# ---------------------------------------------------------------------------------------------- reading runs


def read_metric(run_dir: Path, metric: Metric) -> tuple[float | None, list, str]:
    """The metric's value in a run folder (the latest evaluated step), its trajectory over evaluated steps
    as (step, train_seconds or None, value), and a problem to report ("" if none)."""
    if metric.log:
        f = run_dir / "metrics.jsonl"
        rows = []
        for line in (f.read_text().splitlines() if f.is_file() else []):
            try:
                rows.append(json.loads(line))
            except ValueError:          # a torn last line: the rows before it still count
                continue
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
        return None, [], f"{run_dir / 'results.json'} has no {metric.dataset}/{metric.split}/{metric.metric}"
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
        job = self.plan.jobs[job_id]
        argv = list(job.argv)
        for i, a in enumerate(argv):
            if "{steps:" in a:
                key = a.split("{steps:")[1].rstrip("}")
                try:
                    argv[i] = a.replace(f"{{steps:{key}}}", str(calibrated_steps(self.plan.out, key)))
                except RuntimeError:
                    pass
        return "selfsup " + " ".join(argv)

    def closure(self, job_id: str) -> list[str]:
        """The job and everything it needs, in launch order."""
        seen: dict[str, None] = {}

        def visit(j):
            for d in self.plan.jobs[j].deps:
                visit(d)
            seen.setdefault(j)
        visit(job_id)
        return list(seen)


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


def collect(plan: Plan) -> Board:
    states, reasons = _states(plan)
    board = Board(plan, {}, states, reasons, [])
    for (rep_name, ev_name), jobs in plan.cells.items():
        rep, ev = plan.suite.rep(rep_name), next(e for e in plan.suite.evaluations if e.name == ev_name)
        if ev.trained_only and rep.pretrain and all(t.budget == RANDOM for t in rep.pretrain.values()):
            continue
        cell = board.cells[(rep_name, ev_name)] = Cell(rep, ev, jobs)
        for job_id in jobs:
            if states[job_id] != "complete":
                cell.missing[job_id] = states[job_id]
                continue
            value, curve, problem = read_metric(plan.dir(job_id), ev.metric)
            if problem:
                board.problems.append(problem)
            if value is None or not math.isfinite(value):
                cell.missing[job_id] = "no value"
                continue
            cell.values.append(value)
            cell.curves.append(curve)
        if cell.values:
            cell.stat = summarize(cell.values, ev.aggregate)
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


# ---------------------------------------------------------------------------------------------- ranks


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


# ---------------------------------------------------------------------------------------------- table model


@dataclass
class Entry:
    text: str                       # as shown
    sort: float | None = None       # the sort key in the HTML table (None: sorts last)
    best: bool = False
    note: str = ""                  # the job whose command reproduces it (a footnote)


@dataclass
class Grid:
    title: str
    header: list[str]
    rows: list[list[Entry]]
    tips: list[str] = field(default_factory=list)      # per header cell: what the column is


def _number(x: float, digits: int) -> str:
    return f"{x:,.{digits}f}"


def cell_text(cell: Cell, planned: int) -> str:
    point, lo, hi = cell.stat
    d = cell.ev.digits
    n = len(cell.values)
    if lo is None:
        text = f"{_number(point, d)} (n=1)"
    elif cell.ev.aggregate == "iqm":
        text = f"{_number(point, d)} [{_number(lo, d)}, {_number(hi, d)}]"
    else:
        text = f"{_number(point, d)} ± {_number((hi - lo) / 2, d)}"
    if cell.missing:
        states = sorted(set(cell.missing.values()))
        text += f" ({n} of {planned}; {', '.join(states)})"
    elif lo is not None and n != planned:
        text += f" (n={n})"
    return text


def pretraining_text(rep: Representation) -> str:
    if rep.spec:
        return f"spec {rep.spec}"
    if not rep.pretrain:
        return "none (trained by the task)"
    budgets = {d: str(t.budget) if t.budget else f"{t.task} --preset {t.preset}" for d, t in rep.pretrain.items()}
    if len(set(budgets.values())) == 1:
        return f"{next(iter(budgets.values()))} ({', '.join(budgets)})"
    return "; ".join(f"{d}: {b}" for d, b in budgets.items())


def headline(board: Board) -> Grid:
    suite = board.plan.suite
    ranks = mean_ranks(board)
    evs = [e for e in suite.evaluations if any(c.ev is e for c in board.cells.values())]
    header = ["representation", "pretraining"] + [
        f"{e.title} {'↑' if e.higher_is_better else '↓'}" + (" (IQM)" if e.aggregate == "iqm" else "") for e in evs
    ] + ["mean rank"]
    tips = ["", "budget per pretraining domain"] + [
        f"{e.metric.dataset or '*'}/{e.metric.split or '*'}/{e.metric.metric} on the {e.domain} pretraining"
        + ("; not ranked" if not e.ranked else "") for e in evs] + ["1 = best; over the ranked columns"]
    rows = []
    for rep in suite.representations:
        if not any(c.rep is rep for c in board.cells.values()):
            continue
        pre = board.plan.pretrainings.get((rep.name, next(iter(rep.pretrain), "")), [""])[0]
        row = [Entry(rep.title, note=""), Entry(pretraining_text(rep), note=pre)]
        for e in evs:
            cell = board.cells.get((rep.name, e.name))
            if cell is None:
                row.append(Entry("·"))
            elif not cell.values:
                row.append(Entry(", ".join(sorted(set(cell.missing.values()))), note=cell.jobs[0]))
            else:
                row.append(Entry(cell_text(cell, len(cell.jobs)), cell.stat[0], cell.best, cell.jobs[0]))
        r = ranks.get(rep.name)
        if r is None:
            row.append(Entry("–"))
        elif r[1] is None:
            row.append(Entry(f"{r[0]:.2f} (n=1, {r[3]} col.)", r[0]))
        else:
            row.append(Entry(f"{r[0]:.2f} [{r[1]:.2f}, {r[2]:.2f}] ({r[3]} col.)", r[0]))
        rows.append(row)
    return Grid(f"suite {suite.name}", header, rows, tips)


def full_tables(board: Board) -> list[Grid]:
    """Every metric of every run, one table per pretraining domain (and task) and per downstream evaluation:
    rows dataset/split/metric, columns representations, mean ± 95% CI (n)."""
    plan, groups = board.plan, {}
    for (rep_name, domain), jobs in plan.pretrainings.items():
        task = plan.suite.rep(rep_name).pretrain[domain].task
        groups.setdefault(f"pretraining: {task} on {domain}", {})[rep_name] = jobs
    for ev in plan.suite.evaluations:
        if ev.run is not None:
            for (rep_name, ev_name), jobs in plan.cells.items():
                if ev_name == ev.name:
                    groups.setdefault(f"{ev.title} ({ev.name})", {})[rep_name] = jobs
    grids = []
    for title, by_rep in groups.items():
        table: dict = defaultdict(lambda: defaultdict(list))
        for rep_name, jobs in by_rep.items():
            for job_id in jobs:
                if board.states.get(job_id) != "complete":
                    continue
                try:
                    results = read_results(plan.dir(job_id) / "results.json")
                except ResultsFileError:
                    continue
                latest = {}
                for r in results:
                    k = (r.dataset, r.split, r.metric)
                    if k not in latest or (r.step or 0) >= (latest[k].step or 0):
                        latest[k] = r
                for k, r in latest.items():
                    table[k][rep_name].append(r.value)
        reps = list(by_rep)
        rows = []
        for k in sorted(table):
            row = [Entry(x) for x in k]
            for rep_name in reps:
                v = table[k].get(rep_name)
                mean, half = ci95(v) if v else (None, None)
                row.append(Entry("–") if not v else Entry(f"{mean:.4f} ± {half:.4f} ({len(v)})" if len(v) > 1
                                                            else f"{mean:.4f} (n=1)", mean))
            rows.append(row)
        if rows:
            grids.append(Grid(title, ["dataset", "split", "metric"] + reps, rows))
    return grids


def not_complete(board: Board) -> list[str]:
    """One line per job that is not complete: what it is, its state, why."""
    return [f"`{job_id}`: {state}" + (f" — {board.reasons[job_id]}" if board.reasons.get(job_id) else "")
            for job_id, state in board.states.items() if state != "complete"]


def footnotes(board: Board, grid: Grid) -> list[Job]:
    """The jobs a table's cells name, with everything they need, in launch order."""
    wanted = {e.note for row in grid.rows for e in row if e.note}
    return [board.plan.jobs[j] for j in board.plan.jobs if any(j in board.closure(w) for w in wanted)]
