"""Our vision runs and exports as encoder specs: the ``vision`` reader of the ``selfsup.encoders`` entry-point group,
so ``load_image_encoder("runs/mae")`` (and every task that takes a spec) reads them without the engine importing
this package."""
from __future__ import annotations

from pathlib import Path

from selfsup.checkpoint import CheckpointError, resolve_checkpoint

from .encoder import ViTEncoder


def _ours(path: Path) -> bool:
    if (path / "encoder.json").is_file():
        return True
    try:
        resolve_checkpoint(path)
        return True
    except CheckpointError:
        return False


def resolve(path: Path, kind: str, pretrained: bool = True) -> ViTEncoder | None:
    """A ViTEncoder for an encoder export or a vision run/checkpoint folder; None for anything else."""
    if kind != "image" or not _ours(path):
        return None
    enc = ViTEncoder.from_checkpoint(path)
    if not pretrained:
        enc = ViTEncoder.random(enc.cfg)
    enc.spec, enc.family = str(path), "selfsup"
    return enc
