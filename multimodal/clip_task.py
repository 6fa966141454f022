"""The `clip` task: contrastive image-text pretraining of an image tower and a text tower on the shared trainer,
judged by retrieval both ways (Recall@1/5/10), zero-shot classification (scene attributes, any ImageFolder) and
probes of the image tower; exported as a vision encoder (DIR/image) and a transformers text encoder (DIR/text).
Either tower is any encoder spec (selfsup.encoders); the run folder itself is an image encoder spec too
(multimodal.encoder_spec)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from language.model import BertModelConfig
from selfsup.checkpoint import save_weights
from selfsup.data import step_loader
from selfsup.io import atomic_write, atomic_write_json
from selfsup.progress import progress
from selfsup.results import Score
from selfsup.subsets import sample_indices
from selfsup.task import BatchPlan
from vision.data import folder_files
from vision.encoder_spec import ImageEncoderSource
from vision.lazy import open_files
from vision.mim import ProbeConfig, encoder_probes
from vision.transforms import random_resized_crop
from vision.vit import ViTConfig, vit_size

from . import data as D
from .clip import CLIP, LOSSES, build_loss
from .data import CaptionDataConfig
from .retrieval import chance_recall, retrieval_recall
from .towers import TOWER_MODES, TextTowerSource, set_mode, tower_param_groups
from .zeroshot import folder_prompts, scene_prompts, zeroshot_accuracy, zeroshot_classifier


@dataclass
class ClipEvalConfig:
    max_images: int = 1000        # images per evaluated split (a seeded sample, with all their captions); also caps
                                  # the zero-shot folder (stratified by class)
    batch_size: int = 256         # images or captions per encoder call
    zeroshot_attributes: list[str] = field(default_factory=lambda: ["shape", "colour", "size", "count", "background"])
    zeroshot_folder: str = ""     # an ImageFolder (DIR/<class>/<image>) classified zero-shot by its folder names,
                                  # e.g. ../shared/data/cifar10-subset/val
    zeroshot_templates: str = "simple"   # folder prompts: simple (open_clip's 7 ImageNet templates) | openai (80)
    probes: bool = True           # scenes: linear probe and kNN of the image tower on scene attributes
    probe: ProbeConfig = field(default_factory=lambda: ProbeConfig(epochs=60, max_train=2000))


@dataclass
class ClipTaskConfig:
    data: CaptionDataConfig = field(default_factory=CaptionDataConfig)
    eval: ClipEvalConfig = field(default_factory=ClipEvalConfig)
    vision_init: str = ""         # any image encoder spec: our vision runs / exports, timm:, hf:, open_clip:, pixels;
                                  # "" = random ViT shaped by vision_model
    vision_pretrained: bool = True   # false: vision_init's architecture with fresh weights (its random control)
    vision_model: ViTConfig = field(default_factory=lambda: ViTConfig(**vit_size("tiny")))  # when vision_init is ""
    vision_mode: str = "finetune" # frozen | finetune | llrd (finetune with layer-wise LR decay)
    vision_lr_scale: float = 1.0  # the image tower's LR relative to trainer.lr
    image_pool: str = "cls"       # cls (CLIP's class token) | mean (of the patch tokens): the feature projected
    text_init: str = ""           # any text encoder spec with its tokenizer (`selfsup export bert`, hf:, open_clip:);
                                  # "" = a BERT shaped by text_model, WordPiece trained on the training captions
    text_pretrained: bool = True  # false: text_init's architecture and tokenizer, random weights (the baseline)
    text_model: BertModelConfig = field(default_factory=BertModelConfig)   # architecture when text_init is ""
    text_mode: str = "finetune"   # frozen | finetune | llrd
    text_lr_scale: float = 1.0
    text_pool: str = "cls"        # cls ([CLS], as BERT and ALIGN) | mean (over real tokens)
    vocab_size: int = 1000        # WordPiece vocabulary when text_init is ""
    max_len: int = 32             # caption tokens, [CLS] and [SEP] included (CLIP: 77 BPE tokens)
    layer_decay: float = 0.75     # llrd: lr_scale = layer_decay ** (depth + 1 - layer) (BEiT/MAE finetuning)
    embed_dim: int = 512          # the shared embedding width (CLIP ViT-B/16: 512)
    loss: str = "clip"            # clip (softmax InfoNCE both ways; temperature 0.07 at init, scale clipped at 100)
                                  # | siglip (pairwise sigmoid; scale 10 and bias -10 at init, SigLIP's)
    local_loss: bool = False      # clip under DDP: each rank scores its own rows against every column
                                  # (open_clip --local-loss): the same gradients with less memory
    min_crop_scale: float = 0.9   # random resized crop of scale min..1, open_clip's training transform; 1 = none.
                                  # No flips: captions say left and right


class ClipTask:
    name = "clip"
    Config = ClipTaskConfig
    presets = {
        # CPU, minutes: 32x32 scenes, the 4-block ViT of `mae --preset tiny` and the 2-layer BERT of `bert --preset
        # tiny`. CLIP's optimiser (AdamW, betas (0.9, 0.98), eps 1e-6, wd 0.2) at a CPU-sized batch and schedule:
        # ~10 epochs of the 8,000 scenes; random towers reach zero-shot colour ~0.9 by step 300 (shape stays near
        # chance there).
        "tiny": {"trainer": {"max_steps": 600, "batch_size": 128, "lr": 5e-4, "warmup_steps": 60,
                             "weight_decay": 0.2, "beta2": 0.98, "eps": 1e-6, "log_every": 50,
                             "checkpoint_every": 500},
                 "task": {"embed_dim": 128}},
        # GPUs: ViT-B/16 at 224 and CLIP's 12-layer, 512-wide text transformer (as a BERT), CLIP's recipe
        # (lr 5e-4, wd 0.2, betas (0.9, 0.98), eps 1e-6, 2,000 warmup steps) at a batch of 1,024. Set task.data for
        # COCO / Karpathy / Flickr30k and task.vision_init / text_init for pretrained towers.
        "base": {"trainer": {"max_steps": 30_000, "batch_size": 1024, "lr": 5e-4, "warmup_steps": 2000,
                             "weight_decay": 0.2, "beta2": 0.98, "eps": 1e-6, "log_every": 100,
                             "checkpoint_every": 5000, "num_workers": 8},
                 "task": {"vision_model": vit_size("b16"), "embed_dim": 512, "max_len": 64, "vocab_size": 8000,
                          "text_model": {"hidden_size": 512, "num_layers": 12, "num_heads": 8,
                                         "intermediate_size": 2048},
                          "eval": {"max_images": 5000}}},
    }

    def __init__(self, cfg: ClipTaskConfig):
        for key in ("vision_mode", "text_mode"):
            if getattr(cfg, key) not in TOWER_MODES:
                raise ValueError(f"task.{key} must be one of {', '.join(TOWER_MODES)}, not '{getattr(cfg, key)}'")
        if cfg.loss not in LOSSES:
            raise ValueError(f"task.loss must be one of {', '.join(LOSSES)}, not '{cfg.loss}'")
        if not 0 < cfg.min_crop_scale <= 1:
            raise ValueError(f"task.min_crop_scale must be in (0, 1], not {cfg.min_crop_scale}")
        self.cfg = cfg
        self.vision = ImageEncoderSource(cfg.vision_init, cfg.vision_model, cfg.vision_pretrained)
        self.size = self.vision.img_size
        self.train, self.splits = D.load_splits(cfg.data, self.size)
        self.text = TextTowerSource(cfg.text_init, cfg.text_pretrained, cfg.text_model,
                                    [r for refs in self.train.refs for r in refs], cfg.vocab_size, cfg.max_len)
        self.dataset = D.dataset_name(cfg.data)
        self.record = {"image_tower": self.vision.describe(), "text_tower": self.text.describe()}

    # ------------------------------------------------------------------------------ model

    def build_model(self) -> CLIP:
        cfg = self.cfg
        text = set_mode(self.text.build(), cfg.text_mode)     # random weights drawn text tower first, as always
        return CLIP(set_mode(self.vision.build(), cfg.vision_mode), text, cfg.embed_dim, cfg.image_pool,
                    cfg.text_pool, cfg.loss)

    def param_groups(self, model: CLIP, weight_decay: float) -> list[dict]:
        cfg = self.cfg
        groups = (tower_param_groups(model.image, cfg.vision_mode, weight_decay, cfg.layer_decay, cfg.vision_lr_scale)
                  + tower_param_groups(model.text, cfg.text_mode, weight_decay, cfg.layer_decay, cfg.text_lr_scale))
        head = list(model.head_parameters().values())
        return groups + [{"params": [p for p in head if p.ndim >= 2], "weight_decay": weight_decay},
                         {"params": [p for p in head if p.ndim < 2], "weight_decay": 0.0}]   # temperature, bias

    # ------------------------------------------------------------------------------ data and loss

    def _example(self, index: int, g: torch.Generator):
        image = self.train.image(index)
        if self.cfg.min_crop_scale < 1:
            image = random_resized_crop(image, self.size, g, scale=(self.cfg.min_crop_scale, 1.0))
        return D.caption_example(self.train, self._tokenize, index, g, image=image)

    def _tokenize(self, texts: list[str]):
        return self.text.tokenize(texts, padding="max_length")

    def train_batches(self, plan: BatchPlan):
        if plan.grad_accum != 1:
            raise ValueError("clip takes its negatives from the whole batch; gradient accumulation would shrink them "
                             "to a micro-batch. Use trainer.grad_accum=1 (more ranks keep the global batch)")
        return step_loader(len(self.train), self._example, plan)

    def loss(self, model, batch):
        out = model(batch["images"], batch["input_ids"], batch["attention_mask"])
        loss = build_loss(self.cfg.loss, self.cfg.local_loss)(**out)
        with torch.no_grad():   # this rank's in-batch image -> text accuracy, a cheap training signal
            sim = out["image_features"] @ out["text_features"].T
            top1 = (sim.argmax(1) == torch.arange(len(sim), device=sim.device)).float().mean()
        return loss, {"logit_scale": out["logit_scale"].detach(), "batch_i2t_top1": top1}

    def num_tokens(self, batch) -> int:
        return int(batch["attention_mask"].sum())

    # ------------------------------------------------------------------------------ evaluation

    def _steps(self, n: int, desc: str):
        bs = self.cfg.eval.batch_size
        return progress(range(0, n, bs), desc=desc, min_total=20)

    def embed_images(self, model: CLIP, images, idx: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings (n, E) of ``images.take(idx)`` (any set with the image-data contract), each brought
        to the tower's input by the tower's own resize and crop."""
        device, bs = next(model.parameters()).device, self.cfg.eval.batch_size
        return torch.cat([model.encode_image(images.take(idx[i:i + bs]).to(device), normalize=True).float().cpu()
                          for i in self._steps(len(idx), "embed images")])

    def embed_texts(self, model: CLIP, texts: list[str]) -> torch.Tensor:
        """Unit-norm embeddings (n, E); each distinct string is embedded once, so equal strings embed equally."""
        device, bs = next(model.parameters()).device, self.cfg.eval.batch_size
        unique = list(dict.fromkeys(texts))
        emb = torch.cat([model.encode_text(model.text.tokenize(unique[i:i + bs]).to(device), normalize=True)
                         .float().cpu() for i in self._steps(len(unique), "embed captions")])
        where = {t: i for i, t in enumerate(unique)}
        return emb[torch.tensor([where[t] for t in texts])]

    def evaluate(self, model: CLIP, out_dir: Path) -> list[Score]:
        ev = self.cfg.eval
        scores: list[Score] = []
        scene = self.train.attributes is not None
        classifiers = ({a: zeroshot_classifier(model, *scene_prompts(a)) for a in ev.zeroshot_attributes}
                       if scene else {})
        for split, data in self.splits.items():
            idx = sample_indices(len(data), ev.max_images, seed=0)     # a fixed random sample of the split
            image_emb = self.embed_images(model, data, idx)
            texts = [r for i in idx.tolist() for r in data.refs[i]]
            text_image = torch.tensor([j for j, i in enumerate(idx.tolist()) for _ in data.refs[i]])
            similarity = self.embed_texts(model, texts) @ image_emb.T                   # (T, I)
            recall = retrieval_recall(similarity, text_image) | chance_recall(text_image, len(idx))
            if split == next(iter(self.splits)):
                self._gallery(data, idx, texts, text_image, similarity, out_dir / "retrieval_gallery.png")
            extra = {"n_images": len(idx), "n_texts": len(texts), "n_distinct_texts": len(set(texts)), **self.record}
            scores += [Score(self.dataset, split, metric, value, extra) for metric, value in recall.items()]
            for attribute, classifier in classifiers.items():
                labels = data.attributes[attribute][idx]
                extra = {"n": len(idx), "templates": len(scene_prompts(attribute)[1])}
                scores += [Score(f"scenes-{attribute}", split, "zeroshot_top1",
                                 zeroshot_accuracy(image_emb, classifier, labels), extra),
                           Score(f"scenes-{attribute}", split, "zeroshot_majority_baseline", majority(labels), extra)]
        if ev.zeroshot_folder:
            scores += self._zeroshot_folder(model, Path(ev.zeroshot_folder))
        if ev.probes and scene and "test" in self.splits:
            scores += encoder_probes(model.image, self.train, self.splits["test"], ev.probe, self.size, "scenes")
        return scores

    def _gallery(self, data, idx: torch.Tensor, texts: list[str], text_image: torch.Tensor, similarity: torch.Tensor,
                 path: Path, rows: int = 6, k: int = 5, scale: int = 3) -> None:
        """A seeded sample of caption queries, each with its top-k images; the caption's own image framed green."""
        size = self.size * scale
        canvas = Image.new("RGB", (k * (size + 8) + 8, rows * (size + 28)), "white")
        draw = ImageDraw.Draw(canvas)
        for r, t in enumerate(sample_indices(len(texts), rows, seed=1).tolist()):
            y = r * (size + 28)
            draw.text((8, y + 4), texts[t], fill="black")
            for c, j in enumerate(similarity[t].topk(min(k, similarity.shape[1])).indices.tolist()):
                x = 8 + c * (size + 8)
                if j == text_image[t]:
                    draw.rectangle([x - 4, y + 18, x + size + 3, y + size + 25], outline=(0, 170, 0), width=3)
                image = Image.fromarray(data.image(idx[j]).permute(1, 2, 0).numpy()).resize((size, size), Image.NEAREST)
                canvas.paste(image, (x, y + 22))
        atomic_write(path, lambda p: canvas.save(p, format="PNG"))

    def _zeroshot_folder(self, model: CLIP, path: Path) -> list[Score]:
        """Zero-shot top-1 on an ImageFolder's class names (stratified sample of at most eval.max_images, the only
        images decoded)."""
        folder = open_files(*folder_files(path), self.size, str(path), cache="lazy")[0]
        idx = sample_indices(len(folder), self.cfg.eval.max_images, seed=0, labels=folder.labels)
        names, templates = folder_prompts(folder.classes, self.cfg.eval.zeroshot_templates)
        classifier = zeroshot_classifier(model, names, templates)
        accuracy = zeroshot_accuracy(self.embed_images(model, folder, idx), classifier, folder.labels[idx])
        words = [w for name in names for w in name.lower().split()]
        vocab = self.text.vocabulary()                                       # whole words the text tower has seen
        known = None if vocab is None else sum(w in vocab for w in words) / len(words)
        split = path.name if path.name in ("train", "val", "test") else "all"
        dataset = path.parent.name if split != "all" else path.name
        extra = {"n": len(idx), "classes": len(names), "templates": self.cfg.eval.zeroshot_templates,
                 "class_words_in_vocab": known}
        return [Score(dataset, split, "zeroshot_top1", accuracy, extra),
                Score(dataset, split, "zeroshot_majority_baseline", majority(folder.labels[idx]), extra)]

    # ------------------------------------------------------------------------------ export

    def export(self, model: CLIP, out_dir: Path) -> Path:
        """DIR/image: the image tower as a vision encoder export (what `vit-finetune` task.init, `caption`
        task.vision_init and `ppo` task.encoder.init read); DIR/text: the text tower as a transformers folder with its
        tokenizer (`caption` task.text_init for BERT towers, `clip` task.text_init for any); DIR/heads.safetensors +
        clip.json: the projections and temperature that map both into the shared space. A tower from a library
        without an export here (timm:, hf: and open_clip: image towers, open_clip: text towers) is not written:
        clip.json says so, and the run folder itself is that image tower's spec."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = {}
        for name, tower in (("image", model.image), ("text", model.text)):
            if hasattr(tower, "export"):
                tower.export(out / name)
                written[name] = name
            else:
                written[name] = None
        save_weights(model.head_parameters(), out / "heads.safetensors")
        atomic_write_json(out / "clip.json", {"embed_dim": self.cfg.embed_dim, "image_pool": self.cfg.image_pool,
                                              "text_pool": self.cfg.text_pool, "loss": self.cfg.loss,
                                              "max_len": self.cfg.max_len, "towers": written,
                                              "image_tower": self.cfg.vision_init or "random ViT",
                                              "text_tower": self.cfg.text_init or "random BERT"})
        return out


def majority(labels: torch.Tensor) -> float:
    """The accuracy of always answering the most frequent class: the floor a zero-shot accuracy must beat."""
    return torch.bincount(labels).max().item() / len(labels)
