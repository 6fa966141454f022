"""`selfsup probe`: linear and kNN probes of any image encoder's frozen features on any image set, no pretraining.

    selfsup probe --encoder timm:vit_small_patch14_dinov2.lvd142m --data imagefolder:../shared/data/cifar10-subset \\
        --out runs/probe-dinov2
    selfsup probe --encoder runs/mae --data scenes --set data.label=count probe.max_train=5000 --out runs/probe-mae
    selfsup probe --encoder pixels --data imagefolder:../shared/data/cifar10-subset --set image_size=32 \
        --out runs/probe-pixels                  # the raw-pixel baseline, same Result records

``--encoder`` takes any spec (selfsup.encoders: our runs and exports, a clip run, timm:, hf:, open_clip:, and
``pixels`` for the raw-pixel baseline); ``--random`` the same architecture with fresh weights (its control); ``--data``
the sources of ``task.data`` (scenes, digits, imagefolder:PATH, cifar10:PATH, cifar100:PATH, ...), and ``--set`` any
key of ``data.*`` / ``probe.*``. Image files are decoded when probed: only the (``probe.max_train`` /
``probe.max_test``-capped, stratified) sample is read, never the whole set (``data.cache=memory`` decodes all).
Each image is prepared as the encoder's own library prepares it for evaluation: files are
decoded at the encoder's resize size and centre-cropped (CIFAR batches resized from 32 px; rendered scenes and digits
drawn at the input size). ``--out`` becomes a run-like folder: config.yaml and results.json with the same Result
records as the tasks' probes (task "probe"), each carrying the encoder spec and the preprocessing applied.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from selfsup.config import resolve, to_object, to_yaml
from selfsup.distributed import pick_device
from selfsup.encoders import describe, load_image_encoder
from selfsup.harness import evaluate
from selfsup.io import atomic_write_text
from selfsup.probes import probe_scores
from selfsup.progress import progress
from selfsup.results import Score
from selfsup.subsets import sample_indices

from . import sources
from .features import extract_features
from .mim import ProbeConfig
from .sources import ImageDataConfig, dataset_name


@dataclass
class ProbeCommandConfig:
    encoder: str = ""              # spec: run/export folder, timm:NAME, hf:NAME_OR_DIR, open_clip:ARCH[:TAG_OR_FILE]
    pretrained: bool = True        # false: the same architecture freshly initialised (its random-weights control)
    image_size: int = 0            # run the encoder at this input size (hub models; 0: its own)
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    batch_size: int = 64           # images per forward pass during feature extraction
    chunk: int = 1024              # images resized at once (bounds the memory of the resized copies)


def store_size(data: ImageDataConfig, preprocess) -> int:
    """The size images are kept at: what the encoder's library would resize a file to (so the crop is its crop);
    32 for CIFAR batches (resized per batch); the input size for rendered sets (nothing to crop)."""
    if data.store_size:
        return data.store_size
    if data.source in ("cifar10", "cifar100"):
        return 32
    if data.source in ("imagefolder", "folder"):
        return min(preprocess.resize_size)
    return min(preprocess.input_size)


def stored_as(data: ImageDataConfig, size: int, input_size: int) -> str:
    """What was done to the images before the encoder's own transform, for the Results' record."""
    if data.source in ("imagefolder", "folder"):
        kept = f"image files decoded as centre-cropped {size} px squares (PIL bicubic)"
    elif data.source in ("cifar10", "cifar100"):
        kept = f"CIFAR images kept at {size} px"
    else:
        kept = f"{data.source} rendered at {size} px"
    return kept + (", then the encoder's resize and centre crop" if size != input_size else "")


class EncoderProbe:
    """The probe in the shape selfsup.harness.evaluate takes, so its Results are written like every task's."""
    name = "probe"

    def __init__(self, cfg: ProbeCommandConfig, train, test):
        self.cfg, self.train, self.test = cfg, train, test

    def features(self, encoder, images, idx: torch.Tensor, what: str) -> dict[str, torch.Tensor]:
        size = tuple(encoder.preprocess.input_size)
        out: dict[str, list[torch.Tensor]] = {}
        steps = range(0, len(idx), self.cfg.chunk)
        for i in progress(steps, desc=f"features {what}", unit="chunk", min_total=2):
            x = images.take(idx[i:i + self.cfg.chunk])
            if tuple(x.shape[-2:]) != size:
                x = encoder.preprocess.resize(x)
            for k, v in extract_features(encoder, x, self.cfg.batch_size).items():
                out.setdefault(k, []).append(v)
        return {k: torch.cat(v) for k, v in out.items()}

    def evaluate(self, encoder, out_dir: Path) -> list[Score]:
        cfg, train, test = self.cfg, self.train, self.test
        idx = sample_indices(len(train), cfg.probe.max_train, seed=0, labels=train.labels)   # stratified
        test_idx = sample_indices(len(test), cfg.probe.max_test, seed=0, labels=test.labels)
        ftr = self.features(encoder, train, idx, "train")
        fte = self.features(encoder, test, test_idx, "test")
        if train.attributes is not None:
            targets = {f"scenes-{a}": (train.attributes[a][idx], test.attributes[a][test_idx])
                       for a in cfg.probe.scene_labels}
        else:
            targets = {dataset_name(cfg.data): (train.labels[idx], test.labels[test_idx])}
        p = cfg.probe
        scores = [s for name, (ytr, yte) in targets.items()
                  for s in probe_scores(ftr, ytr, fte, yte, name, p.epochs, p.lr, p.knn_k, p.knn_t)]
        size = store_size(cfg.data, encoder.preprocess)
        record = {**describe(encoder), "pretrained": cfg.pretrained, "stored_at": size,
                  "stored": stored_as(cfg.data, size, min(encoder.preprocess.input_size))}
        for s in scores:
            s.extra.update(record)
        return scores


