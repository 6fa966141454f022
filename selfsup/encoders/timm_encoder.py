"""timm models as image encoders: any timm architecture, with its own pretrained_cfg as preprocessing.

Features are ``model.forward_features(x)``: ViT-like models give (B, prefix + L, D) tokens; CNNs and NHWC models
(B, C, H, W) / (B, H, W, C) maps, flattened to (B, H*W, C) tokens. "cls" is the class token where the model has
one, else the model's own pooling (``forward_head(x, pre_logits=True)``, e.g. SigLIP's attention pool, a CNN's
global average). Layer ids are timm's own grouping (``group_matcher``: stem 0, then one group per block, the
final norm joining the last block).
"""
from __future__ import annotations

import torch

from .base import EncoderError, ImageEncoder
from .hub import fetching
from .preprocess import ImagePreprocess
from .spec import EncoderSpec


class TimmImageEncoder(ImageEncoder):
    family = "timm"

    def __init__(self, model, spec: str = "", preprocess: ImagePreprocess | None = None):
        super().__init__()
        from timm.data import resolve_data_config
        from timm.models import group_parameters
        self.model = model
        self.spec = spec
        self.embed_dim = int(model.num_features)
        self.preprocess = preprocess or ImagePreprocess.from_timm(resolve_data_config({}, model=model))
        self.nhwc = getattr(model, "output_fmt", "NCHW") == "NHWC"
        self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 0) or 0)
        if getattr(model, "cls_token", None) is not None and self.num_prefix_tokens:
            self.cls_source = "token"
        elif int(getattr(model, "head_hidden_size", self.embed_dim)) == self.embed_dim:
            self.cls_source = "pooler"
        else:
            self.cls_source = "mean"     # the model's pre-logits width differs from its tokens'
        if hasattr(model, "group_matcher"):
            groups = group_parameters(model, model.group_matcher(coarse=False), reverse=True)
        else:
            groups = {n: 0 for n, _ in model.named_parameters()}
        self._layer = {f"model.{n}": i for n, i in groups.items()}
        self.depth = max(self._layer.values(), default=0)

    def layer_id(self, name: str) -> int:
        return self._layer.get(name, self.depth)

    def no_weight_decay(self) -> set[str]:
        return {f"model.{n}" for n in getattr(self.model, "no_weight_decay", lambda: set())()}

    def encode(self, pixels: torch.Tensor):
        x = self.model.forward_features(pixels)
        pooled = self.model.forward_head(x, pre_logits=True) if self.cls_source == "pooler" else None
        if x.ndim == 4:        # a feature map -> tokens
            x = x.flatten(1, 2) if self.nhwc else x.flatten(2).transpose(1, 2)     # (B, H*W, C)
        return x, pooled


def load_timm(spec: EncoderSpec, pretrained: bool = True, image_size: int | None = None) -> TimmImageEncoder:
    import timm
    name = spec.name
    if name.startswith("local-dir:"):
        from pathlib import Path
        folder = Path(name[len("local-dir:"):])
        if not (folder / "config.json").is_file():
            raise EncoderError(f"'{spec}': {folder / 'config.json'} not found; a timm model folder holds config.json "
                               "(architecture, model_args, pretrained_cfg) and model.safetensors, as "
                               "timm.models.save_for_hf writes them")
    elif not name.startswith("hf-hub:") and not timm.is_model(timm.models.split_model_name_tag(name)[0]):
        raise EncoderError(f"timm has no model '{name}' (list them with timm.list_models('*vit*', pretrained=True))")
    fetch = f"python -c \"import timm; timm.create_model('{name}', pretrained=True)\""
    with fetching(spec.text, fetch):
        model = timm.create_model(name, pretrained=pretrained, num_classes=0)
    enc = TimmImageEncoder(model.eval(), spec.text)
    if image_size:
        if hasattr(model, "set_input_size"):          # ViT-like: position embeddings resampled to the new grid
            model.set_input_size(img_size=(image_size, image_size))
        enc.preprocess = enc.preprocess.at_size(image_size)
    return enc
