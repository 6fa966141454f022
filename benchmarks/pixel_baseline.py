"""kNN on raw pixels for the scene attributes: the floor any encoder's kNN should be read against.

    python -m benchmarks.pixel_baseline            # the mae tiny preset's data: 20,000 / 2,000 scenes at 32x32

Uses the same scenes and the same kNN (cosine, k=20, T=0.07) as `mae`'s evaluation.
"""
from __future__ import annotations

import argparse
import datetime

from selfsup.probes import knn_accuracy
from selfsup.results import code_version
from vision import sources

from .throughput import publish


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--labels", nargs="*", default=["shape", "count", "colour"])
    p.add_argument("--write", help="update this RESULTS.md with the table")
    args = p.parse_args()
    train, test = sources.load(sources.ImageDataConfig(), args.size)
    x_train, x_test = train.images.flatten(1).float() / 255, test.images.flatten(1).float() / 255
    lines = [f"### kNN on raw pixels, scenes at {args.size}x{args.size} (the mae tiny data)", "",
             f"{datetime.date.today()} · code {code_version()} · Command: `python -m benchmarks.pixel_baseline`", "",
             "| attribute | kNN top-1 on raw pixels |", "|---|---|"]
    for label in args.labels:
        acc = knn_accuracy(x_train, train.attributes[label], x_test, test.attributes[label])
        lines.append(f"| scenes-{label} | {acc:.4f} |")
    publish(lines, args.write, f"pixels-scenes-{args.size}")


if __name__ == "__main__":
    main()
