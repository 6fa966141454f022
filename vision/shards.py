"""Packed image shards, and image sets over any ``datasets`` table (packed shards, Hub datasets by name).

``selfsup pack-images SRC OUT`` packs an image tree (an ImageFolder with or without train/val, or any tree with
``--unlabelled``) once into shards of a few thousand images; training then reads them on demand, memory-mapped,
so a set far larger than RAM costs only the page cache, and each image is decoded in a DataLoader worker:

    OUT/<split>/meta.json               format, classes, image count, skipped files, storage size, shard list
    OUT/<split>/shard-00000/...         one ``Dataset.save_to_disk`` folder each: columns image (encoded bytes), label

Why ``datasets`` Arrow shards rather than WebDataset tar shards: ``datasets`` is already a dependency (no new one),
its memory-mapped Arrow files give O(1) random access to any image, so training keeps selfsup.data's
(index, generator) protocol unchanged -- a seeded global shuffle each epoch, per-sample seeded augmentation, exact
resume with any number of workers or ranks -- which a tar stream (shard shuffle + a shuffle buffer) cannot; and one
reader (``ArrowImageSet``) serves both our shards and any Hub image dataset by name, which ``load_dataset`` stores
as the same Arrow files. The shards stay plain ``datasets`` folders: ``datasets.load_from_disk`` opens each one, and
``load_dataset("arrow", data_files="OUT/train/shard-*/*.arrow", streaming=True)`` streams them (from object storage
too, through fsspec). Images are packed in a seeded shuffled order, so any shard holds every class.

Packing verifies every image by decoding it: unreadable ones (and any over ``--max-pixels``) are left out and
counted in meta.json (``--strict`` stops instead). ``--size S`` shrinks images whose short side exceeds S to S
(re-encoded: JPEG quality 95, else PNG), which makes both the shards and each later decode several times smaller
for photos; without it the original bytes are stored. Each shard is written to a temporary folder and renamed when
complete, and meta.json last: an interrupted pack resumes where it stopped, and a reader never sees a partial one.
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image

from selfsup.io import atomic_write_json
from selfsup.progress import progress

from .data import DECODE_THREADS, MAX_PIXELS, BadImage, ImageDataError, bad_images, folder_files, tree_files
from .lazy import LazyImageSet

FORMAT, VERSION = "selfsup-image-shards", 1


class ArrowImageSet(LazyImageSet):
    """The images of a ``datasets.Dataset`` (an image column of encoded bytes or file paths), decoded on access."""

    def __init__(self, table, image_column: str, label_column: str | None, classes: list[str], size: int, what: str,
                 strict: bool = False, max_pixels: int = MAX_PIXELS, skipped: int = 0):
        labels = None
        if label_column is not None:
            labels = torch.from_numpy(np.asarray(table.with_format("numpy")[label_column], dtype=np.int64))
        super().__init__(len(table), labels, classes, size, what, strict, max_pixels, skipped)
        # undecoded: rows give {"bytes", "path"}, and the decoding is ours (pixel cap, draft, storage size)
        self.table = table.select_columns([image_column]).cast_column(image_column, datasets.Image(decode=False))
        self.column = image_column

    def source(self, index: int) -> bytes | str:
        cell = self.table[index][self.column]
        if cell is None or not (cell.get("bytes") or cell.get("path")):
            return b""                       # an empty cell: decode_image reports it as unreadable
        return cell["bytes"] or cell["path"]


# ------------------------------------------------------------------------------------------------- reading


def is_packed(folder: str | Path) -> bool:
    return (Path(folder) / "meta.json").is_file()


def shard_set(folder: str | Path, size: int, strict: bool = False, max_pixels: int = MAX_PIXELS) -> ArrowImageSet:
    """One packed split (a folder holding meta.json and its shards)."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ImageDataError(f"{folder / 'meta.json'} cannot be read ({e}): pack the images with "
                             "`selfsup pack-images SRC OUT`") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ImageDataError(f"{folder / 'meta.json'} is not a {FORMAT} index (written by `selfsup pack-images`)")
    missing = [s for s in meta["shards"] if not (folder / s).is_dir()]
    if missing:
        raise ImageDataError(f"{folder}: shards listed in meta.json are missing: {', '.join(missing[:5])}")
    table = datasets.concatenate_datasets([datasets.load_from_disk(str(folder / s)) for s in meta["shards"]])
    if len(table) != meta["count"]:
        raise ImageDataError(f"{folder}: meta.json counts {meta['count']} images, the shards hold {len(table)}")
    classes = meta["classes"]
    return ArrowImageSet(table, "image", "label" if classes is not None else None, classes or [], size, str(folder),
                         strict, max_pixels, skipped=meta["skipped"])


# ------------------------------------------------------------------------------------------------- packing


def _encode(path: Path, size: int, max_pixels: int) -> bytes:
    """The bytes to store for one image, after decoding it fully (so a corrupt file is caught now, not in training)."""
    raw = path.read_bytes()
    try:
        with Image.open(io.BytesIO(raw)) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise BadImage(f"{w}x{h} pixels exceed --max-pixels={max_pixels}")
            fmt = img.format
            if not size or min(w, h) <= size:
                img.load()
                return raw
            if fmt == "JPEG":
                img.draft("RGB", (size, size))
            img = img.convert("RGB")
            scale = size / min(img.size)
            img = img.resize((max(size, round(img.size[0] * scale)), max(size, round(img.size[1] * scale))),
                             Image.BICUBIC)
            out = io.BytesIO()
            img.save(out, format="JPEG", quality=95) if fmt == "JPEG" else img.save(out, format="PNG")
            return out.getvalue()
    except BadImage:
        raise
    except Exception as e:
        raise BadImage(f"{type(e).__name__}: {e}") from None


