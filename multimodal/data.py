"""Captioned images, shared by `caption` and `clip`: the embedded captioned scenes, COCO captions
(+ Karpathy split), Flickr30k, and any captioned image dataset ``datasets`` loads by name (``source=hf``).

Every source gives ``CaptionSet``s per split: an image set and, per image, its list of reference captions.
Image files are opened as vision.lazy.open_files opens them (``cache``): decoded once into memory when the set fits
``memory_gb``, else decoded on access (in the DataLoader workers during training; only the sampled images at
evaluation), so no caption set needs to fit in memory. Images are read only through ``image(i)`` / ``take(idx)``,
the image-data contract. An image that turns out unreadable on access is replaced by the next readable one (lazy
semantics, warned and counted); in memory it is left out with its captions. Captions are kept as written.

    train, evals = load_splits(cfg.data, size)      # CaptionSet, {"test": CaptionSet, "test_heldout": ...}
    karpathy_split(FILE, ROOT, "test", size, cache="lazy")   # the readers take the file options (cache, memory_gb,
                                                              # max_pixels) as keywords

``source=hf``: ``name`` is a Hub id (downloaded only with ``download=true``), a ``save_to_disk`` folder, or a packaged
builder over files (``parquet``, ``webdataset`` with ``data_files``). Its images are read from the memory-mapped
Arrow table on access (vision.shards.ArrowImageSet), or decoded into memory when they fit ``memory_gb``. The caption
column holds one caption (a string) or several (a list of strings) per image. Splits: the dataset's own
(``train_split``, ``test_split`` or the first of validation/valid/val/test), or the values of a ``split_column``
(datasets that ship one table with a split field, as Flickr30k's usual Hub copy); with no held-out split, a seeded
10 % of the training rows is held out.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from selfsup.subsets import sample_indices
from vision.data import MAX_PIXELS, ImageDataError, ImageSet
from vision.lazy import CACHES, open_files
from vision.scenes import ATTRIBUTES, render, sample_scene

from .captions import HELD_OUT, captions

SCENE_SPLITS = ("train", "val", "test", "test_heldout")


@dataclass
class CaptionDataConfig:
    source: str = "scenes"        # scenes (embedded) | coco (captions JSON) | karpathy (dataset_*.json)
                                  # | flickr30k (.token) | hf (a `datasets` dataset by name; see the module docstring)
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
    cache: str = "auto"           # image files: memory (decode all once) | lazy (decode on access, in the DataLoader
                                  # workers) | auto (memory when N*3*S*S bytes fit memory_gb)
    memory_gb: float = 4.0        # auto: the largest decoded set kept in memory, per process
    max_pixels: int = MAX_PIXELS  # an image with more pixels is skipped (an error with strict), never decoded
    name: str = ""                # hf: Hub id, save_to_disk folder, or builder name (parquet, webdataset, ...)
    data_files: str = ""          # hf with a builder name: its files (e.g. /data/caps/*.parquet)
    download: bool = False        # hf: fetch from the Hub when not in the local datasets cache
    train_split: str = "train"    # hf: the training split (or split_column value)
    test_split: str = ""          # hf: the evaluated split ("": validation/valid/val/test, whichever it has)
    split_column: str = ""        # hf: a column naming each row's split, for datasets shipped as one table
    image_column: str = ""        # hf: "" = the first Image column
    caption_column: str = ""      # hf: "" = the first of caption/captions/sentences/text


@dataclass
class CaptionSet:
    images: object                # an image set (vision.data's contract: ImageSet in memory, FileImageSet lazy)
    refs: list[list[str]]         # references per image
    ids: list[str]
    attributes: dict[str, torch.Tensor] | None = None   # scenes: a label per scene attribute (probe and
                                                        # zero-shot targets), as vision.data.ImageSet has
    labels = None                 # no class labels (the image-data contract's field)

    def __len__(self) -> int:
        return len(self.refs)

    def image(self, index: int) -> torch.Tensor:
        """One image, (3, S, S) uint8."""
        return self.images.image(index)

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        """Several images, (n, 3, S, S) uint8, in the order of ``indices``."""
        return self.images.take(indices)


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
    attributes = {a: torch.tensor([s.label(a) for s in scenes]) for a in ATTRIBUTES}
    return CaptionSet(ImageSet(images, None, []), [captions(s, refs, seed=i) for i, s in enumerate(scenes)],
                      [f"{split}-{i}" for i in range(n)], attributes)


def _load(entries: list[tuple[Path, list[str], str]], size: int, strict: bool, what: str, cache: str = "auto",
          memory_gb: float = 4.0, max_pixels: int = MAX_PIXELS) -> CaptionSet:
    """entries: (image path, captions, id). Drops empty captions and missing images, with counts."""
    if cache not in CACHES:
        raise ImageDataError(f"task.data.cache must be one of {', '.join(CACHES)}, not '{cache}'")
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
    images, ok = open_files([p for p, _, _ in entries], None, [], size, what, cache=cache, memory_gb=memory_gb,
                            strict=strict, max_pixels=max_pixels)
    return CaptionSet(images, [entries[i][1] for i in ok], [entries[i][2] for i in ok])


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ImageDataError(f"annotation file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ImageDataError(f"{path} is not valid JSON: {e}") from None


def karpathy_split(split_file: str | Path, image_root: str | Path, split: str, size: int,
                   strict: bool = False, **files) -> CaptionSet:
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
    return _load(entries, size, strict, f"{split_file} [{split}]", **files)


def coco_captions(annotation_file: str | Path, image_dir: str | Path, size: int, strict: bool = False,
                  **files) -> CaptionSet:
    """COCO captions JSON (captions_train2014.json, the format torchvision's CocoCaptions reads)."""
    data = _read_json(Path(annotation_file))
    if "images" not in data or "annotations" not in data:
        raise ImageDataError(f"{annotation_file} lacks 'images'/'annotations': not a COCO captions file")
    caps: dict[int, list[str]] = {}
    for a in data["annotations"]:
        caps.setdefault(a["image_id"], []).append(a["caption"])
    entries = [(Path(image_dir) / img["file_name"], caps.get(img["id"], []), str(img["id"])) for img in data["images"]]
    return _load(entries, size, strict, str(annotation_file), **files)


def flickr30k(token_file: str | Path, image_dir: str | Path, split: str, size: int, strict: bool = False,
              **files) -> CaptionSet:
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
    return _load([(Path(image_dir) / n, caps[n], n) for n in cut[split]], size, strict, f"{path} [{split}]", **files)


def load_splits(cfg: CaptionDataConfig, size: int) -> tuple[CaptionSet, dict[str, CaptionSet]]:
    """The training set and the evaluated splits of ``cfg.source``: scenes test + test_heldout (unseen colour-shape
    pairs), Karpathy / Flickr30k test, COCO val. ``size`` is the image tower's input size (scenes render at it)."""
    if cfg.source == "scenes":
        return (scene_split("train", cfg.num_train, size, cfg.seed),
                {s: scene_split(s, cfg.num_eval, size, cfg.seed) for s in ("test", "test_heldout")})
    if cfg.source == "hf":
        return hf_caption_splits(cfg, size)
    if not cfg.annotations:
        raise ValueError(f"task.data.source={cfg.source} needs task.data.annotations (and image_root)")
    files = dict(cache=cfg.cache, memory_gb=cfg.memory_gb, max_pixels=cfg.max_pixels)
    if cfg.source == "karpathy":
        return (karpathy_split(cfg.annotations, cfg.image_root, "train", size, cfg.strict, **files),
                {"test": karpathy_split(cfg.annotations, cfg.image_root, "test", size, cfg.strict, **files)})
    if cfg.source == "flickr30k":
        return (flickr30k(cfg.annotations, cfg.image_root, "train", size, cfg.strict, **files),
                {"test": flickr30k(cfg.annotations, cfg.image_root, "test", size, cfg.strict, **files)})
    if cfg.source == "coco":
        if not cfg.val_annotations:
            raise ValueError("task.data.source=coco needs task.data.val_annotations for evaluation")
        return (coco_captions(cfg.annotations, cfg.image_root, size, cfg.strict, **files),
                {"val": coco_captions(cfg.val_annotations, cfg.val_image_root or cfg.image_root, size, cfg.strict,
                                      **files)})
    raise ValueError(f"unknown task.data.source '{cfg.source}'; choose scenes, coco, karpathy, flickr30k or hf")


CAPTION_COLUMNS = ("caption", "captions", "sentences", "text")
HELD_OUT_FRACTION = 0.1     # hf without a held-out split: this seeded share of the training rows is evaluated on


def dataset_name(cfg: CaptionDataConfig) -> str:
    """The name scores carry: the source, or for ``hf`` the dataset itself (and its files, for a builder)."""
    if cfg.source != "hf":
        return f"{cfg.source}-captions"
    return f"{cfg.name}{':' + cfg.data_files if cfg.data_files else ''}-captions"


def hf_caption_splits(cfg: CaptionDataConfig, size: int) -> tuple[CaptionSet, dict[str, CaptionSet]]:
    """The training set and the evaluated split of a captioned ``datasets`` dataset (see the module docstring)."""
    import datasets

    from selfsup.hub import hub_dataset
    from vision.hub import TEST_SPLITS, hf_splits
    if not cfg.name:
        raise ImageDataError("task.data.source=hf needs task.data.name (a Hub id, a save_to_disk folder or a builder "
                             "such as parquet with task.data.data_files)")
    if cfg.split_column:
        kwargs = {"data_files": cfg.data_files} if cfg.data_files else {}
        table = hub_dataset(cfg.name, None, download=cfg.download, **kwargs)
        if isinstance(table, datasets.DatasetDict):
            table = datasets.concatenate_datasets(list(table.values()))
        if cfg.split_column not in table.features:
            raise ImageDataError(f"dataset '{cfg.name}' has no column '{cfg.split_column}' (task.data.split_column); "
                                 f"it has {', '.join(table.features)}")
        values = np.asarray([str(v) for v in table[cfg.split_column]])
        test_split = cfg.test_split or next((s for s in TEST_SPLITS if (values == s).any()), "")
        have = ", ".join(sorted(set(values.tolist()))[:10])
        if not test_split:
            raise ImageDataError(f"dataset '{cfg.name}': no held-out rows ({cfg.split_column} is none of "
                                 f"{', '.join(TEST_SPLITS)}; it has {have}): set task.data.test_split")
        if test_split == cfg.train_split:
            raise ImageDataError(f"task.data.test_split={test_split} is the training split too; choose another")
        pick = {s: np.flatnonzero(values == s) for s in (cfg.train_split, test_split)}
        empty = [s for s, rows in pick.items() if not len(rows)]
        if empty:
            raise ImageDataError(f"dataset '{cfg.name}': no rows with {cfg.split_column}={empty[0]}; it has {have} "
                                 "(task.data.train_split / test_split)")
        train_t, test_t = table.select(pick[cfg.train_split]), table.select(pick[test_split])
    else:
        train_t, test_t, test_split = hf_splits(cfg.name, cfg.train_split, cfg.test_split, cfg.download,
                                                cfg.data_files)
        test_split = test_split or "test"
        if test_t is None:
            held = sample_indices(len(train_t), max(1, int(len(train_t) * HELD_OUT_FRACTION)), cfg.seed).numpy()
            train_t, test_t = train_t.select(np.setdiff1d(np.arange(len(train_t)), held)), train_t.select(held)
    image_col, caption_col = caption_columns(train_t, cfg)
    return (hf_caption_set(train_t, image_col, caption_col, cfg, f"{cfg.name}[{cfg.train_split}]", size),
            {test_split: hf_caption_set(test_t, image_col, caption_col, cfg, f"{cfg.name}[{test_split}]", size)})


def caption_columns(table, cfg: CaptionDataConfig) -> tuple[str, str]:
    """The image column (``image_column``, else the first Image feature) and the caption column."""
    import datasets
    features = table.features
    image_col = cfg.image_column or next((c for c, f in features.items() if isinstance(f, datasets.Image)), "")
    caption_col = cfg.caption_column or next((c for c in CAPTION_COLUMNS if c in features), "")
    for col, kind in ((image_col, "image"), (caption_col, "caption")):
        if not col or col not in features:
            what = f"column '{col}'" if col else f"{kind} column"
            raise ImageDataError(f"dataset '{cfg.name}' has no {what} (task.data.{kind}_column); it has "
                                 f"{', '.join(features)}")
    return image_col, caption_col


def hf_caption_set(table, image_col: str, caption_col: str, cfg: CaptionDataConfig, what: str,
                   size: int) -> CaptionSet:
    """One split: the rows with at least one non-empty caption (the others left out, counted)."""
    from vision.lazy import cached
    from vision.shards import ArrowImageSet
    refs = [[c.strip() for c in _captions(cell, what, caption_col) if c.strip()] for cell in table[caption_col]]
    keep = [i for i, r in enumerate(refs) if r]
    if len(keep) < len(refs):
        warnings.warn(f"{what}: skipped {len(refs) - len(keep)} images with no non-empty caption")
        table = table.select(keep)
    if not keep:
        raise ImageDataError(f"{what}: no captioned images")
    images = cached(ArrowImageSet(table, image_col, None, [], size, what, cfg.strict, cfg.max_pixels), cfg.cache,
                    cfg.memory_gb)
    return CaptionSet(images, [refs[i] for i in keep], [f"{what}-{i}" for i in keep])


def _captions(cell, what: str, column: str) -> list[str]:
    """A caption cell as a list of strings: a string, a list of strings, or of dicts holding one under raw / caption /
    text (Karpathy-style sentences); empty (None) cells and entries count as no caption."""
    out = []
    for c in cell if isinstance(cell, list) else [cell]:
        if isinstance(c, dict):
            c = next((c[k] for k in ("raw", "caption", "text") if isinstance(c.get(k), str)), None)
        if c is None:
            continue
        if not isinstance(c, str):
            raise ImageDataError(f"{what}: column '{column}' holds {type(c).__name__} captions; a caption cell is a "
                                 "string, a list of strings, or a list of dicts with raw/caption/text "
                                 "(task.data.caption_column)")
        out.append(c)
    return out


def caption_example(data: CaptionSet, tokenize, index: int, g: torch.Generator,
                    image: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One training pair: an image (or a view of it) and one of its references drawn with ``g``, tokenized by
    ``tokenize(texts) -> {"input_ids", "attention_mask"}`` (1, T), padded to a fixed length so that batches stack."""
    refs = data.refs[index]
    text = refs[int(torch.randint(len(refs), (1,), generator=g))]
    enc = tokenize([text])
    return {"images": data.image(index) if image is None else image, "input_ids": enc["input_ids"][0],
            "attention_mask": enc["attention_mask"][0]}
