"""What an encoder expects of its input, read from its own config, and the code that gives it that.

Images: ``ImagePreprocess`` is the evaluation transform of timm (``resolve_data_config`` +
``create_transform``), of a transformers image processor and of open_clip's ``preprocess_cfg``,
written once for uint8 tensor batches: resize (the encoder's interpolation; the shorter side, the
longer side or both sides, as its library does), centre crop (or pad) to the input size, scale to
[0, 1], normalise with the encoder's mean and std. ``to_dict()`` is what a task records in its Results.

Text: ``TextPreprocess`` records the tokenizer and the longest sequence the encoder takes.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

RESIZE_MODES = ("shortest", "longest", "squash")
# Tensors can be resized with these; PIL-only filters (lanczos, box, hamming) fall back to bicubic, recorded.
INTERPOLATIONS = {"nearest": InterpolationMode.NEAREST, "bilinear": InterpolationMode.BILINEAR,
                  "bicubic": InterpolationMode.BICUBIC}
# PIL's resampling filter numbers, as transformers stores them in image processor configs.
PIL_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


@dataclass(frozen=True)
class ImagePreprocess:
    input_size: tuple[int, int]             # (H, W) the encoder takes
    mean: tuple[float, float, float]        # per-channel mean of [0, 1] pixels
    std: tuple[float, float, float]
    resize_size: tuple[int, int]            # target of the resize; see resize_mode
    resize_mode: str = "shortest"           # shortest: the shorter side to resize_size, aspect kept (timm "center",
                                            # CLIP/DINOv2 processors); squash: both sides (timm "squash", HF ViT,
                                            # SigLIP); longest: the longer side, then pad (open_clip "longest")
    interpolation: str = "bicubic"          # nearest | bilinear | bicubic
    fill: tuple[int, int, int] = (0, 0, 0)  # padding value (longest mode), uint8
    crop_pct: float = 0.0                   # as the library states it (timm's crop_pct); 0: input / resize size
    crop_offset: str = "round"              # round: torchvision's CenterCrop (timm, open_clip); floor: transformers'
    source: str = ""                        # where the values come from, e.g. "timm pretrained_cfg"
    notes: tuple[str, ...] = field(default=())   # anything adapted (e.g. lanczos -> bicubic)

    def __post_init__(self):
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {', '.join(RESIZE_MODES)}, not '{self.resize_mode}'")
        if self.crop_offset not in ("round", "floor"):
            raise ValueError(f"crop_offset must be round or floor, not '{self.crop_offset}'")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, not '{self.interpolation}'")
        if not self.crop_pct:
            object.__setattr__(self, "crop_pct", self.input_size[0] / self.resize_size[0])

    # ------------------------------------------------------------------ applying it

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) of any size -> uint8 (B, 3, *input_size): resize, then centre crop or pad."""
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected a uint8 batch (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        size = self.resized_size(*images.shape[-2:])
        if size != tuple(images.shape[-2:]):
            images = TF.resize(images, list(size), interpolation=INTERPOLATIONS[self.interpolation], antialias=True)
        images = self._pad(images)                          # to at least the input size (longest mode; tiny inputs)
        (h, w), (th, tw) = images.shape[-2:], self.input_size
        if self.crop_offset == "floor":
            top, left = (h - th) // 2, (w - tw) // 2
        else:
            top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
        return images[..., top:top + th, left:left + tw]

    def resized_size(self, h: int, w: int) -> tuple[int, int]:
        """(H, W) after the resize step, computed as torchvision's Resize and timm/open_clip's ResizeKeepRatio do."""
        th, tw = self.resize_size
        if self.resize_mode == "squash":
            return th, tw
        if self.resize_mode == "shortest" and th == tw:      # torchvision's Resize(int): long side truncated
            short, long = min(h, w), max(h, w)
            new_long = int(th * long / short)
            return (th, new_long) if h <= w else (new_long, th)
        ratio = max(h / th, w / tw) if self.resize_mode == "longest" else min(h / th, w / tw)
        return round(h / ratio), round(w / ratio)

    def _pad(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        ph, pw = max(0, self.input_size[0] - h), max(0, self.input_size[1] - w)
        if not (ph or pw):
            return images
        out = torch.empty(*images.shape[:2], h + ph, w + pw, dtype=images.dtype, device=images.device)
        out[:] = torch.tensor(self.fill, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        out[..., ph // 2:ph // 2 + h, pw // 2:pw // 2 + w] = images
        return out

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> float, scaled to [0, 1] and normalised with the encoder's mean and std."""
        x = images.float().div_(255)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.resize(images))

    def at_size(self, size: int) -> "ImagePreprocess":
        """The same preprocessing for a square input of another size: the resize target scales with it (crop_pct
        kept), and the change is noted. For running an encoder at a resolution other than its own."""
        if (size, size) == tuple(self.input_size):
            return self
        if self.resize_size[0] == self.resize_size[1]:     # as timm computes it: floor(size / crop_pct)
            resize = (math.floor(size / self.crop_pct + 1e-9),) * 2
        else:
            resize = tuple(math.floor(size * r / i + 1e-9) for r, i in zip(self.resize_size, self.input_size))
        note = f"input size {size} instead of the encoder's {self.input_size[0]} (image_size override)"
        return replace(self, input_size=(size, size), resize_size=resize, notes=self.notes + (note,))

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(input_size=list(self.input_size), resize_size=list(self.resize_size),
                 mean=list(self.mean), std=list(self.std), fill=list(self.fill), notes=list(self.notes))
        return d

    # ------------------------------------------------------------------ from each library's config

    @classmethod
    def from_timm(cls, data_config: dict, source: str = "timm pretrained_cfg") -> "ImagePreprocess":
        """From ``timm.data.resolve_data_config(model=...)``: the sizes ``transforms_imagenet_eval`` computes."""
        size = _pair(data_config["input_size"][-2:])
        crop_pct = data_config.get("crop_pct") or 0.875
        mode = data_config.get("crop_mode") or "center"
        interpolation, notes = _interpolation(data_config.get("interpolation", "bilinear"))
        mean, std = tuple(data_config["mean"]), tuple(data_config["std"])
        scale = tuple(math.floor(x / crop_pct) for x in size)
        modes = {"center": "shortest", "squash": "squash", "border": "longest"}
        if mode not in modes:
            raise ValueError(f"unknown timm crop_mode '{mode}'")
        fill = tuple(round(255 * v) for v in mean) if mode == "border" else (0, 0, 0)
        return cls(size, mean, std, scale, modes[mode], interpolation, fill=fill, crop_pct=crop_pct, source=source,
                   notes=notes)

    @classmethod
    def from_hf(cls, processor, fallback_size: int, source: str) -> "ImagePreprocess":
        """From a transformers image processor's resize / centre-crop / normalise settings."""
        size, crop = getattr(processor, "size", None), getattr(processor, "crop_size", None)
        do_crop = bool(getattr(processor, "do_center_crop", False)) and _field(crop, "height") is not None
        resample = getattr(processor, "resample", None)
        resample = 2 if resample is None else getattr(resample, "value", resample)     # PIL's BILINEAR by default
        name = resample if isinstance(resample, str) else PIL_FILTERS.get(int(resample), "bilinear")
        interpolation, notes = _interpolation(name)
        if getattr(processor, "do_resize", True) is False:
            raise ValueError("the image processor does not resize (do_resize=False)")
        if _field(size, "shortest_edge"):
            resize, mode = (_field(size, "shortest_edge"),) * 2, "shortest"
        elif _field(size, "height"):
            resize, mode = (_field(size, "height"), _field(size, "width")), "squash"
        else:
            resize, mode = (fallback_size,) * 2, "squash"
            notes += (f"processor has no size; used the model's image_size {fallback_size}",)
        input_size = (_field(crop, "height"), _field(crop, "width")) if do_crop else resize
        rescale = getattr(processor, "rescale_factor", 1 / 255)
        if not getattr(processor, "do_rescale", True) or abs(rescale - 1 / 255) > 1e-9:
            notes += ("processor's rescale differs from 1/255; [0, 1] scaling applied",)
        mean = tuple(getattr(processor, "image_mean", None) or (0.0, 0.0, 0.0))
        std = tuple(getattr(processor, "image_std", None) or (1.0, 1.0, 1.0))
        if not getattr(processor, "do_normalize", True):
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        return cls(input_size, mean, std, resize, mode, interpolation, crop_offset="floor", source=source, notes=notes)

    @classmethod
    def from_open_clip(cls, cfg: dict, source: str = "open_clip preprocess_cfg") -> "ImagePreprocess":
        """From ``open_clip.get_model_preprocess_cfg(model)``: what ``image_transform(is_train=False)`` does."""
        size = _pair(cfg["size"])
        interpolation, notes = _interpolation(cfg.get("interpolation") or "bicubic")
        mode = cfg.get("resize_mode") or "shortest"
        fill = (int(cfg.get("fill_color", 0)),) * 3
        return cls(size, tuple(cfg["mean"]), tuple(cfg["std"]), size, mode, interpolation, fill=fill, crop_pct=1.0,
                   source=source, notes=notes)


def _field(d, key):
    """A key of a dict or an attribute of transformers' SizeDict."""
    if d is None:
        return None
    return d.get(key) if isinstance(d, dict) else getattr(d, key, None)


def _pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1]))


def _interpolation(name: str) -> tuple[str, tuple[str, ...]]:
    name = str(name).lower()
    if name in INTERPOLATIONS:
        return name, ()
    return "bicubic", (f"interpolation '{name}' has no tensor implementation; bicubic used",)


@dataclass(frozen=True)
class TextPreprocess:
    tokenizer: str              # the tokenizer's class and where it was loaded from
    vocab_size: int
    max_length: int             # longest sequence the encoder takes (longer input is truncated)
    pad_id: int
    lowercase: bool | None = None
    source: str = ""

    def to_dict(self) -> dict:
        return asdict(self)
