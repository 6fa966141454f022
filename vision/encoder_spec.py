"""Our vision runs and exports as encoder specs: the ``vision`` reader of the ``selfsup.encoders`` entry-point group,
so ``load_image_encoder("runs/mae")`` (and every task that takes a spec) reads them without the engine importing
this package."""
from __future__ import annotations

from pathlib import Path

from selfsup.checkpoint import CheckpointError, resolve_checkpoint
from selfsup.encoders import ImagePreprocess

from .encoder import ViTEncoder
from .transforms import MEAN, STD


def _ours(path: Path) -> bool:
    if (path / "encoder.json").is_file():
        return True
    try:
        resolve_checkpoint(path)
        return True
    except CheckpointError:
        return False


def preprocess_of(enc: ViTEncoder) -> ImagePreprocess:
    """What our tasks do to images for this encoder: ``eval_view`` (resize the shorter side to size / 0.875,
    bilinear, centre crop) and ``normalize`` (ImageNet statistics)."""
    size = enc.cfg.img_size
    return ImagePreprocess((size, size), tuple(MEAN.flatten().tolist()), tuple(STD.flatten().tolist()),
                           (int(size / 0.875),) * 2, "shortest", "bilinear",
                           source="selfsup vision (transforms.eval_view + normalize)")


def resolve(path: Path, kind: str, pretrained: bool = True) -> ViTEncoder | None:
    """A ViTEncoder for an encoder export or a vision run/checkpoint folder; None for anything else."""
    if kind != "image" or not _ours(path):
        return None
    enc = ViTEncoder.from_checkpoint(path)
    if not pretrained:
        enc = ViTEncoder.random(enc.cfg)
    if not hasattr(enc, "preprocess"):       # until ViTEncoder carries its own (the vision engineer's contract)
        enc.preprocess = preprocess_of(enc)
    enc.spec, enc.family = str(path), "selfsup"
    return enc
