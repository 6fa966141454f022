"""The pretrained vision encoder as the other packages use it: no masking, patch tokens and pooled features,
its preprocessing, freezing, layer-wise LR decay, and export to timm.

    enc = ViTEncoder.from_checkpoint("runs/mae")            # a run, a checkpoint folder or an export of any of
                                                            # our vision methods (mae, simmim, data2vec, vit-finetune)
    out = enc(images_uint8)                                 # {"tokens": (B, L, D), "cls": (B, D), "mean": (B, D)}
    enc.preprocess                                          # input size, mean, std, interpolation, crop_pct
    enc.freeze(); enc.unfreeze(last_k=2)
    groups = enc.param_groups(weight_decay=0.05, layer_decay=0.75)
    enc.export_timm("exports/mae-tiny")                     # timm.create_model("local-dir:exports/mae-tiny",
                                                            #                   pretrained=True)
"""
from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

import torch
from omegaconf import OmegaConf
from timm.models.vision_transformer import VisionTransformer

from selfsup.checkpoint import CheckpointError, check_fits, load_weights, resolve_checkpoint, save_weights
from selfsup.encoders import ImageEncoder, ImagePreprocess
from selfsup.io import atomic_write, atomic_write_json

from .legacy import migrate_model_to_vit
from .transforms import EVAL_CROP, IMAGENET_MEAN, IMAGENET_STD, INTERPOLATION
from .vit import ViTConfig, build_vit

EXPORT_FORMAT = 2   # encoder.json: {"format": 2, "vit": ViTConfig, "method": ...}; format 1 had "mae_config"


def preprocess_for(cfg: ViTConfig) -> ImagePreprocess:
    """Our evaluation view (transforms.eval_view: shorter side to size / 0.875, bilinear, centre crop) and
    ImageNet normalisation, at the encoder's input size."""
    s = cfg.img_size
    return ImagePreprocess((s, s), IMAGENET_MEAN, IMAGENET_STD, (int(s / EVAL_CROP),) * 2, "shortest", INTERPOLATION,
                           crop_pct=EVAL_CROP, source="selfsup vision (transforms.eval_view + normalize)")


def vit_config_from(d: dict) -> ViTConfig:
    """The ViTConfig fields of a dict that may hold more (the flat MAEConfig of older runs and exports)."""
    names = {f.name for f in fields(ViTConfig)}
    return ViTConfig(**{k: v for k, v in d.items() if k in names})


def _export_meta(path: Path) -> dict | None:
    return json.loads((path / "encoder.json").read_text()) if (path / "encoder.json").is_file() else None


def vit_config_of(path: str | Path) -> ViTConfig:
    """The architecture of an export folder, or of a run / checkpoint folder (from its config.yaml)."""
    path = Path(path)
    meta = _export_meta(path)
    if meta is not None:
        return vit_config_from(meta.get("vit") or meta.get("mae_config") or {})
    config_file = resolve_checkpoint(path).parent.parent / "config.yaml"
    if not config_file.is_file():
        raise CheckpointError(f"{config_file} not found: a vision checkpoint needs its run's config.yaml beside "
                              "checkpoints/ to know the architecture")
    saved = OmegaConf.to_container(OmegaConf.load(config_file))
    task = saved.get("task") if isinstance(saved, dict) else None
    task = migrate_model_to_vit({"task": task})["task"] if isinstance(task, dict) else {}   # older runs' layout
    if task.get("init") and "vit" in task:                          # vit-finetune from a pretrained encoder
        try:
            return vit_config_of(task["init"])
        except (CheckpointError, OSError) as e:
            raise CheckpointError(f"{config_file} finetuned {task['init']}, whose architecture it takes, and that "
                                  f"cannot be read ({e})") from None
    if isinstance(task.get("vit"), dict):                          # mae, simmim, data2vec, vit-finetune
        return vit_config_from(task["vit"])
    raise CheckpointError(f"{config_file} is not the config of a vision run (mae, simmim, data2vec, vit-finetune): "
                          "it has no task.vit; pass such a run, one of its checkpoints or an encoder export")


