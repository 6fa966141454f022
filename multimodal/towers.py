"""The towers the multimodal tasks build on: any encoder spec (selfsup.encoders) as the image or the text tower.

    vision = ImageEncoderSource("runs/mae", arch)                # (vision.encoder_spec) our run/export, timm:, hf:,
    image = vision.build()                                       # open_clip:, pixels, a clip run; "" = a random ViT
    text = TextTowerSource("exports/bert", True, arch, captions, vocab_size=1000, max_length=32).build()
    text.tokenize(["a red circle"])                              # the tower's own tokenizer

Every tower follows the encoder contract (``embed_dim``, ``forward``, ``freeze``, ``unfreeze(last_k)``,
``param_groups(weight_decay, layer_decay)``, ``preprocess``; text towers ``tokenize``). ``tower_param_groups``
applies a task's tower mode (frozen | finetune | llrd) and LR scale. ``bert_checkpoint`` names the BERT folder that
warm-starts the captioner's decoder.
"""
from __future__ import annotations

import copy
from pathlib import Path

from torch import nn
from transformers import BertModel

from language.corpus import default_cache
from language.model import BertModelConfig, hf_config
from language.tokenizer import corpus_tokenizer, load_tokenizer
from selfsup.encoders import TextEncoder, describe, load_text_encoder, parse_spec
from selfsup.encoders.hf_encoder import HFTextEncoder
from selfsup.encoders.hub import fetching
from selfsup.errors import UserError

TOWER_MODES = ("frozen", "finetune", "llrd")


class TowerError(UserError, ValueError):
    """A text or image tower that cannot be built from what the config names."""


class TextTowerSource:
    """The text tower as ``ImageEncoderSource`` holds the image tower: any text encoder spec with its own
    tokenizer (our BERT / ELECTRA exports, a clip export's text/, hf:, open_clip:), or "" for a BERT shaped by
    ``arch`` on a WordPiece vocabulary trained on ``texts`` (cached like any corpus tokenizer)."""

    def __init__(self, init: str, pretrained: bool, arch: BertModelConfig, texts: list[str], vocab_size: int,
                 max_length: int):
        self.init, self.pretrained, self.arch, self.max_length = init, pretrained, arch, max_length
        if init:
            self.template = load_text_encoder(init, pretrained=pretrained, max_length=max_length)
        else:
            self.tokenizer = corpus_tokenizer(texts, vocab_size, default_cache() / "tokenizers")
            self.template = self._bert()

    def _bert(self) -> HFTextEncoder:
        enc = HFTextEncoder(BertModel(hf_config(self.arch, len(self.tokenizer)), add_pooling_layer=False),
                            self.tokenizer, "", self.max_length)
        enc.family = "selfsup"
        return enc

    def build(self) -> TextEncoder:
        if not self.init:
            return self._bert()
        if self.pretrained:
            return copy.deepcopy(self.template)
        return load_text_encoder(self.init, pretrained=False, max_length=self.max_length)

    def tokenize(self, texts: list[str], padding: str = "longest"):
        return self.template.tokenize(texts, padding=padding)

    def vocabulary(self) -> set[str] | None:
        """The tokenizer's whole-word entries, where it has a vocabulary to ask (None otherwise)."""
        get = getattr(getattr(self.template, "tokenizer", None), "get_vocab", None)
        return set(get()) if get is not None else None

    def describe(self) -> dict:
        return {**describe(self.template), "pretrained": bool(self.init) and self.pretrained}


def decoder_tokenizer(init: str, texts: list[str], vocab_size: int):
    """The tokenizer of the captioner's BERT decoder: ``init``'s (see ``bert_checkpoint``), or a WordPiece trained on
    ``texts`` when init is ""."""
    if not init:
        return corpus_tokenizer(texts, vocab_size, default_cache() / "tokenizers")
    name = bert_checkpoint(init)
    if Path(name).is_dir():
        return load_tokenizer(name)
    from transformers import AutoTokenizer
    with fetching(init, f"hf download {name}"):
        return AutoTokenizer.from_pretrained(name)


def bert_checkpoint(init: str) -> str:
    """What ``from_pretrained`` reads for a BERT decoder warm start: our BERT export (or a clip export's text/), or
    ``hf:DIR_OR_NAME`` of a BERT model. Anything else is an error naming what is supported."""
    spec = parse_spec(init)
    supported = ("the captioner's decoder is a BertLMHeadModel: text_init must be a BERT checkpoint with its "
                 "tokenizer — our `selfsup export bert` folder, a clip export's text/, or hf:DIR_OR_NAME of a BERT "
                 "model (model_type bert)")
    if spec.library not in ("ours", "hf"):
        raise TowerError(f"task.text_init={init}: {supported}")
    path = Path(spec.name)
    if spec.library == "ours" and not (path / "config.json").is_file():
        hint = " (a training run: export it first, `selfsup export bert --checkpoint RUN --out DIR`)" \
            if (path / "config.yaml").is_file() else ""
        raise TowerError(f"task.text_init={init} is not a transformers folder{hint}; {supported}")
    from transformers import AutoConfig
    with fetching(init, f"hf download {spec.name}"):
        model_type = AutoConfig.from_pretrained(spec.name).model_type
    if model_type != "bert":
        raise TowerError(f"task.text_init={init} is a '{model_type}' model; {supported}")
    return spec.name


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
