"""Any encoder, any task: our runs and exports, timm, transformers and open_clip models behind one API.

    from selfsup.encoders import load_image_encoder, load_text_encoder
    enc = load_image_encoder("timm:vit_small_patch14_dinov2.lvd142m")   # or runs/mae, hf:..., open_clip:..., pixels
    feats = enc(images_uint8)            # {"tokens": (B, L, D), "cls": (B, D), "mean": (B, D)}
    record = describe(enc)               # spec, family, what "cls" is, the preprocessing applied

spec.py: the spec forms; base.py: the uniform API (what "cls" means per family, layer ids); preprocess.py: each
library's evaluation preprocessing on uint8 tensors; hub.py: offline behaviour; one adapter file per library, and
pixels.py for the raw-pixel baseline.
"""
from .base import EncoderError, ImageEncoder, TextEncoder, TokenBatch, describe, encoder_device
from .load import load_image_encoder, load_text_encoder
from .preprocess import ImagePreprocess, TextPreprocess
from .spec import EncoderSpec, parse_spec

__all__ = ["EncoderError", "EncoderSpec", "ImageEncoder", "ImagePreprocess", "TextEncoder", "TextPreprocess",
           "TokenBatch", "describe", "encoder_device", "load_image_encoder", "load_text_encoder", "parse_spec"]
