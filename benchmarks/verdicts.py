"""The quick verdicts against the multi-seed evidence: for each column that names its evidence, the numbers here
beside the numbers RESULTS.md measured, read from that section's table when rendering (so neither side is ever
prose typed earlier), and whether they agree: pair by pair, where the evidence's spreads (± std or CI) separate
two representations, this table must order them alike; where this table's own intervals overlap (or one run
each ties), they are level here.

A suite's tables go to RESULTS.md under `section_key(suite)` (`leaderboard run/render --write`); the quick
suite's pointers name those keys through the same function, so writer and reader cannot drift apart."""
from __future__ import annotations

import re
from pathlib import Path

from .board import Board
from .matrix import RANDOM, Evaluation, Train

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"
NUMBER = re.compile(r"-?\d[\d,]*\.?\d*(?:e-?\d+)?")
FOOTNOTE = re.compile(r"\[\^[^\]]*\]")


def section_key(suite: str) -> str:
    """The RESULTS.md section a leaderboard suite's tables are written to (and its evidence is read from)."""
    return f"leaderboard-{suite}"


def _header(cell: str) -> str:
    """A headline column's title without its direction arrow and aggregate: "kNN ↑ (IQM)" -> "kNN"."""
    return re.sub(r" [↑↓]( \(IQM\))?$", "", cell.strip())


def section_rows(results_md: Path, key: str) -> list[dict[str, str]] | None:
    """The rows of every pipe table in a RESULTS.md section, as {header: cell}; None without the section.
    Headers lose a trailing parenthesis or statistic name ("mae-frozen (mean ± 95% CI, n)" -> "mae-frozen"),
    and a headline's its arrow ("kNN: shape ↑ (IQM)" -> "kNN: shape")."""
    try:
        text = results_md.read_text()
    except OSError:
        return None
    begin, end = f"<!-- {key} -->", f"<!-- /{key} -->"
    if begin not in text or end not in text:
        return None
    rows, header = [], None
    for line in text[text.index(begin):text.index(end)].splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|---"):
            continue
        if header is None:      # a headline's titles whole; other tables' arms without their statistic's name
            header = [_header(c) for c in cells] if cells[0] == "representation" else \
                [re.split(r" \(| IQM", c)[0] for c in cells]
        else:
            rows.append(dict(zip(header, cells)))
    return rows


def _estimate(text: str) -> tuple[float, float] | None:
    """A table cell's number and its spread (0 without one): "0.5087 ± 0.0234" -> (0.5087, 0.0234), an interval
    "0.61 [0.50, 0.70]" -> (0.61, 0.10) (half its width); footnote marks and bold ignored."""
    text = FOOTNOTE.sub("", text).replace("**", "")
    numbers = [float(x.replace(",", "")) for x in NUMBER.findall(text)]
    if not numbers:
        return None
    if "±" in text and len(numbers) > 1:
        return numbers[0], numbers[1]
    if re.match(r"\s*\S+\s*\[", text) and len(numbers) > 2:
        return numbers[0], (numbers[2] - numbers[1]) / 2
    return numbers[0], 0.0


def _sign(a: tuple[float, float], b: tuple[float, float]) -> int:
    """+1 / -1 when a is above / below b by more than their spreads together, 0 when they overlap."""
    gap = a[0] - b[0]
    return 0 if abs(gap) <= a[1] + b[1] else (1 if gap > 0 else -1)


def agreement(ours: dict[str, tuple[float, float]], theirs: dict[str, tuple[float, float]],
              title=str) -> str:
    """Pair by pair: where the evidence separates two representations, does this table order them alike?"""
    names = [k for k in ours if k in theirs]
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    separated = [(a, b) for a, b in pairs if _sign(theirs[a], theirs[b])]
    if not separated:
        return "the evidence finds no clear difference"
    wrong = [(a, b) for a, b in separated if _sign(ours[a], ours[b]) == -_sign(theirs[a], theirs[b])]
    level = [(a, b) for a, b in separated if _sign(ours[a], ours[b]) == 0]
    if wrong:
        return "**disagrees** (" + ", ".join(f"{title(a)} vs {title(b)}" for a, b in wrong) + ") at this budget"
    if level:
        return "level here (" + ", ".join(f"{title(a)} vs {title(b)}" for a, b in level) + \
            "), where the evidence separates them"
    return "**agrees**"


