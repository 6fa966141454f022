"""Image sets decoded on access, for sets that need not fit in memory, and the choice between memory and lazy.

A lazy set holds only what names its images (file paths here, rows of an Arrow table in vision.shards) and the
labels; ``image(i)`` decodes one image to the storage size when asked -- inside a DataLoader worker during
training, so decoding runs in parallel with the step. The sample stream and each sample's augmentation still come
from selfsup.data's (index, generator) protocol, so a lazy run resumes exactly as an in-memory one, with any number
of workers, and sees the same pixels (one decoder, vision.data.decode_image, serves both).

An unreadable image is found only when it is decoded. It is then replaced, deterministically, by the next readable
image of the same class (any image when unlabelled), counted in ``skipped`` and warned about once per file; with
``strict`` it is an error naming the file. Replacement depends only on the index, so resume stays exact.

Choosing (``task.data.cache``, for image files, packed shards and ``datasets`` tables alike): ``memory`` decodes
everything once into a uint8 tensor (fast steps, N*3*S*S bytes of RAM per process); ``lazy`` decodes per sample;
``auto`` takes memory when that estimate fits ``task.data.memory_gb``, else lazy.
"""
from __future__ import annotations

import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from selfsup.progress import progress

from .data import DECODE_THREADS, MAX_PIXELS, BadImage, ImageDataError, ImageSet, decode_files, decode_image

CACHES = ("auto", "memory", "lazy")
MAX_REPLACEMENTS = 64   # consecutive unreadable images tried before giving up on a neighbourhood


class LazyImageSet:
    """Base of the sets that decode on access; a subclass says where image ``i``'s bytes are (``source``)."""

    def __init__(self, n: int, labels: torch.Tensor | None, classes: list[str], size: int, what: str,
                 strict: bool = False, max_pixels: int = MAX_PIXELS, skipped: int = 0):
        self.n, self.labels, self.classes, self.size = n, labels, classes, size
        self.what, self.strict, self.max_pixels = what, strict, max_pixels
        self.attributes = None
        self._known_skipped = skipped            # left out before this set was made (e.g. when packing shards)
        self._bad: dict[int, str] = {}           # this process's unreadable images: index -> why

    def __len__(self) -> int:
        return self.n

    @property
    def skipped(self) -> int:
        """Images left out or replaced so far (in this process: workers count their own)."""
        return self._known_skipped + len(self._bad)

    def source(self, index: int) -> str | Path | bytes:
        """Image ``index`` as a path or its encoded bytes."""
        raise NotImplementedError

    def name(self, index: int) -> str:
        """How an error names image ``index``."""
        return f"{self.what}[{index}]"

    def _decode(self, index: int) -> np.ndarray | None:
        if index in self._bad:
            return None
        try:
            return decode_image(self.source(index), self.size, self.max_pixels)
        except BadImage as e:
            if self.strict:
                raise ImageDataError(f"cannot use {self.name(index)}: {e} (turn off task.data.strict to replace "
                                     "unreadable images by their neighbours)") from None
            self._bad[index] = str(e)
            return None

    def _stand_ins(self, index: int):
        """Indices tried in place of an unreadable image: the next ones of the same class, wrapping round."""
        same = None if self.labels is None else self.labels[index]
        for step in range(1, self.n):
            j = (index + step) % self.n
            if same is None or self.labels[j] == same:
                yield j

    def image(self, index: int) -> torch.Tensor:
        """(3, S, S) uint8."""
        arr = self._decode(index)
        if arr is None:
            tried = 0
            for j in self._stand_ins(index):
                arr = self._decode(j)
                tried += 1
                if arr is not None:
                    warnings.warn(f"{self.what}: {self.name(index)} cannot be used ({self._bad[index]}); "
                                  f"{self.name(j)} stands in for it")
                    break
                if tried >= MAX_REPLACEMENTS:
                    break
            if arr is None:
                raise ImageDataError(f"{self.what}: {self.name(index)} and the {tried} images tried in its place "
                                     f"cannot be used ({self._bad[index]})")
        return torch.from_numpy(arr).permute(2, 0, 1)

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        """(n, 3, S, S) uint8, decoded in threads (PIL releases the GIL), with progress on long takes."""
        idx = torch.as_tensor(indices).flatten().tolist()
        out = torch.empty(len(idx), 3, self.size, self.size, dtype=torch.uint8)
        with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
            decoded = progress(pool.map(self.image, idx), total=len(idx), desc=f"decode {self.what}", min_total=2000)
            for k, img in enumerate(decoded):
                out[k] = img
        return out

    def subset(self, indices: torch.Tensor) -> Subset:
        return Subset(self, torch.as_tensor(indices))


