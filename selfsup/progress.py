"""Progress bars for every long phase (corpus reading, tokenizing, feature extraction, probes, caption decoding,
RL evaluation), one rule for all of them:

    for batch in progress(batches, total=n, desc="features"):        # a bar when the work is long and shown

A bar shows when the work is at least ``min_total`` units and stderr is a terminal, or when ``SELFSUP_PROGRESS=1``
(the leaderboard sets it for the jobs it runs when its own stderr is a terminal, since their stderr is a pipe;
set it yourself to get progress lines in a log file). ``SELFSUP_PROGRESS=0`` silences them all. On a terminal the
bar redraws at most once a second; elsewhere every 30 seconds, so logs stay short.
"""
from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm

ENV = "SELFSUP_PROGRESS"


def shown() -> bool:
    """Whether progress bars are shown in this process (see the module docstring)."""
    said = os.environ.get(ENV, "")
    if said in ("0", "1"):
        return said == "1"
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress(iterable=None, *, total: int | None = None, desc: str = "", min_total: int = 0, enabled: bool = True,
             **kw) -> tqdm:
    """tqdm over ``iterable`` (or a manual bar of ``total``); off when fewer than ``min_total`` units, when the
    caller says (``enabled=False``), or when bars are not shown here."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    long_enough = total is None or total >= min_total
    interval = 1.0 if getattr(sys.stderr, "isatty", lambda: False)() else 30.0
    kw.setdefault("mininterval", interval)
    return tqdm(iterable, total=total, desc=desc, disable=not (enabled and long_enough and shown()), **kw)