def _budgets_here(cell) -> list[str]:
    """The budgets behind a cell: its pretraining's, and its downstream run's."""
    ev, rep = cell.ev, cell.rep
    parts = []
    if ev.domain in rep.pretrain and rep.pretrain[ev.domain].budget not in (None, RANDOM):
        parts.append(f"pretraining {rep.pretrain[ev.domain].budget}")
    if isinstance(ev.run, Train) and ev.run.budget is not None:
        parts.append(f"{ev.run.task} {ev.run.budget}")
    return parts


def verdict(board: Board, ev: Evaluation, results_md: Path = RESULTS_MD) -> str | None:
    """One Markdown line, or None when the column names no evidence."""
    evidence = ev.evidence
    if evidence is None:
        return None
    suite = board.plan.suite
    names = evidence.arms or [r.name for r in suite.representations]
    here = {name: board.cells[(name, ev.name)] for name in names
            if (name, ev.name) in board.cells and board.cells[(name, ev.name)].values}
    line = f"- **{ev.title}**: "
    if here:
        n = {len(c.values) for c in here.values()}
        budgets = list(dict.fromkeys(b for c in here.values() for b in _budgets_here(c)))
        runs = "n=" + "/".join(map(str, sorted(n)))
        line += "here " + " · ".join(f"{c.rep.title} {c.stat[0]:.{ev.digits}f}" for c in here.values()) + \
            f" ({'; '.join(budgets + [runs])})"
    else:
        line += "here no complete runs yet"
    rows = section_rows(results_md, evidence.section)
    where = f"RESULTS.md `{evidence.section}`"
    if rows is None:
        return line + f"; evidence: {where} not found"
    theirs = _evidence_cells(rows, ev, suite)
    if theirs is None:
        return line + (f"; evidence: no {evidence.dataset}/{evidence.metric} row in {where}" if evidence.dataset
                       else f"; evidence: no column '{ev.title}' in {where}")
    line += f"; evidence at {evidence.budget} ({where}): " + " · ".join(
        f"{suite.rep(name).title} {FOOTNOTE.sub('', text).replace('**', '').strip()}" for name, text in theirs.items())
    if evidence.note:
        line += f" ({evidence.note})"
    shown = 0.5 * 10 ** -ev.digits       # a difference the table does not show is no difference
    ours = {k: (c.stat[0], max(shown, 0.0 if c.stat[1] is None else (c.stat[2] - c.stat[1]) / 2))
            for k, c in here.items()}
    known = {k: e for k, text in theirs.items() if (e := _estimate(text)) is not None}
    if len([k for k in ours if k in known]) < 2:
        return line
    return line + " → " + agreement(ours, known, lambda k: suite.rep(k).title)


def _evidence_cells(rows: list[dict[str, str]], ev: Evaluation, suite) -> dict[str, str] | None:
    """Representation name -> the evidence's cell text: from the headline (a row per representation, found by
    title; the column with this column's title) or from a dataset/metric row (a column per arm)."""
    evidence = ev.evidence
    if not evidence.dataset:
        found = {r["representation"]: r[ev.title] for r in rows if ev.title in r and "representation" in r}
        if not found:
            return None
        names = evidence.arms or {r.name: r.title for r in suite.representations}
        return {name: found[title] for name, title in names.items() if title in found and _estimate(found[title])}
    row = next((r for r in rows if r.get("dataset") == evidence.dataset and r.get("metric") == evidence.metric
                and (not evidence.split or r.get("split") == evidence.split)), None)
    if row is None:
        return None
    theirs = {}
    for name, arm in evidence.arms.items():      # the arm's column, or one named after the representation
        column = arm if arm in row else name if name in row else None
        if column is not None:
            theirs[name] = row[column]
    return theirs


def verdicts(board: Board, results_md: Path = RESULTS_MD) -> list[str]:
    return [v for ev in board.plan.suite.evaluations if (v := verdict(board, ev, results_md))]
