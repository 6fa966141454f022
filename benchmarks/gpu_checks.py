"""The device checks of a GPU run (issue 20), beside the throughput tables of `benchmarks/gpu.sh`:

    python -m benchmarks.gpu_checks ceilings --write R.md   # bf16 matmul TFLOP/s and copy TB/s: what MFU is against
    python -m benchmarks.gpu_checks train --write R.md      # bf16 vs fp32, compiled vs eager, resume: real runs
    python -m benchmarks.gpu_checks fed --write R.md        # MAE ViT-B/16 fed by the suite's own data pipeline
    python -m benchmarks.gpu_checks profile --suite mae     # where our training step spends its device time
    python -m benchmarks.gpu_checks train --device cpu --steps 8 --jobs 2   # the same script proved on a CPU

`train` runs `selfsup train` (tiny presets of MAE and BERT, the trainer as users run it, one process per run) and
compares the per-step losses of metrics.jsonl: bf16 autocast against fp32 (they must agree within bf16 noise),
`trainer.compile=true` against eager at fp32 (the same function, so closer still), and a run stopped half-way
(`trainer.stop_at`) then resumed in a new process against the run that never stopped (the resumed half must repeat
it). The runs are independent, so they share the device `--jobs` at a time: this checks correctness, not speed.
"""
from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from selfsup.metrics import read_metrics
from selfsup.results import hardware, stamp
from selfsup.runs import read_status

ROOT = Path(__file__).resolve().parent.parent
# (arm, precision, compile): each task trains these from the same seed
ARMS = [("fp32", "fp32", False), ("bf16", "bf16", False), ("compiled fp32", "fp32", True)]
TASKS = {"mae": ["task.data.num_train=2048", "task.data.num_test=64"],
         "bert": []}
# agreement asked of each comparison: mean relative loss difference over the steps both logged (measured on the
# H200: bf16 6.7e-3 / 2.1e-4, compiled 7e-8 / 5e-8, resumed 0 / 2.3e-5 for MAE / BERT over 200 steps)
LIMITS = {"bf16 vs fp32": 0.05, "compiled vs eager (fp32)": 1e-5, "resumed vs uninterrupted (bf16)": 1e-4}
# Inductor draws random numbers with its own generator unless told to fall back to eager's
FALLBACK_RANDOM = ("import sys, torch._inductor.config as c; c.fallback_random = True; "
                   "from selfsup.cli import main; sys.exit(main(sys.argv[1:]))")


def ceilings(device: torch.device) -> list[str]:
    """A large bf16 matrix product (random data, median of 10 after 3 warm-ups) and a device-to-device copy."""
    n = 8192 if device.type == "cuda" else 512
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    mm = _median_seconds(lambda: a @ b, device)
    x = torch.randn(256 * 2**20 if device.type == "cuda" else 2**20, device=device)
    y = torch.empty_like(x)
    cp = _median_seconds(lambda: y.copy_(x), device)
    return [f"| bf16 matmul {n}x{n}x{n} (random data) | {2 * n**3 / mm / 1e12:,.1f} TFLOP/s |",
            f"| device-to-device copy, {x.numel() * 4 / 2**30:.1f} GiB (read + write counted) | "
            f"{2 * x.numel() * 4 / cp / 1e12:,.2f} TB/s |"]


def _median_seconds(fn, device: torch.device, warmup: int = 3, reps: int = 10) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def selfsup_train(task: str, preset: str, run_dir: Path, overrides: list[str], resume: bool = False,
                  fallback_random: bool = False) -> tuple[int, str]:
    """One `selfsup train` process, as a user runs it (no evaluation, no progress bar): (exit code, its output),
    the output also written beside the run folder."""
    launch = ["-c", FALLBACK_RANDOM] if fallback_random else ["-m", "selfsup"]
    cmd = [sys.executable, *launch, "train", task, "--preset", preset, "--run-dir", str(run_dir), "--set",
           "trainer.checkpoint_every=0", "trainer.eval_at_end=false", "trainer.progress=false",
           "trainer.tensorboard=false", *overrides, *(["--resume"] if resume else [])]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    text = " ".join(cmd) + "\n" + out.stdout + out.stderr
    (run_dir.parent / f"{run_dir.name}{'-resume' if resume else ''}.log").write_text(text)
    return out.returncode, text


def train_run(task: str, run_dir: Path, device: str, steps: int, precision: str, compile: bool,
              extra: list[str], resume: bool = False) -> tuple[int, str]:
    # compiled arms draw their random numbers (masks, dropout) as eager does, so that any difference is the function's
    return selfsup_train(task, "tiny", run_dir, [f"trainer.device={device}", f"trainer.precision={precision}",
                                                f"trainer.compile={str(compile).lower()}",
                                                f"trainer.max_steps={steps}", "trainer.log_every=1", *extra],
                         resume=resume, fallback_random=compile)


def losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r}


