"""The `caption` task: a captioner on the pretrained vision and language encoders, on the shared trainer,
scored with BLEU / ROUGE-L / CIDEr-D (and METEOR with Java) on test and held-out-combination splits."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torch import nn
from transformers import BertForPreTraining, BertLMHeadModel

from language.model import BertModelConfig, hf_config
from language.tokenizer import TokenizerError
from selfsup.data import step_loader
from selfsup.encoders import EncoderError
from selfsup.encoders.hub import fetching
from selfsup.errors import ConfigError
from selfsup.io import atomic_write
from selfsup.optim import default_param_groups
from selfsup.progress import progress
from selfsup.results import Score
from selfsup.subsets import sample_indices
from selfsup.task import BatchPlan
from vision.encoder import ViTEncoder
from vision.encoder_spec import ImageEncoderSource
from vision.legacy import migrate_vit_section
from vision.vit import ViTConfig, vit_size

from . import data as D
from .data import CaptionDataConfig
from .metrics import CaptionScorer
from .model import Captioner, caption_loss, contrastive_loss, decoder_config, warm_start
from .peer import HFCaptioner
from .towers import bert_checkpoint, decoder_tokenizer, set_mode, tower_param_groups


@dataclass
class CaptionEvalConfig:
    num_beams: int = 3            # 1: greedy
    top_p: float = 0.0            # > 0: nucleus sampling with this p instead (seeded by seed below; num_beams unused)
    seed: int = 0                 # nucleus sampling's generator
    length_penalty: float = 1.0
    max_images: int = 500         # per evaluated split
    gallery: int = 8              # images in the caption gallery PNG


@dataclass
class CaptionTaskConfig:
    data: CaptionDataConfig = field(default_factory=CaptionDataConfig)
    eval: CaptionEvalConfig = field(default_factory=CaptionEvalConfig)
    vision_init: str = ""         # any image encoder spec (selfsup.encoders): a vision run / checkpoint / export, a
                                  # clip run or export/image, timm:, hf:, open_clip:, pixels; "" = random ViT
    vision_pretrained: bool = True   # false: vision_init's architecture with fresh weights (its random control)
    vision_model: ViTConfig = field(default_factory=lambda: ViTConfig(**vit_size("tiny")))  # when vision_init is ""
    vision_mode: str = "finetune" # frozen | finetune | llrd (finetune with layer-wise LR decay)
    layer_decay: float = 0.75
    text_init: str = ""           # a BERT checkpoint with its tokenizer that warm-starts the decoder: `selfsup export
                                  # bert`, a clip export's text/, or hf:DIR_OR_NAME of a BERT model
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

    @staticmethod
    def migrate_config(data: dict) -> dict:
        """Runs saved before the ViT / method split: task.vision_model was a flat MAEConfig (decoder_* keys)."""
        return migrate_vit_section(data, "task", "vision_model")

    def __init__(self, cfg: CaptionTaskConfig):
        if cfg.vision_mode not in ("frozen", "finetune", "llrd"):
            raise ConfigError(f"task.vision_mode must be frozen, finetune or llrd, not '{cfg.vision_mode}'")
        if cfg.impl not in ("selfsup", "transformers"):
            raise ConfigError(f"task.impl must be selfsup or transformers, not '{cfg.impl}'")
        if cfg.impl == "transformers" and (cfg.vision_mode == "llrd" or cfg.contrastive_weight > 0):
            raise ConfigError("task.impl=transformers (the VisionEncoderDecoderModel baseline) has neither layer-wise "
                             "LR decay nor a contrastive head: use task.vision_mode=frozen|finetune, "
                             "contrastive_weight=0")
        self.cfg = cfg
        self.vision = ImageEncoderSource(cfg.vision_init, cfg.vision_model, cfg.vision_pretrained)
        if cfg.impl == "transformers" and not isinstance(self.vision.template, (ViTEncoder, type(None))):
            raise ConfigError("task.impl=transformers (VisionEncoderDecoderModel) holds our ViT: task.vision_init must "
                              "be one of our vision runs or exports, or empty")
        size = self.vision.img_size
        self.train, self.splits = D.load_splits(cfg.data, size)
        self.tokenizer = decoder_tokenizer(cfg.text_init, [r for refs in self.train.refs for r in refs],
                                           cfg.vocab_size)
        self.scorer = CaptionScorer(self.train.refs)
        self.record = {**self.vision.describe(), "text_init": cfg.text_init or "random",
                       "text_pretrained": bool(cfg.text_init) and cfg.text_pretrained}

    # ------------------------------------------------------------------------------ model

    def build_model(self) -> nn.Module:
        cfg = self.cfg
        if cfg.text_init:
            name = bert_checkpoint(cfg.text_init)
            try:
                with fetching(cfg.text_init, f"hf download {name}"):
                    pretrained = BertForPreTraining.from_pretrained(name, local_files_only=Path(name).is_dir())
            except EncoderError as e:
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
        encoder = set_mode(self.vision.build(), cfg.vision_mode)
        if cfg.impl == "transformers":
            return HFCaptioner(encoder, decoder)
        return Captioner(encoder, decoder, cfg.contrastive_dim if cfg.contrastive_weight > 0 else 0)

    def param_groups(self, model: Captioner, weight_decay: float) -> list[dict]:
        if self.cfg.impl == "transformers":
            return default_param_groups(model, weight_decay)
        groups = tower_param_groups(model.encoder, self.cfg.vision_mode, weight_decay, self.cfg.layer_decay)
        rest = nn.ModuleDict({k: m for k, m in model.named_children() if k != "encoder"})
        extra = [model.logit_scale] if model.contrastive else []
        return (groups + default_param_groups(rest, weight_decay)
                + ([{"params": extra, "weight_decay": 0.0}] if extra else []))

    # ------------------------------------------------------------------------------ data and loss

    def _tokenize(self, texts: list[str]):
        return self.tokenizer(texts, max_length=self.cfg.max_len, truncation=True, padding="max_length",
                              return_tensors="pt")

    def _example(self, index: int, g: torch.Generator):
        return D.caption_example(self.train, self._tokenize, index, g)

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

    def decode(self, model, images: torch.Tensor, batch_size: int = 128, desc: str = "decode captions") -> list[str]:
        device = next(model.parameters()).device
        ev, out = self.cfg.eval, []
        sampling = dict(top_p=ev.top_p, generator=torch.Generator(device).manual_seed(ev.seed)) if ev.top_p > 0 else {}
        for i in progress(range(0, len(images), batch_size), desc=desc, min_total=2, leave=False):
            ids = model.generate(images[i:i + batch_size].to(device), max_len=self.cfg.max_len - 1,
                                 num_beams=ev.num_beams, length_penalty=ev.length_penalty, **sampling)
            out += self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return out

    def evaluate(self, model, out_dir: Path) -> list[Score]:
        scores = []
        ev = self.cfg.eval
        decoding = f"nucleus{ev.top_p}" if ev.top_p > 0 else "greedy" if ev.num_beams == 1 else f"beam{ev.num_beams}"
        for split, data in self.splits.items():
            idx = sample_indices(len(data), self.cfg.eval.max_images, seed=0)   # a fixed random sample of the split
            n = len(idx)
            hyps = self.decode(model, data.take(idx), desc=f"decode {n} {split} captions")
            values = self.scorer.score(hyps, [data.refs[i] for i in idx])
            extra = {"n": n, "tokenizer": self.scorer.tokenizer_name, "decoding": decoding,
                     "unavailable": self.scorer.unavailable(), **self.record}
            scores += [Score(D.dataset_name(self.cfg.data), split, m, v, extra) for m, v in values.items()]
            if split == "test":
                self._gallery(data, idx, hyps, out_dir / "caption_gallery.png")
        return scores

    def _gallery(self, data, idx: torch.Tensor, hyps: list[str], path: Path, scale: int = 4) -> None:
        """The first images of the (already random) evaluated sample, their captions and references."""
        k = min(self.cfg.eval.gallery, len(hyps))
        size = data.image(0).shape[-1] * scale
        canvas = Image.new("RGB", (size + 420, k * (size + 8)), "white")
        draw = ImageDraw.Draw(canvas)
        for i in range(k):
            img = Image.fromarray(data.image(idx[i]).permute(1, 2, 0).numpy()).resize((size, size), Image.NEAREST)
            y = i * (size + 8)
            canvas.paste(img, (0, y))
            draw.text((size + 8, y + 2), f"ours: {hyps[i]}", fill="black")
            for j, ref in enumerate(data.refs[idx[i]][:3]):
                draw.text((size + 8, y + 18 + 14 * j), f"ref:  {ref}", fill="grey")
        atomic_write(path, lambda p: canvas.save(p, format="PNG"))
