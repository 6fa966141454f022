"""What every masked-image-modeling task shares — one code path for data, evaluation and export, so MAE,
SimMIM and data2vec 2.0 differ only in their model:

- data: ``task.data`` images, loaded on first use (``selfsup export`` never decodes a training image),
  MAE's augmentation (random resized crop + flip) with a per-sample generator;
- evaluation: the method's loss on a fixed stratified held-out sample with fixed masks, a reconstruction
  figure for methods that predict pixels, and linear + kNN probes of the frozen encoder (CLS and mean);
- export: the encoder for timm (``ViTEncoder.export_timm``), or the whole model for transformers where it
  has one (``--format hf``).

A method's model holds its ViT as ``encoder`` (so ``ViTEncoder.from_checkpoint`` reads any method's run) and
offers ``sample_masks(n, generator)`` (masks for n images, first dim n) and ``forward(imgs, masks=None) ->
(loss, pred or metrics, mask)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch import nn

from selfsup.config import ConfigError
from selfsup.data import step_loader
from selfsup.probes import probe_scores
from selfsup.results import Score
from selfsup.subsets import sample_indices
from selfsup.task import BatchPlan

from . import sources
from .encoder import ViTEncoder
from .features import extract_features
from .figures import reconstruction_grid
from .sources import ImageDataConfig, dataset_name
from .transforms import eval_view, normalize, pretrain_view
from .vit import ViTConfig, check, vit_size

EXPORT_FORMATS = ("timm", "hf")


@dataclass
class ProbeConfig:
    epochs: int = 100          # linear-probe epochs over the (frozen, precomputed) training features
    lr: float = 1e-3
    knn_k: int = 20
    knn_t: float = 0.07
    max_train: int = 0         # cap on probe training images, a stratified sample (0: all)
    max_test: int = 0          # cap on probe test images, a stratified sample (0: all)
    scene_labels: list[str] = field(default_factory=lambda: ["shape", "count", "colour"])  # scenes: attributes probed


@dataclass
class MIMTaskConfig:
    vit: ViTConfig = field(default_factory=ViTConfig)       # the encoder, the same for every method
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    min_crop_scale: float = 0.2     # random resized crop scale range (min, 1): MAE's, SimMIM's (0.67 at 192 px)
                                    # and data2vec 2.0's augmentation are all crop + flip
    eval_images: int = 512          # held-out images for the evaluation loss (stratified, fixed masks)
    figure_images: int = 8          # images in the reconstruction figure (pixel methods)


# The `tiny` presets of every method: the same ViT, data, batch, schedule and probes, so that runs compare.
# Each method adds its paper's optimizer betas and clipping, and its own scaled-down settings.
TINY_TRAINER = {"max_steps": 2000, "batch_size": 256, "lr": 1.5e-3, "warmup_steps": 100, "weight_decay": 0.05,
                "log_every": 50, "checkpoint_every": 500}


def tiny_preset(trainer: dict, task: dict) -> dict:
    return {"trainer": {**TINY_TRAINER, **trainer}, "task": {"vit": vit_size("tiny"), "probe": {"epochs": 60}, **task}}


def encoder_probes(encoder: ViTEncoder, train, test, cfg: ProbeConfig, img_size: int, dataset: str) -> list[Score]:
    """Linear probe and kNN on CLS and mean-pooled frozen features; for scenes, one per probed attribute."""
    idx = sample_indices(len(train), cfg.max_train, seed=0, labels=train.labels)   # stratified: sets may be sorted
    test_idx = sample_indices(len(test), cfg.max_test, seed=0, labels=test.labels)
    ftr = extract_features(encoder, train, idx, img_size, desc="probe features (train)")
    fte = extract_features(encoder, test, test_idx, img_size, desc="probe features (test)")
    if train.attributes is not None:
        targets = {f"scenes-{a}": (train.attributes[a][idx], test.attributes[a][test_idx]) for a in cfg.scene_labels}
    else:
        targets = {dataset: (train.labels[idx], test.labels[test_idx])}
    return [s for name, (train_y, test_y) in targets.items()
            for s in probe_scores(ftr, train_y, fte, test_y, name, cfg.epochs, cfg.lr, cfg.knn_k, cfg.knn_t)]


class LazyImageData:
    """``self.train`` / ``self.test`` from ``self.cfg.data`` at ``self.img_size``, loaded on first use: building a
    task (for ``selfsup export``, or ``eval`` of what needs no data) decodes no image."""
    _sets = None
    img_size: int

    @property
    def train(self):
        return self._image_sets()[0]

    @property
    def test(self):
        return self._image_sets()[1]

    def _image_sets(self):
        if self._sets is None:
            self._sets = self.load_sets()
        return self._sets

    def load_sets(self):
        return sources.load(self.cfg.data, self.img_size)

    def image_batches(self, plan: BatchPlan, view):
        """Training micro-batches of ``view(image (3, S, S) uint8, label or None, generator)`` per sample: from the
        map-style set (selfsup.data's resumable sampler) or, with ``task.data.streaming``, from the stream."""
        if self.cfg.data.streaming:
            return self.train.stream.batches(plan, view)
        return step_loader(len(self.train), partial(_indexed, self.train, view), plan)

    def state_dict(self) -> dict:
        """Streamed data only: the length of each finished pass (vision.stream), so a resume skips them unread."""
        return self.train.stream.state_dict() if self.cfg.data.streaming else {}

    def load_state_dict(self, state: dict) -> None:
        if self.cfg.data.streaming and state:
            self.train.stream.load_state_dict(state)


def _indexed(images, view, index: int, g: torch.Generator):
    return view(images.image(index), None if images.labels is None else images.labels[index], g)


class MIMTask(LazyImageData):
    """Subclasses set ``name``, ``Config``, ``presets`` and define ``build_model``; ``predicts_pixels`` says
    whether the reconstruction figure applies; ``to_hf(model)`` gives the transformers model where one exists."""
    predicts_pixels = True

    def __init__(self, cfg):
        check(cfg.vit)
        self.cfg = cfg
        self.img_size = cfg.vit.img_size
        self.dataset = dataset_name(cfg.data)
        self.accumulate = 1           # micro-batches per optimizer step, from the batch plan

    def _view(self, image: torch.Tensor, label, g: torch.Generator) -> torch.Tensor:
        return pretrain_view(image, self.cfg.vit.img_size, g, self.cfg.min_crop_scale)

    def train_batches(self, plan: BatchPlan):
        self.accumulate = plan.grad_accum
        return self.image_batches(plan, self._view)

    def loss(self, model, images):
        loss, _, _ = model(normalize(images))
        return loss, {}

    # ---------------------------------------------------------------- evaluation

    def evaluate(self, model, out_dir: Path) -> list[Score]:
        cfg, device = self.cfg, next(model.parameters()).device
        held_out = self.test if self.test is not None else self.train
        idx = sample_indices(len(held_out), cfg.eval_images, seed=0, labels=held_out.labels)
        g = torch.Generator().manual_seed(0)   # fixed masks: comparable across steps and runs
        masks = model.sample_masks(len(idx), g)
        losses, chunk = [], 128
        for i in range(0, len(idx), chunk):
            imgs = eval_view(held_out.take(idx[i:i + chunk]), cfg.vit.img_size)
            losses.append(model(normalize(imgs.to(device)), masks[i:i + chunk].to(device))[0].item() * len(imgs))
        split = "test" if self.test is not None else "train"
        scores = [Score(self.dataset, split, f"{self.name}_loss", sum(losses) / len(idx), {"n": len(idx)})]
        if self.predicts_pixels and cfg.figure_images > 0:
            shown = sample_indices(len(idx), cfg.figure_images, seed=1)    # a random few of the sample
            imgs = eval_view(held_out.take(idx[shown]), cfg.vit.img_size)
            reconstruction_grid(model, imgs, masks[shown], out_dir / f"{self.name}_reconstruction.png")
        if self.test is not None and self.train.labels is not None:
            encoder = ViTEncoder(cfg.vit, model.encoder)
            scores += encoder_probes(encoder, self.train, self.test, cfg.probe, cfg.vit.img_size, self.dataset)
        return scores

    # ---------------------------------------------------------------- export

    def to_hf(self, model: nn.Module):
        return None

    def export(self, model: nn.Module, out_dir: Path, fmt: str = "timm") -> Path:
        """timm: the encoder (model.safetensors, config.json, encoder.json; see ViTEncoder.export_timm);
        hf: the whole pretraining model as transformers' class for this method (save_pretrained)."""
        if fmt not in EXPORT_FORMATS:
            raise ConfigError(f"unknown export format '{fmt}'; choose one of {', '.join(EXPORT_FORMATS)}")
        if fmt == "timm":
            return ViTEncoder(self.cfg.vit, model.encoder).export_timm(out_dir, method=self.name)
        hf = self.to_hf(model)
        if hf is None:
            raise ConfigError(f"'{self.name}' has no transformers counterpart to export to; use --format timm")
        from .interop import save_hf
        return save_hf(hf.eval(), out_dir)
