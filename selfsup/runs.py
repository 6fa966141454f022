"""Whether a run directory is finished, resumable or new: the one helper every caller asks.

The trainer records its state in ``run_dir/status.json`` (new | running | interrupted | failed | complete).
Runs made before that file existed are judged by what they left: Result records mean complete, a
checkpoint means interrupted (resumable), anything else new.
"""
from __future__ import annotations

import json
from pathlib import Path

from .results import run_complete

STATES = ("new", "running", "interrupted", "failed", "complete")


def run_state(run_dir: str | Path) -> str:
    run_dir = Path(run_dir)
    try:
        state = json.loads((run_dir / "status.json").read_text()).get("state")
        if state in STATES:
            return state
    except (OSError, ValueError, AttributeError):
        pass
    if run_complete(run_dir):
        return "complete"
    checkpoints = run_dir / "checkpoints"
    if checkpoints.is_dir() and any(p.name.startswith("step_") for p in checkpoints.iterdir()):
        return "interrupted"
    return "new"
