"""What a leaderboard suite is made of: representations (rows) x evaluations (columns).

A `Representation` is an encoder and how it is made: for each data domain it is used on, a pretraining run
(`Train`: a task, its preset, overrides and a `Budget` in steps or in minutes of training), or an encoder spec
used as it is (`timm:NAME`, `hf:NAME`, `open_clip:ARCH:TAG`, a run or export folder). An `Evaluation` is one use
of it with one primary `Metric`: a downstream run template (`Train` / `Command`) whose placeholders take the
representation, or the representation's own pretraining run when that run already measures the use (the probes
a pretraining task evaluates). `benchmarks.plan` turns a `Suite` into the jobs that make every pretraining once.

A few representations are read, not made: a baseline that a run reports beside its own number (the
bag-of-words score of a `glue` run, the chance recall of a `clip` run) is a row that ``reads`` another row's runs,
each column with its own metric. Suites that share one output folder combine with `union` (same job ids, same
commands: `standard` is `vision` + `language` + `clip` + `rl`).

Placeholders in overrides and command arguments:
    {run}            the representation's pretraining run folder on the evaluation's domain (or its spec)
    {export}         that run's export (the task's interchange format, made once by `selfsup export`)
    {run:REP}        another representation's pretraining run (REP@DOMAIN when it has several domains)
    {export:REP}     another representation's export, e.g. the BERT a captioner decodes with
    {frames:ENV}     frames collected from a gymnasium env by a random policy (made once)
    {dir} {seed}     this job's folder, its seed
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
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
    verdict beside it (read from that section's table when rendering, never copied by hand).

    A leaderboard section (`leaderboard-SUITE`, see `benchmarks.verdicts.section_key`) is read from its headline:
    the column with this column's title, the rows with these rows' titles (or ``arms``: row name here -> row title
    there). Other evidence tables (rows dataset/split/metric, a column per arm) name their row with ``dataset`` and
    ``metric`` and their columns with ``arms``."""
    section: str                    # RESULTS.md section key, e.g. leaderboard-vision, evidence-mae-tiny
    budget: str                     # the budget that evidence was measured at, e.g. "2,000 steps"
    arms: Mapping[str, str] = field(default_factory=dict)   # representation name -> that table's row or column
    dataset: str = ""               # "": the section's headline table
    metric: str = ""
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
    reads: str = ""                 # or the runs of that representation, read with `metrics` (a baseline they
                                    # report beside their own number); it takes exactly the columns in `metrics`
    metrics: Mapping[str, Metric] = field(default_factory=dict)   # evaluation -> the metric this row reads

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
    tasks: tuple[str, ...] = ()     # run=None: the pretraining tasks whose own evaluation measures this alike
                                    # (default: any), e.g. the MIM tasks' probes but not clip's (other images)
    where_defined: bool = False     # a complete run that does not report the metric is "–" (not defined for that
                                    # representation, e.g. MLM accuracy without an MLM head), not a problem
    along: int = 0                  # > 1: the downstream run is also made from the pretraining's checkpoints at
                                    # k/along of its budget (k < along): this use against pretraining minutes, at
                                    # along - 1 more runs per row and seed. The pretraining must keep those
                                    # checkpoints (`checkpoints_along`)

    @property
    def title(self) -> str:
        return self.label or self.name

    def takes(self, rep: Representation) -> bool:
        if rep.reads:
            return rep.kind == self.kind and self.name in rep.metrics
        if rep.kind != self.kind or (rep.only and self.name not in rep.only):
            return False
        if self.run is None:        # read from the pretraining run: only a pretrained representation has one
            if self.domain in rep.pretrain:
                return not self.tasks or rep.pretrain[self.domain].task in self.tasks
            return bool(self.fallback is not None and rep.spec)
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
    pairs: frozenset | None = None  # the (representation, evaluation) names that have a cell (default: every pair
                                    # whose evaluation takes the representation); a `union` keeps its suites' own

    def rep(self, name: str) -> Representation:
        for r in self.representations:
            if r.name == name:
                return r
        raise SuiteError(f"suite {self.name}: no representation named {name!r} "
                         f"(have {', '.join(r.name for r in self.representations)})")

    def cells(self) -> list[tuple[Representation, Evaluation]]:
        """Every (row, column) pair that has a cell, rows in suite order."""
        if self.pairs is not None:
            return [(r, e) for r in self.representations for e in self.evaluations if (r.name, e.name) in self.pairs]
        return [(r, e) for r in self.representations for e in self.evaluations if e.takes(r)]

    def seeds_of(self, ev: Evaluation, seeds: int) -> int:
        return ev.seeds or seeds


def checkpoints_along(budget: Budget, parts: int) -> tuple[str, ...]:
    """Overrides for a pretraining that an `Evaluation(along=parts)` reads along the way: evaluate, and keep a
    checkpoint, every budget/parts steps."""
    if budget.steps is None or budget.steps < parts:
        raise SuiteError(f"checkpoints along a pretraining need a budget of at least {parts} steps, not {budget}")
    every = budget.steps // parts
    return (f"trainer.eval_every={every}", f"trainer.checkpoint_every={every}", "trainer.keep_last=0")


def _merge_rep(a: Representation, b: Representation) -> Representation:
    differ = [k for k in ("kind", "spec", "reads", "baseline") if getattr(a, k) != getattr(b, k)]
    if differ:
        raise SuiteError(f"representation {a.name} differs between suites in {', '.join(differ)}")
    for domain in a.pretrain.keys() & b.pretrain.keys():
        if a.pretrain[domain] != b.pretrain[domain]:
            raise SuiteError(f"representation {a.name} is pretrained on {domain} in two ways:\n  {a.pretrain[domain]}"
                             f"\n  {b.pretrain[domain]}\n(suites that share a folder must make a run one way)")
    for mapping in ("extra", "metrics"):
        x, y = getattr(a, mapping), getattr(b, mapping)
        if any(x[k] != y[k] for k in x.keys() & y.keys()):
            raise SuiteError(f"representation {a.name} has two different {mapping} for one evaluation")
    return Representation(a.name, a.kind, {**a.pretrain, **b.pretrain}, a.spec, a.label or b.label, a.baseline,
                          extra={**a.extra, **b.extra}, reads=a.reads, metrics={**a.metrics, **b.metrics})


def union(name: str, suites: list[Suite], description: str = "", seeds: int = 3) -> Suite:
    """The suites as one matrix over one output folder: each representation's pretrainings merged (a run made
    one way only), the evaluations side by side (one definition per name, with its suite's seed count), and
    exactly the cells the suites have."""
    reps: dict[str, Representation] = {}
    evs: dict[str, Evaluation] = {}
    pairs, shared = set(), {}
    for suite in suites:
        for rep in suite.representations:
            reps[rep.name] = _merge_rep(reps[rep.name], rep) if rep.name in reps else rep
        for ev in suite.evaluations:
            ev = replace(ev, seeds=ev.seeds or suite.seeds)
            if ev.name in evs and evs[ev.name] != ev:
                raise SuiteError(f"evaluation {ev.name} is defined differently in suite {suite.name}")
            evs[ev.name] = ev
        for rep in suite.representations:
            for domain in rep.pretrain:
                if shared.setdefault(domain, domain in suite.shared) != (domain in suite.shared):
                    raise SuiteError(f"domain {domain} is shared (pretrained once) in one suite and not in another")
        pairs |= {(r.name, e.name) for r, e in suite.cells()}
    return Suite(name, tuple(reps.values()), tuple(evs.values()), seeds=seeds,
                 shared=tuple(d for d, s in shared.items() if s), description=description, pairs=frozenset(pairs))
