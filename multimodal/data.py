"""Captioned images: the embedded captioned scenes, COCO captions (+ Karpathy split) and Flickr30k.

Every source gives ``CaptionSet``s per split: uint8 images (N, 3, S, S) and, per image, its list of
reference captions. Images are decoded once (vision.data), captions kept as written.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vision.data import ImageDataError, decode_files
from vision.scenes import render, sample_scene

from .captions import HELD_OUT, captions

SCENE_SPLITS = ("train", "val", "test", "test_heldout")


@dataclass
class CaptionSet:
    images: torch.Tensor          # (N, 3, S, S) uint8
    refs: list[list[str]]         # references per image
    ids: list[str]

    def __len__(self) -> int:
        return len(self.refs)


def scene_split(split: str, n: int, size: int, seed: int = 0, refs: int = 5) -> CaptionSet:
    """Rendered scenes with grammar captions. train/val/test never contain a HELD_OUT colour-shape pair;
    test_heldout contains only such pairs (compositional generalisation)."""
    if split not in SCENE_SPLITS:
        raise ValueError(f"unknown split '{split}'; choose one of {', '.join(SCENE_SPLITS)}")
    offset = {"train": 0, "val": 1, "test": 2, "test_heldout": 3}[split]
    rng = np.random.default_rng([seed, offset])
    restrict = {"only": HELD_OUT} if split == "test_heldout" else {"exclude": HELD_OUT}
    scenes = [sample_scene(rng, **restrict) for _ in range(n)]
    images = torch.stack([torch.from_numpy(render(s, size)).permute(2, 0, 1) for s in scenes])
    return CaptionSet(images, [captions(s, refs, seed=i) for i, s in enumerate(scenes)],
                      [f"{split}-{i}" for i in range(n)])


def _load(entries: list[tuple[Path, list[str], str]], size: int, strict: bool, what: str) -> CaptionSet:
    """entries: (image path, captions, id). Drops empty captions and missing images, with counts."""
    empty = sum(1 for _, caps, _ in entries for c in caps if not c.strip())
    if empty:
        warnings.warn(f"{what}: skipped {empty} empty captions")
    entries = [(p, [c.strip() for c in caps if c.strip()], i) for p, caps, i in entries]
    no_caption = [i for _, caps, i in entries if not caps]
    entries = [e for e in entries if e[1]]
    missing = [p for p, _, _ in entries if not p.is_file()]
    if missing:
        msg = (f"{what}: {len(missing)} of {len(entries)} referenced images are missing, e.g. "
               f"{', '.join(str(m) for m in missing[:3])} (check the image root)")
        if strict or len(missing) == len(entries):
            raise ImageDataError(msg)
        warnings.warn(msg + "; skipped")
        entries = [e for e in entries if e[0].is_file()]
    if no_caption:
        warnings.warn(f"{what}: skipped {len(no_caption)} images with no non-empty caption")
    if not entries:
        raise ImageDataError(f"{what}: no captioned images")
    images, ok = decode_files([p for p, _, _ in entries], size, strict, what)
    return CaptionSet(images, [entries[i][1] for i in ok], [entries[i][2] for i in ok])


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ImageDataError(f"annotation file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ImageDataError(f"{path} is not valid JSON: {e}") from None


def karpathy_split(split_file: str | Path, image_root: str | Path, split: str, size: int,
                   strict: bool = False) -> CaptionSet:
    """Karpathy's dataset_coco.json / dataset_flickr30k.json: images with filepath, filename, split and sentences.
    'restval' counts as train, as everyone does."""
    data = _read_json(Path(split_file))
    names = {"train": {"train", "restval"}, "val": {"val"}, "test": {"test"}}
    if split not in names:
        raise ValueError(f"unknown split '{split}' for a Karpathy split file; choose train, val or test")
    found = {img.get("split") for img in data.get("images", [])}
    if not found:
        raise ImageDataError(f"{split_file} has no images "
                             "(expected Karpathy's format: images[].split/filename/sentences)")
    entries = [(Path(image_root) / img.get("filepath", "") / img["filename"], [s["raw"] for s in img["sentences"]],
                str(img.get("cocoid", img.get("imgid", img["filename"]))))
               for img in data["images"] if img["split"] in names[split]]
    return _load(entries, size, strict, f"{split_file} [{split}]")


def coco_captions(annotation_file: str | Path, image_dir: str | Path, size: int, strict: bool = False) -> CaptionSet:
    """COCO captions JSON (captions_train2014.json, the format torchvision's CocoCaptions reads)."""
    data = _read_json(Path(annotation_file))
    if "images" not in data or "annotations" not in data:
        raise ImageDataError(f"{annotation_file} lacks 'images'/'annotations': not a COCO captions file")
    caps: dict[int, list[str]] = {}
    for a in data["annotations"]:
        caps.setdefault(a["image_id"], []).append(a["caption"])
    entries = [(Path(image_dir) / img["file_name"], caps.get(img["id"], []), str(img["id"])) for img in data["images"]]
    return _load(entries, size, strict, str(annotation_file))


def flickr30k(token_file: str | Path, image_dir: str | Path, split: str, size: int, strict: bool = False) -> CaptionSet:
    """Flickr30k's results_20130124.token (`NAME.jpg#k<TAB>caption`). Without Karpathy's split file, the
    images are split by sorted name: the last 1,000 test, the 1,000 before val, the rest train."""
    path = Path(token_file)
    if not path.is_file():
        raise ImageDataError(f"caption file not found: {path}")
    caps: dict[str, list[str]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        key, _, caption = line.partition("\t")
        if "#" not in key:
            raise ImageDataError(f"{path}:{n}: expected 'NAME.jpg#k<TAB>caption', got {line[:60]!r}")
        caps.setdefault(key.split("#")[0], []).append(caption)
    names = sorted(caps)
    cut = {"train": names[:-2000], "val": names[-2000:-1000], "test": names[-1000:]}
    if split not in cut:
        raise ValueError(f"unknown split '{split}' for Flickr30k; choose train, val or test")
    if len(names) < 3000:   # small copies (and tests): the same proportions
        k = max(1, len(names) // 10)
        cut = {"train": names[:-2 * k], "val": names[-2 * k:-k], "test": names[-k:]}
    return _load([(Path(image_dir) / n, caps[n], n) for n in cut[split]], size, strict, f"{path} [{split}]")
