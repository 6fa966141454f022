"""What a leaderboard suite is made of: representations (rows) x evaluations (columns).

A `Representation` is an encoder and how it is made: for each data domain it is used on, a pretraining run
(`Train`: a task, its preset, overrides and a `Budget` in steps or in minutes of training), or an encoder spec
used as it is (`timm:NAME`, `hf:NAME`, `open_clip:ARCH:TAG`, a run or export folder). An `Evaluation` is one use
of it with one primary `Metric`: a downstream run template (`Train` / `Command`) whose placeholders take the
representation, or the representation's own pretraining run when that run already measures the use (the probes
a pretraining task evaluates). `benchmarks.plan` turns a `Suite` into the jobs that make every pretraining once.

Placeholders in overrides and command arguments:
    {run}            the representation's pretraining run folder on the evaluation's domain (or its spec)
    {export}         that run's export (the task's interchange format, made once by `selfsup export`)
    {run:REP}        another representation's pretraining run (REP@DOMAIN when it has several domains)
    {export:REP}     another representation's export, e.g. the BERT a captioner decodes with
    {frames:ENV}     frames collected from a gymnasium env by a random policy (made once)
    {dir} {seed}     this job's folder, its seed
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from selfsup.errors import UserError


class SuiteError(UserError, ValueError):
    """A suite definition that cannot be planned (a user error: the message names what to fix)."""


@dataclass(frozen=True)
class Budget:
    steps: int | None = None        # optimizer steps (trainer.max_steps); 0 = random weights (RANDOM)
    minutes: float | None = None    # minutes of training, turned into steps by timing a few steps first

    def __post_init__(self):
        if (self.steps is None) == (self.minutes is None):
            raise SuiteError(f"a Budget takes steps or minutes, not steps={self.steps} minutes={self.minutes}")
        if (self.steps or 0) < 0 or (self.minutes is not None and self.minutes <= 0):
            raise SuiteError(f"a Budget must be positive (steps=0 means random weights): {self!r}")

    def __str__(self) -> str:
        if self.minutes is not None:
            return f"{self.minutes:g} min"
        return "random weights" if self.steps == 0 else f"{self.steps:,} steps"


# Random weights, saved like a trained run (one optimizer step at learning rate 0 leaves AdamW's weights
# untouched), so every downstream column loads the baseline exactly as it loads a pretrained encoder.
RANDOM = Budget(steps=0)


@dataclass(frozen=True)
class Train:
    """`selfsup train TASK --preset PRESET --set OVERRIDES` (plus the job's folder, seed and budget)."""
    task: str
    preset: str = "tiny"
    overrides: tuple[str, ...] = ()
    budget: Budget | None = None    # None: the preset's trainer.max_steps


@dataclass(frozen=True)
class Command:
    """Any other `selfsup` command line, e.g. ("eval", "example", "--checkpoint", "{run}", "--run-dir", "{dir}")."""
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Metric:
    """Which number of a run is the cell: a Result record (the latest evaluated step), or with ``log`` the mean
    of a metrics.jsonl column over the logged steps after the first (throughput: samples_per_s, tokens_per_s)."""
    metric: str
    dataset: str = ""               # "" matches any
    split: str = ""
    log: bool = False


@dataclass(frozen=True)
class Evidence:
    """Where RESULTS.md holds the multi-seed evidence for a column, so the rendered page can set the quick
    verdict beside it (read from that section's table when rendering, never copied by hand)."""
    section: str                    # RESULTS.md section key, e.g. evidence-mae-tiny
    dataset: str
    metric: str
    budget: str                     # the budget that evidence was measured at, e.g. "2,000 steps"
    arms: Mapping[str, str]         # representation name -> that table's column (arm)
    split: str = ""
    note: str = ""                  # how the evidence differs from the column, when it does


@dataclass(frozen=True)
class Representation:
    name: str                       # row id, used in folder names: lowercase, no spaces
    kind: str                       # image | text: the evaluations of that kind take it
    pretrain: Mapping[str, Train] = field(default_factory=dict)   # domain -> how it is made on that data
    spec: str = ""                  # or an encoder spec used as it is (timm:..., hf:..., open_clip:..., a folder)
    label: str = ""                 # row label in the tables (default: name)
    baseline: bool = False          # the reference line in plots (random weights, a scratch network)
    only: tuple[str, ...] = ()      # the evaluations it takes part in (default: every one of its kind)
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)   # evaluation -> its extra overrides

    @property
    def title(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class Evaluation:
    name: str                       # column id, used in folder names
    kind: str                       # image | text: the representations it takes
    domain: str                     # the pretraining it uses (the domain of the data it runs on)
    metric: Metric                  # the cell's number
    run: Train | Command | None = None    # the downstream run; None: read the pretraining run itself
    fallback: Train | Command | None = None   # with run=None: the run for an encoder spec, which has no
                                              # pretraining run to read (e.g. `selfsup probe --encoder {run}`)
    label: str = ""                 # column label (default: name)
    higher_is_better: bool = True
    aggregate: str = "mean"         # mean (Student-t 95% CI) | iqm (interquartile mean, stratified-bootstrap CI)
    ranked: bool = True             # counts in the rank aggregate (speed columns do not)
    trained_only: bool = False      # no cell for random weights (e.g. training speed of one step at lr 0)
    seeds: int = 0                  # runs per cell (0: the suite's --seeds), e.g. 5 for RL
    evidence: Evidence | None = None      # where the multi-seed evidence finds the effect, at what budget
    digits: int = 3

    @property
    def title(self) -> str:
        return self.label or self.name

    def takes(self, rep: Representation) -> bool:
        if rep.kind != self.kind or (rep.only and self.name not in rep.only):
            return False
        if self.run is None:        # read from the pretraining run: only a pretrained representation has one
            return self.domain in rep.pretrain or bool(self.fallback is not None and rep.spec)
        return self.domain in rep.pretrain or not rep.pretrain

    def __post_init__(self):
        if self.aggregate not in ("mean", "iqm"):
            raise SuiteError(f"evaluation {self.name}: aggregate must be mean or iqm, not {self.aggregate!r}")


@dataclass(frozen=True)
class Suite:
    name: str
    representations: tuple[Representation, ...]
    evaluations: tuple[Evaluation, ...]
    seeds: int = 1                  # the default of --seeds
    shared: tuple[str, ...] = ()    # domains pretrained once (seed 0), reused by every seed's downstream runs
    description: str = ""

    def rep(self, name: str) -> Representation:
        for r in self.representations:
            if r.name == name:
                return r
        raise SuiteError(f"suite {self.name}: no representation named {name!r} "
                         f"(have {', '.join(r.name for r in self.representations)})")

    def cells(self) -> list[tuple[Representation, Evaluation]]:
        """Every (row, column) pair that has a cell, rows in suite order."""
        return [(r, e) for r in self.representations for e in self.evaluations if e.takes(r)]

    def seeds_of(self, ev: Evaluation, seeds: int) -> int:
        return ev.seeds or seeds
