"""The leaderboard as one self-contained HTML page: sortable tables (inline script, nothing fetched), each
headline cell's commands as a tooltip and a link to the command list, folded full tables, inline PNGs.

`leaderboard.html?sort=K&desc=1` opens sorted by column K (0-based), best first with desc=1, so a headless
browser can check the sorting without clicking.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from .board import Board
from .markdown import LEGEND, label
from .tables import Grid, footnotes, full_tables, headline, not_complete
from .verdicts import RESULTS_MD, verdicts

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em auto;max-width:1500px;color:#222;
     padding:0 1em;line-height:1.4}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}
td,th{border:1px solid #d0d0d0;padding:3px 8px;text-align:right;white-space:nowrap}
td:first-child,th:first-child,td.text,th.text{text-align:left}
td.text{white-space:normal;min-width:12em;max-width:18em}
th{background:#f3f3f3;cursor:pointer;user-select:none;position:relative;padding-right:1.4em;white-space:normal;
   vertical-align:bottom;max-width:11em}
.scroll{overflow-x:auto;max-width:100%}
th::after{content:"⇅";position:absolute;right:.35em;color:#aaa;font-size:11px}
th[aria-sort=ascending]::after{content:"▲";color:#333}th[aria-sort=descending]::after{content:"▼";color:#333}
td.best{font-weight:700;background:#e6f2e6}td.missing{color:#a33;font-style:italic}td.na{color:#bbb}
td a{color:inherit;text-decoration:none}td a:hover{text-decoration:underline}
.legend{color:#555;font-size:13px;max-width:1100px}
code{background:#f5f5f5;padding:0 3px;font-size:12px}
ol.commands li{font-size:12px;margin:.2em 0}ol.commands li:target{background:#fff6cc}
details{margin:.4em 0}summary{cursor:pointer;font-weight:600}
figure{margin:0}.figures{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
img{max-width:100%;border:1px solid #eee}
"""

SCRIPT = """
function sortTable(table, col, desc) {
  const body = table.tBodies[0], rows = Array.from(body.rows);
  const key = r => { const c = r.cells[col]; const v = c && c.dataset.sort;
                     return v === undefined || v === "" ? null : parseFloat(v); };
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    if (x === null && y === null) return a.cells[col].textContent.localeCompare(b.cells[col].textContent);
    if (x === null) return 1;
    if (y === null) return -1;
    return desc ? y - x : x - y;
  });
  rows.forEach(r => body.appendChild(r));
  Array.from(table.tHead.rows[0].cells).forEach((th, i) =>
    th.setAttribute("aria-sort", i === col ? (desc ? "descending" : "ascending") : "none"));
  table.dataset.sortedBy = col;
}
document.querySelectorAll("table.sortable").forEach(table => {
  Array.from(table.tHead.rows[0].cells).forEach((th, i) => th.addEventListener("click", () => {
    const now = th.getAttribute("aria-sort");
    const desc = now === "descending" ? false : now === "ascending" ? true : th.dataset.descFirst === "1";
    sortTable(table, i, desc);
  }));
});
const q = new URLSearchParams(location.search);
if (q.has("sort")) {
  const t = document.querySelector("table.sortable");
  if (t) sortTable(t, parseInt(q.get("sort"), 10), q.get("desc") === "1");
}
"""


def inline(text: str) -> str:
    """The Markdown the leaderboard writes in prose (**bold**, `code`) as HTML."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def grid_html(grid: Grid, board: Board | None = None, higher: list[bool] | None = None) -> str:
    """A sortable table; with ``board``, cells link to their command and show it (and what it needs) as a tip."""
    heads = []
    for i, h in enumerate(grid.header):
        desc = "1" if higher is None or i >= len(higher) or higher[i] else "0"
        tip = f' title="{html.escape(grid.tips[i])}"' if i < len(grid.tips) and grid.tips[i] else ""
        cls = ' class="text"' if i == 1 and board is not None else ""
        heads.append(f'<th data-desc-first="{desc}"{tip}{cls}>{html.escape(h)}</th>')
    rows = []
    for row in grid.rows:
        cells = []
        for j, e in enumerate(row):
            classes = ["best"] if e.best else []
            if e.sort is None and j > 0:
                classes.append("na" if e.text in ("·", "–") else "text" if j == 1 else "missing")
            attrs = f' data-sort="{e.sort!r}"' if e.sort is not None else ""
            attrs += f' class="{" ".join(classes)}"' if classes else ""
            text = html.escape(e.text)
            if board is not None and e.note:
                tip = "\n".join(board.command(j) for j in board.plan.closure(e.note))
                attrs += f' title="{html.escape(tip)}"'
                text = f'<a href="#{label(e.note)}">{text}</a>'
            cells.append(f"<td{attrs}>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class=scroll><table class="sortable"><thead><tr>{"".join(heads)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _link(job_id: str) -> str:
    return f'<a href="#{label(job_id)}">{html.escape(job_id)}</a>'


def _png(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def page_html(board: Board, images: list[Path] = (), results_md: Path = RESULTS_MD) -> str:
    suite = board.plan.suite
    grid = headline(board)
    evs = [e for e in suite.evaluations if any(c.ev is e for c in board.cells.values())]
    higher = [False, False] + [e.higher_is_better for e in evs] + [False]
    parts = [f"<h1>Leaderboard: suite <code>{html.escape(suite.name)}</code></h1>"]
    if suite.description:
        parts.append(f"<p>{html.escape(suite.description)}</p>")
    parts += [grid_html(grid, board, higher), f'<p class="legend">{inline(LEGEND)}</p>']
    found = verdicts(board, results_md)
    if found:
        parts.append("<h2>Quick verdicts against the multi-seed evidence</h2><ul>" +
                     "".join(f"<li>{inline(v.removeprefix('- '))}</li>" for v in found) + "</ul>")
    missing = not_complete(board)
    if missing:
        parts.append("<h2>Not complete</h2><ul>" + "".join(f"<li>{inline(m)}</li>" for m in missing) + "</ul>")
    if board.problems:
        parts.append("<h2>Problems reading results</h2><ul>" +
                     "".join(f"<li>{inline(p)}</li>" for p in board.problems) + "</ul>")
    if board.hardware or board.code:
        parts.append(f"<p class=legend>Measured on {html.escape(', '.join(sorted(board.hardware)))}; runs made by "
                     f"code {html.escape(', '.join(sorted(board.code)))}.</p>")
    parts.append("<h2>Figures</h2><div class=figures>" + "".join(_png(p) for p in images) + "</div>" if images else "")
    parts.append("<h2>Every metric</h2>" + "".join(
        f"<details><summary>{html.escape(g.title)}</summary>{grid_html(g)}</details>" for g in full_tables(board)))
    parts.append("<h2>Commands</h2><ol class=commands>" + "".join(
        f'<li id="{label(j.id)}"><code>{html.escape(board.command(j.id))}</code>'
        + (f" (needs {', '.join(map(_link, j.deps))})" if j.deps else "") + "</li>"
        for j in footnotes(board, grid)) + "</ol>")
    return ("<!doctype html><html lang=en><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>selfsup leaderboard: {html.escape(suite.name)}</title><style>{STYLE}</style>"
            f"<body>{''.join(parts)}<script>{SCRIPT}</script></body></html>")
