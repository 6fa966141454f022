"""Running a plan's jobs: here one after another (`local`), or each as a SLURM job through submitit.

Either way a job whose output is complete is skipped, an interrupted training resumes from its checkpoint,
and a job whose dependency failed is skipped and reported; a failure never stops the other arms. Inside a
job the command is `python -m selfsup ...`, or for a training with `gpus_per_run > 1`,
`torchrun --standalone --nproc_per_node=N -m selfsup train ...` (as `python -m torch.distributed.run`).
The outcome of every job goes to `OUT/jobs.json` (state, exit status, last error line, wall and CPU seconds),
which the tables read.

submitit does the scheduling: a job is submitted once its dependencies are complete, the rest follow as those
finish (`submitit.helpers.as_completed`); `cluster="local"` runs them as local processes (the tests do).
"""
from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from selfsup import progress
from selfsup.io import atomic_write_json
from selfsup.metrics import read_metrics
from selfsup.runs import run_state

from .plan import Job, Plan

INTERRUPTED = 75        # `selfsup train`'s exit status after a signal, with a checkpoint saved
WARMUP_STEPS = 3        # calibration: timed steps not counted (allocation, first batches)


@dataclass
class Outcome:
    job: str
    state: str              # complete | interrupted | failed | skipped | running (by another process)
    action: str = ""        # skipped (already complete) | ran | resumed | not run
    returncode: int | None = None
    error: str = ""         # the last error line the command printed, or why it did not run
    seconds: float = 0.0    # wall time of the command
    cpu_seconds: float = 0.0     # CPU time of the command and its children (what a busy machine does not inflate)


def job_state(job: Job, out: Path) -> str:
    """new | running | interrupted | failed | complete, from what the job left on disk."""
    path = out / job.id
    if job.kind == "export":
        return "complete" if path.is_dir() else "new"
    if job.kind == "frames":
        return "complete" if (path / "frames").is_dir() else "new"
    if job.kind == "calibrate":
        return "complete" if path.with_suffix(".json").is_file() else "new"
    return run_state(path)


def calibrated_steps(out: Path, key: str) -> int:
    try:
        return int(json.loads((out / f"{key}.json").read_text())["steps"])
    except (OSError, ValueError, KeyError) as e:
        raise RuntimeError(f"no calibration {out / key}.json ({e}); the suite makes it before this job") from None


def fill_steps(argv, out: Path, missing_ok: bool = False) -> list[str]:
    """{steps:KEY} -> the steps its calibration found (left as it is, with ``missing_ok``, before there is one)."""
    def steps(m: re.Match) -> str:
        try:
            return str(calibrated_steps(out, m.group(1)))
        except RuntimeError:
            if missing_ok:
                return m.group(0)
            raise
    return [re.sub(r"\{steps:([^}]+)\}", steps, a) for a in argv]


def command(job: Job, out: Path, gpus_per_run: int = 0, resume: bool = False) -> list[str]:
    """The command line of a job as launched now: calibrated steps filled in, --resume when it has a checkpoint."""
    argv = fill_steps(job.argv, out)
    if resume:
        argv.append("--resume")
    if job.trains and gpus_per_run > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus_per_run}",
                "-m", "selfsup", *argv]
    return [sys.executable, "-m", "selfsup", *argv]


def _write_calibration(job: Job, out: Path) -> None:
    """The median seconds per step after the warm-up, and the steps the budget's minutes hold."""
    run_dir = out / job.id
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    rows = read_metrics(run_dir / "metrics.jsonl")
    per_step = [cfg["trainer"]["batch_size"] / r["samples_per_s"] for r in rows[WARMUP_STEPS:]
                if r.get("samples_per_s")]
    if not per_step:
        raise RuntimeError(f"{run_dir}: no timed steps to calibrate from")
    seconds = statistics.median(per_step)
    atomic_write_json(run_dir.with_suffix(".json"), {
        "seconds_per_step": seconds, "timed_steps": len(per_step), "minutes": job.minutes,
        "steps": max(1, round(job.minutes * 60 / seconds))})


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class _Tee(threading.Thread):
    """Copies a child's stderr to ours as it comes (progress bars included), keeping its last 8 KB."""
    def __init__(self, fd: int):
        super().__init__(daemon=True)
        self.fd, self.tail = fd, b""

    def run(self):
        while chunk := os.read(self.fd, 4096):
            sys.stderr.buffer.write(chunk)
            sys.stderr.flush()
            self.tail = (self.tail + chunk)[-8192:]

    def error(self) -> str:
        lines = [x.split("\r")[-1].strip() for x in self.tail.decode(errors="replace").splitlines()]
        lines = [x for x in lines if x]
        errors = [x for x in lines if "error" in x.lower()]
        return (errors or lines or [""])[-1][:300]


