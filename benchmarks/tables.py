"""The leaderboard's tables as data (`Grid` of `Entry`), drawn by `benchmarks.markdown` and `benchmarks.page`:
the headline (a row per representation, a column per use, the mean rank), every metric per run group, and
what is not complete."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from selfsup.results import ResultsFileError, read_results

from .board import Board, Cell, ci95
from .matrix import Representation
from .plan import Job
from .ranks import mean_ranks


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


def _seed_free(values: list[float]) -> str:
    """'(same at all n seeds)' where several runs gave one number (nothing in it varies with the seed, e.g. raw
    pixels): said instead of a zero-width interval. '' otherwise."""
    return f"(same at all {len(values)} seeds)" if len(values) > 1 and len(set(values)) == 1 else ""


def cell_text(cell: Cell, planned: int) -> str:
    point, lo, hi = cell.stat
    d = cell.ev.digits
    n = len(cell.values)
    same = _seed_free(cell.values)
    if lo is None:
        text = f"{_number(point, d)} (n=1)"
    elif same:
        text = f"{_number(point, d)} {same}"
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
            elif cell.undefined:
                row.append(Entry("–", note=cell.jobs[0]))
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
                if not v:
                    row.append(Entry("–"))
                elif len(v) == 1:
                    row.append(Entry(f"{mean:.4f} (n=1)", mean))
                else:
                    same = _seed_free(v)
                    row.append(Entry(f"{mean:.4f} {same}" if same else f"{mean:.4f} ± {half:.4f} ({len(v)})", mean))
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
    return [board.plan.jobs[j] for j in board.plan.jobs if any(j in board.plan.closure(w) for w in wanted)]