class Subset:
    """Some images of a lazy set (a train/test split of one folder), with the same contract."""

    def __init__(self, base: LazyImageSet, indices: torch.Tensor):
        self.base, self.indices = base, indices
        self.labels = None if base.labels is None else base.labels[indices]
        self.classes, self.attributes, self.skipped = base.classes, None, 0

    def __len__(self) -> int:
        return len(self.indices)

    def image(self, index: int) -> torch.Tensor:
        return self.base.image(int(self.indices[index]))

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        return self.base.take(self.indices[torch.as_tensor(indices)])

    def subset(self, indices: torch.Tensor) -> Subset:
        return Subset(self.base, self.indices[torch.as_tensor(indices)])


class _Names:
    """Many file names in two numpy arrays instead of a Python object each: DataLoader workers share them
    copy-on-write without touching reference counts (1.3 M ImageNet paths: ~60 MB, not ~250 MB per worker)."""

    def __init__(self, names: list[str]):
        encoded = [n.encode() for n in names]
        self.offsets = np.cumsum([0] + [len(e) for e in encoded], dtype=np.int64)
        self.blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self.blob[self.offsets[i]:self.offsets[i + 1]].tobytes().decode()


class FileImageSet(LazyImageSet):
    """Image files decoded on access."""

    def __init__(self, paths: list[Path], labels: torch.Tensor | None, classes: list[str], size: int, what: str,
                 strict: bool = False, max_pixels: int = MAX_PIXELS):
        super().__init__(len(paths), labels, classes, size, what, strict, max_pixels)
        self.paths = _Names([str(p) for p in paths])

    def source(self, index: int) -> str:
        return self.paths[index]

    def name(self, index: int) -> str:
        return self.paths[index]


def choose_cache(n: int, size: int, cache: str, memory_gb: float) -> str:
    """'memory' or 'lazy' for ``n`` images stored at ``size``: ``auto`` keeps them in memory when the decoded
    uint8 tensor (n * 3 * size * size bytes) fits ``memory_gb``."""
    if cache not in CACHES:
        raise ImageDataError(f"task.data.cache must be one of {', '.join(CACHES)}, not '{cache}'")
    if cache != "auto":
        return cache
    return "memory" if n * 3 * size * size <= memory_gb * 2**30 else "lazy"


def cached(ds: LazyImageSet, cache: str, memory_gb: float) -> ImageSet | LazyImageSet:
    """A lazy set (packed shards, a datasets table) decoded into memory when ``choose_cache`` says it fits; an
    unreadable image keeps its stand-in (lazy semantics), so both forms hold the same images."""
    if choose_cache(len(ds), ds.size, cache, memory_gb) == "lazy":
        return ds
    out = ImageSet(ds.take(torch.arange(len(ds))), ds.labels, ds.classes)
    out.skipped = ds.skipped
    return out


def open_files(paths: list[Path], labels: list[int] | None, classes: list[str], size: int, what: str, *,
               cache: str = "auto", memory_gb: float = 4.0, strict: bool = False,
               max_pixels: int = MAX_PIXELS) -> tuple[ImageSet | FileImageSet, list[int]]:
    """Image files as an image set, in memory or lazy (``choose_cache``); also the positions of ``paths`` it holds:
    all of them when lazy, the decodable ones in memory (a caller keeping per-image data, such as captions, keeps
    those rows)."""
    y = None if labels is None else torch.as_tensor(labels, dtype=torch.long)
    if choose_cache(len(paths), size, cache, memory_gb) == "lazy":
        if cache == "auto":
            print(f"[selfsup] {what}: {len(paths):,} images at {size} px would take "
                  f"{len(paths) * 3 * size * size / 2**30:.1f} GB decoded (> task.data.memory_gb={memory_gb:g}): "
                  "decoding each when used, in the DataLoader workers (trainer.num_workers)", file=sys.stderr)
        return FileImageSet(paths, y, classes, size, what, strict, max_pixels), list(range(len(paths)))
    images, ok = decode_files(paths, size, strict, what, max_pixels)
    return ImageSet(images, None if y is None else y[ok], classes, skipped=len(paths) - len(ok)), ok
