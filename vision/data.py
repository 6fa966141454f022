"""Image data: the ``ImageSet`` contract, one decoder for every image file, and the real formats read into memory
(ImageFolder trees, CIFAR-10/100 python batches, STL-10 binaries, any folder of images) or from the embedded sources.

Every image set -- in memory (``ImageSet``, here), decoded on access (``vision.lazy``), or read from packed shards
and ``datasets`` tables (``vision.shards``) -- offers the same contract:

    len(ds)                   number of images
    ds.image(i)               (3, S, S) uint8 at the storage size S
    ds.take(idx)              (n, 3, S, S) uint8, in the order of ``idx``
    ds.labels                 (N,) int64 tensor held in memory, or None for unlabelled data
    ds.classes                class names (label k is classes[k]); [] when unknown
    ds.attributes             scenes only: a label per scene attribute (probe targets); else None
    ds.skipped                images left out (or, decoded lazily, replaced) because they could not be read

Tasks touch pixels only through ``image``/``take``, so where the pixels live is the source's business.
Augmentation happens per sample, on uint8, with a per-sample generator (vision.transforms).
"""
from __future__ import annotations

import io
import os
import pickle
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from selfsup.errors import UserError
from selfsup.progress import progress

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
MAX_PIXELS = 64_000_000   # default cap on pixels per image (task.data.max_pixels), well under PIL's bomb limit (179 M)
DECODE_THREADS = min(8, os.cpu_count() or 1)   # PIL releases the GIL while decoding


class ImageDataError(UserError, ValueError):
    """A missing, empty or unreadable image source, or a bad data setting: the user must fix it."""


class BadImage(Exception):
    """One image that cannot be used (corrupt, unreadable, or over the pixel cap); the message says why."""


@dataclass
class ImageSet:
    """Images decoded into memory: the fast path for sets that fit (see vision.lazy.choose_cache)."""
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

    def subset(self, indices: torch.Tensor) -> ImageSet:
        """The images at ``indices`` as a set of their own (a train/test split of one folder)."""
        attrs = None if self.attributes is None else {k: v[indices] for k, v in self.attributes.items()}
        labels = None if self.labels is None else self.labels[indices]
        return ImageSet(self.images[indices], labels, self.classes, 0, attrs)


# ------------------------------------------------------------------------------------------------- decoding


def _square(img: Image.Image, size: int) -> np.ndarray:
    """Resize the short side to ``size`` and centre-crop a square: the stored form of every image."""
    img = img.convert("RGB")
    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.array(img.crop((left, top, left + size, top + size)))


def decode_image(source: str | Path | bytes, size: int, max_pixels: int = MAX_PIXELS, draft: bool = True) -> np.ndarray:
    """A file (or its bytes) -> (size, size, 3) uint8, short side resized and centre-cropped; raises ``BadImage``.

    The header is read first: an image over ``max_pixels`` is refused before any pixel is decoded. A JPEG at least
    twice the storage size is decoded at 1/2, 1/4 or 1/8 scale by libjpeg (PIL's ``draft``; the short side stays
    >= size) before the final resize, which is several times faster for photos much larger than the storage size.
    """
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise BadImage(f"{w}x{h} pixels exceed task.data.max_pixels={max_pixels}")
            if draft and img.format == "JPEG" and min(w, h) >= 2 * size:
                img.draft("RGB", (size, size))
            img.load()
            return _square(img, size)
    except BadImage:
        raise
    except Exception as e:   # PIL raises many types on malformed files (OSError, SyntaxError, struct.error, ...)
        raise BadImage(f"{type(e).__name__}: {e}") from None


def bad_images(bad: list[tuple[object, str]], total: int, strict: bool, what: str) -> None:
    """Warn about (or, with ``strict``, refuse) the images that could not be used, naming a few and why."""
    if not bad:
        return
    listing = "; ".join(f"{p} ({why})" for p, why in bad[:5]) + (" …" if len(bad) > 5 else "")
    if strict:
        raise ImageDataError(f"{len(bad)} of {total} images in {what} cannot be used: {listing} "
                             "(turn off task.data.strict to skip them)")
    warnings.warn(f"skipped {len(bad)} of {total} corrupt, unreadable or oversized images in {what}: {listing}")


def decode_files(paths: list[Path], size: int, strict: bool, what: str,
                 max_pixels: int = MAX_PIXELS) -> tuple[torch.Tensor, list[int]]:
    """Decode files into one (n, 3, size, size) uint8 tensor in threads; returns it and the indices that decoded."""
    out = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    ok: list[int] = []
    bad: list[tuple[object, str]] = []

    def one(p):
        try:
            return decode_image(p, size, max_pixels)
        except BadImage as e:
            return str(e)
    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        decoded = progress(pool.map(one, paths), total=len(paths), desc=f"decode {what}", min_total=2000)
        for i, arr in enumerate(decoded):
            if isinstance(arr, str):
                bad.append((paths[i], arr))
                continue
            out[len(ok)] = torch.from_numpy(arr).permute(2, 0, 1)
            ok.append(i)
    bad_images(bad, len(paths), strict, what)
    return out[: len(ok)], ok


