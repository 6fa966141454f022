"""Image transforms on uint8 tensors: MAE's pretraining augmentation and evaluation resizing.

Random choices come from a caller-owned ``torch.Generator`` (one per sample draw, see
selfsup.data), so augmentation is reproducible and resumable. Normalisation happens on the
training device, per batch, so workers ship compact uint8.
"""
from __future__ import annotations

import math

import torch
import torchvision.transforms.v2.functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)   # ImageNet statistics, as MAE uses
IMAGENET_STD = (0.229, 0.224, 0.225)
MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
EVAL_CROP = 0.875        # evaluation: resize to size / EVAL_CROP, centre-crop size (timm's crop_pct)
INTERPOLATION = "bilinear"   # how every resize here (crops, evaluation) interpolates, antialiased


def random_resized_crop(img: torch.Tensor, size: int, g: torch.Generator, scale=(0.2, 1.0),
                        ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, size, size): a random area fraction in ``scale`` and aspect in ``ratio``."""
    _, h, w = img.shape
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(3, generator=g).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(u[2] * (h - ch + 1))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=g))
            return TF.resized_crop(img, top, left, ch, cw, [size, size], antialias=True)
    return TF.resize(img, [size, size], antialias=True)      # fallback: the whole image


def pretrain_view(img: torch.Tensor, size: int, g: torch.Generator, min_scale: float = 0.2) -> torch.Tensor:
    """MAE's augmentation: random resized crop (scale min_scale..1) and horizontal flip."""
    out = random_resized_crop(img, size, g, scale=(min_scale, 1.0))
    return out.flip(-1) if torch.rand(1, generator=g).item() < 0.5 else out


def eval_view(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, S, S) uint8 -> (N, 3, size, size): resize to size/0.875 and centre-crop (the usual eval crop);
    images already stored at ``size`` pass through untouched."""
    if images.shape[-1] == size:
        return images
    resized = TF.resize(images, [int(size / EVAL_CROP)], antialias=True)
    return TF.center_crop(resized, [size, size])


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) on any device -> float, ImageNet-normalised."""
    x = images.float().div_(255)
    return (x - MEAN.to(x.device)) / STD.to(x.device)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    return (x * STD.to(x.device) + MEAN.to(x.device)).clamp(0, 1)
