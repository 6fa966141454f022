"""Raw pixels as an encoder (spec ``pixels`` or ``pixels:SIZE``): the baseline every image table needs, with the
same API and Result records as any encoder, and no weights.

    enc = load_image_encoder("pixels:32")
    out = enc(images_uint8)     # "cls" = "mean" = the normalised 32x32 image flattened, (B, 3*32*32);
                                # "tokens" = its 8x8 grid of patches flattened, (B, 64, 3*4*4)

The image is resized (shorter side, bilinear, antialiased) and centre-cropped to SIZE (default 32; ``image_size``
overrides it) and normalised with ImageNet's mean and std, as our ViTs see it. Probing "cls" is the linear / kNN
pixel baseline; ``pretrained=False`` changes nothing (there is nothing to initialise).
"""
from __future__ import annotations

from dataclasses import replace

import torch

from .base import EncoderError, ImageEncoder
from .preprocess import ImagePreprocess

DEFAULT_SIZE = 32
GRID = 8                                      # tokens: an 8x8 grid of patches where the size allows it
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def patch_size(size: int) -> int:
    """The largest divisor of ``size`` not above size / GRID (size / 8 for multiples of 8), at least 1."""
    return max(d for d in range(1, max(1, size // GRID) + 1) if size % d == 0)


class PixelEncoder(ImageEncoder):
    family = "pixels"
    cls_source = "pixels"
    num_prefix_tokens = 0

    def __init__(self, size: int, spec: str = "pixels"):
        super().__init__()
        if size < 1:
            raise EncoderError(f"'{spec}': the image size must be a positive number of pixels, not {size}")
        self.spec, self.size, self.patch = spec, size, patch_size(size)
        self.embed_dim = 3 * size * size
        self.preprocess = ImagePreprocess((size, size), IMAGENET_MEAN, IMAGENET_STD, (size, size), "shortest",
                                          "bilinear", crop_pct=1.0, source="raw pixels (no model)")

    @property
    def token_dim(self) -> int:
        return 3 * self.patch * self.patch

    def layer_id(self, name: str) -> int:
        return 0

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, L, p*p*3), row-major patches with (row, column, channel) inside (MAE's order)."""
        b, c, s, p = x.shape[0], x.shape[1], self.size, self.patch
        g = s // p
        return x.reshape(b, c, g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(b, g * g, p * p * c)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.patches(self.prepare(images))                       # (B, L, 3p^2)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.prepare(images)                                        # (B, 3, S, S) normalised
        flat = x.flatten(1)                                             # (B, 3*S*S)
        return {"tokens": self.patches(x), "cls": flat, "mean": flat}


def load_pixels(size_text: str, image_size: int | None, spec: str) -> PixelEncoder:
    if size_text and not size_text.isdigit():
        raise EncoderError(f"'{spec}': write pixels or pixels:SIZE with SIZE in pixels, e.g. pixels:32")
    size = image_size or (int(size_text) if size_text else DEFAULT_SIZE)
    enc = PixelEncoder(size, spec)
    if image_size and size_text and int(size_text) != image_size:
        note = f"input size {image_size} instead of the spec's {size_text} (image_size override)"
        enc.preprocess = replace(enc.preprocess, notes=(note,))
    return enc
