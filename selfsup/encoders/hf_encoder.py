"""transformers models as encoders: vision models (ViT, ViTMAE, ViT-MSN, DINOv2 (with registers), data2vec-vision,
BEiT, CLIP and SigLIP image towers) and text models (BERT, RoBERTa, ELECTRA, CLIP / SigLIP text towers, any
``AutoModel`` encoder), with preprocessing from the folder's image processor or tokenizer.

Features are the model's ``last_hidden_state``; "cls" is its first token ("token") or, for CLIP and SigLIP,
its ``pooler_output`` ("pooler": CLIP's post-LayerNorm class token / end-of-text token, SigLIP's attention-pool
head). ViTMAE runs with mask_ratio 0 and a fixed identity patch order (it otherwise shuffles patches with
random noise), so it sees every patch, in place, deterministically.
"""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from pathlib import Path

import torch

from .base import EncoderError, ImageEncoder, TextEncoder, TokenBatch, block_layer_id
from .hub import fetching
from .preprocess import ImagePreprocess, TextPreprocess
from .spec import EncoderSpec

# model_type -> what "cls" is (see selfsup.encoders.base)
VISION = {"vit": "token", "vit_mae": "token", "vit_msn": "token", "dinov2": "token", "dinov2_with_registers": "token",
          "data2vec-vision": "token", "beit": "token", "clip_vision_model": "pooler", "siglip_vision_model": "pooler"}
# composite image-text models: model_type -> (image tower class, text tower class)
TOWERS = {"clip": ("CLIPVisionModel", "CLIPTextModel"), "siglip": ("SiglipVisionModel", "SiglipTextModel")}
POOLED_TEXT = ("clip", "clip_text_model", "siglip", "siglip_text_model")
BEFORE_BLOCKS = ("embeddings", "embeddings_project", "pre_layrnorm")


def fetch_hint(name: str) -> str:
    hint = f"hf download {name}"
    if not Path(name).exists() and ("/" in name and (name.startswith((".", "/", "~")) or name.count("/") > 1)):
        hint += f" (or, if you meant a local folder: {name} does not exist)"
    return hint


def _config(spec: EncoderSpec):
    from transformers import AutoConfig
    with fetching(spec.text, fetch_hint(spec.name)):
        return AutoConfig.from_pretrained(spec.name)


# weights a checkpoint may lack without harm: heads the encoders drop (pooler) or never use (mask tokens)
UNUSED_WEIGHTS = ("pooler.", "mask_token")


def _model(spec: EncoderSpec, cls, config, pretrained: bool):
    """The model with its weights (or, pretrained=False, the same architecture freshly initialised). A checkpoint
    that lacks weights of its own architecture (truncated, or another model's) is refused: transformers would
    initialise them at random and say so only in a log line."""
    if not pretrained:
        return cls.from_config(config) if cls.__name__.startswith("Auto") else cls._from_config(config)
    with fetching(spec.text, fetch_hint(spec.name)), quiet_transformers():
        model, info = cls.from_pretrained(spec.name, config=config, dtype=torch.float32, output_loading_info=True)
    missing = sorted(k for k in info.get("missing_keys", ()) if not any(u in k for u in UNUSED_WEIGHTS))
    if missing or info.get("mismatched_keys"):
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "") if missing else \
            f"shapes differ: {', '.join(str(m[0]) for m in list(info['mismatched_keys'])[:5])}"
        raise EncoderError(f"'{spec}' lacks weights of its own architecture ({shown}): a truncated or foreign "
                           "checkpoint; re-export or re-download it")
    return model


@contextmanager
def quiet_transformers():
    """transformers' loading progress bars and reports off for one load (we check what loaded ourselves)."""
    from transformers.utils import logging as hf_logging
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


# --------------------------------------------------------------------------------------------------- images


