"""`selfsup leaderboard`: representations x uses, one table with CIs and ranks.

    selfsup leaderboard run --suite quick --out runs/leaderboard          # make every run once, then render
    selfsup leaderboard run --suite standard --launcher submitit --gpus-per-run 8 --set trainer.device=cuda
    selfsup leaderboard render runs/leaderboard [--readme README.md] [--write benchmarks/RESULTS.md]
    selfsup leaderboard plan --suite quick                                 # the jobs and their commands, not run
    selfsup leaderboard run --suite zoo --specs timm:vit_small_patch14_dinov2.lvd142m hf:facebook/vit-mae-base
    selfsup leaderboard run --suite vision --seeds 3 --only-seed 1 --out runs/standard    # one seed of three
    selfsup leaderboard keep runs/standard benchmarks/kept/standard        # the records, no weights (see keep.py)

`run` skips finished runs, resumes interrupted ones, reports failed ones (and skips what needs them) and exits
1 when any arm failed, 75 when stopped by SIGTERM/SIGINT (rerun the same command to continue), 0 otherwise.
It renders OUT/leaderboard.md, OUT/leaderboard.html and PNG figures. `--readme` puts the headline table
between `<!-- leaderboard:begin -->` and `<!-- leaderboard:end -->` in that file.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from selfsup.io import atomic_write_json, atomic_write_text

from .board import collect
from .keep import keep
from .markdown import details_md, page_md, readme_md, summary_md
from .matrix import SuiteError
from .page import page_html
from .plan import Plan, only_rows, only_seeds, plan
from .plots import figures
from .runner import exit_status, job_state, run_local, run_submitit, summary
from .suites import SUITES, make
from .verdicts import section_key

README_BEGIN, README_END = "<!-- leaderboard:begin -->", "<!-- leaderboard:end -->"


def make_plan(suite: str, out: Path, seeds: int | None, extra: list[str], data: str,
              specs: tuple[str, ...] = ()) -> Plan:
    return plan(make(suite, Path(data), specs), out, seeds, tuple(extra))


def render(p: Plan, results_md: Path | None = None) -> Path:
    """OUT/leaderboard.md, OUT/leaderboard.html and the figures; returns the HTML's path."""
    board = collect(p)
    pngs = figures(board, p.out)
    kw = {"results_md": results_md} if results_md else {}
    atomic_write_text(p.out / "leaderboard.md", page_md(board, [x.name for x in pngs], **kw))
    atomic_write_text(p.out / "leaderboard.html", page_html(board, pngs, **kw))
    return p.out / "leaderboard.html"


def replace_block(path: Path, text: str) -> None:
    """The text between the README's leaderboard markers becomes ``text``; the rest of the file is kept."""
    try:
        old = path.read_text()
    except OSError as e:
        raise SuiteError(f"--readme {path}: cannot read it ({e.strerror})") from None
    if README_BEGIN not in old or README_END not in old or old.index(README_BEGIN) > old.index(README_END):
        raise SuiteError(f"--readme {path}: add the markers {README_BEGIN} and {README_END} (in that order) "
                         "where the leaderboard's headline goes")
    start, end = old.index(README_BEGIN) + len(README_BEGIN), old.index(README_END)
    atomic_write_text(path, old[:start] + "\n" + text.rstrip() + "\n" + old[end:])


