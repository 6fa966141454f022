"""One spec -> one encoder. The entry points tasks call:

    enc = load_image_encoder("hf:facebook/dinov2-small")      # ImageEncoder (selfsup.encoders.base)
    txt = load_text_encoder("exports/bert")                     # TextEncoder

Our own runs and exports are read by the domain packages, found through the ``selfsup.encoders`` entry-point
group (so this engine imports none of them): each entry point is a function ``(path, kind, pretrained) ->
encoder | None`` that returns None for a folder that is not its own.
"""
from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

from .base import EncoderError, ImageEncoder, TextEncoder
from .spec import EncoderSpec, parse_spec

ENTRY_POINT_GROUP = "selfsup.encoders"


def load_image_encoder(spec: str | EncoderSpec, *, pretrained: bool = True, image_size: int | None = None
                       ) -> ImageEncoder:
    """An image encoder on CPU, in eval mode. ``pretrained=False``: the same architecture freshly initialised
    (its library's own init), with the same preprocessing — the random-weights control of that model.
    ``image_size``: run it at another square input size (position embeddings interpolated, as each library does;
    e.g. small RL frames); recorded in its preprocessing notes."""
    s = spec if isinstance(spec, EncoderSpec) else parse_spec(spec)
    if s.library == "timm":
        from .timm_encoder import load_timm
        return load_timm(s, pretrained, image_size)
    if s.library == "hf":
        from .hf_encoder import load_hf_image
        return load_hf_image(s, pretrained, image_size)
    if s.library == "open_clip":
        from .open_clip_encoder import load_open_clip_image
        return load_open_clip_image(s, pretrained, image_size)
    if s.library == "pixels":
        from .pixels import load_pixels
        return load_pixels(s.name, image_size, s.text)
    enc = _ours(s, "image", pretrained)
    if image_size and (image_size,) * 2 != tuple(enc.preprocess.input_size):
        raise EncoderError(f"'{s}': our encoders run at the size they were trained at "
                           f"({enc.preprocess.input_size[0]}); image_size={image_size} is for hub models")
    return enc


def load_text_encoder(spec: str | EncoderSpec, *, pretrained: bool = True, max_length: int | None = None
                      ) -> TextEncoder:
    """A text encoder (with its tokenizer) on CPU, in eval mode; ``max_length``: truncate there instead of at the
    encoder's own limit (at most the positions it embeds)."""
    s = spec if isinstance(spec, EncoderSpec) else parse_spec(spec)
    if s.library in ("timm", "pixels"):
        what = "timm models are" if s.library == "timm" else "raw pixels are"
        raise EncoderError(f"'{s}': {what} image encoders; name a text model (hf:, open_clip: or ours)")
    if s.library == "hf":
        from .hf_encoder import load_hf_text
        return load_hf_text(s, pretrained, max_length)
    if s.library == "open_clip":
        from .open_clip_encoder import load_open_clip_text
        return load_open_clip_text(s, pretrained, max_length)
    enc = _ours(s, "text", pretrained)
    if max_length:
        enc.set_max_length(int(max_length))
    return enc


def _ours(spec: EncoderSpec, kind: str, pretrained: bool):
    path = Path(spec.name)
    if not path.exists():
        raise EncoderError(f"encoder '{spec}' not found: no such run or export folder. Hub models are named "
                           "timm:NAME, hf:NAME_OR_DIR or open_clip:ARCH[:TAG_OR_FILE]")
    readers = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    for ep in readers:
        enc = ep.load()(path, kind, pretrained)
        if enc is not None:
            enc.spec = getattr(enc, "spec", "") or spec.text
            return enc
    hint = ""
    if (path / "config.json").is_file():
        import json
        try:
            cfg = json.loads((path / "config.json").read_text())
        except ValueError:
            cfg = {}
        hint = f" It looks like a timm folder: use timm:{path}" if "architecture" in cfg else \
            f" It looks like a transformers folder: use hf:{path}" if "model_type" in cfg else ""
    elif (path / "open_clip_config.json").is_file():
        hint = f" It looks like an open_clip folder: use open_clip:{path}"
    asked = ", ".join(ep.name for ep in readers) or "none installed"
    raise EncoderError(f"{path} is not a run or export that an installed package reads as a {kind} encoder "
                       f"(asked: {asked}).{hint}")
