"""`selfsup leaderboard run|render`: run a suite (skipping finished runs, resuming interrupted ones) and
turn its Result records into a Markdown table, a self-contained HTML page and PNG plots.

    selfsup leaderboard run --suite quick --seeds 1 --out runs/leaderboard
    selfsup leaderboard render runs/leaderboard
"""
from __future__ import annotations

import argparse
import base64
import datetime
import html
import math
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from selfsup.io import atomic_save_figure, atomic_write_text
from selfsup.metrics import read_metrics
from selfsup.results import ResultsFileError, read_results
from selfsup.runs import run_state
from selfsup.stats import interval_estimate, probability_of_improvement

from .curves import plot_return_curves
from .suites import SUITES, RunSpec

# two-sided 95% Student-t quantiles by degrees of freedom (n - 1); beyond 30 the normal 1.96
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       15: 2.131, 20: 2.086, 30: 2.042}


def ci95(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval over seeds (0 for one seed)."""
    mean = statistics.mean(values)
    if len(values) < 2:
        return mean, 0.0
    df = len(values) - 1
    t = T95.get(df) or next((T95[k] for k in sorted(T95) if k >= df), 1.96)
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


# ---------------------------------------------------------------------------------------------- running


def _resolve(value: str, out: Path, seed: int, specs: dict[str, RunSpec]) -> str:
    """{run:NAME} -> that run's folder; {export:NAME} -> its task's export format (made once);
    {frames:ENV} -> frames collected from that env (made once)."""
    seed_of = lambda name: 0 if specs[name].once else seed  # noqa: E731
    if value.startswith("{run:"):
        return str(out / f"{value[5:-1]}-s{seed_of(value[5:-1])}")
    if value.startswith("{frames:"):
        env = value[8:-1]
        folder = out / f"frames-{env}"
        if not (folder / "frames").is_dir():
            subprocess.run([sys.executable, "-m", "selfsup", "rl-pretrain", "--frames-only", "--env", env,
                            "--out", str(folder)], check=True)
        return str(folder / "frames")
    if value.startswith("{export:"):
        name = value[8:-1]
        export = out / f"{name}-s{seed_of(name)}" / "export"
        if not export.is_dir():
            subprocess.run([sys.executable, "-m", "selfsup", "export", specs[name].task, "--checkpoint",
                            str(export.parent), "--out", str(export)], check=True)
        return str(export)
    return value


def run_suite(specs: list[RunSpec], seeds: int, out: Path, extra: list[str] = ()) -> list[str]:
    """Runs every spec for every seed in order; returns what it did per run ('done', 'resumed', 'ran')."""
    log = []
    by_name = {s.name: s for s in specs}
    for seed in range(seeds):
        for spec in specs:
            if spec.once and seed > 0:
                continue
            run_dir = out / f"{spec.name}-s{seed}"
            state = run_state(run_dir)
            if state == "complete":
                log.append(f"{run_dir.name}: complete, skipped")
                continue
            overrides = []
            for o in spec.overrides:
                key, _, value = o.partition("=")
                overrides.append(f"{key}={_resolve(value, out, seed, by_name)}")
            cmd = [sys.executable, "-m", "selfsup", "train", spec.task, "--preset", spec.preset,
                   "--run-dir", str(run_dir), "--set", f"trainer.seed={seed}", *overrides, *extra]
            resume = state != "new"
            if resume:
                cmd.append("--resume")
            print(f"[leaderboard] {run_dir.name}: {'resuming' if resume else 'running'}", flush=True)
            subprocess.run(cmd, check=True)
            log.append(f"{run_dir.name}: {'resumed' if resume else 'ran'}")
    return log


# ---------------------------------------------------------------------------------------------- rendering


def collect(out: Path, specs: list[RunSpec]) -> tuple[dict, list[str], dict]:
    """(group, dataset, split, metric) -> arm -> [value per seed], the problems found (corrupt files), and
    provenance: the hardware and code versions the results came from."""
    table: dict = defaultdict(lambda: defaultdict(list))
    problems, provenance = [], {"hardware": set(), "code": set()}
    for spec in specs:
        for run_dir in sorted(out.glob(f"{spec.name}-s*")):
            if not run_dir.is_dir():
                continue
            try:
                results = read_results(run_dir / "results.json")
            except ResultsFileError as e:
                problems.append(str(e))
                continue
            latest = {}
            for r in results:   # the latest evaluated step of each metric
                k = (r.dataset, r.split, r.metric)
                if k not in latest or (r.step or 0) >= (latest[k].step or 0):
                    latest[k] = r
            for (dataset, split, metric), r in latest.items():
                table[(spec.group, dataset, split, metric)][spec.arm].append(r.value)
                provenance["hardware"].add(r.hardware)
                provenance["code"].add(r.code_version)
    return table, problems, provenance


def _tables(table: dict, arms: list[str], header, cell) -> list[str]:
    """One pipe table per group, with only the arms that group has."""
    lines = []
    for group in sorted({k[0] for k in table}):
        keys = sorted(k for k in table if k[0] == group)
        group_arms = [a for a in arms if any(table[k].get(a) for k in keys)]
        lines += ["| group | dataset | split | metric | " + " | ".join(header(a) for a in group_arms) + " |",
                  "|---" * (4 + len(group_arms)) + "|"]
        lines += [f"| {' | '.join(k)} | " + " | ".join(cell(k, a) for a in group_arms) + " |" for k in keys]
        lines.append("")
    return lines


def markdown(table: dict, arms: list[str], problems: list[str]) -> str:
    def cell(key, arm):
        v = table[key].get(arm)
        return f"{ci95(v)[0]:.4f} ± {ci95(v)[1]:.4f} ({len(v)})" if v else "–"
    lines = _tables(table, arms, lambda a: f"{a} (mean ± 95% CI, n)", cell)
    if problems:
        lines += ["**Not included** (fix or move aside, then render again):"] + [f"- {p}" for p in problems]
    return "\n".join(lines) + "\n"


def markdown_iqm(table: dict, arms: list[str], baselines: dict[str, str]) -> str:
    """Interquartile mean with its 95% stratified-bootstrap CI, and P(a run of the arm scores higher than a run
    of the group's baseline arm) with its CI (Agarwal et al., 2021): robust to one odd seed, honest at few seeds."""
    def cell(key, arm):
        v, baseline = table[key].get(arm), baselines.get(key[0], "")
        if not v:
            return "–"
        point, lo, hi = interval_estimate(v)
        text = f"{point:.4f} [{lo:.4f}, {hi:.4f}]"
        base = table[key].get(baseline)
        if base and arm != baseline:
            p, plo, phi = probability_of_improvement(v, base)
            text += f"; {p:.2f} [{plo:.2f}, {phi:.2f}]"
        return text
    return "\n".join(_tables(table, arms, lambda a: f"{a} IQM [95% CI]; P(> baseline)", cell)) + "\n"


def plot_groups(table: dict, arms: list[str], out_dir: Path) -> list[Path]:
    """One PNG per group: each metric's mean with its 95% CI, arms side by side."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = []
    for group in sorted({k[0] for k in table}):
        keys = sorted(k for k in table if k[0] == group)
        fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(keys)), 4))
        width = 0.8 / len(arms)
        for i, arm in enumerate(arms):
            stats = [ci95(table[k][arm]) if table[k].get(arm) else (math.nan, 0) for k in keys]
            ax.bar([j + i * width for j in range(len(keys))], [s[0] for s in stats], width,
                   yerr=[s[1] for s in stats], capsize=2, label=arm)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(keys))])
        ax.set_xticklabels([f"{k[1]}/{k[3]}" for k in keys], rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{group}: mean and 95% CI over seeds")
        ax.legend()
        paths.append(atomic_save_figure(fig, out_dir / f"leaderboard-{group}.png"))
    return paths


def plot_curves(out: Path, specs: list[RunSpec]) -> Path | None:
    """Training loss of every run that trained, one line per run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    series = {}
    for spec in specs:
        for run_dir in sorted(out.glob(f"{spec.name}-s*")):
            f = run_dir / "metrics.jsonl"
            rows = read_metrics(f)             # a torn or garbled line is skipped with a warning
            if rows:
                series[run_dir.name] = ([r["step"] for r in rows], [r["loss"] for r in rows])
    if not series:
        return None
    groups = sorted({name.rsplit("-", 2)[0] for name in series})
    fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 3.2), squeeze=False)
    for ax, g in zip(axes[0], groups):
        for name, (x, y) in series.items():
            if name.rsplit("-", 2)[0] == g:
                ax.plot(x, y, label=name, lw=1)
        ax.set_title(f"{g}: training loss")
        ax.set_xlabel("step")
        ax.legend(fontsize=6)
    return atomic_save_figure(fig, out / "training-curves.png")


