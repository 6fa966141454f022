"""The leaderboard as Markdown: headline table with a footnote per cell naming the command that made it,
the verdicts against the evidence, what is not complete, and every metric in folded tables."""
from __future__ import annotations

from .board import Board
from .tables import Grid, footnotes, full_tables, headline, not_complete
from .verdicts import RESULTS_MD, verdicts

LEGEND = ("Each cell: mean ± 95% CI (Student t) over seeds, or IQM [95% stratified-bootstrap CI] where the column "
          "says IQM; n=1: a single run, no interval; same at all n seeds: every seed gave this number (a "
          "representation that nothing trains, e.g. raw pixels: the probes draw their examples and heads with one "
          "seed for every row, so that all rows are scored on the same examples; the other rows' intervals are their "
          "pretraining seeds' spread, not the probes'). **Bold**: the best of its column, shown only where its "
          "interval clears the next one's. Mean rank: 1 = best, each column ranking the rows it has, averaged over "
          "the ranked columns, [95% bootstrap CI] resampling every cell's runs. ·: not applicable; –: not defined for"
          " that representation (its runs do not report the metric, e.g. MLM accuracy without an MLM head). Footnotes"
          " give the command behind each cell (seed 0; seed k: `-sk` and `trainer.seed=k`), after the jobs it needs.")


def label(job_id: str) -> str:
    return job_id.replace("/", "-")


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def grid_md(grid: Grid, notes: bool = True) -> list[str]:
    def cell(e):
        text = f"**{_escape(e.text)}**" if e.best else _escape(e.text)
        return text + (f" [^{label(e.note)}]" if notes and e.note else "")
    return ["| " + " | ".join(_escape(h) for h in grid.header) + " |", "|---" * len(grid.header) + "|"] + \
        ["| " + " | ".join(cell(e) for e in row) + " |" for row in grid.rows]


def footnote_md(board: Board, grid: Grid) -> list[str]:
    lines = []
    for job in footnotes(board, grid):
        needs = f" (needs {', '.join(f'`{d}`' for d in job.deps)})" if job.deps else ""
        lines.append(f"[^{label(job.id)}]: `{board.command(job.id)}`{needs}")
    return lines


def summary_md(board: Board, results_md=RESULTS_MD) -> str:
    """The headline: what the README and RESULTS.md show."""
    grid = headline(board)
    suite = board.plan.suite
    counts = {len(ids) for ids in board.plan.cells.values()} or {0}
    seeds = f"{'up to ' if len(counts) > 1 else ''}{max(counts)} seed{'s' if max(counts) != 1 else ''} per cell"
    lines = [f"**Representations × uses, suite `{suite.name}`**" + (f": {suite.description}" if suite.description
                                                                      else "") + f"; {seeds}.", ""]
    lines += grid_md(grid) + ["", LEGEND, ""]
    found = verdicts(board, results_md)
    if found:
        lines += ["Quick verdicts against the multi-seed evidence:", ""] + found + [""]
    missing = not_complete(board)
    if missing:
        lines += ["Not complete (never silently missing):", ""] + [f"- {m}" for m in missing] + [""]
    if board.problems:
        lines += ["Problems reading results:", ""] + [f"- {p}" for p in board.problems] + [""]
    if board.hardware or board.code:
        lines += [f"Measured on {', '.join(sorted(board.hardware))}; runs made by code "
                  f"{', '.join(sorted(board.code))}.", ""]
    return "\n".join(lines + footnote_md(board, grid)) + "\n"


def readme_md(board: Board, provenance: str) -> str:
    """The README's block: the headline table alone (no footnotes, no budget column) and one line saying where
    it comes from; GitHub-flavoured Markdown."""
    grid = headline(board)
    keep = [i for i, h in enumerate(grid.header) if h != "pretraining"]
    compact = Grid(grid.title, [grid.header[i] for i in keep], [[row[i] for i in keep] for row in grid.rows])
    return "\n".join(grid_md(compact, notes=False)) + "\n\n" + provenance + "\n"


def details_md(board: Board) -> str:
    parts = []
    for grid in full_tables(board):
        parts += [f"<details><summary>{grid.title}</summary>", ""] + grid_md(grid, notes=False) + ["", "</details>",
                                                                                                  ""]
    return "\n".join(parts)


def page_md(board: Board, images: list[str] = (), results_md=RESULTS_MD) -> str:
    text = f"# Leaderboard: suite `{board.plan.suite.name}`\n\n" + summary_md(board, results_md)
    text += "\n## Every metric\n\n" + details_md(board)
    if images:
        text += "\n## Figures\n\n" + "\n".join(f"![{name}]({name})" for name in images) + "\n"
    return text
