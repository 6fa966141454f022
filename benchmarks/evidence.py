"""Does pretraining beat the same architecture with random weights? Every evaluation metric, over seeds.

    python -m benchmarks.evidence mae --seeds 3 --out runs/evidence-mae [--set trainer.max_steps=1500 ...]
    python -m benchmarks.evidence bert --seeds 3 --out runs/evidence-bert
    python -m benchmarks.evidence caption --seeds 3 --pretrained runs    # uses runs/evidence-{mae,bert}
    python -m benchmarks.evidence caption-peer --seeds 3                 # our captioner vs VisionEncoderDecoderModel
    python -m benchmarks.evidence vit-finetune --seeds 3 --pretrained runs --set task.data.label=shape
    python -m benchmarks.evidence clip --seeds 3 --pretrained runs       # CLIP towers from MAE + BERT vs random
    python -m benchmarks.evidence caption-clip --seeds 3 --pretrained runs   # caption on CLIP / MAE / random ViTs

Each seed trains `TASK --preset tiny` on the embedded data, and evaluates the same architecture at
step 0 (random weights: `trainer.max_steps=0`); prints mean ± std of every metric for both arms.
`vit-finetune` finetunes the MAE runs/evidence-mae/pretrained-sN (MAE's main protocol) against the same
budget from random weights. `caption-peer` instead trains our captioner and transformers' VisionEncoderDecoderModel
(`task.impl=transformers`) from the same random initial weights, data and budget. `clip` aligns towers initialised
from the MAE and BERT runs of the same seed against random towers of the same architectures and tokenizer;
`caption-clip` captions with the image tower of those CLIP runs (from MAE, and from random weights) against the MAE
run's and a random one, the decoder warm-started from the same BERT export in every arm.
Finished runs are reused, interrupted ones resumed.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from selfsup.runs import run_state

from .throughput import publish


def run(task: str, run_dir: Path, seed: int, extra: list[str]) -> list[dict]:
    results = run_dir / "results.json"
    state = run_state(run_dir)
    if state != "complete":
        cmd = [sys.executable, "-m", "selfsup", "train", task, "--preset", "tiny", "--run-dir", str(run_dir),
               "--set", f"trainer.seed={seed}", "trainer.progress=false", *extra]
        if state != "new":
            cmd.append("--resume")
        start = time.time()
        subprocess.run(cmd, check=True)
        print(f"{run_dir}: {time.time() - start:.0f}s", flush=True)
    return json.loads(results.read_text())


TASK = {"caption-peer": "caption", "caption-clip": "caption"}   # evidence name -> the task it trains


def export(task: str, run_dir: Path, out: Path) -> Path:
    """`selfsup export TASK` of a finished run, once (the file an export writes last marks it complete)."""
    if not (out / {"bert": "config.json", "clip": "clip.json"}[task]).exists():
        subprocess.run([sys.executable, "-m", "selfsup", "export", task, "--checkpoint", str(run_dir),
                        "--out", str(out)], check=True)
    return out


def arms(task: str, seed: int, out: Path, pretrained: Path) -> list[tuple[str, list[str]]]:
    """(name, overrides) of the arms. Pretraining tasks: trained vs step 0. Finetuning: from the MAE
    run of the same seed vs from random weights. Captioning (and CLIP): the same budget on
    (MAE encoder + MLM-pretrained text model) vs (random ViT + random text model), both with the BERT run's tokenizer
    and architecture. caption-clip: four image towers under one MLM-pretrained decoder."""
    if task == "caption-peer":
        return [("selfsup", []), ("transformers", ["task.impl=transformers"])]
    if task == "vit-finetune":
        return [("pretrained", [f"task.init={pretrained / 'evidence-mae' / f'pretrained-s{seed}'}"]), ("random", [])]
    if task not in ("caption", "clip", "caption-clip"):
        return [("pretrained", []), ("random", ["trainer.max_steps=0"])]
    mae = pretrained / "evidence-mae" / f"pretrained-s{seed}"
    bert = export("bert", pretrained / "evidence-bert" / f"pretrained-s{seed}", out / f"bert-export-s{seed}")
    if task == "caption-clip":
        clip = {arm: export("clip", pretrained / "evidence-clip" / f"{arm}-s{seed}", out / f"clip-{arm}-export-s{seed}")
                for arm in ("pretrained", "random")}
        return [("clip-from-mae", [f"task.vision_init={clip['pretrained'] / 'image'}", f"task.text_init={bert}"]),
                ("clip-from-random", [f"task.vision_init={clip['random'] / 'image'}", f"task.text_init={bert}"]),
                ("mae", [f"task.vision_init={mae}", f"task.text_init={bert}"]),
                ("random", [f"task.text_init={bert}"])]
    return [("pretrained", [f"task.vision_init={mae}", f"task.text_init={bert}"]),
            ("random", [f"task.text_init={bert}", "task.text_pretrained=false"])]


def time_of(run_dir: Path) -> float:
    """Wall time of a finished run: from its config (written at start) to its results (written at the end)."""
    return (run_dir / "results.json").stat().st_mtime - (run_dir / "config.yaml").stat().st_mtime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", help="a task with a tiny preset, e.g. mae or bert")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", help="default: runs/evidence-TASK")
    p.add_argument("--set", nargs="*", default=[], help="extra overrides for both arms")
    p.add_argument("--write", help="update this RESULTS.md with the table")
    p.add_argument("--key", help="its RESULTS.md section (default: evidence-TASK-tiny); name ablations apart")
    p.add_argument("--pretrained", default="runs",
                   help="caption, clip: folder holding evidence-mae/ and evidence-bert/ (caption-clip: evidence-clip/)")
    args = p.parse_args()
    out = Path(args.out or f"runs/evidence-{args.task}")
    table: dict[tuple[str, str, str, str], list[float]] = {}
    walls: list[dict] = []
    versions: set[str] = set()
    machines: set[str] = set()
    for seed in range(args.seeds):
        arm_list = arms(args.task, seed, out, Path(args.pretrained))
        for arm, extra in arm_list:
            results = run(TASK.get(args.task, args.task), out / f"{arm}-s{seed}", seed, args.set + extra)
            for r in results:
                table.setdefault((r["dataset"], r["split"], r["metric"], arm), []).append(r["value"])
                versions.add(r["code_version"])
                machines.add(r["hardware"])
            if arm == arm_list[0][0]:
                walls.append({"wall": time_of(out / f"{arm}-s{seed}")})
    wall = [r["wall"] for r in walls]
    names = [a for a, _ in arm_list]
    lines = [f"### {args.task} --preset tiny: {' vs '.join(names)}, mean ± std over {args.seeds} seeds", "",
             f"{datetime.date.today()} · {', '.join(sorted(machines))} · "
             f"runs made by code {', '.join(sorted(versions))} · "
             f"{names[0]} arm: {statistics.mean(wall):.0f} s wall time per seed (training + evaluation)"
             if wall else "", "",
             f"Command: `python -m benchmarks.evidence {args.task} --seeds {args.seeds}"
             f"{f' --out {args.out}' if args.out else ''}{f' --key {args.key}' if args.key else ''}"
             f"{' --set ' + ' '.join(args.set) if args.set else ''}`", "",
             f"| dataset | split | metric | {' | '.join(names)} |", "|---" * (3 + len(names)) + "|"]
    for dataset, split, metric in sorted({k[:3] for k in table}):
        cells = []
        for arm in names:
            v = table.get((dataset, split, metric, arm), [])
            n = f" (n={len(v)})" if v and len(v) != args.seeds else ""   # a metric only some runs reported
            cells.append(f"{statistics.mean(v):.4f} ± {statistics.stdev(v) if len(v) > 1 else 0:.4f}{n}" if v else "-")
        lines.append(f"| {dataset} | {split} | {metric} | {' | '.join(cells)} |")
    publish(lines, args.write, args.key or f"evidence-{args.task}-tiny")


if __name__ == "__main__":
    main()