def _write_shard(dest: Path, images: list[bytes], labels: list[int] | None, classes: list[str] | None) -> None:
    features = {"image": datasets.Image()}
    columns = {"image": [{"bytes": b, "path": None} for b in images]}
    if labels is not None:
        features["label"] = datasets.ClassLabel(names=classes)
        columns["label"] = labels
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()          # one bar for the whole pack (pack_split's), not one per shard
    try:
        datasets.Dataset.from_dict(columns, features=datasets.Features(features)).save_to_disk(str(tmp))
    finally:
        if not quiet:
            datasets.enable_progress_bars()
    tmp.rename(dest)


def pack_split(paths: list[Path], labels: list[int] | None, classes: list[str] | None, out: str | Path, *,
               size: int = 0, per_shard: int = 2000, strict: bool = False, max_pixels: int = MAX_PIXELS,
               seed: int = 0) -> dict:
    """Pack image files (with labels and class names, or None) into ``out``; returns the meta.json written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed)).tolist()
    shards, count, bad = [], 0, []
    bar = progress(range(len(order)), desc=f"pack {out}", min_total=500)

    def one(i):
        try:
            return _encode(paths[i], size, max_pixels)
        except BadImage as e:
            return e
    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        for k, start in enumerate(range(0, len(order), per_shard)):
            chunk = order[start:start + per_shard]
            dest = out / f"shard-{k:05d}"
            if dest.is_dir():         # complete from an earlier, interrupted pack (same files, same seed)
                n = len(datasets.load_from_disk(str(dest)))
                bad += [(paths[i], "skipped in an earlier pack") for i in range(len(chunk) - n)]
            else:
                kept, kept_labels = [], []
                for i, enc in zip(chunk, pool.map(one, chunk)):
                    if isinstance(enc, BadImage):
                        bad.append((paths[i], str(enc)))
                        continue
                    kept.append(enc)
                    kept_labels.append(labels[i] if labels is not None else None)
                if strict and bad:
                    bad_images(bad, len(paths), strict, str(out))
                if not kept:
                    bar.update(len(chunk))
                    continue
                _write_shard(dest, kept, kept_labels if labels is not None else None, classes)
                n = len(kept)
            shards.append(dest.name)
            count += n
            bar.update(len(chunk))
    bar.close()
    if not count:
        raise ImageDataError(f"none of the {len(paths)} images could be packed into {out}")
    bad_images(bad, len(paths), False, str(out))
    meta = {"format": FORMAT, "version": VERSION, "count": count, "skipped": len(paths) - count,
            "classes": classes, "size": size, "seed": seed, "shards": shards}
    atomic_write_json(out / "meta.json", meta)
    return meta


def pack_tree(src: str | Path, out: str | Path, unlabelled: bool = False, **kw) -> dict[str, dict]:
    """An image tree as packed splits: SRC/{train,val|validation|test}/<class>/... -> OUT/{train,val}/, a single
    ImageFolder SRC/<class>/... -> OUT/ (readers split it 80/20), any tree with ``unlabelled`` -> OUT/."""
    src, out = Path(src), Path(out)
    splits = {"": src}
    val = next((src / n for n in ("val", "validation", "test") if (src / n).is_dir()), None)
    if not unlabelled and (src / "train").is_dir() and val is not None:
        splits = {"train": src / "train", val.name: val}
    metas = {}
    for name, folder in splits.items():
        if unlabelled:
            paths, labels, classes = tree_files(folder), None, None
        else:
            paths, labels, classes = folder_files(folder)
        metas[name or "."] = pack_split(paths, labels, classes, out / name if name else out, **kw)
    return metas


def main(argv: list[str] | None = None) -> int:
    """`selfsup pack-images SRC OUT`: the command line of pack_tree."""
    p = argparse.ArgumentParser(prog="selfsup pack-images", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="ImageFolder (SRC/<class>/..., or SRC/train + SRC/val) or, with --unlabelled, any tree")
    p.add_argument("out", help="folder to write (train with task.data.source=shards task.data.path=OUT)")
    p.add_argument("--unlabelled", action="store_true", help="pack every image under SRC, without labels")
    p.add_argument("--size", type=int, default=0, help="shrink images whose short side exceeds this (0: keep bytes)")
    p.add_argument("--per-shard", type=int, default=2000, help="images per shard")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="leave out images with more pixels than this")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable image instead of skipping it")
    p.add_argument("--seed", type=int, default=0, help="seed of the packing order")
    a = p.parse_args(argv)
    if a.per_shard <= 0 or a.size < 0 or a.max_pixels <= 0:
        p.error("--per-shard and --max-pixels must be positive, --size >= 0")
    try:
        metas = pack_tree(a.src, a.out, a.unlabelled, size=a.size, per_shard=a.per_shard, strict=a.strict,
                          max_pixels=a.max_pixels, seed=a.seed)
    except ImageDataError as e:
        print(f"selfsup pack-images: error: {e}", file=sys.stderr)
        return 2
    for split, m in metas.items():
        print(f"{Path(a.out) / split}: {m['count']} images in {len(m['shards'])} shards, {m['skipped']} skipped")
    return 0
