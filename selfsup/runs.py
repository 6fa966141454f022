"""Run directories: what a run folder holds, whether it is finished or resumable, and its status.json.

    runs/<name>/config.yaml     the resolved config          metrics.jsonl   one record per logged step
               status.json      new | running | interrupted | failed | complete, with pid, host, step, time
               checkpoints/     see selfsup.checkpoint        results.json    Result records

``run_state(run_dir)`` is the one answer to "is this run finished, or can it be resumed": a run whose writer
died (kill -9, a lost node) reads as interrupted, and a complete run whose results.json went missing reads as
interrupted too (resuming it evaluates again).
"""
from __future__ import annotations

import json
import os
import socket
import time
import warnings
from pathlib import Path

from .checkpoint import latest_checkpoint
from .errors import CheckpointError, ResultsFileError, RunDirError
from .io import atomic_write_json
from .results import read_results

STATES = ("new", "running", "interrupted", "failed", "complete")
ARTIFACTS = ("config.yaml", "status.json", "results.json", "metrics.jsonl")


def read_status(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / "status.json"
    if not path.is_file():
        return None
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        warnings.warn(f"{path} is unreadable ({e}); judging the run by its files", stacklevel=2)
        return None
    if not isinstance(status, dict) or status.get("state") not in STATES:
        warnings.warn(f"{path} holds no valid state; judging the run by its files", stacklevel=2)
        return None
    return status


def write_status(run_dir: str | Path, state: str, **info) -> None:
    assert state in STATES, state
    atomic_write_json(Path(run_dir) / "status.json", {"state": state, "pid": os.getpid(),
                                                      "host": socket.gethostname(), "updated_at": time.time(), **info})


def writer_alive(status: dict) -> bool:
    """Is the process that wrote ``status`` still running? Only knowable on its own host; elsewhere we
    assume it is gone (a job rescheduled on another node must be able to resume)."""
    if status.get("host") != socket.gethostname():
        return False
    pid = int(status.get("pid", -1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0
    return True


def _has_results(run_dir: Path) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # the reader of the results reports bad rows, not this check
        try:
            return bool(read_results(run_dir / "results.json"))
        except ResultsFileError:                 # too damaged to read: not finished
            return False


def run_state(run_dir: str | Path) -> str:
    """new | running | interrupted | failed | complete (see the module docstring).

    new: nothing to continue (start it without --resume). interrupted / failed: continue with --resume
    (from the last checkpoint, or from step 0 with the saved config when it saved none). running: another
    live process is training it. complete: finished, its results written."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return "new"
    status = read_status(run_dir)
    if status is None:       # written before status.json existed, or killed before its first write
        if _has_results(run_dir):
            return "complete"
        started = latest_checkpoint(run_dir / "checkpoints") is not None or (run_dir / "config.yaml").is_file()
        return "interrupted" if started else "new"
    state = status["state"]
    if state == "running" and not writer_alive(status):
        return "interrupted"
    if state == "complete" and status.get("results") and not _has_results(run_dir):
        return "interrupted"
    return state


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuse, before anything is written, a run folder that cannot be used as asked."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--run-dir {run_dir} is a file, not a folder; choose a folder path")
    status = read_status(run_dir) if run_dir.is_dir() else None
    if status is not None and status["state"] == "running" and writer_alive(status):
        raise RunDirError(f"{run_dir} is being trained right now by process {status['pid']} on {status['host']}; "
                          "wait for it, stop it, or choose another --run-dir")
    ckpt_root = run_dir / "checkpoints"
    latest = latest_checkpoint(ckpt_root)
    held = [name for name in ARTIFACTS if (run_dir / name).exists()]
    if resume and latest is None and "config.yaml" not in held:
        raise CheckpointError(f"--resume: no checkpoint in {ckpt_root}; start the run without --resume")
    if not resume and latest is not None:
        raise CheckpointError(f"{run_dir} already holds checkpoints (latest: {latest.name}); "
                              "pass --resume to continue that run, or choose a new --run-dir")
    if not resume and held:
        raise RunDirError(f"{run_dir} already holds a run ({', '.join(held)}); pass --resume to continue it "
                          "(from step 0 with its saved config, as it saved no checkpoint), or choose a new --run-dir")
    existing = next(p for p in (ckpt_root, run_dir, *run_dir.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirError(f"cannot write in {existing}: the run needs {ckpt_root} writable; "
                          "fix its permissions or choose another --run-dir")


def prepare_run_dir(run_dir: Path) -> None:
    """Create the run and checkpoint folders and prove a file can be written there, before step 1."""
    ckpt_root = run_dir / "checkpoints"
    probe = ckpt_root / f".write-test-{os.getpid()}"
    try:
        ckpt_root.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise RunDirError(f"cannot write checkpoints in {ckpt_root} ({e.strerror or e}); "
                          "fix its permissions or free space, or choose another --run-dir") from None
