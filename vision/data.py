"""Image data: embedded sources (rendered scenes, scikit-learn digits) and real formats (ImageFolder
trees, CIFAR-10/100 python batches, any folder of images), all decoded once into uint8 tensors.

Every source gives an ``ImageSet``: images (N, 3, S, S) uint8 at a storage size S, and labels
(or None). Augmentation happens per batch, on uint8, with a per-sample generator (vision.transforms).
"""
from __future__ import annotations

import io
import pickle
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from selfsup.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


class ImageDataError(UserError, ValueError):
    """A missing, empty or unreadable image source."""


@dataclass
class ImageSet:
    images: torch.Tensor                  # (N, 3, S, S) uint8
    labels: torch.Tensor | None           # (N,) int64, or None for unlabelled data
    classes: list[str]
    skipped: int = 0                      # corrupt/unreadable files left out
    attributes: dict[str, torch.Tensor] | None = None   # scenes: a label per scene attribute (probe targets)

    def __len__(self) -> int:
        return self.images.shape[0]

    def image(self, index: int) -> torch.Tensor:
        """One image, (3, S, S) uint8."""
        return self.images[index]

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        """Several images, (n, 3, S, S) uint8, in the order of ``indices``."""
        return self.images[indices]


def _square(img: Image.Image, size: int) -> np.ndarray:
    """Resize the short side to ``size`` and centre-crop a square: the stored form of every image."""
    img = img.convert("RGB")
    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.array(img.crop((left, top, left + size, top + size)))


def _decode(path: Path, size: int) -> np.ndarray | None:
    try:
        with Image.open(path) as img:
            img.load()
            return _square(img, size)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None


def decode_files(paths: list[Path], size: int, strict: bool, what: str) -> tuple[torch.Tensor, list[int]]:
    """Decode files in threads (PIL releases the GIL); returns images and the indices that decoded."""
    out = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    ok: list[int] = []
    bad: list[Path] = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        for i, arr in enumerate(tqdm(pool.map(lambda p: _decode(p, size), paths), total=len(paths),
                                     desc=f"decode {what}", disable=len(paths) < 2000, mininterval=1.0)):
            if arr is None:
                bad.append(paths[i])
                continue
            out[len(ok)] = torch.from_numpy(arr).permute(2, 0, 1)
            ok.append(i)
    if bad:
        listing = ", ".join(str(p) for p in bad[:5]) + (" …" if len(bad) > 5 else "")
        if strict:
            raise ImageDataError(f"{len(bad)} of {len(paths)} images in {what} cannot be decoded: {listing} "
                                 "(turn off task.data.strict to skip them)")
        warnings.warn(f"skipped {len(bad)} of {len(paths)} corrupt or unreadable images in {what}: {listing}")
    return out[: len(ok)], ok


def image_folder(root: str | Path, size: int, strict: bool = False) -> ImageSet:
    """torchvision's ImageFolder layout: root/<class>/<image>; classes sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise ImageDataError(f"image folder not found: {root}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise ImageDataError(f"{root} has no class sub-folders (expected root/<class>/<image>)")
    paths, labels = [], []
    for c, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [c] * len(files)
    if not paths:
        raise ImageDataError(f"{root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    images, ok = decode_files(paths, size, strict, str(root))
    return ImageSet(images, torch.tensor(labels)[ok], classes, skipped=len(paths) - len(ok))


def unlabelled_folder(root: str | Path, size: int, strict: bool = False) -> ImageSet:
    """Any folder of images (searched recursively), for pretraining without labels."""
    root = Path(root)
    if not root.is_dir():
        raise ImageDataError(f"image folder not found: {root}")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ImageDataError(f"{root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    images, ok = decode_files(paths, size, strict, str(root))
    return ImageSet(images, None, [], skipped=len(paths) - len(ok))


class _ArraysOnly(pickle.Unpickler):
    """CIFAR's python batches are pickles: allow only what a dict of numpy arrays needs, nothing callable."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")


def _read_batch(path: Path) -> dict:
    if not path.is_file():
        raise ImageDataError(f"CIFAR batch file not found: {path}")
    try:
        raw = _ArraysOnly(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except Exception as e:
        raise ImageDataError(f"{path} is not a CIFAR python batch ({type(e).__name__}: {e})") from None
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}


def cifar(root: str | Path, split: str, size: int, hundred: bool = False) -> ImageSet:
    """CIFAR-10 (cifar-10-batches-py) or CIFAR-100 (cifar-100-python) as distributed by its authors."""
    root = Path(root)
    if split not in ("train", "test"):
        raise ImageDataError(f"CIFAR split must be train or test, not '{split}'")
    if hundred:
        files, label_key, meta, names_key = [split], "fine_labels", "meta", "fine_label_names"
    else:
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        label_key, meta, names_key = "labels", "batches.meta", "label_names"
    data, labels = [], []
    for f in files:
        batch = _read_batch(root / f)
        data.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels += list(batch[label_key])
    classes = [c.decode() if isinstance(c, bytes) else c for c in _read_batch(root / meta)[names_key]]
    images = torch.from_numpy(np.concatenate(data))
    if size != 32:
        images = resize_uint8(images, size)
    return ImageSet(images, torch.tensor(labels), classes)


def digits(size: int) -> ImageSet:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 real images), upscaled, grey as RGB."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.from_numpy(d.images).float().div(16).mul(255).round().to(torch.uint8)   # (N, 8, 8)
    x = x.unsqueeze(1).expand(-1, 3, -1, -1)
    return ImageSet(resize_uint8(x, size), torch.from_numpy(d.target).long(), [str(i) for i in range(10)])


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    x = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = max(1, int(n * test_fraction))
    return perm[k:], perm[:k]
