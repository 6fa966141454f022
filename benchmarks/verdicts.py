"""The quick verdicts against the multi-seed evidence: for each column that names its evidence, the order of
the representations here beside the order RESULTS.md measured, read from that section's table when rendering
(so neither side is ever prose typed earlier), and whether they agree."""
from __future__ import annotations

import re
from pathlib import Path

from .board import Board
from .matrix import RANDOM, Evaluation

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"
NUMBER = re.compile(r"-?\d[\d,]*\.?\d*(?:e-?\d+)?")


def section_rows(results_md: Path, key: str) -> list[dict[str, str]] | None:
    """The rows of every pipe table in a RESULTS.md section, as {header: cell}; None without the section.
    Headers lose a trailing parenthesis or statistic name ("mae-frozen (mean ± 95% CI, n)" -> "mae-frozen")."""
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
        if header is None:
            header = [re.split(r" \(| IQM", c)[0] for c in cells]
        else:
            rows.append(dict(zip(header, cells)))
    return rows


def _first_number(text: str) -> float | None:
    m = NUMBER.search(text.replace("**", ""))
    return float(m.group().replace(",", "")) if m else None


def _order(points: dict[str, float], higher_is_better: bool) -> list[str]:
    return sorted(points, key=lambda k: points[k], reverse=higher_is_better)


def verdict(board: Board, ev: Evaluation, results_md: Path = RESULTS_MD) -> str | None:
    """One Markdown line, or None when the column names no evidence."""
    evidence = ev.evidence
    if evidence is None:
        return None
    suite = board.plan.suite
    here = {name: board.cells[(name, ev.name)] for name in evidence.arms
            if (name, ev.name) in board.cells and board.cells[(name, ev.name)].values}
    line = f"- **{ev.title}**: "
    if here:
        budgets = {str(c.rep.pretrain[ev.domain].budget) for c in here.values()
                   if ev.domain in c.rep.pretrain and c.rep.pretrain[ev.domain].budget not in (None, RANDOM)}
        n = {len(c.values) for c in here.values()}
        line += "here " + " · ".join(f"{c.rep.title} {c.stat[0]:.{ev.digits}f}" for c in here.values()) + \
            f" ({', '.join(sorted(budgets)) or 'no pretraining'}, n={'/'.join(map(str, sorted(n)))})"
    else:
        line += "here no complete runs yet"
    rows = section_rows(results_md, evidence.section)
    where = f"RESULTS.md `{evidence.section}`"
    if rows is None:
        return line + f"; evidence: {where} not found"
    row = next((r for r in rows if r.get("dataset") == evidence.dataset and r.get("metric") == evidence.metric
                and (not evidence.split or r.get("split") == evidence.split)), None)
    if row is None:
        return line + f"; evidence: no {evidence.dataset}/{evidence.metric} row in {where}"
    theirs = {}
    for name, arm in evidence.arms.items():      # the arm's column, or one named after the representation
        column = arm if arm in row else name if name in row else None
        if column is not None:
            theirs[name] = row[column]
    line += f"; evidence at {evidence.budget} ({where}): " + " · ".join(
        f"{suite.rep(name).title} {text}" for name, text in theirs.items())
    if evidence.note:
        line += f" ({evidence.note})"
    common = [k for k in here if k in theirs and _first_number(theirs[k]) is not None]
    if len(common) < 2:
        return line
    ours = _order({k: here[k].stat[0] for k in common}, ev.higher_is_better)
    known = _order({k: _first_number(theirs[k]) for k in common}, ev.higher_is_better)
    agree = "**agrees**" if ours == known else f"**disagrees** at this budget (the evidence is at {evidence.budget})"
    return line + f" → {agree}"


def verdicts(board: Board, results_md: Path = RESULTS_MD) -> list[str]:
    return [v for ev in board.plan.suite.evaluations if (v := verdict(board, ev, results_md))]
