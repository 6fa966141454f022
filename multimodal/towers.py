"""The towers the multimodal tasks build on: one function per tower turns a path into an encoder.

    image = image_tower("runs/mae", TINY_ARCH)            # a vision run / checkpoint / export, or "" for random weights
    tok = text_tokenizer("exports/bert", captions, 1000)  # the export's tokenizer, or WordPiece on the captions
    text = text_tower("exports/bert", True, arch, tok, max_length=32)   # {"tokens", "cls", "mean"} per caption

Both towers follow the encoder contract (``embed_dim``, ``forward``, ``freeze``, ``unfreeze(last_k)``,
``param_groups(weight_decay, layer_decay)``), so these two functions are where encoder specs (``timm:``, ``hf:``,
``open_clip:``) plug in. ``tower_param_groups`` applies a task's tower mode (frozen | finetune | llrd) and LR scale.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, BertModel, PreTrainedModel
from transformers.utils import logging as hf_logging

from language.corpus import default_cache
from language.model import BertModelConfig, hf_config
from language.tokenizer import corpus_tokenizer, load_tokenizer
from selfsup.errors import UserError
from selfsup.optim import layer_decay_groups
from vision.encoder import ViTEncoder
from vision.vit import ViTConfig

TOWER_MODES = ("frozen", "finetune", "llrd")


class TowerError(UserError, ValueError):
    """A text or image tower that cannot be built from what the config names."""


def image_tower(init: str, arch: ViTConfig) -> ViTEncoder:
    """A run, checkpoint or export of any of our vision methods; "" = ``arch`` with random weights (the baseline)."""
    return ViTEncoder.from_checkpoint(init) if init else ViTEncoder.random(arch)


class ImageTowerSource:
    """An image tower as a task holds it: read once if pretrained (its input size is known at once), and a fresh one
    per ``build()`` — a copy of the pretrained weights, or random weights drawn then, after the trainer has seeded, so
    that trainer.seed sets them and every rank and every arm of a comparison starts from the same ones."""

    def __init__(self, init: str, arch: ViTConfig):
        self.init, self.arch = init, arch
        self.pretrained = image_tower(init, arch) if init else None

    @property
    def img_size(self) -> int:
        return (self.pretrained.cfg if self.pretrained is not None else self.arch).img_size

    def build(self) -> ViTEncoder:
        return copy.deepcopy(self.pretrained) if self.pretrained is not None else image_tower("", self.arch)


def text_tokenizer(init: str, texts: list[str], vocab_size: int):
    """The tokenizer saved with a text export, or WordPiece trained on ``texts`` (cached like any corpus tokenizer)."""
    if init:
        return load_tokenizer(init)
    return corpus_tokenizer(texts, vocab_size, default_cache() / "tokenizers")


class TextTower(nn.Module):
    """A transformers encoder (BERT, ELECTRA, RoBERTa: any ``AutoModel`` with ``encoder.layer``) and its tokenizer.

    "cls" is the last layer's first token ([CLS]), "mean" the average over real (unpadded) tokens."""

    def __init__(self, model: PreTrainedModel, tokenizer, max_length: int):
        super().__init__()
        if getattr(model, "pooler", None) is not None:
            model.pooler = None     # BERT's NSP pooler: unused here, and DDP wants every trainable parameter used
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length
        self.embed_dim = model.config.hidden_size

    def tokenize(self, texts: list[str]):
        """Texts -> {"input_ids", "attention_mask"} (B, T), padded to the longest, truncated at max_length."""
        return self.tokenizer(list(texts), max_length=self.max_length, truncation=True, padding=True,
                              return_tensors="pt")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        seq = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state   # (B, T, H)
        m = attention_mask.unsqueeze(-1).to(seq.dtype)                                           # (B, T, 1)
        return {"tokens": seq, "cls": seq[:, 0], "mean": (seq * m).sum(1) / m.sum(1).clamp(min=1)}

    # ---------------------------------------------------------------- training modes

    def layers(self) -> list[nn.Module]:
        encoder = getattr(self.model, "encoder", None)
        if encoder is None or not hasattr(encoder, "layer"):
            raise TowerError(f"{type(self.model).__name__} has no encoder.layer stack: partial finetuning and "
                             "layer-wise LR decay need one (use task.text_mode=finetune or frozen)")
        return list(encoder.layer)

    def freeze(self) -> "TextTower":
        self.requires_grad_(False)
        return self

    def unfreeze(self, last_k: int | None = None) -> "TextTower":
        """All trainable, or only the last ``last_k`` layers."""
        self.requires_grad_(last_k is None)
        if last_k is not None:
            for layer in self.layers()[len(self.layers()) - last_k:]:
                layer.requires_grad_(True)
        return self

    def layer_id(self, name: str) -> int:
        """0 for the embeddings, i+1 for layer i, depth+1 for anything above (BEiT/MAE convention)."""
        if name.startswith("model.embeddings"):       # ELECTRA's embeddings_project too
            return 0
        if name.startswith("model.encoder.layer."):
            return int(name.split(".")[3]) + 1
        return len(self.layers()) + 1

    def param_groups(self, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
        return layer_decay_groups(self, self.layer_id, len(self.layers()), weight_decay, layer_decay)

    def export(self, out_dir: str | Path) -> Path:
        """A transformers folder with the tokenizer: ``AutoModel`` / ``AutoTokenizer.from_pretrained(out_dir)``."""
        out = Path(out_dir)
        self.model.save_pretrained(str(out), safe_serialization=True)
        self.tokenizer.save_pretrained(str(out))
        return out


def text_tower(init: str, pretrained: bool, arch: BertModelConfig, tokenizer, max_length: int) -> TextTower:
    """A transformers folder (our `selfsup export bert` / ELECTRA export, or any local encoder) with its weights,
    or with its architecture and random weights (``pretrained=False``); "" = a BERT shaped by ``arch``."""
    if init:
        try:
            with quiet_transformers():   # its load report lists the export's MLM/NSP heads, which a tower drops
                if pretrained:
                    model, info = AutoModel.from_pretrained(init, local_files_only=True, attn_implementation="sdpa",
                                                            output_loading_info=True)
                else:
                    model, info = AutoModel.from_config(AutoConfig.from_pretrained(init, local_files_only=True),
                                                        attn_implementation="sdpa"), {}
        except (OSError, ValueError) as e:
            raise TowerError(f"cannot load a text encoder from {init}: {e}") from None
        missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith("pooler."))
        if missing or info.get("mismatched_keys"):
            raise TowerError(f"{init} lacks weights of its own architecture ({', '.join(missing[:5]) or 'mismatched'}"
                             f"{' …' if len(missing) > 5 else ''}): a truncated or foreign checkpoint")
    else:
        model = BertModel(hf_config(arch, len(tokenizer)), add_pooling_layer=False)
    cfg = model.config
    if len(tokenizer) > cfg.vocab_size:
        raise TowerError(f"{init or 'task.text_model'}: the tokenizer has {len(tokenizer)} tokens, the embeddings "
                         f"only {cfg.vocab_size}")
    if max_length > getattr(cfg, "max_position_embeddings", max_length):
        raise TowerError(f"task.max_len={max_length} exceeds the text tower's {cfg.max_position_embeddings} "
                         "positions; lower task.max_len")
    return TextTower(model, tokenizer, max_length)


@contextmanager
def quiet_transformers():
    """transformers' loading progress bars and reports off for one load (we check what loaded ourselves)."""
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def tower_param_groups(tower: nn.Module, mode: str, weight_decay: float, layer_decay: float,
                       lr_scale: float = 1.0) -> list[dict]:
    """A tower's AdamW groups for its mode: none when frozen, layer-wise decayed LRs under llrd; all scaled by
    ``lr_scale``. Call ``set_mode`` first so that frozen parameters are excluded."""
    if mode not in TOWER_MODES:
        raise TowerError(f"tower mode must be one of {', '.join(TOWER_MODES)}, not '{mode}'")
    if mode == "frozen":
        return []
    groups = tower.param_groups(weight_decay, layer_decay=layer_decay if mode == "llrd" else 1.0)
    for g in groups:
        g["lr_scale"] = g.get("lr_scale", 1.0) * lr_scale
    return groups


def set_mode(tower: nn.Module, mode: str) -> nn.Module:
    if mode not in TOWER_MODES:
        raise TowerError(f"tower mode must be one of {', '.join(TOWER_MODES)}, not '{mode}'")
    return tower.freeze() if mode == "frozen" else tower.unfreeze()
