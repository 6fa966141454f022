"""The uniform encoder API every image and text encoder follows, whatever library it comes from.

    enc = load_image_encoder("timm:vit_small_patch14_dinov2.lvd142m")
    out = enc(images_uint8)           # {"tokens": (B, L, D), "cls": (B, D), "mean": (B, D)}; any image size
    describe(enc)                     # spec, library, what "cls" is, the preprocessing (for a Result's extra)
    enc.freeze(); enc.unfreeze(last_k=2)
    groups = enc.param_groups(weight_decay=0.05, layer_decay=0.75)

What "cls" is, per family (``enc.cls_source`` says which applies):
- "token": the model's own class token after its final norm (ViT, DeiT, MAE, DINOv2, data2vec, BEiT,
  BERT/RoBERTa/ELECTRA's [CLS] / <s>).
- "pooler": the model's own pooled output where it has no class token or defines its embedding so:
  SigLIP's attention-pool (MAP) head; CLIP's post-LayerNorm class token (HF) or pooled token (open_clip)
  and CLIP text's end-of-text token; timm models without a class token (global pool of ``forward_head``,
  pre-logits). Always before any image-text projection.
- "mean": the mean of the patch tokens, for models whose own feature is that mean (data2vec-vision and BEiT
  with ``use_mean_pooling``; timm models whose pooled width differs from their tokens').
- "pixels": the raw-pixel baseline (``pixels`` spec): "cls" and "mean" are the normalised image flattened, and
  its tokens (flattened patches) are ``token_dim`` wide, not ``embed_dim``.
"mean" is otherwise the mean of the patch tokens (text: of the real tokens, by the attention mask). Text "tokens"
are every position, padding included: use the attention mask with them.

Layer ids (for partial finetuning and layer-wise LR decay): 0 for everything before the first block
(embeddings), i + 1 for block i, depth + 1 for everything after the last block (final norm, pooler).
``unfreeze(last_k)`` trains the last k blocks and what follows them; ``param_groups`` scales block i's
LR by ``layer_decay ** (depth - i)`` (BEiT / MAE finetuning), embeddings by ``layer_decay ** (depth + 1)``.
timm models use timm's own grouping (``group_matcher``), in which the final norm joins the last block.
``shard_units()`` lists the transformer blocks (FSDP units, see selfsup.task).
"""
from __future__ import annotations

import itertools
import re
from dataclasses import replace

import torch
from torch import nn

from selfsup.errors import UserError
from selfsup.optim import layer_decay_groups

from .preprocess import ImagePreprocess, TextPreprocess


class EncoderError(UserError, ValueError):
    """A spec, file or cache the user must fix; the message says what to do."""


