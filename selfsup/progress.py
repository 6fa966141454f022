"""Progress bars for every long phase (corpus reading, tokenizing, feature extraction, probes, caption decoding,
RL evaluation), one rule for all of them:

    for batch in progress(batches, total=n, desc="features"):        # a bar when the work is long and shown

A bar shows when the work is at least ``min_total`` units and stderr is a terminal, or when ``SELFSUP_PROGRESS`` is
``1`` (set it yourself to get progress lines in a log file: they redraw every 30 seconds, so logs stay short) or
``terminal`` (set by the leaderboard for the jobs it runs when its own stderr is a terminal: their stderr is a pipe
it copies there). ``SELFSUP_PROGRESS=0`` silences them all. On a terminal a bar redraws at most once a second.
"""
from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm

ENV = "SELFSUP_PROGRESS"


def _tty() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def on_terminal() -> bool:
    """Whether this process's stderr ends on a terminal (itself, or through the leaderboard's pipe)."""
    return os.environ.get(ENV, "") == "terminal" or _tty()


def shown() -> bool:
    """Whether progress bars are shown in this process (see the module docstring)."""
    said = os.environ.get(ENV, "")
    if said in ("0", "1", "terminal"):
        return said != "0"
    return _tty()


def progress(iterable=None, *, total: int | None = None, desc: str = "", min_total: int = 0, enabled: bool = True,
             **kw) -> tqdm:
    """tqdm over ``iterable`` (or a manual bar of ``total``); off when fewer than ``min_total`` units, when the
    caller says (``enabled=False``), or when bars are not shown here."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    long_enough = total is None or total >= min_total
    interval = 1.0 if on_terminal() else 30.0
    kw.setdefault("mininterval", interval)
    return tqdm(iterable, total=total, desc=desc, disable=not (enabled and long_enough and shown()), **kw)
