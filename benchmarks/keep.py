"""`selfsup leaderboard keep OUT DEST`: the records a suite's tables are read from, without the weights.

A suite's folder holds gigabytes of checkpoints but its tables read only small files. `keep` copies, for every
finished job of the plan that no unfinished job still needs, what the renderer reads (config, status, results,
metrics, each checkpoint's meta.json with its training seconds, the JSON beside the figures) into DEST: tens of
kB per run (~13 kB for a vision run), small enough for git. A suite too long for one machine or session is then
made in parts:

    selfsup leaderboard run --suite vision --seeds 3 --out runs/standard --only-seed 1
    selfsup leaderboard keep runs/standard benchmarks/kept/standard          # commit it; the machine may go
    cp -r benchmarks/kept/standard/. runs/standard/                          # later, anywhere
    selfsup leaderboard run --suite vision --seeds 3 --out runs/standard --only-seed 2
    selfsup leaderboard render runs/standard --suite vision --seeds 3

A kept run reads as complete, so `run` skips it; it cannot be resumed or fed to a new downstream run (its
checkpoints stayed behind), which is why a pretraining is kept only once every job that needs it is finished (a
pretraining that several seeds share, as RL's frames encoder, only once every seed is). A calibration is kept as
soon as it is made, so later seeds train for the same steps. An export is kept as a folder holding `KEPT.json`
(what it was, and that its weights were not kept). Runs already finished in DEST are left as they are unless
`--replace`. Keep one suite at a time (`--suite`; the folder's `suite.json` names the last suite run there).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from selfsup.io import atomic_write, atomic_write_json
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


def _copy(files: list[Path], src: Path, target: Path) -> None:
    """``files`` (under ``src``) into the folder ``target`` as one step: written beside it, then renamed over it,
    so an interrupted keep leaves the old folder or the new one, never half of one."""
    fresh, old = target.with_name(target.name + ".keeping"), target.with_name(target.name + ".replaced")
    if old.exists() and not target.exists():     # a keep stopped between its two renames: the old copy is back
        old.rename(target)
    for leftover in (fresh, old):
        shutil.rmtree(leftover, ignore_errors=True)
    for f in files:
        (fresh / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, fresh / f.relative_to(src))
    if target.exists():
        target.rename(old)
    fresh.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def keep(p: Plan, dest: Path, replace: bool = False, log=print) -> dict[str, list[str]]:
    """Copy the records of every finished job that nothing unfinished needs; returns the job ids by outcome:
    kept | already (finished in DEST, left) | needed (finished, but a job that needs it is not) | unfinished |
    data (finished frames, not kept)."""
    states = {job_id: job_state(job, p.out) for job_id, job in p.jobs.items()}
    # still needed: some job that needs it (directly, or through an export that needs it) is unfinished; the plan
    # lists a job after what it needs, so walking it backwards settles every job's dependents first. A calibration
    # is final once made: never needed, kept at once, so later seeds share it
    needed: set[str] = set()
    for job_id in reversed(list(p.jobs)):
        if states[job_id] != "complete" or job_id in needed:
            needed.update(d for d in p.jobs[job_id].deps if p.jobs[d].kind != "calibrate")
    for job_id, job in p.jobs.items():
        if job.kind == "export" and set(job.deps) & needed:
            needed.add(job_id)      # an export's marker lives in its pretraining's folder: kept with it, not before
    outcome: dict[str, list[str]] = {"kept": [], "already": [], "needed": [], "unfinished": [], "data": []}
    for job_id, job in p.jobs.items():
        src, target = p.out / job_id, dest / job_id
        if states[job_id] != "complete":
            outcome["unfinished"].append(job_id)
            continue
        if job.kind == "frames":
            outcome["data"].append(job_id)      # data, not a record: a later `run` makes it again if a job needs it
            continue
        if job_id in needed:
            outcome["needed"].append(job_id)
            continue
        if job.kind == "calibrate":
            src, target = src.with_suffix(".json"), target.with_suffix(".json")
        if not replace and job_state(job, dest) == "complete":
            outcome["already"].append(job_id)
            continue
        if job.kind == "calibrate":
            atomic_write(target, lambda tmp: shutil.copyfile(src, tmp))
        elif job.kind == "export":
            target.mkdir(parents=True, exist_ok=True)
            atomic_write_json(target / KEPT, {"job": job_id, "command": "selfsup " + " ".join(job.argv),
                                              "weights": "not kept: make the export again from its run's "
                                                         "checkpoint, or run its downstream jobs where it was made"})
        else:
            _copy(_records(src), src, target)
        outcome["kept"].append(job_id)
    suite_json = p.out / "suite.json"
    if suite_json.is_file():
        atomic_write(dest / "suite.json", lambda tmp: shutil.copyfile(suite_json, tmp))
    log(f"kept {len(outcome['kept'])} runs in {dest} ({len(outcome['already'])} already there"
        + (", --replace to copy them again" if outcome["already"] else "") + ")")
    if outcome["needed"]:
        log(f"not kept, still needed by unfinished jobs (their checkpoints): {', '.join(outcome['needed'])}")
    if outcome["unfinished"]:
        log(f"not finished: {len(outcome['unfinished'])} jobs")
    if outcome["data"]:
        log(f"not kept (data a later run makes again): {', '.join(outcome['data'])}")
    return outcome
