"""`vit-finetune`: finetune an image encoder (any spec: our vision runs and exports, a clip run, timm:, hf:,
open_clip:, pixels; or our ViT with random weights) with a linear head, layer-wise LR decay and label smoothing —
MAE's main evaluation protocol. Augmentation crops at the encoder's input size; evaluation brings the stored images
to it with the encoder's own resize and crop."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.config import ConfigError
from selfsup.encoders import ImageEncoder
from selfsup.results import Score
from selfsup.task import BatchPlan

from .encoder_spec import ImageEncoderSource
from .legacy import migrate_model_to_vit
from .mim import LazyImageData
from .sources import ImageDataConfig, dataset_name
from .transforms import pretrain_view
from .vit import ViTConfig, check, vit_size


@dataclass
class FinetuneConfig:
    init: str = ""                  # any image encoder spec to start from (selfsup.encoders); "" = our ViT, random
    pretrained: bool = True         # false: init's architecture with fresh weights (its random-weights control)
    vit: ViTConfig = field(default_factory=ViTConfig)   # architecture when init is ""; ignored otherwise
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    layer_decay: float = 0.75       # lr_scale = layer_decay ** (depth + 1 - layer), BEiT/MAE finetuning
    pool: str = "mean"              # cls | mean: the feature the head reads
    label_smoothing: float = 0.1
    min_crop_scale: float = 0.08    # finetuning augmentation: random resized crop (scale min..1) + flip


class Classifier(nn.Module):
    def __init__(self, encoder: ImageEncoder, num_classes: int, pool: str):
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


class FinetuneTask(LazyImageData):
    name = "vit-finetune"
    Config = FinetuneConfig
    presets = {
        "tiny": {"trainer": {"max_steps": 600, "batch_size": 128, "lr": 1e-3, "warmup_steps": 50, "weight_decay": 0.05,
                             "beta2": 0.999, "log_every": 50, "checkpoint_every": 300},
                 "task": {"vit": vit_size("tiny")}},
        "vit-b16": {"trainer": {"max_steps": 50_000, "batch_size": 1024, "lr": 5e-4 * 1024 / 256, "warmup_steps": 2500,
                                "weight_decay": 0.05, "num_workers": 8, "log_every": 50, "checkpoint_every": 2000},
                    "task": {"vit": vit_size("b16")}},
    }

    @staticmethod
    def migrate_config(data: dict) -> dict:
        """Runs saved before the ViT / method split: task.model (flat MAEConfig) -> task.vit."""
        return migrate_model_to_vit(data)

    def __init__(self, cfg: FinetuneConfig):
        self.cfg = cfg
        if not cfg.init:
            check(cfg.vit)
        self.encoder = ImageEncoderSource(cfg.init, cfg.vit, cfg.pretrained)
        self.img_size = self.encoder.img_size
        self.dataset = dataset_name(cfg.data)
        self.record = {**self.encoder.describe(), "init": cfg.init or "random"}

    def load_sets(self):
        train, test = super().load_sets()
        stream = getattr(train, "stream", None)          # a stream's labels are known without reading its sample
        if (train.labels if stream is None else stream.label_column) is None:
            raise ConfigError("finetuning needs labels: task.data.source=folder has none")
        if stream is not None and not stream.classes:
            raise ConfigError(f"finetuning on a stream needs its classes: make '{stream.label_column}' a ClassLabel "
                              "column, or load the dataset without task.data.streaming")
        if test is None:
            raise ConfigError(f"finetuning needs a held-out split: dataset '{self.cfg.data.name}' has only "
                              f"'{self.cfg.data.train_split}' (name one with task.data.test_split)")
        return train, test

    @property
    def num_classes(self) -> int:
        if self.cfg.data.streaming:          # named by the stream's ClassLabel: its samples need not hold them all
            return len(self.train.classes)
        return int(torch.cat([self.train.labels, self.test.labels]).max()) + 1

    def build_model(self) -> nn.Module:
        return Classifier(self.encoder.build().unfreeze(), self.num_classes, self.cfg.pool)

    def param_groups(self, model: Classifier, weight_decay: float) -> list[dict]:
        head = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
        return model.encoder.param_groups(weight_decay, layer_decay=self.cfg.layer_decay) + \
            [{"params": head, "weight_decay": 0.0}]

    def _view(self, image: torch.Tensor, label, g: torch.Generator):
        return pretrain_view(image, self.img_size, g, self.cfg.min_crop_scale), label

    def train_batches(self, plan: BatchPlan):
        return self.image_batches(plan, self._view)

    def loss(self, model, batch):
        images, labels = batch
        logits = model(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.cfg.label_smoothing)
        return loss, {"accuracy": (logits.argmax(-1) == labels).float().mean()}

    def evaluate(self, model, out_dir: Path) -> list[Score]:
        device, n = next(model.parameters()).device, len(self.test)
        correct = sum((model(self.test.take(torch.arange(i, min(i + 256, n))).to(device))      # the encoder's resize
                       .argmax(-1).cpu() == self.test.labels[i:i + 256]).sum().item() for i in range(0, n, 256))
        return [Score(self.dataset, "test", "finetune_top1", correct / n, {**self.record, "n": n})]
