"""Does pretraining beat the same architecture with random weights? Every evaluation metric, over seeds.

    python -m benchmarks.evidence mae --seeds 3 --out runs/evidence-mae [--set trainer.max_steps=1500 ...]
    python -m benchmarks.evidence bert --seeds 3 --out runs/evidence-bert

Each seed trains `TASK --preset tiny` on the embedded data, and evaluates the same architecture at
step 0 (random weights: `trainer.max_steps=0`); prints mean ± std of every metric for both arms.
Finished runs are reused, interrupted ones resumed.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run(task: str, run_dir: Path, seed: int, extra: list[str]) -> list[dict]:
    results = run_dir / "results.json"
    if not results.exists():
        cmd = [sys.executable, "-m", "selfsup", "train", task, "--preset", "tiny", "--run-dir", str(run_dir),
               "--set", f"trainer.seed={seed}", "trainer.progress=false", *extra]
        if (run_dir / "checkpoints").is_dir():
            cmd.append("--resume")
        start = time.time()
        subprocess.run(cmd, check=True)
        print(f"{run_dir}: {time.time() - start:.0f}s", flush=True)
    return json.loads(results.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", help="a task with a tiny preset, e.g. mae or bert")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", help="default: runs/evidence-TASK")
    p.add_argument("--set", nargs="*", default=[], help="extra overrides for both arms")
    args = p.parse_args()
    out = Path(args.out or f"runs/evidence-{args.task}")
    table: dict[tuple[str, str, str], list[float]] = {}
    for seed in range(args.seeds):
        for arm, extra in (("pretrained", []), ("random", ["trainer.max_steps=0"])):
            for r in run(args.task, out / f"{arm}-s{seed}", seed, args.set + extra):
                table.setdefault((r["dataset"], r["metric"], arm), []).append(r["value"])
    print(f"\n{args.task}: mean ± std over {args.seeds} seeds\n")
    print("| dataset | metric | pretrained | random init |\n|---|---|---|---|")
    for dataset, metric in sorted({(d, m) for d, m, _ in table}):
        cells = []
        for arm in ("pretrained", "random"):
            v = table.get((dataset, metric, arm), [])
            cells.append(f"{statistics.mean(v):.4f} ± {statistics.stdev(v) if len(v) > 1 else 0:.4f}" if v else "-")
        print(f"| {dataset} | {metric} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