class _Trainable(nn.Module):
    """freeze / unfreeze(last_k) / param_groups from ``layer_id(name)`` and ``depth``."""
    depth: int = 0
    spec: str = ""
    family: str = ""
    cls_source: str = "token"

    def layer_id(self, name: str) -> int:
        raise NotImplementedError

    def _cls(self, hidden: torch.Tensor, pooled: torch.Tensor | None, mean: torch.Tensor) -> torch.Tensor:
        """The "cls" feature per ``cls_source`` (see the module's docstring)."""
        if self.cls_source == "pooler":
            return pooled
        return hidden[:, 0] if self.cls_source == "token" else mean

    def freeze(self):
        self.requires_grad_(False)
        return self

    def unfreeze(self, last_k: int | None = None):
        """All parameters trainable, or only the last ``last_k`` blocks and what follows them (final norm, pooler)."""
        if last_k is None:
            return self.requires_grad_(True)
        if not 0 <= last_k <= self.depth:
            raise EncoderError(f"last_k={last_k}: {self.spec or type(self).__name__} has {self.depth} blocks")
        for name, p in self.named_parameters():
            p.requires_grad_(self.layer_id(name) > self.depth - last_k)
        return self

    def param_groups(self, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
        """AdamW groups of the trainable parameters, each with ``lr_scale = layer_decay ** (depth + 1 - layer)``;
        no weight decay on norms, biases and embeddings."""
        return layer_decay_groups(self, self.layer_id, self.depth, weight_decay, layer_decay)

    def shard_units(self) -> list[nn.Module]:
        """The transformer blocks (``blocks.i``, ``layer.i``, ``layers.i``, ``resblocks.i``), outermost first."""
        units: dict[str, nn.Module] = {}
        for name, module in self.named_modules():
            if BLOCK_MODULE.search(name) and not any(name.startswith(f"{u}.") for u in units):
                units[name] = module
        return list(units.values())


def describe(encoder: nn.Module) -> dict:
    """What a task records about an encoder (any that follows the contract) in its Results' extra: the spec, the
    library, the width, what "cls" is and the preprocessing applied."""
    return {"encoder": getattr(encoder, "spec", "") or type(encoder).__name__,
            "encoder_family": getattr(encoder, "family", "") or type(encoder).__module__.split(".")[0],
            "embed_dim": int(encoder.embed_dim), "cls": getattr(encoder, "cls_source", "token"),
            "preprocess": encoder.preprocess.to_dict()}


class ImageEncoder(_Trainable):
    """An image encoder: ``forward(images) -> {"tokens", "cls", "mean"}`` from uint8 (B, 3, H, W) images of any
    size (resized and normalised by ``preprocess``) or from float images already normalised at ``input_size``.

    An adapter sets ``embed_dim``, ``preprocess``, ``num_prefix_tokens``, ``depth``, ``cls_source`` and implements
    ``encode(pixels) -> (hidden (B, prefix + L, D), pooled (B, D) or None)`` and ``layer_id(name)``."""
    embed_dim: int
    preprocess: ImagePreprocess
    num_prefix_tokens: int = 1

    @property
    def token_dim(self) -> int:
        """Width of "tokens" and ``forward_features`` (``embed_dim`` for every model; raw pixels differ)."""
        return self.embed_dim

    @property
    def input_size(self) -> int:
        """The side of the square images the encoder takes (after its resize and crop)."""
        h, w = self.preprocess.input_size
        if h != w:
            raise EncoderError(f"'{self.spec}' takes {h}x{w} images; the tasks feed square ones (give image_size)")
        return int(h)

    @torch.no_grad()
    def num_tokens(self) -> int:
        """L, the number of patch tokens of an image at the input size (one forward of a blank image, in eval
        mode so that no running statistics move)."""
        s, was_training = self.input_size, self.training
        self.eval()
        try:
            blank = torch.zeros(1, 3, s, s, dtype=torch.uint8, device=encoder_device(self))
            return int(self(blank)["tokens"].shape[1])
        finally:
            self.train(was_training)

    def encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 of any size -> normalised float at the input size; float passes through (already prepared)."""
        if images.dtype != torch.uint8:
            return images
        if tuple(images.shape[-2:]) != tuple(self.preprocess.input_size):
            images = self.preprocess.resize(images)
        return self.preprocess.normalize(images)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, prefix + L, D): every token of the last layer as the library returns it."""
        return self.encode(self.prepare(images))[0]

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden, pooled = self.encode(self.prepare(images))             # (B, P + L, D), (B, D) | None
        tokens = hidden[:, self.num_prefix_tokens:]                    # (B, L, D)
        mean = tokens.mean(1)
        return {"tokens": tokens, "cls": self._cls(hidden, pooled, mean), "mean": mean}


class TokenBatch(dict):
    """``{"input_ids", "attention_mask"}`` (B, T) that moves to a device as transformers' BatchEncoding does."""

    def to(self, device) -> "TokenBatch":
        return TokenBatch({k: v.to(device) for k, v in self.items()})


class TextEncoder(_Trainable):
    """A text encoder: ``forward(input_ids, attention_mask) -> {"tokens", "cls", "mean"}``; ``tokenize(texts)``
    applies its own tokenizer (truncating at ``max_length``).

    An adapter sets ``embed_dim``, ``tokenizer``, ``positions`` (the longest input the model embeds),
    ``preprocess`` (with ``set_max_length``: ``max_length``), ``depth``, ``cls_source`` and
    implements ``encode(input_ids, attention_mask) -> (hidden (B, T, D), pooled (B, D) or None)``,
    ``tokenize`` and ``layer_id``."""
    embed_dim: int
    max_length: int
    positions: int
    preprocess: TextPreprocess

    def set_max_length(self, max_length: int) -> None:
        """Truncate text at ``max_length`` tokens (recorded in ``preprocess``); more than the model's positions is an
        error, not a silent cut."""
        if not 0 < max_length <= self.positions:
            raise EncoderError(f"'{self.spec or type(self).__name__}': max_length {max_length} must lie in 1.."
                               f"{self.positions}, the positions the model embeds (e.g. lower task.max_len)")
        self.max_length = int(max_length)
        self.preprocess = replace(self.preprocess, max_length=self.max_length)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def tokenize(self, texts: list[str], padding: str = "longest") -> TokenBatch:
        """{"input_ids": (B, T) int64, "attention_mask": (B, T) int64}, truncated at ``max_length`` and padded to
        the longest text (``padding="longest"``) or to ``max_length`` (``"max_length"``: equal shapes, for
        batching single examples). Tokenizers with a fixed context (open_clip) always pad to it."""
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden, pooled = self.encode(input_ids, attention_mask)          # (B, T, D), (B, D) | None
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
        return {"tokens": hidden, "cls": self._cls(hidden, pooled, mean), "mean": mean}


BLOCKS = re.compile(r"(?:^|\.)(?:layers?|blocks|resblocks)\.(\d+)\.")   # "encoder.layer.3.", "blocks.3.", ...
BLOCK_MODULE = re.compile(r"(?:^|\.)(?:layers?|blocks|resblocks)\.\d+$")   # the block modules themselves


def encoder_device(module: nn.Module) -> torch.device:
    """Where a module runs: its parameters' (or buffers') device; CPU for one with neither (raw pixels)."""
    for t in itertools.chain(module.parameters(), module.buffers()):
        return t.device
    return torch.device("cpu")


def block_layer_id(name: str, depth: int, before: tuple[str, ...]) -> int:
    """Layer id from a parameter name: i + 1 inside block i, 0 when a part of the name is one of ``before``
    (embeddings, pre-norms), depth + 1 for the rest (after the blocks)."""
    m = BLOCKS.search(name)
    if m:
        return int(m.group(1)) + 1
    return 0 if any(part in before for part in name.split(".")) else depth + 1
