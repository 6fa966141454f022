"""Does MAE pretraining beat the same ViT with random weights? Probes over several seeds.

    python -m benchmarks.mae_evidence --seeds 3 --out runs/mae-evidence [--set trainer.max_steps=1500 ...]

Each seed trains `mae --preset tiny` on the embedded scenes, and evaluates the same architecture at
step 0 (random weights, `trainer.max_steps=0`); prints mean ± std of every probe metric.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run(run_dir: Path, seed: int, extra: list[str]) -> list[dict]:
    results = run_dir / "results.json"
    if not results.exists():
        cmd = [sys.executable, "-m", "selfsup", "train", "mae", "--preset", "tiny", "--run-dir", str(run_dir),
               "--set", f"trainer.seed={seed}", "trainer.progress=false", *extra]
        if (run_dir / "checkpoints").is_dir():
            cmd.append("--resume")
        start = time.time()
        subprocess.run(cmd, check=True)
        print(f"{run_dir}: {time.time() - start:.0f}s", flush=True)
    return json.loads(results.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default="runs/mae-evidence")
    p.add_argument("--set", nargs="*", default=[], help="extra overrides for both arms")
    args = p.parse_args()
    table: dict[tuple[str, str], list[float]] = {}
    for seed in range(args.seeds):
        for arm, extra in (("mae", []), ("random", ["trainer.max_steps=0"])):
            for r in run(Path(args.out) / f"{arm}-s{seed}", seed, args.set + extra):
                table.setdefault((r["metric"], arm), []).append(r["value"])
    print(f"\n| metric | MAE pretrained | random init | (mean ± std over {args.seeds} seeds) |\n|---|---|---|---|")
    for metric in sorted({m for m, _ in table}):
        cells = []
        for arm in ("mae", "random"):
            v = table.get((metric, arm), [])
            cells.append(f"{statistics.mean(v):.4f} ± {statistics.stdev(v) if len(v) > 1 else 0:.4f}" if v else "-")
        print(f"| {metric} | {cells[0]} | {cells[1]} | |")


if __name__ == "__main__":
    main()
