"""Vision tasks on the shared trainer: `mae` (pretraining, judged by probes) and `vit-finetune`."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.data import step_loader
from selfsup.errors import ConfigError
from selfsup.probes import probe_scores
from selfsup.results import Score
from selfsup.subsets import sample_indices
from selfsup.task import BatchPlan

from . import sources
from .encoder import ViTEncoder
from .features import extract_features
from .figures import reconstruction_grid
from .mae import MAE, MAEConfig
from .sources import ImageDataConfig
from .transforms import eval_view, normalize, pretrain_view

TINY = {"img_size": 32, "patch_size": 4, "embed_dim": 128, "depth": 4, "num_heads": 4,
        "decoder_embed_dim": 64, "decoder_depth": 2, "decoder_num_heads": 4}
VIT_B16 = {"img_size": 224, "patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12,
           "decoder_embed_dim": 512, "decoder_depth": 8, "decoder_num_heads": 16}


@dataclass
class ProbeConfig:
    epochs: int = 100          # linear-probe epochs over the (frozen, precomputed) training features
    lr: float = 1e-3
    knn_k: int = 20
    knn_t: float = 0.07
    max_train: int = 0         # cap on probe training images (0: all)
    scene_labels: list[str] = field(default_factory=lambda: ["shape", "count", "colour"])  # scenes: attributes probed


@dataclass
class MAETaskConfig:
    model: MAEConfig = field(default_factory=MAEConfig)
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    min_crop_scale: float = 0.2     # random resized crop scale range (min, 1), MAE's augmentation
    figure_images: int = 8          # images in the reconstruction figure written at each evaluation


def _dataset_name(cfg: ImageDataConfig) -> str:
    return f"scenes-{cfg.label}" if cfg.source == "scenes" else (Path(cfg.path).name or cfg.source)


def encoder_probes(encoder: ViTEncoder, train, test, cfg: ProbeConfig, img_size: int, dataset: str) -> list[Score]:
    """Linear probe and kNN on CLS and mean-pooled frozen features; for scenes, one per probed attribute."""
    # stratified: sets may be class-sorted
    idx = sample_indices(len(train), cfg.max_train, seed=0, labels=train.labels)
    ftr = extract_features(encoder, eval_view(train.take(idx), img_size))
    fte = extract_features(encoder, eval_view(test.take(torch.arange(len(test))), img_size))
    if train.attributes is not None:
        targets = {f"scenes-{a}": (train.attributes[a][idx], test.attributes[a]) for a in cfg.scene_labels}
    else:
        targets = {dataset: (train.labels[idx], test.labels)}
    return [s for name, (train_y, test_y) in targets.items()
            for s in probe_scores(ftr, train_y, fte, test_y, name, cfg.epochs, cfg.lr, cfg.knn_k, cfg.knn_t)]


class MAETask:
    name = "mae"
    Config = MAETaskConfig
    presets = {
        # CPU, minutes: 32x32 scenes, 4x4 patches, a 4-block ViT of width 128 and a 2x64 decoder. Raw-pixel
        # targets: the scenes' objects are flat colours, which per-patch normalisation hides from the loss
        # (3 seeds: colour probes +0.05..0.08, the rest level; RESULTS.md evidence-mae-tiny[-normpix]).
        "tiny": {"trainer": {"max_steps": 2000, "batch_size": 256, "lr": 1.5e-3, "warmup_steps": 100,
                             "weight_decay": 0.05, "beta2": 0.95, "log_every": 50, "checkpoint_every": 500,
                             "grad_clip": 0.0},
                 "task": {"model": {**TINY, "norm_pix_loss": False}, "probe": {"epochs": 60}}},
        # The standard recipe: ViT-B/16 at 224, decoder 8x512, AdamW (0.9, 0.95), base LR 1.5e-4 x batch/256,
        # wd 0.05, cosine with warmup. Set task.data.source/path for real images (e.g. an ImageNet ImageFolder).
        "vit-b16": {"trainer": {"max_steps": 100_000, "batch_size": 1024, "lr": 1.5e-4 * 1024 / 256,
                                "warmup_steps": 5000, "weight_decay": 0.05, "beta2": 0.95, "grad_clip": 0.0,
                                "log_every": 50, "checkpoint_every": 2000, "num_workers": 8},
                    "task": {"model": VIT_B16, "data": {"num_train": 50_000, "num_test": 5000}}},
    }

    def __init__(self, cfg: MAETaskConfig):
        self.cfg = cfg
        self.train, self.test = sources.load(cfg.data, cfg.model.img_size)
        self.dataset = _dataset_name(cfg.data)

    def build_model(self) -> nn.Module:
        return MAE(self.cfg.model)

    def _view(self, index: int, g: torch.Generator) -> torch.Tensor:
        return pretrain_view(self.train.image(index), self.cfg.model.img_size, g, self.cfg.min_crop_scale)

    def train_batches(self, plan: BatchPlan):
        return step_loader(len(self.train), self._view, plan)

    def loss(self, model, images):
        loss, _, _ = model(normalize(images))
        return loss, {}

    def evaluate(self, model, out_dir: Path) -> list[Score]:
        cfg, device = self.cfg, next(model.parameters()).device
        held_out = self.test if self.test is not None else self.train
        idx = sample_indices(len(held_out), 512, seed=0, labels=held_out.labels)   # a fixed, stratified sample
        n = len(idx)
        g = torch.Generator().manual_seed(0)   # fixed masks: comparable across steps and runs
        noise = torch.rand(n, model.encoder.patch_embed.num_patches, generator=g)
        imgs = eval_view(held_out.take(idx), cfg.model.img_size)
        losses = [model(normalize(imgs[i:i + 128].to(device)), noise[i:i + 128].to(device))[0].item()
                  for i in range(0, n, 128)]
        split = "test" if self.test is not None else "train"
        scores = [Score(self.dataset, split, "mae_loss", sum(losses) / len(losses), {"n": n})]
        shown = sample_indices(n, cfg.figure_images, seed=1)       # a random few of the sample, not its first
        reconstruction_grid(model, imgs[shown], noise[shown], out_dir / "mae_reconstruction.png")
        if self.test is not None and self.train.labels is not None:
            encoder = ViTEncoder(cfg.model, model.encoder)
            scores += encoder_probes(encoder, self.train, self.test, cfg.probe, cfg.model.img_size, self.dataset)
        return scores


    def export(self, model, out_dir: Path) -> Path:
        """The encoder for timm: model.safetensors + encoder.json (see vision.encoder)."""
        return ViTEncoder(self.cfg.model, model.encoder).export_timm(out_dir)


# ------------------------------------------------------------------------------------------- finetuning


@dataclass
class FinetuneConfig:
    init: str = ""                  # MAE run / checkpoint / encoder export to start from; "" = random init (baseline)
    model: MAEConfig = field(default_factory=MAEConfig)   # architecture when init is ""; ignored otherwise
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    layer_decay: float = 0.75       # lr_scale = layer_decay ** (depth + 1 - layer), BEiT/MAE finetuning
    pool: str = "mean"              # cls | mean: the feature the head reads
    label_smoothing: float = 0.1
    min_crop_scale: float = 0.08    # finetuning augmentation: random resized crop (scale min..1) + flip


class Classifier(nn.Module):
    def __init__(self, encoder: ViTEncoder, num_classes: int, pool: str):
        super().__init__()
        if pool not in ("cls", "mean"):
            raise ConfigError(f"task.pool must be cls or mean, not '{pool}'")
        self.encoder, self.pool = encoder, pool
        self.fc_norm = nn.LayerNorm(encoder.embed_dim, eps=1e-6)
        self.head = nn.Linear(encoder.embed_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)
        nn.init.zeros_(self.head.bias)

    def forward(self, images):       # uint8 or normalised (B, 3, H, W) -> (B, num_classes)
        return self.head(self.fc_norm(self.encoder(images)[self.pool]))


class FinetuneTask:
    name = "vit-finetune"
    Config = FinetuneConfig
    presets = {
        "tiny": {"trainer": {"max_steps": 600, "batch_size": 128, "lr": 1e-3, "warmup_steps": 50, "weight_decay": 0.05,
                             "beta2": 0.999, "log_every": 50, "checkpoint_every": 300},
                 "task": {"model": TINY}},
        "vit-b16": {"trainer": {"max_steps": 50_000, "batch_size": 1024, "lr": 5e-4 * 1024 / 256, "warmup_steps": 2500,
                                "weight_decay": 0.05, "num_workers": 8, "log_every": 50, "checkpoint_every": 2000},
                    "task": {"model": VIT_B16}},
    }

    def __init__(self, cfg: FinetuneConfig):
        self.cfg = cfg
        self.pretrained = ViTEncoder.from_checkpoint(cfg.init) if cfg.init else None
        self.encoder_cfg = self.pretrained.cfg if self.pretrained is not None else cfg.model
        self.train, self.test = sources.load(cfg.data, self.encoder_cfg.img_size)
        if self.train.labels is None:
            raise ConfigError("finetuning needs labels: task.data.source=folder has none")
        self.num_classes = int(torch.cat([self.train.labels, self.test.labels]).max()) + 1
        self.dataset = _dataset_name(cfg.data)

    def build_model(self) -> nn.Module:
        enc = copy.deepcopy(self.pretrained) if self.pretrained is not None else ViTEncoder.random(self.cfg.model)
        return Classifier(enc.unfreeze(), self.num_classes, self.cfg.pool)

    def param_groups(self, model: Classifier, weight_decay: float) -> list[dict]:
        head = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
        return model.encoder.param_groups(weight_decay, layer_decay=self.cfg.layer_decay) + \
            [{"params": head, "weight_decay": 0.0}]

    def _view(self, index: int, g: torch.Generator):
        img = pretrain_view(self.train.image(index), self.encoder_cfg.img_size, g, self.cfg.min_crop_scale)
        return img, self.train.labels[index]

    def train_batches(self, plan: BatchPlan):
        return step_loader(len(self.train), self._view, plan)

    def loss(self, model, batch):
        images, labels = batch
        logits = model(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.cfg.label_smoothing)
        return loss, {"accuracy": (logits.argmax(-1) == labels).float().mean()}

    def evaluate(self, model, out_dir: Path) -> list[Score]:
        device = next(model.parameters()).device
        n, size = len(self.test), self.encoder_cfg.img_size
        correct = sum((model(eval_view(self.test.take(torch.arange(i, min(i + 256, n))), size).to(device))
                       .argmax(-1).cpu() == self.test.labels[i:i + 256]).sum().item() for i in range(0, n, 256))
        return [Score(self.dataset, "test", "finetune_top1", correct / n, {"init": self.cfg.init or "random", "n": n})]