# ------------------------------------------------------------------------------------------ image trees


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def folder_files(root: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """torchvision's ImageFolder layout, root/<class>/<image> (searched recursively; classes sorted by name):
    the files, their labels and the class names. Nothing is decoded."""
    root = Path(root)
    if not root.is_dir():
        raise ImageDataError(f"image folder not found: {root}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise ImageDataError(f"{root} has no class sub-folders (expected root/<class>/<image>)")
    paths, labels = [], []
    for c, name in enumerate(progress(classes, desc=f"list {root}", min_total=100)):
        files = _image_files(root / name)
        paths += files
        labels += [c] * len(files)
    if not paths:
        raise ImageDataError(f"{root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths, labels, classes


def tree_files(root: str | Path) -> list[Path]:
    """Every image under ``root`` (any depth), sorted: unlabelled data for pretraining."""
    root = Path(root)
    if not root.is_dir():
        raise ImageDataError(f"image folder not found: {root}")
    paths = _image_files(root)
    if not paths:
        raise ImageDataError(f"{root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths


def image_folder(root: str | Path, size: int, strict: bool = False, max_pixels: int = MAX_PIXELS) -> ImageSet:
    """An ImageFolder tree decoded into memory (vision.lazy.open_files chooses memory or lazy by size)."""
    paths, labels, classes = folder_files(root)
    images, ok = decode_files(paths, size, strict, str(root), max_pixels)
    return ImageSet(images, torch.tensor(labels)[ok], classes, skipped=len(paths) - len(ok))


def unlabelled_folder(root: str | Path, size: int, strict: bool = False, max_pixels: int = MAX_PIXELS) -> ImageSet:
    """Any folder of images (searched recursively) decoded into memory, for pretraining without labels."""
    paths = tree_files(root)
    images, ok = decode_files(paths, size, strict, str(root), max_pixels)
    return ImageSet(images, None, [], skipped=len(paths) - len(ok))


# ------------------------------------------------------------------------------- array formats (CIFAR, STL)


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
    if not isinstance(raw, dict):
        raise ImageDataError(f"{path} is not a CIFAR python batch (holds a {type(raw).__name__}, not a dict)")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}


def _checked_labels(labels, n: int, num_classes: int, path: Path) -> torch.Tensor:
    """Labels of ``n`` images, each in [0, num_classes): anything else is an error naming the file."""
    try:
        y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    except (TypeError, ValueError) as e:
        raise ImageDataError(f"{path}: labels are not integers ({e})") from None
    if y.shape != (n,):
        raise ImageDataError(f"{path}: {y.numel()} labels for {n} images (the counts must match)")
    if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = y[(y < 0) | (y >= num_classes)]
        raise ImageDataError(f"{path}: label {int(bad[0])} is outside the {num_classes} classes "
                             f"(0..{num_classes - 1}); {len(bad)} labels out of range")
    return y


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
    batches = {root / f: _read_batch(root / f) for f in files}
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in _read_batch(root / meta)[names_key]]
    data, labels = [], []
    for path, batch in batches.items():
        if "data" not in batch or label_key not in batch:
            raise ImageDataError(f"{path} lacks 'data' or '{label_key}': not a CIFAR batch of this kind")
        rows = np.asarray(batch["data"], dtype=np.uint8)
        if rows.ndim != 2 or rows.shape[1] != 3 * 32 * 32:
            raise ImageDataError(f"{path}: data has shape {rows.shape}, expected (N, 3072)")
        data.append(rows.reshape(-1, 3, 32, 32))
        labels.append(_checked_labels(batch[label_key], len(rows), len(classes), path))
    images = torch.from_numpy(np.concatenate(data))
    if size != 32:
        images = resize_uint8(images, size)
    return ImageSet(images, torch.cat(labels), classes)


def stl10(root: str | Path, split: str, size: int) -> ImageSet:
    """STL-10's binaries as distributed (stl10_binary/): {split}_X.bin (N, 3, 96, 96) uint8 stored column-major,
    {split}_y.bin labels 1..10, class_names.txt. split: train (5,000 labelled), test (8,000) or unlabeled (100,000)."""
    root = Path(root)
    if split not in ("train", "test", "unlabeled"):
        raise ImageDataError(f"STL-10 split must be train, test or unlabeled, not '{split}'")
    x_file = root / f"{split}_X.bin"
    if not x_file.is_file():
        raise ImageDataError(f"STL-10 file not found: {x_file}")
    raw = np.fromfile(x_file, dtype=np.uint8)
    if raw.size % (3 * 96 * 96):
        raise ImageDataError(f"{x_file}: {raw.size} bytes is not a whole number of 3x96x96 images")
    images = torch.from_numpy(raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2).copy())   # column-major -> (H, W)
    names = root / "class_names.txt"
    classes = names.read_text().split() if names.is_file() else [str(i) for i in range(10)]
    labels = None
    if split != "unlabeled":
        y_file = root / f"{split}_y.bin"
        if not y_file.is_file():
            raise ImageDataError(f"STL-10 label file not found: {y_file}")
        labels = _checked_labels(np.fromfile(y_file, dtype=np.uint8).astype(np.int64) - 1, len(images),
                                 len(classes), y_file)
    if size != 96:
        images = resize_uint8(images, size)
    return ImageSet(images, labels, classes if labels is not None else [])


def digits(size: int) -> ImageSet:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 real images), upscaled, grey as RGB."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.from_numpy(d.images).float().div(16).mul(255).round().to(torch.uint8)   # (N, 8, 8)
    x = x.unsqueeze(1).expand(-1, 3, -1, -1)
    return ImageSet(resize_uint8(x, size), torch.from_numpy(d.target).long(), [str(i) for i in range(10)])


def resize_uint8(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> (N, 3, size, size), antialiased, in chunks so the float copy stays small."""
    out = torch.empty(len(images), 3, size, size, dtype=torch.uint8)
    for i in range(0, len(images), chunk):
        x = F.interpolate(images[i:i + chunk].float(), size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)
        out[i:i + chunk] = x.round().clamp(0, 255).to(torch.uint8)
    return out


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = max(1, int(n * test_fraction))
    return perm[k:], perm[:k]