class ViTEncoder(ImageEncoder):
    """Our ViT as a ``selfsup.encoders.ImageEncoder``: the contract every encoder follows (features, preprocessing,
    freeze / unfreeze(last_k), layer-wise LR decay through ``selfsup.optim.layer_decay_groups``), plus loading any
    of our vision runs and exports and exporting to timm."""
    family = "selfsup"
    cls_source = "token"
    num_prefix_tokens = 1

    def __init__(self, cfg: ViTConfig, vit: VisionTransformer | None = None):
        super().__init__()
        self.cfg = cfg
        self.vit = vit if vit is not None else build_vit(cfg)
        self.embed_dim = cfg.embed_dim
        self.depth = len(self.vit.blocks)
        self.num_patches = self.vit.patch_embed.num_patches
        self.preprocess = preprocess_for(cfg)

    # ---------------------------------------------------------------- loading

    @classmethod
    def random(cls, cfg: ViTConfig) -> "ViTEncoder":
        """The same architecture with the methods' initialisation and no training: the honest baseline."""
        return cls(cfg)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> "ViTEncoder":
        """An export folder (encoder.json), or a run / checkpoint folder of any vision method."""
        path = Path(path)
        enc = cls(vit_config_of(path))
        enc.spec = str(path)
        if _export_meta(path) is not None:
            enc.vit.load_state_dict(load_weights(path / "model.safetensors", expected=enc.vit.state_dict()))
            return enc
        ckpt = resolve_checkpoint(path)
        state = load_weights(ckpt / "model.safetensors")
        # pretraining methods hold the ViT as `encoder`; vit-finetune's classifier as `encoder.vit`
        prefix = "encoder.vit." if any(k.startswith("encoder.vit.") for k in state) else "encoder."
        encoder_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        check_fits(encoder_state, enc.vit.state_dict(), ckpt / "model.safetensors")
        enc.vit.load_state_dict(encoder_state)
        return enc

    def export(self, out_dir: str | Path) -> Path:
        return self.export_timm(out_dir)

    def export_timm(self, out_dir: str | Path, method: str = "") -> Path:
        """model.safetensors + timm's config.json (architecture, model_args, pretrained_cfg with this encoder's
        input size and normalisation, written by timm's own ``save_config_for_hf``) + our encoder.json, so

            timm.create_model("local-dir:OUT", pretrained=True)      # this network with these weights
            timm.data.resolve_data_config({}, model=m)               # the size and normalisation it was trained with
            ViTEncoder.from_checkpoint(OUT)                          # back to ours
        """
        import timm
        from timm.models._hub import save_config_for_hf
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tag = f"selfsup-{method}" if method else "selfsup"
        model = timm.create_model(timm_architecture(self.cfg), pretrained=False, **timm_kwargs(self.cfg),
                                  pretrained_cfg_overlay={"tag": tag, "license": None})
        model.load_state_dict(self.vit.state_dict())
        p = self.preprocess
        data = {"input_size": (self.cfg.in_chans, *p.input_size), "mean": p.mean, "std": p.std,
                "interpolation": p.interpolation, "crop_pct": p.crop_pct, "crop_mode": "center"}
        atomic_write(out / "model.safetensors", lambda f: save_weights(self.vit.state_dict(), f))
        atomic_write(out / "config.json", lambda f: save_config_for_hf(model, str(f), data_config=data))
        atomic_write_json(out / "encoder.json", {"format": EXPORT_FORMAT, "vit": asdict(self.cfg), "method": method,
                                                 "timm_architecture": timm_architecture(self.cfg)})
        return out

    # ---------------------------------------------------------------- features

    def encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, None]:
        """Normalised (B, 3, S, S) -> (B, 1 + L, D) after the final norm; no masking."""
        return self.vit.forward_features(pixels), None

    # ---------------------------------------------------------------- training modes

    def unfreeze(self, last_k: int | None = None) -> "ViTEncoder":
        """All trainable, or only the last ``last_k`` blocks and the final norm (partial finetuning); the fixed
        sin-cos position embedding never trains."""
        super().unfreeze(last_k)
        self.vit.pos_embed.requires_grad_(False)
        return self

    def layer_id(self, name: str) -> int:
        """0 for the embeddings, i+1 for block i, depth+1 for the final norm (BEiT/MAE convention)."""
        if name.startswith(("vit.cls_token", "vit.pos_embed", "vit.patch_embed")):
            return 0
        if name.startswith("vit.blocks."):
            return int(name.split(".")[2]) + 1
        return self.depth + 1


# ------------------------------------------------------------------------------------------ timm names

TIMM_FAMILIES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12), "large": (1024, 24, 16)}


def timm_kwargs(cfg: ViTConfig) -> dict:
    """Everything that defines the network, as timm's VisionTransformer arguments."""
    return dict(img_size=cfg.img_size, patch_size=cfg.patch_size, in_chans=cfg.in_chans, embed_dim=cfg.embed_dim,
                depth=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio, num_classes=0, global_pool="token")


def timm_architecture(cfg: ViTConfig) -> str:
    """timm's name for this ViT when one exists (e.g. vit_base_patch16_224 for B/16 at 224); otherwise the
    registered ViT of the nearest width, whose every defining argument ``timm_kwargs`` overrides (timm builds
    only registered names; the model_args in config.json carry the true architecture)."""
    import timm
    family = min(TIMM_FAMILIES, key=lambda f: (TIMM_FAMILIES[f] != (cfg.embed_dim, cfg.depth, cfg.num_heads),
                                               abs(TIMM_FAMILIES[f][0] - cfg.embed_dim)))
    exact = f"vit_{family}_patch{cfg.patch_size}_{cfg.img_size}"
    if TIMM_FAMILIES[family] == (cfg.embed_dim, cfg.depth, cfg.num_heads) and timm.is_model(exact):
        return exact
    return f"vit_{family}_patch16_224"