class Stop:
    """A SIGTERM/SIGINT handler: asks the running job to checkpoint and exit; no new job starts. A second
    signal is passed on too, and gives Ctrl-C back its default (a third one ends this process at once)."""
    def __init__(self):
        self.signum, self.child = None, None

    def __call__(self, signum, frame):
        if self.signum is not None:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        self.signum = signum
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)


def _fresh_start(job: Job, out: Path, state: str) -> bool:
    """Whether the job starts from scratch (else it resumes); an attempt that never checkpointed is kept aside."""
    run_dir = out / job.id
    if job.kind == "calibrate" or job.kind == "export":      # scratch output
        shutil.rmtree(run_dir if job.kind == "calibrate" else out / f"{job.id}.partial", ignore_errors=True)
        return True
    if job.kind == "train" and state != "new" and any((run_dir / "checkpoints").glob("step_*")):
        return False
    if job.kind == "train" and run_dir.exists():
        aside = run_dir.with_name(f"{run_dir.name}.aborted-{time.strftime('%Y%m%d-%H%M%S')}")
        run_dir.rename(aside)
        print(f"[leaderboard] {job.id}: an earlier attempt without a checkpoint moved to {aside.name}", flush=True)
    return True


def child_env() -> dict[str, str]:
    """The job's environment: ours, and progress bars on when our stderr is a terminal (the job's stderr is a pipe
    that _Tee copies to it, so the job cannot see the terminal itself); SELFSUP_PROGRESS set by the user wins."""
    env = dict(os.environ)
    env.setdefault(progress.ENV, "terminal" if progress.on_terminal() else "0")
    return env


def execute(job: Job, out: Path, gpus_per_run: int = 0, stop: Stop | None = None, where: str = "") -> Outcome:
    """Run one job to completion (or interruption) and say how it ended; ``where`` (e.g. "3/15") goes in its
    log line."""
    state = job_state(job, out)
    if state == "complete":
        return Outcome(job.id, "complete", "skipped")
    if state == "running":      # its writer is alive: another process is making it
        return Outcome(job.id, "running", "not run", error="being trained by another process; rerun when it is done")
    resume = not _fresh_start(job, out, state)
    try:
        cmd = command(job, out, gpus_per_run, resume)
    except RuntimeError as e:
        return Outcome(job.id, "failed", "not run", error=str(e))
    print(f"[leaderboard] {where + ' ' if where else ''}{job.id}: {'resuming' if resume else 'running'} "
          f"selfsup {' '.join(job.argv[:2])}", flush=True)
    start, cpu = time.perf_counter(), _children_cpu()
    child = subprocess.Popen(cmd, stderr=subprocess.PIPE, env=child_env())
    tee = _Tee(child.stderr.fileno())
    tee.start()
    stop = stop or Stop()
    stop.child = child
    rc = child.wait()
    tee.join()
    child.stderr.close()
    stop.child = None
    seconds, action = round(time.perf_counter() - start, 1), "resumed" if resume else "ran"
    cpu = round(_children_cpu() - cpu, 1)
    try:
        if rc == 0 and job.kind == "export":
            (out / f"{job.id}.partial").rename(out / job.id)
        if rc == 0 and job.kind == "calibrate":
            _write_calibration(job, out)
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as e:
        return Outcome(job.id, "failed", action, rc, str(e), seconds, cpu)
    state = job_state(job, out)
    if rc == 0 and state == "complete":
        return Outcome(job.id, "complete", action, rc, "", seconds, cpu)
    if rc == INTERRUPTED or stop.signum is not None:
        return Outcome(job.id, "interrupted", action, rc, "stopped by a signal; rerun to resume", seconds, cpu)
    return Outcome(job.id, "failed", action, rc, tee.error() or f"exit status {rc}", seconds, cpu)


def _run_in_job(job: Job, out: str, gpus_per_run: int) -> dict:
    """What a submitit job runs on its node: one job; SIGTERM (preemption, scancel) checkpoints it."""
    stop = Stop()
    signal.signal(signal.SIGTERM, stop)
    return asdict(execute(job, Path(out), gpus_per_run, stop))


# ---------------------------------------------------------------------------------------------- launchers


class Journal:
    """OUT/jobs.json: the last outcome of every job the suite launched or skipped, written after each."""
    def __init__(self, out: Path):
        self.path = out / "jobs.json"
        try:
            self.records = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.records = {}

    def record(self, outcome: Outcome, log=print) -> Outcome:
        log(describe(outcome))
        if outcome.action != "skipped" or outcome.job not in self.records:   # keep how a complete run was made
            self.records[outcome.job] = asdict(outcome)
            atomic_write_json(self.path, self.records)
        return outcome


