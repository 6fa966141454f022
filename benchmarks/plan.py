"""A suite as jobs: frames -> calibration -> pretraining -> export -> downstream runs, each made once.

Every (representation, evaluation) cell reads one run per seed: the representation's pretraining run itself
(probes it evaluates) or a downstream run whose overrides name that pretraining; a pretraining is one job,
whichever columns read it. An encoder spec has no pretraining run: a column's `fallback` measures it once per
domain (`REP-DOMAIN-sK`, the id its pretraining would have), read by every column of that domain. Jobs are
listed seed by seed, each seed's pretrainings before their exports and downstream runs, so the list is a valid
order to run them in and a stopped suite has its first seeds whole. One id is one command: planning the same
id twice with different commands is an error (suites that share a folder are checked the same way).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from .matrix import RANDOM, Budget, Command, Representation, Suite, SuiteError, Train

PHASES = {"frames": 0, "calibrate": 1, "pretrain": 2, "export": 3, "downstream": 4}
CALIBRATION_STEPS = 12      # timed steps for a budget in minutes (the first 3 are warm-up, not counted)


@dataclass
class Job:
    id: str                         # its folder under the suite's output, and its name in logs and tables
    kind: str                       # frames | calibrate | train | eval | export
    argv: tuple[str, ...]           # `python -m selfsup ARGV`; {steps:KEY} is filled at launch from a calibration
    deps: tuple[str, ...] = ()
    phase: str = "downstream"
    seed: int = 0
    trains: bool = False            # a `selfsup train` run: under torchrun with --gpus-per-run > 1
    minutes: float = 0.0            # calibrate: the budget its timed steps are turned into


@dataclass
class Plan:
    suite: Suite
    out: Path
    jobs: dict[str, Job] = field(default_factory=dict)                  # in launch order
    cells: dict[tuple[str, str], list[str]] = field(default_factory=dict)   # (rep, evaluation) -> job per seed
    pretrainings: dict[tuple[str, str], list[str]] = field(default_factory=dict)   # (rep, domain) -> job per seed
    # (rep, evaluation) -> pretraining step -> job per seed: the evaluation made from intermediate checkpoints
    along: dict[tuple[str, str], dict[int, list[str]]] = field(default_factory=dict)

    def dir(self, job_id: str) -> Path:
        return self.out / job_id

    def closure(self, job_id: str) -> list[str]:
        """The job and everything it needs, in launch order."""
        seen: dict[str, None] = {}

        def visit(j):
            for d in self.jobs[j].deps:
                visit(d)
            seen.setdefault(j)
        visit(job_id)
        return list(seen)


def budget_overrides(budget: Budget | None, calibration: str) -> tuple[str, ...]:
    if budget is None:
        return ()
    if budget.minutes is not None:
        return (f"trainer.max_steps={{steps:{calibration}}}",)
    if budget.steps == 0:       # random weights, saved: one step that AdamW takes with a zero learning rate
        return ("trainer.max_steps=1", "trainer.lr=0.0", "trainer.warmup_steps=0")
    return (f"trainer.max_steps={budget.steps}",)


PLACEHOLDER = re.compile(r"\{(run|export|frames|dir|seed)(?::([^}]*))?\}")


class _Builder:
    def __init__(self, suite: Suite, out: Path, seeds: int | None, extra: tuple[str, ...]):
        self.plan = Plan(suite, out)
        self.suite, self.out, self.seeds, self.extra = suite, out, seeds, tuple(extra)
        self._order: dict[str, int] = {}

    def add(self, job: Job) -> str:
        if job.id not in self.plan.jobs:
            self._order[job.id] = len(self._order)
            self.plan.jobs[job.id] = job
        elif self.plan.jobs[job.id].argv != job.argv:
            raise SuiteError(f"job {job.id} is planned with two different commands:\n  selfsup "
                             f"{' '.join(self.plan.jobs[job.id].argv)}\n  selfsup {' '.join(job.argv)}")
        return job.id

    # -------------------------------------------------------------------------------- placeholders

    def fill(self, text: str, seed: int, here: Path, rep: Representation | None, domain: str,
             deps: list[str], step: int | None = None) -> str:
        """``step``: {run} / {export} of the representation itself name its pretraining's checkpoint at that step."""
        def sub(m: re.Match) -> str:
            what, arg = m.group(1), m.group(2)
            if what == "dir":
                return str(here)
            if what == "seed":
                return str(seed)
            if what == "frames":
                job = self.add(Job(f"frames-{arg}", "frames", ("rl-pretrain", "--frames-only", "--env", arg,
                                                               "--out", str(self.out / f"frames-{arg}")),
                                   phase="frames"))
                deps.append(job)
                return str(self.out / job / "frames")
            target, target_domain = (rep, domain) if arg is None else self._partner(arg)
            if target is None:
                raise SuiteError(f"{text!r} names {{{what}}} outside a representation's evaluation")
            if target_domain not in target.pretrain:     # an encoder spec as it is, or no encoder (scratch)
                return target.spec
            pre = self.pretraining(target, target_domain, seed)
            at = step if arg is None else None
            if what == "run":
                deps.append(pre)
                return str(self.out / pre / (f"checkpoints/step_{at:08d}" if at else ""))
            export = self.export(target, target_domain, pre, at)
            deps.append(export)
            return str(self.out / export)
        return PLACEHOLDER.sub(sub, text)

    def _partner(self, arg: str) -> tuple[Representation, str]:
        name, _, domain = arg.partition("@")
        rep = self.suite.rep(name)
        if not domain:
            if len(rep.pretrain) != 1:
                raise SuiteError(f"{{…:{name}}}: {name} is pretrained on {', '.join(rep.pretrain) or 'nothing'}; "
                                 f"name one as {{…:{name}@DOMAIN}}")
            domain = next(iter(rep.pretrain))
        return rep, domain

    # -------------------------------------------------------------------------------- jobs

    def train_argv(self, t: Train, run_dir: Path, seed: int, rep: Representation | None, domain: str,
                   calibration: str, deps: list[str], extra: tuple[str, ...] = (), step: int | None = None
                   ) -> tuple[str, ...]:
        overrides = [self.fill(o, seed, run_dir, rep, domain, deps, step) for o in t.overrides + extra]
        # a placeholder with nothing behind it (no encoder: a network the task trains from scratch) leaves the
        # key at its default, which is what "none" means to the tasks (an empty string; OmegaConf reads "k=" as null)
        overrides = [o for o in overrides if not o.endswith("=")]
        return ("train", t.task, "--preset", t.preset, "--run-dir", str(run_dir), "--set", f"trainer.seed={seed}",
                *budget_overrides(t.budget, calibration), *overrides, *self.extra)

    def pretraining(self, rep: Representation, domain: str, seed: int) -> str:
        seed = 0 if domain in self.suite.shared else seed
        job_id = f"{rep.name}-{domain}-s{seed}"
        if job_id in self.plan.jobs:
            return job_id
        t, deps = rep.pretrain[domain], []
        calibration = self.calibration(t, f"{rep.name}-{domain}", rep, domain)
        if calibration:
            deps.append(calibration)
        argv = self.train_argv(t, self.out / job_id, seed, rep, domain, calibration, deps)
        self.plan.pretrainings.setdefault((rep.name, domain), []).append(job_id)
        return self.add(Job(job_id, "train", argv, tuple(dict.fromkeys(deps)), "pretrain", seed, trains=True))

    def calibration(self, t: Train, name: str, rep: Representation | None, domain: str) -> str:
        """For a budget in minutes: a short run timing the steps (same task, preset, overrides, machine)."""
        if t.budget is None or t.budget.minutes is None:
            return ""
        job_id = f"calibrate/{name}"
        if job_id not in self.plan.jobs:
            deps: list[str] = []
            timed = Train(t.task, t.preset, t.overrides, Budget(steps=CALIBRATION_STEPS))
            argv = self.train_argv(timed, self.out / job_id, 0, rep, domain, "", deps) + (
                "trainer.eval_at_end=false", "trainer.log_every=1", "trainer.checkpoint_every=0",
                "trainer.count_flops=false", "trainer.tensorboard=false", "trainer.progress=false")
            self.add(Job(job_id, "calibrate", argv, tuple(dict.fromkeys(deps)), "calibrate", trains=True,
                         minutes=t.budget.minutes))
        return job_id

    def export(self, rep: Representation, domain: str, pre: str, step: int | None = None) -> str:
        """`selfsup export` of a pretraining (its latest checkpoint, or the one at ``step``), made once."""
        job_id = f"{pre}/export" + (f"-step{step}" if step else "")
        checkpoint = self.out / pre / (f"checkpoints/step_{step:08d}" if step else "")
        argv = ("export", rep.pretrain[domain].task, "--checkpoint", str(checkpoint),
                "--out", str(self.out / f"{job_id}.partial"))
        return self.add(Job(job_id, "export", argv, (pre,), "export", self.plan.jobs[pre].seed))

    def cell(self, rep: Representation, ev, seed: int, step: int | None = None) -> str:
        if rep.reads:       # a baseline reported inside another row's runs
            return self.cell(self.suite.rep(rep.reads), ev, seed)
        run = ev.run if ev.run is not None or ev.domain in rep.pretrain else ev.fallback
        if run is None:
            return self.pretraining(rep, ev.domain, seed)
        if ev.run is None:  # a spec measured once per domain, the id its pretraining would have
            job_id = f"{rep.name}-{ev.domain}-s{0 if ev.domain in self.suite.shared else seed}"
        else:
            job_id = f"{ev.name}--{rep.name}-s{seed}" + (f"-step{step}" if step else "")
        run_dir, deps = self.out / job_id, []
        extra = tuple(rep.extra.get(ev.name, ()))
        if isinstance(run, Command):
            argv = tuple(self.fill(a, seed, run_dir, rep, ev.domain, deps) for a in run.argv + extra) + self.extra
            kind, trains = "eval", False
        else:
            calibration = self.calibration(run, f"{ev.name}--{rep.name}", rep, ev.domain)
            deps += [calibration] if calibration else []
            argv = self.train_argv(run, run_dir, seed, rep, ev.domain, calibration, deps, extra, step)
            kind, trains = "train", True
        return self.add(Job(job_id, kind, argv, tuple(dict.fromkeys(deps)), "downstream", seed, trains))

    def along_steps(self, rep: Representation, ev) -> list[int]:
        """The pretraining steps an `along` evaluation is also made at, checked against the checkpoints kept."""
        t = rep.pretrain[ev.domain]
        steps = t.budget.steps if t.budget is not None else None
        if not steps:
            raise SuiteError(f"evaluation {ev.name} runs along {rep.name}'s pretraining, which needs a budget in "
                             f"steps (not {t.budget})")
        points = [k * (steps // ev.along) for k in range(1, ev.along)]
        every = next((int(o.split("=", 1)[1]) for o in reversed(t.overrides)
                      if o.startswith("trainer.checkpoint_every=")), 0)
        if not every or any(p % every for p in points) or "trainer.keep_last=0" not in t.overrides:
            raise SuiteError(f"evaluation {ev.name} reads {rep.name}'s checkpoints at steps {points}: give that "
                             f"pretraining checkpoints_along({t.budget}, {ev.along})")
        return points


def plan(suite: Suite, out: Path, seeds: int | None = None, extra: tuple[str, ...] = ()) -> Plan:
    """Every job of the suite at ``seeds`` seeds (default: the suite's, and each evaluation's own count)."""
    b = _Builder(suite, Path(out), seeds, extra)
    count = {(rep.name, ev.name): seeds if seeds is not None else (ev.seeds or suite.seeds)
             for rep, ev in suite.cells()}
    for rep, ev in suite.cells():       # pretrainings first, in the suite's row order
        if ev.domain in rep.pretrain:
            for s in range(count[(rep.name, ev.name)]):
                b.pretraining(rep, ev.domain, s)
    for rep, ev in suite.cells():
        b.plan.cells[(rep.name, ev.name)] = [b.cell(rep, ev, s) for s in range(count[(rep.name, ev.name)])]
    for rep, ev in suite.cells():       # the `along` columns' intermediate points
        if ev.along > 1 and ev.run is not None and ev.domain in rep.pretrain and not rep.reads \
                and rep.pretrain[ev.domain].budget != RANDOM:      # random weights do not change along the way
            b.plan.along[(rep.name, ev.name)] = {
                step: [b.cell(rep, ev, s, step) for s in range(count[(rep.name, ev.name)])]
                for step in b.along_steps(rep, ev)}
    order = {job_id: (job.seed, PHASES[job.phase], b._order[job_id]) for job_id, job in b.plan.jobs.items()}
    # each job after everything it needs (its closure), else in that order: a pretraining can need an export of
    # another row's pretraining (CLIP from our BERT export), so phases alone do not order them
    launch = dict.fromkeys(d for j in sorted(b.plan.jobs, key=order.__getitem__) for d in b.plan.closure(j))
    b.plan.jobs = {k: b.plan.jobs[k] for k in launch}
    return b.plan


def only_rows(p: Plan, rows: list[str]) -> Plan:
    """The plan cut to what the named representations' cells need (their runs and, transitively, what those
    depend on), in the same order: run one row, or add a row to a folder that holds the others."""
    known = [r.name for r in p.suite.representations]
    unknown = [r for r in rows if r not in known]
    if unknown:
        raise SuiteError(f"--rows: no row {', '.join(unknown)} in suite {p.suite.name} (rows: {', '.join(known)})")
    need = [j for (rep, _), ids in p.cells.items() if rep in rows for j in ids]
    need += [j for (rep, _), points in p.along.items() if rep in rows for ids in points.values() for j in ids]
    return _cut(p, need)


def _cut(p: Plan, need) -> Plan:
    """The plan cut to the jobs ``need`` and, transitively, what they depend on, in the same order."""
    keep = {d for j in need for d in p.closure(j)}
    return replace(p, jobs={k: j for k, j in p.jobs.items() if k in keep})


def only_seeds(p: Plan, seeds: list[int]) -> Plan:
    """The plan cut to the named seeds' jobs and what they need, in the same order: split a suite's seeds between
    machines or sessions that share (or later merge) one folder of runs."""
    have = sorted({j.seed for j in p.jobs.values()})
    unknown = [s for s in seeds if s not in have]
    if unknown:
        raise SuiteError(f"--only-seed: no seed {', '.join(map(str, unknown))} in this plan (seeds: "
                         f"{', '.join(map(str, have))}; --seeds N plans seeds 0..N-1)")
    return _cut(p, [k for k, j in p.jobs.items() if j.seed in seeds])
