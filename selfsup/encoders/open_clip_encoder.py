"""open_clip models as encoders: either tower of a CLIP-style model, with open_clip's preprocess_cfg and tokenizer.

Image tower: open_clip's own ViT (tokens after ``ln_post``; "cls" = its pooled token before the projection) or a
timm trunk (handled as a timm model, with open_clip's preprocessing). Text tower: tokens after ``ln_final``; "cls"
= the end-of-text token (open_clip's ``text_global_pool``) before the projection. The image-text projections are
dropped: the features are the towers' own width. CoCa (attentional pooling) and ResNet towers are not supported.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from .base import EncoderError, ImageEncoder, TextEncoder, TokenBatch, block_layer_id
from .hub import fetching
from .preprocess import ImagePreprocess, TextPreprocess
from .spec import EncoderSpec
from .timm_encoder import TimmImageEncoder

BEFORE_BLOCKS = ("conv1", "class_embedding", "positional_embedding", "ln_pre", "token_embedding")


class OpenClipImageEncoder(ImageEncoder):
    family = "open_clip"
    cls_source = "pooler"
    num_prefix_tokens = 1

    def __init__(self, visual, preprocess: ImagePreprocess, spec: str = ""):
        super().__init__()
        if visual.attn_pool is not None:
            raise EncoderError(f"'{spec}': open_clip towers with attentional pooling (CoCa) are not supported")
        visual.proj = None                       # the image-text projection: not part of the features
        self.visual, self.preprocess, self.spec = visual, preprocess, spec
        self.embed_dim = int(visual.transformer.width)
        self.depth = len(visual.transformer.resblocks)

    def layer_id(self, name: str) -> int:
        return block_layer_id(name, self.depth, BEFORE_BLOCKS)

    def no_weight_decay(self) -> set[str]:
        return {f"visual.{n}" for n in self.visual.no_weight_decay()}

    def encode(self, pixels: torch.Tensor):
        x = self.visual.transformer(self.visual._embeds(pixels))      # (B, 1 + L, W)
        pooled, _ = self.visual._pool(x)                               # (B, W), before the projection
        if not self.visual.final_ln_after_pool:
            x = self.visual.ln_post(x)                                 # the tokens open_clip pools from
        return x, pooled


class OpenClipTextEncoder(TextEncoder):
    family = "open_clip"
    cls_source = "pooler"

    def __init__(self, text, tokenizer, spec: str = "", max_length: int | None = None):
        super().__init__()
        if text.cls_emb is not None:
            raise EncoderError(f"'{spec}': open_clip text towers with a class embedding (CoCa) are not supported")
        text.text_projection = None
        self.text, self.tokenizer, self.spec = text, tokenizer, spec
        self.embed_dim = int(text.width)
        self.depth = len(text.transformer.resblocks)
        self.max_length = self.positions = int(text.context_length)
        inner = getattr(tokenizer, "tokenizer", None)            # open_clip's HFTokenizer wraps a transformers one
        self.pad_id = int(getattr(inner, "pad_token_id", None) or getattr(text, "pad_id", 0) or 0)
        self.preprocess = TextPreprocess(f"{type(tokenizer).__name__} (open_clip)",
                                         int(getattr(tokenizer, "vocab_size", text.vocab_size)), self.max_length,
                                         self.pad_id, source=spec)
        if max_length:
            self.set_max_length(max_length)

    def layer_id(self, name: str) -> int:
        return block_layer_id(name, self.depth, BEFORE_BLOCKS)

    def no_weight_decay(self) -> set[str]:
        return {"text.positional_embedding"}

    def tokenize(self, texts: list[str], padding: str = "max_length") -> TokenBatch:
        ids = self.tokenizer(list(texts), context_length=self.max_length)       # (B, max_length), always padded
        return TokenBatch(input_ids=ids, attention_mask=(ids != self.pad_id).long())

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        from open_clip.transformer import text_global_pool
        t = self.text
        x, mask = t._embeds(input_ids)
        x = t.ln_final(t.transformer(x, attn_mask=mask))                               # (B, T, W)
        pooled = text_global_pool(x, input_ids, t.pool_type, eos_token_id=getattr(t, "eos_id", None))
        return x, pooled


def _create(spec: EncoderSpec, pretrained: bool, image_size: int | None = None):
    """The whole open_clip model (both towers) with its weights, and the architecture name for its tokenizer."""
    import open_clip
    arch, kw = spec.name, {}
    if arch.endswith(".json"):                    # a model-config file: registered under its stem
        if not Path(arch).is_file():
            raise EncoderError(f"'{spec}': model config {arch} not found")
        open_clip.add_model_config(arch)
        arch = Path(arch).stem
    if arch.startswith("local-dir:"):
        folder = Path(arch[len("local-dir:"):])
        if pretrained and not any(folder.glob(p) for p in ("*.safetensors", "*.bin", "*.pth")):
            raise EncoderError(f"'{spec}': no weights (*.safetensors, *.bin, *.pth) in {folder}")
    elif not arch.startswith("hf-hub:"):
        if open_clip.get_model_config(arch) is None:
            raise EncoderError(f"open_clip has no architecture '{arch}' (open_clip.list_models() lists them)")
        if pretrained and not spec.weights:
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none released"
            raise EncoderError(f"'{spec}' names no weights: add a pretrained tag ({tags}) or a weights file, "
                               f"e.g. open_clip:{arch}:TAG")
        if pretrained and spec.weights and not Path(spec.weights).is_file() and \
                spec.weights not in open_clip.list_pretrained_tags_by_model(arch):
            raise EncoderError(f"'{spec}': '{spec.weights}' is neither a weights file nor a pretrained tag of {arch} "
                               f"({', '.join(open_clip.list_pretrained_tags_by_model(arch)) or 'none released'})")
        kw["pretrained"] = spec.weights if pretrained else None
    fetch = f"python -c \"import open_clip; open_clip.create_model('{arch}'" + \
        (f", pretrained='{spec.weights}')\"" if spec.weights else ")\"")
    with fetching(spec.text, fetch):
        model = open_clip.create_model(arch, load_weights=pretrained, force_custom_text=True,
                                       force_image_size=image_size, **kw)
    return model.eval(), arch


def load_open_clip_image(spec: EncoderSpec, pretrained: bool = True, image_size: int | None = None) -> ImageEncoder:
    import open_clip
    from open_clip.timm_model import TimmModel
    from open_clip.transformer import VisionTransformer
    model, _ = _create(spec, pretrained, image_size)     # open_clip resamples the position embeddings itself
    visual = model.visual
    preprocess = ImagePreprocess.from_open_clip(open_clip.get_model_preprocess_cfg(model))
    if image_size:
        preprocess = replace(preprocess, notes=preprocess.notes + (f"input size {image_size} (image_size override)",))
    if isinstance(visual, VisionTransformer):
        return OpenClipImageEncoder(visual, preprocess, spec.text)
    if isinstance(visual, TimmModel):
        enc = TimmImageEncoder(visual.trunk, spec.text, preprocess)
        enc.family = "open_clip(timm)"
        return enc
    raise EncoderError(f"'{spec}': open_clip image towers of type {type(visual).__name__} are not supported "
                       "(ViT and timm towers are)")


def load_open_clip_text(spec: EncoderSpec, pretrained: bool = True, max_length: int | None = None) -> TextEncoder:
    import open_clip
    from open_clip.transformer import TextTransformer
    model, arch = _create(spec, pretrained)
    if not isinstance(model.text, TextTransformer):
        raise EncoderError(f"'{spec}': open_clip text towers of type {type(model.text).__name__} are not supported "
                           "(use the transformers model it wraps with hf:NAME)")
    with fetching(spec.text, f"python -c \"import open_clip; open_clip.get_tokenizer('{arch}')\""):
        tokenizer = open_clip.get_tokenizer(arch)
    return OpenClipTextEncoder(model.text, tokenizer, spec.text, max_length)