def describe(o: Outcome) -> str:
    if o.action == "skipped":
        return f"[leaderboard] {o.job}: complete, skipped"
    text = f"[leaderboard] {o.job}: {o.state}" + (f" ({o.action}, {o.seconds:.0f} s, CPU {o.cpu_seconds:.0f} s)"
                                                   if o.seconds else "")
    return text + (f": {o.error}" if o.error else "")


def _blocked(job: Job, outcomes: dict[str, Outcome]) -> Outcome | None:
    bad = [d for d in job.deps if d in outcomes and outcomes[d].state != "complete"]
    if not bad:
        return None
    return Outcome(job.id, "skipped", "not run",
                   error="needs " + ", ".join(f"{d} ({outcomes[d].state})" for d in bad))


def run_local(plan: Plan, gpus_per_run: int = 0, log=print) -> dict[str, Outcome]:
    """Every job in plan order, as this process's children; SIGTERM/SIGINT stop after the running job saves."""
    journal, outcomes, stop = Journal(plan.out), {}, Stop()
    handlers = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for i, job in enumerate(plan.jobs.values()):
            if stop.signum is not None:
                break
            where = f"{i + 1}/{len(plan.jobs)}"
            outcome = _blocked(job, outcomes) or execute(job, plan.out, gpus_per_run, stop, where)
            outcomes[job.id] = journal.record(outcome, log)
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    return outcomes


def run_submitit(plan: Plan, gpus_per_run: int = 0, cluster: str | None = None, poll: float = 10.0,
                 log=print, **params) -> dict[str, Outcome]:
    """Each job as a submitit job (SLURM on a cluster; ``cluster="local"``: local processes), submitted once its
    dependencies are complete. ``params`` go to ``executor.update_parameters`` (e.g. slurm_partition)."""
    import submitit
    executor = submitit.AutoExecutor(folder=plan.out / "submitit", cluster=cluster)
    executor.update_parameters(**{"timeout_min": 24 * 60, "nodes": 1, "tasks_per_node": 1,
                                  **({"gpus_per_node": gpus_per_run} if gpus_per_run else {}), **params})
    journal, outcomes, pending, running = Journal(plan.out), {}, dict(plan.jobs), {}
    while pending or running:
        for job in list(pending.values()):
            outcome = _blocked(job, outcomes)
            if outcome is None and job_state(job, plan.out) == "complete":
                outcome = Outcome(job.id, "complete", "skipped")
            if outcome is not None:
                outcomes[job.id] = journal.record(outcome, log)
            elif all(d in outcomes for d in job.deps):
                executor.update_parameters(name=job.id.replace("/", "-"))
                running[job.id] = executor.submit(_run_in_job, job, str(plan.out), gpus_per_run)
                log(f"[leaderboard] {job.id}: submitted as job {running[job.id].job_id}")
            else:
                continue
            del pending[job.id]
        if not running:     # cannot happen: a job's dependencies come before it in the plan
            break
        finished = next(submitit.helpers.as_completed(list(running.values()), poll_frequency=poll))
        job_id = next(k for k, v in running.items() if v is finished)
        del running[job_id]
        try:
            outcome = Outcome(**finished.result())
        except Exception as e:   # the job itself died (node failure, time limit): its log has the details
            outcome = Outcome(job_id, "failed", "ran", error=f"{type(e).__name__} (log: {finished.paths.stderr})")
        outcomes[job_id] = journal.record(outcome, log)
    return outcomes


def summary(outcomes: dict[str, Outcome], seconds: float) -> str:
    """One line: how many jobs ended how, and the wall time of the whole run (what `make demo` is judged by)."""
    counts: dict[str, int] = {}
    for o in outcomes.values():
        key = "skipped (already complete)" if o.action == "skipped" else o.state
        counts[key] = counts.get(key, 0) + 1
    cpu = sum(o.cpu_seconds for o in outcomes.values())
    return (f"[leaderboard] {len(outcomes)} jobs: {', '.join(f'{n} {k}' for k, n in counts.items())}; "
            f"{seconds / 60:.1f} min wall, {cpu / 60:.1f} min CPU in the jobs")


def exit_status(outcomes: dict[str, Outcome]) -> int:
    """0 when every job is complete, 75 when the suite was interrupted, 1 when an arm failed or was skipped."""
    states = {o.state for o in outcomes.values()}
    if "interrupted" in states:
        return INTERRUPTED
    return 0 if states <= {"complete"} else 1
