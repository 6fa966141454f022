"""Result records: what every evaluation writes and the leaderboard reads.

A task's ``evaluate`` returns ``Score`` objects (what was measured); the harness adds who,
where and how (seed, config hash, code version, hardware, wall time, throughput) to make
``Result`` records, and merges them into ``results.json`` in the run directory atomically.
"""
from __future__ import annotations

import datetime
import functools
import json
import math
import os
import platform
import subprocess
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import torch

from .errors import ResultsFileError
from .io import atomic_write_json


@dataclass
class Score:
    dataset: str
    split: str
    metric: str
    value: float
    extra: dict = field(default_factory=dict)   # e.g. {"n": 500, "tokenizer": "regex"}


@dataclass
class Result:
    task: str
    dataset: str
    split: str
    metric: str
    value: float
    seed: int
    config_hash: str
    code_version: str
    hardware: str
    wall_time_s: float
    throughput: float | None = None   # training samples/s, when the run trained
    step: int | None = None           # training step of the evaluated weights
    train_seconds: float | None = None  # training wall time up to that step (resumes included, evaluation not)
    extra: dict = field(default_factory=dict)

    def key(self) -> tuple:
        return (self.task, self.dataset, self.split, self.metric, self.seed, self.config_hash, self.step)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``$SELFSUP_CODE_VERSION`` where set (a copy of the tree on another machine, whose .git, if any, need not
    match the files), else ``git describe`` of the source tree (with -dirty), else the package version; read once
    per process (the trainer asks at start), so a record names the code that ran, not a later checkout."""
    if os.environ.get("SELFSUP_CODE_VERSION"):
        return os.environ["SELFSUP_CODE_VERSION"]
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=root,
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version
    try:
        return f"selfsup-{version('selfsup')}"
    except PackageNotFoundError:
        return "unknown"


RESULT_FIELDS = {f.name for f in fields(Result)}


def stamp(device: torch.device, python: bool = False) -> str:
    """The line under a measured table: date · hardware · torch · code version (· Python)."""
    line = f"{datetime.date.today()} · {hardware(device)} · torch {torch.__version__} · code {code_version()}"
    return f"{line} · {platform.python_version()}" if python else line


def hardware(device: torch.device, world_size: int = 1) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{device.type}:{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"
    return f"{world_size}x {name}" if world_size > 1 else name


def _record(row, path: Path, i: int) -> Result | None:
    """One row of results.json as a Result, or None (with a warning naming the file and record) when it is not
    one: a missing field, or a value that is not a finite number. Unknown fields (a newer writer's) are ignored."""
    if not isinstance(row, dict):
        problem = f"a {type(row).__name__}, not an object"
    else:
        known = {k: v for k, v in row.items() if k in RESULT_FIELDS}
        missing = [f.name for f in fields(Result) if f.name not in known and f.default is MISSING
                   and f.default_factory is MISSING]
        value = known.get("value")
        if missing:
            problem = f"missing {', '.join(missing)}"
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problem = f"value {value!r} is not a finite number"
        else:
            return Result(**known)
    warnings.warn(f"{path}: skipping record {i} ({problem})", stacklevel=3)
    return None


def _rows(path: Path) -> list:
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ResultsFileError(f"{path} is not a valid results file ({e}); move it aside to start a new one") from None
    if not isinstance(rows, list):
        raise ResultsFileError(f"{path} is not a valid results file (a JSON list of records); "
                               "move it aside to start a new one")
    return rows


def read_results(path: str | Path) -> list[Result]:
    """The valid records of a results.json; a bad record is skipped with a warning, not fatal to the rest."""
    path = Path(path)
    if not path.exists():
        return []
    return [r for i, row in enumerate(_rows(path)) if (r := _record(row, path, i)) is not None]


def write_results(path: str | Path, new: list[Result]) -> None:
    """Merge: a new record replaces an old one with the same task/dataset/split/metric/seed/config/step.
    Rows this reader cannot parse are kept as they are (nothing already saved is dropped)."""
    path = Path(path)
    keep: dict = {}
    for i, row in enumerate(_rows(path) if path.exists() else []):
        r = _record(row, path, i)
        keep[r.key() if r is not None else ("unparsed", i)] = row
    for r in new:
        keep[r.key()] = asdict(r)
    atomic_write_json(path, list(keep.values()))
