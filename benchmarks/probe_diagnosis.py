"""Does a representation *encode* a scene attribute, or only find look-alikes? The probes of `mae`
read against raw pixels and a random ViT, within and across a nuisance attribute.

    python -m benchmarks.probe_diagnosis --runs runs/evidence-mae/pretrained-s0 runs/evidence-mae/pretrained-s1 ...

Representations: raw pixels; the runs' ViT with random weights (one per run, seeded like it); each
MAE run given. For each (attribute, nuisance) pair, e.g. shape across colour:

- kNN: the evaluation's kNN (cosine, k=20, T=0.07) on the test split;
- kNN, neighbours of another nuisance: the same, with neighbours only among scenes whose main object
  differs in the nuisance (another colour; another quadrant of the image);
- linear: the evaluation's linear probe;
- linear, across: the probe trained on scenes with the first half of the nuisance's values, tested
  on scenes with the other half (e.g. shapes of red/green/blue/yellow objects -> purple/orange/white;
  objects in the top half -> the bottom half).

A feature that encodes the attribute keeps its accuracy across the nuisance; one that matches
appearance, like raw pixels, falls toward chance. The last rows say what the 20 nearest training
scenes (cosine) share with each test scene, against the chance that two random scenes share it.
"""
from __future__ import annotations

import argparse
from collections import defaultdict

import torch

from selfsup.probes import knn_accuracy, linear_probe, nearest
from selfsup.results import stamp
from vision import sources
from vision.encoder import ViTEncoder
from vision.features import extract_features
from vision.scenes import num_classes

from .throughput import publish, spread_table

PAIRS = (("shape", "colour"), ("shape", "position"), ("colour", "shape"))
SHARED = ("shape", "colour", "size", "count", "position", "background")   # what neighbours may have in common


def diagnose(train_x, test_x, train_a: dict, test_a: dict, epochs: int) -> dict[str, float]:
    """Every probe of one representation, keyed by its row name."""
    out = {}
    for target, nuisance in PAIRS:
        ytr, yte, ntr, nte = train_a[target], test_a[target], train_a[nuisance], test_a[nuisance]
        half = (num_classes(nuisance) + 1) // 2
        a, b = ntr < half, nte >= half
        if f"{target}: kNN" not in out:          # the plain probes once per target, not once per nuisance
            out[f"{target}: kNN"] = knn_accuracy(train_x, ytr, test_x, yte)
        out[f"{target}: kNN, neighbours of another {nuisance}"] = knn_accuracy(train_x, ytr, test_x, yte,
                                                                              groups=(ntr, nte))
        if f"{target}: linear" not in out:
            out[f"{target}: linear"] = linear_probe(train_x, ytr, test_x, yte, epochs=epochs)
        out[f"{target}: linear, trained on {half} {nuisance}s, tested on the other {num_classes(nuisance) - half}"] = \
            linear_probe(train_x[a], ytr[a], test_x[b], yte[b], epochs=epochs)
    return out


def shared(train_x, test_x, train_a: dict, test_a: dict, k: int = 20) -> dict[str, float]:
    """Per attribute, the fraction of each test scene's k nearest training scenes that match it there."""
    hits = dict.fromkeys(SHARED, 0.0)
    for i, _, idx in nearest(train_x, test_x, k):
        for a in SHARED:
            hits[a] += (train_a[a][idx] == test_a[a][i:i + len(idx), None]).float().mean(1).sum().item()
    return {f"neighbours sharing {a}": h / len(test_x) for a, h in hits.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="*", default=[], help="MAE runs (or checkpoints) trained on the default scenes")
    p.add_argument("--pool", default="mean", choices=["cls", "mean"])
    p.add_argument("--epochs", type=int, default=60, help="linear-probe epochs (the tiny preset's)")
    p.add_argument("--size", type=int, default=32, help="image side when no run is given")
    p.add_argument("--write", help="update this RESULTS.md with the table")
    args = p.parse_args()
    encoders = [ViTEncoder.from_checkpoint(r) for r in args.runs]
    size = encoders[0].cfg.img_size if encoders else args.size
    train, test = sources.load(sources.ImageDataConfig(), size)
    rows: dict[str, list[dict[str, float]]] = defaultdict(list)
    rows["chance"].append({f"neighbours sharing {a}": (torch.bincount(train.attributes[a]).float() / len(train))
                           .pow(2).sum().item() for a in SHARED})    # two random scenes agree
    pixels = tuple(s.take(torch.arange(len(s))).flatten(1).float() / 255 for s in (train, test))
    rows["raw pixels"].append({**diagnose(*pixels, train.attributes, test.attributes, args.epochs),
                               **shared(*pixels, train.attributes, test.attributes)})
    for seed, enc in enumerate(encoders):
        torch.manual_seed(seed)
        for name, e in (("ViT, random weights", ViTEncoder.random(enc.cfg)), ("ViT, MAE-pretrained", enc)):
            f_train, f_test = (extract_features(e, s, None, size)[args.pool] for s in (train, test))
            rows[name].append({**diagnose(f_train, f_test, train.attributes, test.attributes, args.epochs),
                               **shared(f_train, f_test, train.attributes, test.attributes)})
            print(name, seed, {k: round(v, 3) for k, v in rows[name][-1].items()}, flush=True)
    runs = " ".join(args.runs)
    lines = [f"### Encoding or look-alikes? Scene probes within and across a nuisance ({args.pool} features)", "",
             (f"{stamp(torch.device('cpu'))} · ViT rows: mean ± std over {len(encoders)} run(s) · "
              "chance: shape 0.20, colour 0.14 · position = quadrant of the main object"), "",
             f"Command: `python -m benchmarks.probe_diagnosis --pool {args.pool}"
             f"{' --runs ' + runs if runs else ''}`", "",
             *spread_table("probe (test top-1)", rows, list(rows["raw pixels"][0]))]
    publish(lines, args.write, f"probe-diagnosis-scenes-{size}-{args.pool}")


if __name__ == "__main__":
    main()
