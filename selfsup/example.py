"""The engine's own example task: an MLP classifying generated Gaussian clusters.

Small and real: it trains, evaluates and writes Result records through the same Trainer as the
domain packages, so the engine's tests and the quick demo need nothing else. Domain tasks
follow the same shape (see selfsup/task.py).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import save_weights
from .data import step_loader
from .errors import ConfigError
from .io import atomic_write_json
from .results import Score
from .task import BatchPlan


@dataclass
class ExampleConfig:
    num_train: int = 2048      # generated training points
    num_test: int = 512        # held-out points from the same clusters
    dim: int = 16              # input features
    num_classes: int = 4       # clusters, one per class
    spread: float = 3.0        # cluster standard deviation (higher: harder)
    hidden: int = 64           # MLP width
    depth: int = 2             # hidden layers
    dropout: float = 0.0       # dropout after each hidden layer
    jitter: float = 0.1        # augmentation: Gaussian noise added to each training point, per draw
    data_seed: int = 1234      # which clusters and points (fixed across training seeds)


class MLP(nn.Module):
    def __init__(self, cfg: ExampleConfig):
        super().__init__()
        layers, width = [], cfg.dim
        for _ in range(cfg.depth):
            layers += [nn.Linear(width, cfg.hidden), nn.LayerNorm(cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout)]
            width = cfg.hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, cfg.num_classes)

    def forward(self, x):           # (B, dim) -> (B, num_classes)
        return self.head(self.body(x))

    def shard_units(self) -> list[nn.Module]:
        """Under FSDP2, each linear layer is sharded on its own (see selfsup.task)."""
        return [m for m in self.body if isinstance(m, nn.Linear)]


def make_clusters(cfg: ExampleConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.data_seed)
    centres = torch.randn(cfg.num_classes, cfg.dim, generator=g) * 3

    def draw(n):
        y = torch.randint(cfg.num_classes, (n,), generator=g)
        return centres[y] + cfg.spread * torch.randn(n, cfg.dim, generator=g), y
    x_train, y_train = draw(cfg.num_train)
    x_test, y_test = draw(cfg.num_test)
    return x_train, y_train, x_test, y_test


class ExampleTask:
    name = "example"
    Config = ExampleConfig
    presets = {
        "tiny": {"trainer": {"max_steps": 200, "batch_size": 64, "lr": 3e-3, "warmup_steps": 10, "log_every": 20,
                             "checkpoint_every": 100}},
        "default": {},
    }

    def __init__(self, cfg: ExampleConfig):
        for key in ("num_train", "num_test", "dim", "num_classes", "hidden"):
            if getattr(cfg, key) < 1:
                raise ConfigError(f"task.{key}={getattr(cfg, key)} must be at least 1")
        if not 0 <= cfg.dropout < 1:
            raise ConfigError(f"task.dropout={cfg.dropout} must be in [0, 1)")
        self.cfg = cfg
        self.x_train, self.y_train, self.x_test, self.y_test = make_clusters(cfg)

    def build_model(self) -> nn.Module:
        return MLP(self.cfg)

    def _sample(self, index: int, g: torch.Generator):
        x = self.x_train[index] + self.cfg.jitter * torch.randn(self.cfg.dim, generator=g)
        return x, self.y_train[index]

    def train_batches(self, plan: BatchPlan):
        return step_loader(self.cfg.num_train, self._sample, plan)

    def loss(self, model, batch):
        x, y = batch
        logits = model(x)
        return F.cross_entropy(logits, y), {"accuracy": (logits.argmax(-1) == y).float().mean()}

    def export(self, model, out_dir: Path) -> Path:
        """The MLP's weights and the settings that rebuild it: model.safetensors + config.json."""
        out_dir.mkdir(parents=True, exist_ok=True)
        save_weights(model.state_dict(), out_dir / "model.safetensors")
        atomic_write_json(out_dir / "config.json", asdict(self.cfg))
        return out_dir

    def evaluate(self, model, out_dir) -> list[Score]:
        device = next(model.parameters()).device
        logits = model(self.x_test.to(device))
        acc = (logits.argmax(-1).cpu() == self.y_test).float().mean().item()
        return [Score("clusters", "test", "accuracy", acc, {"n": len(self.y_test)})]