def publish(p: Plan, args, command: str) -> None:
    board = collect(p)
    stamp = (f"{datetime.date.today()} · {', '.join(sorted(board.hardware)) or 'no runs'}"
             f" · runs made by code {', '.join(sorted(board.code)) or '-'}")
    if args.readme:
        runs = sorted({len(c.values) for c in board.cells.values() if c.values}) or [0]
        where = f"`{args.write}` (section `{section_key(p.suite.name)}`)" if args.write else \
            f"`{p.out / 'leaderboard.md'}`"
        provenance = (f"Suite `{p.suite.name}`, {'–'.join(map(str, sorted({runs[0], runs[-1]})))} run(s) per cell; "
                      f"{stamp}; every metric, the verdicts against the evidence and each cell's command: {where}.")
        replace_block(Path(args.readme), f"<!-- written by `{command}`; edits here are replaced -->\n\n"
                      + readme_md(board, provenance))
        print(f"headline written to {args.readme}")
    if args.write:
        from .throughput import write_section
        write_section(Path(args.write), section_key(p.suite.name),
                      f"### Leaderboard: suite `{p.suite.name}`\n\n{stamp}\n\nCommand: `{command}`\n\n"
                      + summary_md(board) + "\n" + details_md(board))
        print(f"tables written to {args.write}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="selfsup leaderboard", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    r = sub.add_parser("run", help="make every run of a suite (skipping finished ones), then render")
    d = sub.add_parser("render", help="render a suite's folder again (its suite, seeds and --set are remembered)")
    pl = sub.add_parser("plan", help="list a suite's jobs and commands without running them")
    k = sub.add_parser("keep", help="copy the records the tables read (no weights) of finished runs to DEST")
    for sp in (d, k):
        sp.add_argument("out")
    k.add_argument("dest", help="a folder (in git, say) to keep the records in; render it, or copy it back to OUT")
    k.add_argument("--replace", action="store_true", help="copy runs already in DEST again")
    for sp in (r, pl):
        sp.add_argument("--out", default="runs/leaderboard", help="the suite's folder of runs")
    for sp in (r, d, pl, k):
        sp.add_argument("--suite", choices=sorted(SUITES), default=None if sp in (d, k) else "quick")
        sp.add_argument("--seeds", type=int, help="runs per cell (default: the suite's, 5 for RL columns of standard)")
        sp.add_argument("--set", nargs="*", action="extend", default=None, metavar="KEY=VALUE",
                        help="overrides for every training, e.g. trainer.device=cuda")
        sp.add_argument("--data", help="folder of real data for the suites that use it, when it exists "
                                       "(default: ../shared/data)")
        sp.add_argument("--specs", nargs="*", action="extend", default=None, metavar="SPEC",
                        help="zoo suite: the encoders to compare (timm:NAME, hf:NAME_OR_DIR, open_clip:ARCH[:TAG], "
                             "a run or export folder; text:SPEC for a text encoder, compared on SST-2)")
    for sp in (r, d):
        sp.add_argument("--write", help="also put the tables in this RESULTS.md (with the command and provenance)")
        sp.add_argument("--readme", help="replace the block between the leaderboard markers of this README")
    for sp in (r, pl):
        sp.add_argument("--rows", nargs="*", action="extend", default=None, metavar="ROW",
                        help="make only these rows' runs (and what they need); the page still shows every row")
        sp.add_argument("--only-seed", nargs="+", action="extend", type=int, default=None, metavar="K",
                        help="make only these seeds' runs (and what they need), e.g. one seed per machine or "
                             "session; the page still shows every seed")
    r.add_argument("--launcher", choices=("local", "submitit"), default="local",
                   help="local: one run after another here; submitit: each run a SLURM job (after what it needs)")
    r.add_argument("--gpus-per-run", type=int, default=0,
                   help="GPUs each run gets (submitit asks SLURM for them); > 1: each training under torchrun")
    r.add_argument("--cluster", help="submitit's executor: slurm (default when sbatch exists), local, debug")
    r.add_argument("--slurm-partition", help="submitit: SLURM partition")
    r.add_argument("--timeout-min", type=int, default=24 * 60, help="submitit: time limit of each job")
    args = ap.parse_args(argv)
    out = Path(args.out)
    command = "selfsup leaderboard " + " ".join(argv if argv is not None else sys.argv[2:])
    try:
        saved = json.loads((out / "suite.json").read_text()) if (out / "suite.json").is_file() else {}
        if args.verb in ("render", "keep") and not out.is_dir():
            raise SuiteError(f"{out} is not a folder of runs")
        suite = args.suite or saved.get("suite", "quick")
        # a folder's runs were made with its saved --set, --data and --specs, whichever of the suites sharing it
        # is rendered; its seed count belongs to the suite that ran
        same = saved.get("suite") == suite
        seeds = args.seeds if args.seeds is not None else saved.get("seeds") if same else None
        extra = args.set if args.set is not None else saved.get("set", [])
        data = str(Path(args.data or saved.get("data") or "../shared/data").resolve())
        specs = tuple(args.specs if args.specs is not None else saved.get("specs", []) if suite == "zoo" else [])
        p = make_plan(suite, out, seeds, extra, data, specs)
        runs = only_rows(p, args.rows) if getattr(args, "rows", None) else p     # the jobs to make; p renders
        runs = only_seeds(runs, args.only_seed) if getattr(args, "only_seed", None) else runs
        if args.verb == "keep":
            if not args.suite and not saved:
                raise SuiteError(f"{out} has no suite.json: name the suite whose runs to keep (--suite, --seeds)")
            print(f"keeping suite {suite}, {p.suite.seeds if seeds is None else seeds} seed(s)"
                  + ("" if args.suite else f" (from {out / 'suite.json'}; --suite and --seeds to choose)"))
            keep(p, Path(args.dest), args.replace)
            return 0
        if args.verb == "plan":
            states = {job.id: job_state(job, out) for job in runs.jobs.values()}
            for job in runs.jobs.values():
                print(f"{job.id} [{states[job.id]}]{'  <- ' + ', '.join(job.deps) if job.deps else ''}"
                      f"\n    selfsup {' '.join(job.argv)}")
            counts = ", ".join(f"{sum(v == k for v in states.values())} {k}" for k in sorted(set(states.values())))
            print(f"{len(runs.jobs)} jobs for {len(p.cells)} cells ({counts} in {out})")
            return 0
        status, timing = 0, ""
        if args.verb == "run":
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(out / "suite.json", {"suite": suite, "seeds": seeds, "set": extra, "data": data,
                                                   "specs": list(specs)})
            start = time.perf_counter()
            if args.launcher == "local":
                outcomes = run_local(runs, args.gpus_per_run)
            else:
                params = {"timeout_min": args.timeout_min}
                if args.slurm_partition:
                    params["slurm_partition"] = args.slurm_partition
                outcomes = run_submitit(runs, args.gpus_per_run, args.cluster, **params)
            status = exit_status(outcomes)
            timing = summary(outcomes, time.perf_counter() - start)
        page = render(p)
        publish(p, args, command)
    except SuiteError as e:
        print(f"selfsup leaderboard: error: {e}", file=sys.stderr)
        return 2
    print((out / "leaderboard.md").read_text().split("\n## Every metric")[0])
    print(f"HTML: {page.resolve()}")
    if timing:
        print(timing)
    if status == 1:
        print("selfsup leaderboard: some arms failed or were skipped (see 'Not complete' above)", file=sys.stderr)
    elif status == 75:
        print("selfsup leaderboard: stopped by a signal; run the same command again to continue", file=sys.stderr)
    return status
