"""`selfsup leaderboard keep OUT DEST`: the records a suite's tables are read from, without the weights.

A suite's folder holds gigabytes of checkpoints but its tables read only small files. `keep` copies, for every
finished job of the plan that no unfinished job still needs, what the renderer reads (config, status, results,
metrics, each checkpoint's meta.json with its training seconds, the JSON beside the figures) into DEST: a few
hundred kB per run, small enough for git. A suite too long for one machine or session is then made in parts:

    selfsup leaderboard run --suite vision --seeds 3 --out runs/standard --only-seed 1
    selfsup leaderboard keep runs/standard benchmarks/runs/standard          # commit it; the machine may go
    cp -r benchmarks/runs/standard/. runs/standard/                          # later, anywhere
    selfsup leaderboard run --suite vision --seeds 3 --out runs/standard --only-seed 2
    selfsup leaderboard render runs/standard --suite vision --seeds 3

A kept run reads as complete, so `run` skips it; it cannot be resumed or fed to a new downstream run (its
checkpoints stayed behind), which is why a pretraining is kept only once every job that needs it is finished.
An export is kept as a folder holding `KEPT.json` (what it was, and that its weights were not kept). Runs
already in DEST are left as they are unless `--replace`.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from selfsup.io import atomic_write_json
from selfsup.runs import ARTIFACTS

from .plan import Plan
from .runner import job_state

KEPT = "KEPT.json"


def _records(run_dir: Path) -> list[Path]:
    """The files of a run folder that the tables read."""
    files = [run_dir / name for name in ARTIFACTS if (run_dir / name).is_file()]
    files += sorted(run_dir.glob("checkpoints/step_*/meta.json"))
    files += sorted(run_dir.glob("figures/**/*.json"))
    return files


def _copy(files: list[Path], src: Path, dest: Path) -> None:
    for f in files:
        target = dest / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(f, tmp)
        tmp.replace(target)


def keep(p: Plan, dest: Path, replace: bool = False, log=print) -> dict[str, list[str]]:
    """Copy the records of every finished job that nothing unfinished needs; returns the job ids by outcome:
    kept | already (in DEST, left) | needed (finished, but a job that needs it is not) | unfinished."""
    states = {job_id: job_state(job, p.out) for job_id, job in p.jobs.items()}
    needed_by: dict[str, list[str]] = {}
    for job_id, job in p.jobs.items():
        for d in job.deps:
            needed_by.setdefault(d, []).append(job_id)
    outcome: dict[str, list[str]] = {"kept": [], "already": [], "needed": [], "unfinished": []}
    for job_id, job in p.jobs.items():
        src, target = p.out / job_id, dest / job_id
        if states[job_id] != "complete":
            outcome["unfinished"].append(job_id)
            continue
        if any(states[j] != "complete" for j in needed_by.get(job_id, [])):
            outcome["needed"].append(job_id)
            continue
        if job.kind == "calibrate":
            src, target = src.with_suffix(".json"), target.with_suffix(".json")
        if target.exists() and not replace:
            outcome["already"].append(job_id)
            continue
        if job.kind == "calibrate":
            _copy([src], src.parent, target.parent)
        elif job.kind == "export":
            target.mkdir(parents=True, exist_ok=True)
            atomic_write_json(target / KEPT, {"job": job_id, "command": "selfsup " + " ".join(job.argv),
                                              "weights": "not kept: make the export again from its run's "
                                                         "checkpoint, or run its downstream jobs where it was made"})
        elif job.kind == "frames":
            continue                      # data, not a record: a later `run` makes it again if a job needs it
        else:
            _copy(_records(src), src, target)
        outcome["kept"].append(job_id)
    suite_json = p.out / "suite.json"
    if suite_json.is_file() and not (dest / "suite.json").exists():
        _copy([suite_json], p.out, dest)
    log(f"kept {len(outcome['kept'])} runs in {dest} ({len(outcome['already'])} already there"
        + (", --replace to copy them again" if outcome["already"] else "") + ")")
    if outcome["needed"]:
        log(f"not kept, still needed by unfinished jobs (their checkpoints): {', '.join(outcome['needed'])}")
    if outcome["unfinished"]:
        log(f"not finished: {len(outcome['unfinished'])} jobs")
    return outcome
