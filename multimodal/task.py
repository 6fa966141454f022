"""The `caption` task: a captioner on the pretrained vision and language encoders, on the shared trainer,
scored with BLEU / ROUGE-L / CIDEr-D (and METEOR with Java) on test and held-out-combination splits."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torch import nn
from transformers import BertForPreTraining, BertLMHeadModel

from language.corpus import default_cache
from language.model import BertModelConfig, hf_config
from language.tokenizer import TokenizerError, corpus_tokenizer, load_tokenizer
from selfsup.data import step_loader
from selfsup.io import atomic_write
from selfsup.optim import default_param_groups
from selfsup.results import Score
from selfsup.subsets import sample_indices
from selfsup.task import BatchPlan
from vision.encoder import ViTEncoder
from vision.vit import ViTConfig, vit_size

from . import data as D
from .metrics import CaptionScorer
from .model import Captioner, caption_loss, contrastive_loss, decoder_config, warm_start
from .peer import HFCaptioner


@dataclass
class CaptionDataConfig:
    source: str = "scenes"        # scenes (embedded) | coco (captions JSON) | karpathy (dataset_*.json)
                                  # | flickr30k (.token)
    annotations: str = ""         # coco: train captions JSON; karpathy: dataset_coco.json;
                                  # flickr30k: results_20130124.token
    image_root: str = ""          # folder the annotation's file names are relative to
    val_annotations: str = ""     # coco only: the captions JSON to evaluate on
    val_image_root: str = ""
    num_train: int = 8000         # scenes: training images (5 references each)
    num_eval: int = 500           # scenes: images per evaluation split
    seed: int = 0                 # scenes: which scenes
    img_size: int = 32            # storage size for image files (scenes use the encoder's size)
    strict: bool = False          # a missing/corrupt image is an error instead of skipped and counted


@dataclass
class CaptionEvalConfig:
    num_beams: int = 3            # 1: greedy
    length_penalty: float = 1.0
    max_images: int = 500         # per evaluated split
    gallery: int = 8              # images in the caption gallery PNG


@dataclass
class CaptionTaskConfig:
    data: CaptionDataConfig = field(default_factory=CaptionDataConfig)
    eval: CaptionEvalConfig = field(default_factory=CaptionEvalConfig)
    vision_init: str = ""         # an MAE run / checkpoint / encoder export; "" = random ViT (the baseline)
    vision_model: ViTConfig = field(default_factory=lambda: ViTConfig(**vit_size("tiny")))  # when vision_init is ""
    vision_mode: str = "finetune" # frozen | finetune | llrd (finetune with layer-wise LR decay)
    layer_decay: float = 0.75
    text_init: str = ""           # a transformers BERT folder with its tokenizer (`selfsup export bert`)
    text_pretrained: bool = True  # false: text_init's architecture and tokenizer, random weights (the baseline)
    text_model: BertModelConfig = field(default_factory=BertModelConfig)  # architecture when text_init is ""
    vocab_size: int = 1000        # tokenizer trained on the training captions when text_init is ""
    max_len: int = 24             # caption tokens, [CLS] and [SEP] included
    contrastive_weight: float = 0.0   # CoCa-style image-text contrastive loss weight (0: off)
    contrastive_dim: int = 64
    impl: str = "selfsup"         # selfsup | transformers (VisionEncoderDecoderModel, the peer baseline:
                                  # multimodal.peer)


class CaptionTask:
    name = "caption"
    Config = CaptionTaskConfig
    presets = {
        "tiny": {"trainer": {"max_steps": 1500, "batch_size": 64, "lr": 1e-3, "warmup_steps": 100,
                             "weight_decay": 0.05, "log_every": 50, "checkpoint_every": 500}},
        "base": {"trainer": {"max_steps": 50_000, "batch_size": 256, "lr": 1e-4, "warmup_steps": 2000,
                             "weight_decay": 0.05, "log_every": 100, "checkpoint_every": 5000, "num_workers": 8},
                 "task": {"data": {"img_size": 224}, "max_len": 40, "eval": {"max_images": 5000}}},
    }

    def __init__(self, cfg: CaptionTaskConfig):
        if cfg.vision_mode not in ("frozen", "finetune", "llrd"):
            raise ValueError(f"task.vision_mode must be frozen, finetune or llrd, not '{cfg.vision_mode}'")
        if cfg.impl not in ("selfsup", "transformers"):
            raise ValueError(f"task.impl must be selfsup or transformers, not '{cfg.impl}'")
        if cfg.impl == "transformers" and (cfg.vision_mode == "llrd" or cfg.contrastive_weight > 0):
            raise ValueError("task.impl=transformers (the VisionEncoderDecoderModel baseline) has neither layer-wise "
                             "LR decay nor a contrastive head: use task.vision_mode=frozen|finetune, "
                             "contrastive_weight=0")
        self.cfg = cfg
        self.vision = (ViTEncoder.from_checkpoint(cfg.vision_init) if cfg.vision_init
                       else ViTEncoder.random(cfg.vision_model))
        size = self.vision.cfg.img_size
        self.train, self.splits = self._data(size)
        if cfg.text_init:
            self.tokenizer = load_tokenizer(cfg.text_init)
        else:   # WordPiece on the training captions, cached like any corpus tokenizer
            self.tokenizer = corpus_tokenizer([r for refs in self.train.refs for r in refs], cfg.vocab_size,
                                              default_cache() / "tokenizers")
        self.scorer = CaptionScorer(self.train.refs)

    def _data(self, size: int):
        d = self.cfg.data
        if d.source == "scenes":
            train = D.scene_split("train", d.num_train, size, d.seed)
            return train, {s: D.scene_split(s, d.num_eval, size, d.seed) for s in ("test", "test_heldout")}
        if not d.annotations:
            raise ValueError(f"task.data.source={d.source} needs task.data.annotations (and image_root)")
        if d.source == "karpathy":
            return (D.karpathy_split(d.annotations, d.image_root, "train", size, d.strict),
                    {"test": D.karpathy_split(d.annotations, d.image_root, "test", size, d.strict)})
        if d.source == "flickr30k":
            return (D.flickr30k(d.annotations, d.image_root, "train", size, d.strict),
                    {"test": D.flickr30k(d.annotations, d.image_root, "test", size, d.strict)})
        if d.source == "coco":
            if not d.val_annotations:
                raise ValueError("task.data.source=coco needs task.data.val_annotations for evaluation")
            return (D.coco_captions(d.annotations, d.image_root, size, d.strict),
                    {"val": D.coco_captions(d.val_annotations, d.val_image_root or d.image_root, size, d.strict)})
        raise ValueError(f"unknown task.data.source '{d.source}'; choose scenes, coco, karpathy or flickr30k")

    # ------------------------------------------------------------------------------ model

    def build_model(self) -> nn.Module:
        cfg = self.cfg
        if cfg.text_init:
            try:
                pretrained = BertForPreTraining.from_pretrained(cfg.text_init, local_files_only=True)
            except (OSError, ValueError) as e:
                raise TokenizerError(f"cannot load a BERT checkpoint from {cfg.text_init}: {e}") from None
            if pretrained.config.vocab_size != len(self.tokenizer):
                raise TokenizerError(f"{cfg.text_init}: tokenizer ({len(self.tokenizer)}) and embeddings "
                                     f"({pretrained.config.vocab_size}) disagree")
            base = pretrained.config
        else:
            pretrained, base = None, hf_config(cfg.text_model, len(self.tokenizer))
        base.max_position_embeddings = max(base.max_position_embeddings, cfg.max_len)
        decoder = BertLMHeadModel(decoder_config(base, self.tokenizer))
        if pretrained is not None and cfg.text_pretrained:
            warm_start(decoder, pretrained.state_dict())
        encoder = copy.deepcopy(self.vision)
        (encoder.freeze() if cfg.vision_mode == "frozen" else encoder.unfreeze())
        if cfg.impl == "transformers":
            return HFCaptioner(encoder, decoder)
        return Captioner(encoder, decoder, cfg.contrastive_dim if cfg.contrastive_weight > 0 else 0)

    def param_groups(self, model: Captioner, weight_decay: float) -> list[dict]:
        if self.cfg.impl == "transformers":
            return default_param_groups(model, weight_decay)
        groups = [] if self.cfg.vision_mode == "frozen" else model.encoder.param_groups(
            weight_decay, layer_decay=self.cfg.layer_decay if self.cfg.vision_mode == "llrd" else 1.0)
        rest = nn.ModuleDict({k: m for k, m in model.named_children() if k != "encoder"})
        extra = [model.logit_scale] if model.contrastive else []
        return (groups + default_param_groups(rest, weight_decay)
                + ([{"params": extra, "weight_decay": 0.0}] if extra else []))

    # ------------------------------------------------------------------------------ data and loss

    def _example(self, index: int, g: torch.Generator):
        refs = self.train.refs[index]
        text = refs[int(torch.randint(len(refs), (1,), generator=g))]
        enc = self.tokenizer(text, max_length=self.cfg.max_len, truncation=True, padding="max_length",
                             return_tensors="pt")
        return {"images": self.train.images[index], "input_ids": enc["input_ids"][0],
                "attention_mask": enc["attention_mask"][0]}

    def train_batches(self, plan: BatchPlan):
        return step_loader(len(self.train), self._example, plan)

    def loss(self, model, batch):
        logits, embs = model(batch["images"], batch["input_ids"], batch["attention_mask"])
        loss, _ = caption_loss(logits, batch["input_ids"], batch["attention_mask"])
        metrics = {"caption_loss": loss.detach()}
        if embs is not None:
            c = contrastive_loss(embs, model.logit_scale)
            metrics["contrastive_loss"] = c.detach()
            loss = loss + self.cfg.contrastive_weight * c
        return loss, metrics

    def loss_count(self, batch) -> int:
        return int(batch["attention_mask"][:, 1:].sum())   # target tokens

    def num_tokens(self, batch) -> int:
        return int(batch["attention_mask"].sum())

    # ------------------------------------------------------------------------------ evaluation

    def decode(self, model, images: torch.Tensor, batch_size: int = 128) -> list[str]:
        device = next(model.parameters()).device
        out = []
        for i in range(0, len(images), batch_size):
            ids = model.generate(images[i:i + batch_size].to(device), max_len=self.cfg.max_len - 1,
                                 num_beams=self.cfg.eval.num_beams, length_penalty=self.cfg.eval.length_penalty)
            out += self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return out

    def evaluate(self, model, out_dir: Path) -> list[Score]:
        scores = []
        decoding = "greedy" if self.cfg.eval.num_beams == 1 else f"beam{self.cfg.eval.num_beams}"
        for split, data in self.splits.items():
            idx = sample_indices(len(data), self.cfg.eval.max_images, seed=0)   # a fixed random sample of the split
            n = len(idx)
            hyps = self.decode(model, data.images[idx])
            values = self.scorer.score(hyps, [data.refs[i] for i in idx])
            extra = {"n": n, "tokenizer": self.scorer.tokenizer_name, "decoding": decoding,
                     "unavailable": self.scorer.unavailable()}
            scores += [Score(f"{self.cfg.data.source}-captions", split, m, v, extra) for m, v in values.items()]
            if split == "test":
                self._gallery(data, idx, hyps, out_dir / "caption_gallery.png")
        return scores

    def _gallery(self, data, idx: torch.Tensor, hyps: list[str], path: Path, scale: int = 4) -> None:
        """The first images of the (already random) evaluated sample, their captions and references."""
        k = min(self.cfg.eval.gallery, len(hyps))
        size = data.images.shape[-1] * scale
        canvas = Image.new("RGB", (size + 420, k * (size + 8)), "white")
        draw = ImageDraw.Draw(canvas)
        for i in range(k):
            img = Image.fromarray(data.images[idx[i]].permute(1, 2, 0).numpy()).resize((size, size), Image.NEAREST)
            y = i * (size + 8)
            canvas.paste(img, (0, y))
            draw.text((size + 8, y + 2), f"ours: {hyps[i]}", fill="black")
            for j, ref in enumerate(data.refs[idx[i]][:3]):
                draw.text((size + 8, y + 18 + 14 * j), f"ref:  {ref}", fill="grey")
        atomic_write(path, lambda p: canvas.save(p, format="PNG"))
