"""Encoder specs: one string names any encoder, wherever a task chooses one.

    runs/mae, exports/bert                our runs and exports (read by the domain packages, see load.py)
    timm:NAME | timm:DIR                  a timm model: hub name (weights fetched once, then cached) or a folder
                                          in timm's hub layout (config.json with architecture + pretrained_cfg,
                                          model.safetensors); timm's own prefixes (hf-hub:, local-dir:) also work
    hf:NAME_OR_DIR                        a transformers model: hub id or a save_pretrained folder
    open_clip:ARCH[:TAG_OR_FILE]          an open_clip model: architecture (a built-in name or a model-config JSON
                                          file) with a pretrained tag or a weights file; or open_clip:DIR (a folder
                                          with open_clip_config.json + weights), open_clip:hf-hub:ORG/NAME
    pixels | pixels:SIZE                  raw pixels, the baseline (selfsup.encoders.pixels); a folder named
                                          "pixels" is ./pixels

Which tower of a CLIP-like model is used follows from where the spec is given: ``load_image_encoder`` takes
the image tower, ``load_text_encoder`` the text tower.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .base import EncoderError

LIBRARIES = ("timm", "hf", "open_clip")


@dataclass(frozen=True)
class EncoderSpec:
    library: str        # ours | timm | hf | open_clip | pixels
    name: str           # a path, a hub name or an architecture
    weights: str = ""   # open_clip: the pretrained tag or weights file
    text: str = ""      # the spec as given

    def __str__(self) -> str:
        return self.text


def parse_spec(spec: str) -> EncoderSpec:
    text = str(spec).strip()
    if not text:
        raise EncoderError("empty encoder spec: give a run or export folder, timm:NAME, hf:NAME_OR_DIR, "
                           "open_clip:ARCH[:TAG_OR_FILE] or pixels[:SIZE]")
    prefix, sep, rest = text.partition(":")
    if prefix == "pixels":
        return EncoderSpec("pixels", rest, text=text)
    if not sep or prefix not in LIBRARIES:
        if sep and prefix.replace("-", "_").lower() in ("openclip", "open_clip", "huggingface", "transformers") \
                and not Path(text).exists():
            raise EncoderError(f"unknown encoder library '{prefix}' in '{text}'; prefixes are {', '.join(LIBRARIES)}")
        return EncoderSpec("ours", text, text=text)
    if not rest:
        raise EncoderError(f"encoder spec '{text}' names no model after '{prefix}:'")
    if prefix == "timm":
        if not rest.startswith(("hf-hub:", "local-dir:")) and _looks_like_path(rest):
            rest = f"local-dir:{rest}"
        return EncoderSpec("timm", rest, text=text)
    if prefix == "hf":
        return EncoderSpec("hf", rest, text=text)
    if rest.startswith(("hf-hub:", "local-dir:")):
        return EncoderSpec("open_clip", rest, text=text)
    if Path(rest).is_dir():
        return EncoderSpec("open_clip", f"local-dir:{rest}", text=text)
    arch, _, weights = rest.partition(":")
    return EncoderSpec("open_clip", arch, weights, text=text)


def _looks_like_path(name: str) -> bool:
    """A timm registry name has no slash; a folder does (or exists)."""
    return "/" in name or name.startswith(".") or Path(name).is_dir()
