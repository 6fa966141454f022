"""Actor-critic policies on an image encoder: any encoder spec (our MAE runs, a clip run, timm:, hf:, open_clip:,
pixels), a random ViT, or a scratch NatureCNN.

    obs (B, history, H, W, 3) uint8 --backbone--> embedding --adapter, norm, trunk--> logits (B, A), value (B,)

The backbone is the part that may be frozen. When it is, PPO embeds each observation once, when it is
collected, and trains the rest on the stored embeddings (rl.task); the adapter (e.g. the compression
of patch tokens) is always trained.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.encoders import ImageEncoder, parse_spec
from selfsup.errors import ConfigError
from vision.encoder_spec import ImageEncoderSource
from vision.vit import ViTConfig

KINDS = ("cnn", "vit", "flat")
MODES = ("frozen", "finetune", "partial")
POOLS = ("cls", "mean", "tokens")


@dataclass
class EncoderConfig:
    kind: str = "vit"          # vit (an image encoder: `init`, or a random ViT) | cnn (NatureCNN from scratch)
                               # | flat (state vectors)
    init: str = ""             # vit: any image encoder spec (an MAE run / export, timm:, hf:, open_clip:, pixels, ...);
                               # hub models and pixels run at the frame size; "" = a random ViT shaped like `model`
    pretrained: bool = True    # false: init's architecture with fresh weights (its random-weights control)
    model: ViTConfig = field(default_factory=ViTConfig)   # vit architecture when init is ""
    mode: str = "frozen"       # frozen | finetune | partial (last_k blocks); cnn and flat always train
    last_k: int = 1            # partial: ViT blocks (and the final norm) that train
    lr_scale: float = 0.1      # finetune/partial: the backbone's LR is trainer.lr * lr_scale
    pool: str = "cls"          # vit feature: cls | mean | tokens (every patch token through `compress_dim` units)
    compress_dim: int = 4      # tokens: width per patch token after the trained compression layer (MVP-style)


def layer_init(layer: nn.Linear | nn.Conv2d, std: float = math.sqrt(2), bias: float = 0.0):
    """Orthogonal weights, constant bias: the PPO initialisation (CleanRL, openai/baselines)."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class NatureCNN(nn.Module):
    """Mnih et al. (2015): three convolutions and a 512-unit layer, from scratch; frames stacked as channels."""

    def __init__(self, history: int, frame_size: int):
        super().__init__()
        self.convs = nn.Sequential(
            layer_init(nn.Conv2d(3 * history, 32, 8, stride=4)), nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, 4, stride=2)), nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, 3, stride=1)), nn.ReLU(), nn.Flatten())
        with torch.no_grad():
            n = self.convs(torch.zeros(1, 3 * history, frame_size, frame_size)).shape[1]
        self.fc = nn.Sequential(layer_init(nn.Linear(n, 512)), nn.ReLU())
        self.out_dim = 512

    def forward(self, obs: torch.Tensor) -> torch.Tensor:      # (B, k, H, W, 3) uint8 -> (B, 512)
        b, k, h, w, c = obs.shape
        x = obs.permute(0, 1, 4, 2, 3).reshape(b, k * c, h, w).float() / 255.0
        return self.fc(self.convs(x))


class EncoderBackbone(nn.Module):
    """Each of the k frames through the image encoder (resized to its input size); the chosen feature per frame."""

    def __init__(self, encoder: ImageEncoder, pool: str):
        super().__init__()
        self.encoder, self.pool = encoder, pool
        self.size = encoder.input_size

    def forward(self, obs: torch.Tensor) -> torch.Tensor:      # (B, k, H, W, 3) uint8 -> (B, k, D) or (B, k, L, D)
        b, k, h, w, c = obs.shape
        x = obs.reshape(b * k, h, w, c).permute(0, 3, 1, 2)
        if (h, w) != (self.size, self.size):
            x = F.interpolate(x.float(), size=(self.size, self.size), mode="bilinear", antialias=True,
                              align_corners=False).round().clamp(0, 255).to(torch.uint8)
        out = self.encoder(x)[self.pool]
        return out.reshape(b, k, *out.shape[1:])


class TokenCompressor(nn.Module):
    """(B, k, L, D) patch tokens -> (B, k * L * c): a shared linear map per token, then flatten (MVP, Xiao et al.)."""

    def __init__(self, dim: int, out: int, num_tokens: int, history: int):
        super().__init__()
        self.proj = nn.Linear(dim, out)
        self.out_dim = history * num_tokens * out

    def forward(self, x):
        return F.relu(self.proj(x)).flatten(1)


