"""Result records: what every evaluation writes and the leaderboard reads.

A task's ``evaluate`` returns ``Score`` objects (what was measured); the harness adds who,
where and how (seed, config hash, code version, hardware, wall time, throughput) to make
``Result`` records, and merges them into ``results.json`` in the run directory atomically.
"""
from __future__ import annotations

import functools
import json
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

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
    extra: dict = field(default_factory=dict)

    def key(self) -> tuple:
        return (self.task, self.dataset, self.split, self.metric, self.seed, self.config_hash, self.step)


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``git describe`` of the source tree (with -dirty), else the package version; read once per process
    (the trainer asks at start), so a record names the code that ran, not a later checkout."""
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


def hardware(device: torch.device, world_size: int = 1) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{device.type}:{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"
    return f"{world_size}x {name}" if world_size > 1 else name


class ResultsFileError(RuntimeError):
    pass


def read_results(path: str | Path) -> list[Result]:
    path = Path(path)
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())
        return [Result(**row) for row in rows]
    except (ValueError, TypeError) as e:
        raise ResultsFileError(f"{path} is not a valid results file ({e}); move it aside to start a new one") from None


def run_complete(run_dir: str | Path) -> bool:
    """A run is finished when its results.json holds records (a corrupt one counts as not finished)."""
    try:
        return bool(read_results(Path(run_dir) / "results.json"))
    except ResultsFileError:
        return False


def write_results(path: str | Path, new: list[Result]) -> None:
    """Merge: a new record replaces an old one with the same task/dataset/split/metric/seed/config/step."""
    keep = {r.key(): r for r in read_results(path)}
    for r in new:
        keep[r.key()] = r
    atomic_write_json(path, [asdict(r) for r in keep.values()])