def parse_data(short: str) -> list[str]:
    """``SOURCE[:PATH]`` -> the data.source / data.path overrides."""
    source, _, path = short.partition(":")
    return [f"data.source={source}"] + ([f"data.path={path}"] if path else [])


def main(argv: list[str] | None = None) -> int:
    summary, details = __doc__.split("\n\n", 1)
    p = argparse.ArgumentParser(prog="selfsup probe", description=summary, epilog=details,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", required=True, help="encoder spec (run/export dir, timm:, hf:, open_clip:)")
    p.add_argument("--data", default="", help="SOURCE[:PATH]: scenes | digits | imagefolder:DIR | cifar10:DIR | ...")
    p.add_argument("--out", required=True, help="folder for config.yaml and results.json")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="data.* / probe.* / batch_size / image_size overrides, e.g. data.label=colour probe.epochs=50")
    p.add_argument("--random", action="store_true", help="fresh weights of the same architecture (pretrained=false)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p.add_argument("--seed", type=int, default=0, help="recorded as the Results' seed")
    args = p.parse_args(argv)

    sets = (parse_data(args.data) if args.data else []) + list(args.set) + (["pretrained=false"] if args.random else [])
    overrides = ["task.data.cache=lazy"] + [s if s.startswith(("task.", "trainer.")) else f"task.{s}" for s in sets]
    cfg = resolve(ProbeCommandConfig, {}, overrides=overrides + [f"trainer.seed={args.seed}"])
    cfg.task.encoder = args.encoder           # set directly: a spec is a string, whatever YAML would make of it
    device = pick_device(args.device, 0)
    task_cfg = to_object(cfg).task
    encoder = load_image_encoder(task_cfg.encoder, pretrained=task_cfg.pretrained,
                                 image_size=task_cfg.image_size or None)
    cfg.task.data.store_size = task_cfg.data.store_size = store_size(task_cfg.data, encoder.preprocess)
    train, test = sources.load(task_cfg.data, min(encoder.preprocess.input_size))
    if test is None or train.labels is None:
        raise ValueError(f"probing needs labelled train and test images; data.source={task_cfg.data.source} has none")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", to_yaml(cfg))
    results = evaluate(EncoderProbe(task_cfg, train, test), encoder.to(device), cfg, out, device)
    for r in results:
        print(f"{r.task} {r.dataset}/{r.split} {r.metric} = {r.value:.4f}")
    print(f"results written to {out / 'results.json'}", file=sys.stderr)
    return 0