def compare(a: dict[int, float], b: dict[int, float], from_step: int = 0) -> tuple[float, float, int]:
    """Mean and max relative difference of two loss curves over the steps both logged (from ``from_step`` on)."""
    steps = sorted(s for s in a.keys() & b.keys() if s > from_step)
    if not steps:
        return math.nan, math.nan, 0
    rel = [abs(a[s] - b[s]) / max(abs(b[s]), 1e-12) for s in steps]
    return sum(rel) / len(rel), max(rel), len(steps)


def last_error(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def stopped_half_way(run_dir: Path, step: int) -> str | None:
    """None when the run stopped at ``step`` as `trainer.stop_at` stops it, else what went wrong."""
    status = read_status(run_dir)
    if status is None:
        return "no readable status.json after stop_at"
    if status.get("state") != "interrupted" or status.get("step") != step:
        return f"stop_at={step} left state {status.get('state')!r} at step {status.get('step')}"
    return None


def run_arms(device: str, steps: int, jobs: int, work: Path) -> tuple[dict, dict]:
    """Every arm of every task; the stopped arm then resumes in a new process. (run folders, failures)"""
    runs = {}
    for task, extra in TASKS.items():
        for arm, precision, compile in ARMS:
            runs[(task, arm)] = (task, work / f"{task}-{arm.replace(' ', '-')}", precision, compile, extra)
        runs[(task, "stopped")] = (task, work / f"{task}-resumed", "bf16", False,
                                   [*extra, f"trainer.stop_at={steps // 2}"])
    failures = {}

    def go(key, resume=False):
        task, run_dir, precision, compile, extra = runs[key]
        if resume:      # the saved config's trainer.stop_at (0) ends the run at max_steps
            extra = TASKS[task]
        rc, text = train_run(task, run_dir, device, steps, precision, compile, extra, resume=resume)
        print(f"{key[0]} {key[1]}{' (resumed)' if resume else ''}: exit {rc}", flush=True)
        if rc != 0:
            failures[key] = f"exit {rc}: {last_error(text)}"
        elif key[1] == "stopped" and not resume:
            failures[key] = stopped_half_way(run_dir, steps // 2)
        elif resume and not re.search(rf"resuming .* \(step {steps // 2}\)", text):
            failures[key] = f"--resume did not resume from step {steps // 2}"
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(go, runs))
        resumable = [t for t in TASKS if not failures.get((t, "stopped"))]
        list(pool.map(lambda t: go((t, "stopped"), resume=True), resumable))
    return {k: v[1] for k, v in runs.items()}, {k: v for k, v in failures.items() if v}


def verdicts(dirs: dict, failures: dict, steps: int) -> tuple[list[str], bool]:
    lines = ["| task | check | steps compared | mean rel. diff | max rel. diff | limit (mean) | verdict |",
             "|---|---|---|---|---|---|---|"]
    ok = not failures
    for task in TASKS:
        curve = {arm: losses(dirs[(task, arm)]) for arm, _, _ in ARMS}
        for check, a, b, start in [("bf16 vs fp32", curve["bf16"], curve["fp32"], 0),
                                   ("compiled vs eager (fp32)", curve["compiled fp32"], curve["fp32"], 0),
                                   ("resumed vs uninterrupted (bf16)", losses(dirs[(task, "stopped")]),
                                    curve["bf16"], steps // 2)]:
            mean, worst, n = compare(a, b, start)
            good = n == steps - start and mean <= LIMITS[check]
            ok &= good
            lines.append(f"| {task} | {check} | {n} of {steps - start} | {mean:.2e} | {worst:.2e} | "
                         f"{LIMITS[check]:g} | {'ok' if good else 'FAILED'} |")
        final = {arm: c.get(steps, math.nan) for arm, c in curve.items()}
        lines.append(f"| {task} | final loss fp32 / bf16 / compiled | step {steps} | "
                     f"{final['fp32']:.4f} / {final['bf16']:.4f} / {final['compiled fp32']:.4f} | | | |")
    lines += [f"\n{key[0]} {key[1]} failed: {why}" for key, why in failures.items()]
    return lines, ok


def train_checks(device: str, steps: int, jobs: int, work: Path) -> tuple[list[str], bool]:
    return verdicts(*run_arms(device, steps, jobs, work), steps)


def fed(device: str, preset: str, batch: int, workers: int, steps: int, work: Path) -> tuple[list[str], bool]:
    """MAE trained by the trainer from rendered scenes (uint8 in memory, augmented per sample in DataLoader
    workers): the samples/s, TFLOP/s and MFU the trainer itself logs over its last window of steps."""
    run_dir = work / "fed"
    extra = [f"trainer.batch_size={batch}", f"trainer.num_workers={workers}", f"trainer.log_every={steps // 2}",
             f"task.data.num_train={max(4 * batch, 64)}", "task.data.num_test=64"]
    rc, text = selfsup_train("mae", preset, run_dir, [f"trainer.device={device}", f"trainer.max_steps={steps}",
                                                     *extra])
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if "samples_per_s" in r]
    if rc != 0 or not rows:
        return [f"failed (exit {rc}): {last_error(text)}"], False
    last, mfu = rows[-1], rows[-1].get("mfu")
    return [f"`selfsup train mae --preset {preset} --set trainer.device={device} trainer.max_steps={steps} "
            f"{' '.join(extra)}` (the trainer's own metrics, steps {last['step'] - steps // 2 + 1}-{last['step']})",
            "", "| samples/s | TFLOP/s | MFU |", "|---|---|---|",
            f"| {last['samples_per_s']:,.1f} | {last.get('tflops', math.nan):.1f} | "
            f"{f'{100 * mfu:.1f}%' if mfu else '-'} |"], True


def profile(suite_name: str, size: str, batch: int, device: torch.device, compile: bool = False,
            rows: int = 15) -> list[str]:
    """Our contender of a throughput suite, its timed training step (`throughput.training_step`: bf16 autocast,
    fused AdamW, warmed up) profiled over 3 steps: the operators that take the device's time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from selfsup.distributed import resolve_precision

    from .throughput import SUITES, training_step
    suite = SUITES[suite_name](size, batch, device)
    ours = suite.contenders[0]
    precision = resolve_precision("auto", device)
    step = training_step(ours, suite.batch, device, precision, compile)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(3):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60)
    return [f"{ours.name}, {precision}{', compiled' if compile else ''}, 3 steps:", "",
            "```", *table.strip().splitlines(), "```"]


def cmd_ceilings(args, device) -> tuple[list[str], str, bool]:
    return ([f"### Device ceilings — {hardware(device)}", "", stamp(device), "",
             f"Command: `python -m benchmarks.gpu_checks ceilings --device {args.device}`", "",
             "| what | measured |", "|---|---|", *ceilings(device)], f"ceilings-{device.type}", True)


def cmd_profile(args, device) -> tuple[list[str], str, bool]:
    flag = " --compile" if args.compile else ""
    return ([f"### Profile of our {args.suite} training step — {args.size}, batch {args.batch}"
             f"{', compiled' if args.compile else ''}", "", stamp(device), "",
             f"Command: `python -m benchmarks.gpu_checks profile --device {args.device} --suite {args.suite} "
             f"--size {args.size} --batch {args.batch}{flag}`", "",
             *profile(args.suite, args.size, args.batch, device, args.compile)],
            f"profile-{args.suite}-{args.size}-{device.type}{'-compiled' if args.compile else ''}", True)


def cmd_fed(args, device) -> tuple[list[str], str, bool]:
    table, ok = fed(args.device, args.preset, args.batch, args.workers, args.steps, work_dir(args))
    return ([f"### MAE fed by its data pipeline — {args.preset}, batch {args.batch}, {args.workers} workers", "",
             stamp(device), "", f"Command: `python -m benchmarks.gpu_checks fed --device {args.device} --preset "
             f"{args.preset} --batch {args.batch} --workers {args.workers} --steps {args.steps}`", "", *table],
            f"mae-fed-{args.preset}-{device.type}", ok)


def cmd_train(args, device) -> tuple[list[str], str, bool]:
    table, ok = train_checks(args.device, args.steps, args.jobs, work_dir(args))
    return ([f"### Training correctness on {device.type} — tiny MAE and BERT presets, {args.steps} steps", "",
             stamp(device), "",
             f"Command: `python -m benchmarks.gpu_checks train --device {args.device} --steps {args.steps}`", "",
             "Each arm is one `selfsup train ... --preset tiny` process from seed 0; differences are of the "
             "per-step training loss (metrics.jsonl, `trainer.log_every=1`). bf16 is autocast with fp32 "
             "master weights; the resumed run stopped at half its steps (`trainer.stop_at`) and went on with "
             "`--resume` in a new process.", "", *table], f"gpu-checks-{device.type}", ok)


def work_dir(args) -> Path:
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu-checks-"))
    work.mkdir(parents=True, exist_ok=True)
    return work


COMMANDS = {"ceilings": cmd_ceilings, "train": cmd_train, "fed": cmd_fed, "profile": cmd_profile}


def main(argv=None) -> None:
    from .throughput import publish
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_checks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("check", choices=sorted(COMMANDS))
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=200, help="train, fed: optimizer steps of each run")
    p.add_argument("--jobs", type=int, default=8, help="train: runs at a time")
    p.add_argument("--work", help="train, fed: folder for the runs (default: a temporary one)")
    p.add_argument("--preset", default="vit-b16", help="fed: the mae preset")
    p.add_argument("--batch", type=int, default=256, help="fed, profile: batch size")
    p.add_argument("--workers", type=int, default=8, help="fed: DataLoader workers")
    p.add_argument("--suite", default="mae", help="profile: the throughput suite whose step is profiled")
    p.add_argument("--size", default="base", help="profile: tiny | base")
    p.add_argument("--compile", action="store_true", help="profile: torch.compile the model first")
    p.add_argument("--write", help="update this RESULTS.md with the table")
    args = p.parse_args(argv)
    lines, key, ok = COMMANDS[args.check](args, torch.device(args.device))
    publish(lines, args.write, key)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
