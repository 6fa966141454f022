"""Our clip runs as encoder specs: the ``multimodal`` reader of the ``selfsup.encoders`` entry-point group. A clip run
(or one of its checkpoints) is its image tower — rebuilt from the spec the run started from, with the run's weights —
wherever an image encoder is chosen (``vit-finetune``, ``caption``, ``ppo``, ``selfsup probe``). Its text tower is
read from an export: ``selfsup export clip --checkpoint RUN --out DIR``, then ``DIR/text``."""
from __future__ import annotations

from pathlib import Path

from selfsup.encoders import EncoderError, ImageEncoder
from vision.encoder_spec import encoder_in_run, run_task_config

CLIP_KEYS = {"vision_init", "vision_model", "text_init", "embed_dim", "loss", "image_pool"}   # what marks a clip run


def resolve(path: Path, kind: str, pretrained: bool = True) -> ImageEncoder | None:
    task = run_task_config(path)
    if task is None or not CLIP_KEYS <= set(task):
        return None
    if kind != "image":
        raise EncoderError(f"{path} is a clip run; its text tower is read from an export: selfsup export clip "
                           f"--checkpoint {path} --out DIR, then use DIR/text")
    enc = encoder_in_run(path, str(task.get("vision_init") or ""), task.get("vision_model"), "image.", pretrained)
    enc.family = f"clip({enc.family})"
    return enc