class Policy(nn.Module):
    def __init__(self, backbone: nn.Module, adapter: nn.Module, feature_dim: int, num_actions: int,
                 frozen: bool, obs_norm: bool = False, hidden: int = 256):
        super().__init__()
        self.backbone, self.adapter, self.frozen = backbone, adapter, frozen
        self.norm = RunningNorm(feature_dim) if obs_norm else None
        self.trunk = nn.Sequential(layer_init(nn.Linear(feature_dim, hidden)), nn.ReLU())
        self.actor = layer_init(nn.Linear(hidden, num_actions), std=0.01)   # near-uniform first policy
        self.critic = layer_init(nn.Linear(hidden, 1), std=1.0)
        if frozen:
            self.backbone.requires_grad_(False)

    def embed(self, obs: torch.Tensor) -> torch.Tensor:
        """The backbone's output: what PPO stores per step when the backbone is frozen."""
        if self.frozen:
            self.backbone.eval()      # frozen features do not depend on train/eval mode
            with torch.no_grad():
                return self.backbone(obs)
        return self.backbone(obs)

    def heads(self, emb: torch.Tensor, update_norm: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, A), value (B,)) from embeddings."""
        x = self.adapter(emb)
        if self.norm is not None:
            x = self.norm(x, update=update_norm)
        h = self.trunk(x)
        return self.actor(h), self.critic(h).squeeze(-1)

    def forward(self, obs: torch.Tensor | None = None, emb: torch.Tensor | None = None):
        """Through forward() so DDP syncs gradients: from observations, or from stored embeddings."""
        return self.heads(self.embed(obs) if emb is None else emb)


class RunningNorm(nn.Module):
    """Observation (feature) normalisation with running mean/var (Welford over batches), clipped to ±10.

    The statistics are buffers: checkpointed with the weights and used unchanged at evaluation.
    They move only during rollouts (``update=True``), never inside a gradient step."""

    def __init__(self, dim: int, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.clip, self.eps = clip, eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.tensor(1e-4))

    def forward(self, x: torch.Tensor, update: bool = False) -> torch.Tensor:
        if update:
            with torch.no_grad():
                xf = x.detach().float().reshape(-1, x.shape[-1])
                n, mean, var = xf.shape[0], xf.mean(0), xf.var(0, unbiased=False)
                total = self.count + n
                delta = mean - self.mean
                self.var.copy_((self.var * self.count + var * n + delta ** 2 * self.count * n / total) / total)
                self.mean.add_(delta * n / total)
                self.count.copy_(total)
        return ((x - self.mean) / torch.sqrt(self.var + self.eps)).clamp(-self.clip, self.clip)


def build_policy(cfg: EncoderConfig, obs_shape: tuple, num_actions: int, obs_norm: bool = False) -> Policy:
    """The policy for ``cfg`` on observations of ``obs_shape`` (per env: (k, H, W, 3), or (n,) for `flat`)."""
    if cfg.kind not in KINDS:
        raise ConfigError(f"unknown task.encoder.kind '{cfg.kind}'; choose one of {', '.join(KINDS)}")
    if cfg.mode not in MODES:
        raise ConfigError(f"unknown task.encoder.mode '{cfg.mode}'; choose one of {', '.join(MODES)}")
    if cfg.kind == "flat":
        dim = int(torch.tensor(obs_shape).prod())
        return Policy(nn.Flatten(), nn.Identity(), dim, num_actions, frozen=False, obs_norm=obs_norm)
    if len(obs_shape) != 4 or obs_shape[-1] != 3:
        raise ConfigError(f"encoder kind '{cfg.kind}' needs pixel observations (history, H, W, 3), "
                         f"got {tuple(obs_shape)}"
                         "; set task.env.pixels=true or use task.encoder.kind=flat")
    history, size = obs_shape[0], obs_shape[1]
    if cfg.kind == "cnn":
        cnn = NatureCNN(history, size)
        return Policy(cnn, nn.Identity(), cnn.out_dim, num_actions, frozen=False, obs_norm=obs_norm)
    if cfg.pool not in POOLS:
        raise ConfigError(f"unknown task.encoder.pool '{cfg.pool}'; choose one of {', '.join(POOLS)}")
    encoder = ImageEncoderSource(cfg.init, cfg.model, cfg.pretrained, frame_size(cfg.init, size)).build()
    if cfg.mode == "partial":
        encoder.unfreeze(last_k=cfg.last_k)
    elif cfg.mode == "finetune":
        encoder.unfreeze()
    else:
        encoder.freeze()
    backbone = EncoderBackbone(encoder, cfg.pool)
    if cfg.pool == "tokens":
        adapter = TokenCompressor(encoder.token_dim, cfg.compress_dim, encoder.num_tokens(), history)
        dim = adapter.out_dim
    else:
        adapter, dim = nn.Flatten(), history * encoder.embed_dim
    return Policy(backbone, adapter, dim, num_actions, frozen=cfg.mode == "frozen", obs_norm=obs_norm)


def frame_size(init: str, size: int) -> int | None:
    """The input size to run ``init`` at: the frame size for hub models and raw pixels without a size of their own
    (position embeddings interpolated, as each library does); None for our encoders (they run at the size they were
    trained at, frames resized to it) and for ``pixels:SIZE``."""
    if not init:
        return None
    spec = parse_spec(init)
    return size if spec.library in ("timm", "hf", "open_clip") or (spec.library == "pixels" and not spec.name) \
        else None
