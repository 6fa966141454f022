"""AdamW parameter groups, the warmup + cosine schedule, and an EMA of weights."""
from __future__ import annotations

import math

import torch
from torch import nn

NO_DECAY_NAMES = ("pos_embed", "cls_token", "mask_token", "position_embeddings", "token_type_embeddings")


def no_weight_decay(model: nn.Module) -> set[str]:
    """Norm weights, biases and embeddings: decaying them only hurts (BERT, MAE and timm all exclude them)."""
    names = set(getattr(model, "no_weight_decay", lambda: set())())
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if p.ndim < 2 or isinstance(module, nn.Embedding) or any(n in full for n in NO_DECAY_NAMES):
                names.add(full)
    return names


def default_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    skip = no_weight_decay(model)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name in skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def layer_decay_groups(model: nn.Module, layer_id, depth: int, weight_decay: float, layer_decay: float = 1.0
                       ) -> list[dict]:
    """AdamW groups of the trainable parameters for layer-wise LR decay (BEiT / MAE finetuning): ``layer_id(name)`` is
    0 for the embeddings, i + 1 for block i, depth + 1 after the blocks; ``lr_scale = layer_decay ** (depth + 1 -
    layer)``; no weight decay where ``no_weight_decay`` says so."""
    skip = no_weight_decay(model)
    groups: dict[tuple, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        layer = layer_id(name)
        wd = 0.0 if name in skip else weight_decay
        g = groups.setdefault((layer, wd), {"params": [], "weight_decay": wd,
                                            "lr_scale": layer_decay ** (depth + 1 - layer)})
        g["params"].append(p)
    return list(groups.values())


def merge_groups(groups: list[dict]) -> list[dict]:
    """Groups with equal settings (weight decay, LR scale) as one, parameters in order: layer-wise groups without a
    decay between layers collapse to one group per setting."""
    merged: dict[tuple, dict] = {}
    for g in groups:
        key = (g.get("weight_decay"), g.get("lr_scale", 1.0))
        merged.setdefault(key, {**g, "params": []})["params"] += list(g["params"])
    return list(merged.values())


def build_optimizer(groups: list[dict], lr: float, betas: tuple[float, float], eps: float, fused: bool):
    for g in groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused or None)


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier: linear from 0 over ``warmup`` steps, then cosine down to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer, warmup: int, total: int, min_ratio: float):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, warmup, total, min_ratio))


class EMA:
    """Exponential moving average of a model's floating-point state (parameters and buffers)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        state = model.state_dict()
        keys = list(self.shadow)
        torch._foreach_lerp_([self.shadow[k] for k in keys], [state[k].float() for k in keys], 1 - self.decay)

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """A full state dict for ``model`` with EMA values where we keep them."""
        return {k: self.shadow.get(k, v) for k, v in model.state_dict().items()}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        for k in self.shadow:
            self.shadow[k].copy_(state[k])
