"""Image encoders as tasks choose them, by spec.

- ``resolve``: our vision runs and exports as encoder specs, the ``vision`` reader of the ``selfsup.encoders``
  entry-point group, so ``load_image_encoder("runs/mae")`` (and every task that takes a spec) reads them without the
  engine importing this package. A vit-finetune run of any encoder (``task.init=timm:...``) is read too.
- ``ImageEncoderSource``: the image encoder a task holds (``vit-finetune``, ``caption``, ``clip``, ``ppo``): any spec,
  or "" for a ViT of ours with random weights.
- ``encoder_in_run``: the image encoder a run trained, rebuilt from the spec it started from with the run's weights
  (vit-finetune here; clip runs in multimodal.encoder_spec).
"""
from __future__ import annotations

import copy
from pathlib import Path

from omegaconf import OmegaConf

from selfsup.checkpoint import CheckpointError, check_fits, load_weights, resolve_checkpoint
from selfsup.encoders import EncoderError, ImageEncoder, describe, load_image_encoder, parse_spec

from .encoder import ViTEncoder, vit_config_from
from .vit import ViTConfig


def _ours(path: Path) -> bool:
    if (path / "encoder.json").is_file():
        return True
    try:
        resolve_checkpoint(path)
        return True
    except CheckpointError:
        return False


def run_task_config(path: Path) -> dict | None:
    """``task`` of the config.yaml of the run holding ``path`` (a run or one of its checkpoints); None if none."""
    try:
        config_file = resolve_checkpoint(path).parent.parent / "config.yaml"
    except CheckpointError:
        return None
    if not config_file.is_file():
        return None
    saved = OmegaConf.to_container(OmegaConf.load(config_file))
    task = saved.get("task") if isinstance(saved, dict) else None
    return task if isinstance(task, dict) else None


def resolve(path: Path, kind: str, pretrained: bool = True) -> ImageEncoder | None:
    """A ViTEncoder for an encoder export or a vision run/checkpoint folder; a vit-finetune run of another encoder
    as that encoder with the run's weights; None for anything else."""
    if kind != "image" or not _ours(path):
        return None
    task = run_task_config(path) or {}
    if isinstance(task.get("vit"), dict) and task.get("init") and parse_spec(str(task["init"])).library != "ours":
        return encoder_in_run(path, str(task["init"]), None, "encoder.", pretrained)       # vit-finetune of a spec
    enc = ViTEncoder.from_checkpoint(path)
    if not pretrained:
        enc = ViTEncoder.random(enc.cfg)
    enc.spec, enc.family = str(path), "selfsup"
    return enc


def encoder_in_run(path: Path, init: str, arch: dict | None, prefix: str, pretrained: bool = True) -> ImageEncoder:
    """The image encoder a run trained: built from the spec it started from (``init``; "" = our ViT shaped by
    ``arch``), with the weights the run's model holds under ``prefix`` (unless ``pretrained`` is false)."""
    try:
        enc = load_image_encoder(init, pretrained=False) if init else ViTEncoder.random(vit_config_from(arch or {}))
    except EncoderError as e:
        raise EncoderError(f"{path} trained an image encoder from '{init}', which cannot be rebuilt here: {e}") \
            from None
    if pretrained:
        ckpt = resolve_checkpoint(path)
        state = load_weights(ckpt / "model.safetensors")
        own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        check_fits(own, enc.state_dict(), ckpt / "model.safetensors")
        enc.load_state_dict(own)
    enc.spec = str(path)
    return enc.eval()


class ImageEncoderSource:
    """The image encoder a task holds: read once (its input size and preprocessing are known at once), and a fresh
    one per ``build()`` — a copy of the pretrained weights, or random weights drawn then, after the trainer has
    seeded, so that trainer.seed sets them and every rank and every arm of a comparison starts from the same ones.

    ``init``: any image encoder spec, or "" for our ViT shaped by ``arch``; ``pretrained=False``: init's architecture
    with fresh weights (its random-weights control); ``image_size``: run a hub model (or raw pixels) at that size."""

    def __init__(self, init: str, arch: ViTConfig, pretrained: bool = True, image_size: int | None = None):
        self.init, self.arch, self.pretrained, self.image_size = init, arch, pretrained, image_size
        self.template = self._load(pretrained) if init else None

    def _load(self, pretrained: bool) -> ImageEncoder:
        return load_image_encoder(self.init, pretrained=pretrained, image_size=self.image_size)

    @property
    def img_size(self) -> int:
        return self.template.input_size if self.template is not None else self.arch.img_size

    def build(self) -> ImageEncoder:
        if self.template is None:
            return ViTEncoder.random(self.arch)
        return copy.deepcopy(self.template) if self.pretrained else self._load(False)

    def describe(self) -> dict:
        """What a Result records about the encoder: ``describe(enc)`` and whether it was pretrained."""
        enc = self.template if self.template is not None else ViTEncoder.random(self.arch)
        return {**describe(enc), "pretrained": bool(self.init) and self.pretrained}