class HFImageEncoder(ImageEncoder):
    family = "hf"

    def __init__(self, model, preprocess: ImagePreprocess, spec: str = ""):
        super().__init__()
        config = model.config
        self.model, self.spec, self.preprocess = model, spec, preprocess
        self.model_type = config.model_type
        self.cls_source = VISION[self.model_type]
        if getattr(config, "use_mean_pooling", False):
            self.cls_source = "mean"        # data2vec-vision / BEiT pool the patch mean; their class token is unused
        if getattr(model, "pooler", None) is not None:
            model.pooler = None             # ViT's tanh head: "cls" is the token; the head would train for nothing
        self.embed_dim = int(config.hidden_size)
        self.depth = int(config.num_hidden_layers)
        self.num_prefix_tokens = 0 if self.model_type == "siglip_vision_model" else \
            1 + int(getattr(config, "num_register_tokens", 0) or 0)
        self.can_interpolate = "interpolate_pos_encoding" in inspect.signature(model.forward).parameters
        self.patch = config.patch_size

    def layer_id(self, name: str) -> int:
        return block_layer_id(name, self.depth, BEFORE_BLOCKS)

    def encode(self, pixels: torch.Tensor):
        size = self.model.config.image_size
        kw = {"interpolate_pos_encoding": True} if self.can_interpolate and pixels.shape[-2:] != (size, size) else {}
        if self.model_type == "vit_mae":   # every patch, in its place: noise 0, 1, 2, ... sorts to the identity
            n = (pixels.shape[-2] // self.patch) * (pixels.shape[-1] // self.patch)
            kw["noise"] = torch.arange(n, device=pixels.device, dtype=torch.float32).expand(len(pixels), n)
        out = self.model(pixel_values=pixels, **kw)
        pooled = out.pooler_output if self.cls_source == "pooler" else None
        return out.last_hidden_state, pooled                     # (B, P + L, D), (B, D) | None


def _image_preprocess(spec: EncoderSpec, config) -> ImagePreprocess:
    from transformers import AutoImageProcessor
    size = int(config.image_size)
    folder = Path(spec.name)
    if folder.is_dir() and not (folder / "preprocessor_config.json").is_file():
        return ImagePreprocess((size, size), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (size, size), "squash",
                               "bicubic", crop_offset="floor", source="defaults",
                               notes=(f"no preprocessor_config.json in {folder}: resized to the model's image_size "
                                      f"{size} with ImageNet mean/std",))
    with fetching(spec.text, fetch_hint(spec.name)):
        processor = AutoImageProcessor.from_pretrained(spec.name)
    return ImagePreprocess.from_hf(processor, size, source=f"{type(processor).__name__} ({spec.name})")


def _tower(spec: EncoderSpec, kind: str):
    """(model class, config) of the image or text model a folder or hub id holds; a CLIP-like model gives either."""
    import transformers
    config = _config(spec)
    name = config.model_type
    if name in TOWERS:
        if kind == "image":
            return getattr(transformers, TOWERS[name][0]), config.vision_config
        return getattr(transformers, TOWERS[name][1]), config.text_config
    if kind == "image" and name not in VISION:
        raise EncoderError(f"'{spec}' is a '{name}' model, not an image model this loader knows "
                           f"({', '.join(sorted(VISION) + sorted(TOWERS))}); text models go where a text encoder "
                           "is chosen")
    if kind == "text" and name in VISION:
        raise EncoderError(f"'{spec}' is a '{name}' image model; image models go where an image encoder is chosen")
    return transformers.AutoModel, config


def load_hf_image(spec: EncoderSpec, pretrained: bool = True, image_size: int | None = None) -> HFImageEncoder:
    cls, config = _tower(spec, "image")
    if config.model_type == "vit_mae":
        config.mask_ratio = 0.0
    model = _model(spec, cls, config, pretrained)
    preprocess = _image_preprocess(spec, model.config)
    return HFImageEncoder(model.eval(), preprocess.at_size(image_size) if image_size else preprocess, spec.text)


# --------------------------------------------------------------------------------------------------- text


class HFTextEncoder(TextEncoder):
    family = "hf"

    def __init__(self, model, tokenizer, spec: str = "", max_length: int | None = None):
        super().__init__()
        config = model.config
        self.model, self.tokenizer, self.spec = model, tokenizer, spec
        self.cls_source = "pooler" if config.model_type in POOLED_TEXT else "token"
        if self.cls_source == "token" and getattr(model, "pooler", None) is not None:
            model.pooler = None             # BERT's tanh head (NSP): "cls" is the [CLS] token itself
        self.embed_dim = int(config.hidden_size)
        self.depth = int(config.num_hidden_layers)
        if len(tokenizer) > config.vocab_size:
            raise EncoderError(f"'{spec or type(model).__name__}': its tokenizer has {len(tokenizer)} tokens, its "
                               f"embeddings only {config.vocab_size}")
        self.max_length = _max_length(config, tokenizer)
        self.positions = _positions(config, self.max_length)
        self.preprocess = TextPreprocess(
            f"{type(tokenizer).__name__} ({getattr(tokenizer, 'name_or_path', '')})", len(tokenizer), self.max_length,
            int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0),
            getattr(tokenizer, "do_lower_case", None), source=spec)
        if max_length:
            self.set_max_length(max_length)

    def layer_id(self, name: str) -> int:
        return block_layer_id(name, self.depth, BEFORE_BLOCKS)

    def tokenize(self, texts: list[str], padding: str = "longest") -> TokenBatch:
        enc = self.tokenizer(list(texts), padding=padding, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return TokenBatch(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])

    def export(self, out_dir: str | Path) -> Path:
        """A transformers folder with the tokenizer (``AutoModel`` / ``AutoTokenizer.from_pretrained(out_dir)``,
        and ``hf:out_dir`` or plain ``out_dir`` as a text encoder spec); the tokenizer's model_max_length is set
        to this encoder's max_length."""
        out = Path(out_dir)
        self.model.save_pretrained(str(out), safe_serialization=True)
        self.tokenizer.model_max_length = self.max_length
        self.tokenizer.save_pretrained(str(out))
        return out

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        pooled = out.pooler_output if self.cls_source == "pooler" else None
        return out.last_hidden_state, pooled                     # (B, T, D), (B, D) | None


def _positions(config, default: int) -> int:
    """Positions the model embeds (RoBERTa-style models start them after the padding index); ``default`` when the
    config does not say."""
    positions = getattr(config, "max_position_embeddings", None)
    if not positions:
        return default
    offset = int(config.pad_token_id) + 1 if "roberta" in config.model_type or config.model_type == "camembert" else 0
    return int(positions) - offset


def _max_length(config, tokenizer) -> int:
    """The tokenizer's model_max_length when it says one, capped by the position embeddings."""
    said = getattr(tokenizer, "model_max_length", None)
    said = int(said) if said and said < 1_000_000 else None
    positions = _positions(config, said or 512)
    return min(positions, said) if said else positions


def load_hf_text(spec: EncoderSpec, pretrained: bool = True, max_length: int | None = None) -> HFTextEncoder:
    import transformers
    cls, config = _tower(spec, "text")
    model = _model(spec, cls, config, pretrained)
    with fetching(spec.text, fetch_hint(spec.name)):
        tokenizer = transformers.AutoTokenizer.from_pretrained(spec.name)
    return HFTextEncoder(model.eval(), tokenizer, spec.text, max_length)