def _html(md: str) -> str:
    """The leaderboard's own Markdown (headings, paragraphs, pipe tables) as HTML."""
    parts, rows = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                tag = "td" if rows else "th"
                rows.append("<tr>" + "".join(f"<{tag}>{html.escape(c.strip())}</{tag}>"
                                             for c in line.strip("|").split("|")) + "</tr>")
            continue
        if rows:
            parts.append(f"<table>{''.join(rows)}</table>")
            rows = []
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            parts.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.strip():
            parts.append(f"<p>{html.escape(line)}</p>")
    return "".join(parts)


def render(out: Path, suite: str, write: str | None = None, command: str = "") -> Path:
    """leaderboard.md / .html / PNGs in ``out``; with ``write``, the tables also go into that RESULTS.md."""
    specs = SUITES[suite]()
    arms = list(dict.fromkeys(s.arm for s in specs))
    table, problems, provenance = collect(out, specs)
    baselines = {s.group: s.baseline for s in specs}
    md = (f"# Leaderboard: suite `{suite}`\n\n" + markdown(table, arms, problems) +
          "\n## Interquartile mean over seeds (95% stratified-bootstrap CI); P(arm > group baseline)\n\n" +
          "Baselines: " + ", ".join(f"{g}: {b}" for g, b in sorted(baselines.items())) + "\n\n" +
          markdown_iqm(table, arms, baselines))
    atomic_write_text(out / "leaderboard.md", md)
    if write:
        from .throughput import write_section
        header = (f"### Leaderboard: suite `{suite}`\n\n"
                  f"{datetime.date.today()} · {', '.join(sorted(provenance['hardware']))}"
                  f" · runs made by code {', '.join(sorted(provenance['code']))}\n\nCommand: `{command}`\n\n")
        write_section(Path(write), f"leaderboard-{suite}", header + md.split("\n", 2)[2])
    pngs = plot_groups(table, arms, out) + [p for p in [plot_curves(out, specs), plot_return_curves(out, specs)] if p]
    images = "".join(f'<img alt="{p.name}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}"><br>'
                     for p in pngs)
    page = (f"<!doctype html><meta charset='utf-8'><title>selfsup leaderboard: {suite}</title>"
            "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:2px 6px}</style>"
            f"{_html(md)}{images}")
    atomic_write_text(out / "leaderboard.html", page)
    return out / "leaderboard.html"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="selfsup leaderboard", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="verb", required=True)
    r = sub.add_parser("run", help="run a suite, then render it")
    r.add_argument("--suite", choices=sorted(SUITES), default="quick")
    r.add_argument("--seeds", type=int, default=1)
    r.add_argument("--out", default="runs/leaderboard")
    r.add_argument("--set", nargs="*", default=[], help="overrides for every run, e.g. trainer.device=cuda")
    d = sub.add_parser("render", help="render a suite's results")
    d.add_argument("out")
    d.add_argument("--suite", choices=sorted(SUITES), default="quick")
    for sp in (r, d):
        sp.add_argument("--write", help="also put the tables in this RESULTS.md (with the command and provenance)")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.verb == "run":
        out.mkdir(parents=True, exist_ok=True)
        run_suite(SUITES[args.suite](), args.seeds, out, args.set)
    elif not out.is_dir():
        print(f"selfsup leaderboard: error: {out} is not a folder of runs", file=sys.stderr)
        return 2
    command = "selfsup leaderboard " + " ".join(argv if argv is not None else sys.argv[2:])
    page = render(out, args.suite, args.write, command)
    print((out / "leaderboard.md").read_text())
    print(f"HTML: {page.resolve()}")
    return 0
