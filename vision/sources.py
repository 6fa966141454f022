"""Which images a vision task trains and evaluates on, chosen by ``task.data``.

Image files (imagefolder, folder), packed shards (``shards``, vision.shards) and ``datasets`` tables (``hf``) are
decoded into memory when they fit ``memory_gb`` and on access otherwise (``cache``, vision.lazy; shards and tables
are memory-mapped); a ``datasets`` dataset can also be streamed without a local copy (``streaming``,
vision.stream); array formats (cifar*, stl10, digits) and rendered scenes live in memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import data as D
from .lazy import CACHES, cached, open_files
from .scenes import ATTRIBUTES, render_scenes

SOURCES = ("scenes", "digits", "imagefolder", "folder", "cifar10", "cifar100", "stl10", "shards", "hf")


@dataclass
class ImageDataConfig:
    source: str = "scenes"    # scenes | digits | imagefolder | folder (unlabelled) | cifar10 | cifar100 | stl10
                              # | shards (`selfsup pack-images`) | hf (a `datasets` dataset by name)
    path: str = ""            # imagefolder: root with train/ and val/ (else split 80/20); folder: any tree of images;
                              # cifar*/stl10: the extracted folder or where to download it; shards: the packed folder
    name: str = ""            # hf: Hub id (e.g. uoft-cs/cifar10), a save_to_disk folder, or a builder (parquet, ...)
    data_files: str = ""      # hf with a builder name: its files, e.g. /data/shards/*.tar for name=webdataset
    download: bool = False    # cifar*/stl10/hf: fetch what is missing (nothing is downloaded otherwise)
    train_split: str = "train"  # hf: the training split
    test_split: str = ""      # hf: the held-out split ("": validation/valid/val/test, whichever it has, else 80/20)
    image_column: str = ""    # hf: "" = the first Image column
    label_column: str = ""    # hf: "" = label/labels/fine_label/cls or the first ClassLabel column (none: unlabelled)
    num_train: int = 20000    # scenes: images rendered for training (pretraining and probe training)
    num_test: int = 2000      # scenes: held-out images for probe testing
    seed: int = 0             # scenes/digits: which scenes or split (fixed across training seeds)
    label: str = "shape"      # scenes: the attribute probes predict (shape, colour, size, count, background)
    strict: bool = False      # an unreadable image is an error instead of being skipped (or replaced) and counted
    store_size: int = 0       # size images are decoded to; 0: img_size (img_size/0.875 for image files)
    cache: str = "auto"       # files, shards, hf: memory (decode all once) | lazy (decode per sample in the
                              # DataLoader workers) | auto (memory when N*3*S*S bytes fit memory_gb)
    memory_gb: float = 4.0    # auto: the largest decoded set kept in memory, per process
    max_pixels: int = D.MAX_PIXELS   # an image with more pixels is skipped (an error with strict), never decoded
    streaming: bool = False   # hf: stream the training split record by record, nothing stored (vision.stream);
                              # from the Hub it needs download=true (it reads over the network)
    shuffle_buffer: int = 10_000   # streaming: encoded images in the shuffle buffer (RAM: x their mean size)
    stream_sample: int = 10_000    # streaming: images of each split read into memory for evaluation (probes, loss)


def dataset_name(cfg: ImageDataConfig) -> str:
    """How scores name the data: scenes-<label>, the folder's or dataset's last name, else the source."""
    if cfg.source == "scenes":
        return f"scenes-{cfg.label}"
    return Path(cfg.name if cfg.source == "hf" else cfg.path).name or cfg.source


def _check(cfg: ImageDataConfig) -> None:
    if cfg.source not in SOURCES:
        raise D.ImageDataError(f"unknown task.data.source '{cfg.source}'; choose one of {', '.join(SOURCES)}")
    if cfg.source in ("imagefolder", "folder", "shards") and not cfg.path:
        raise D.ImageDataError(f"task.data.source={cfg.source} needs task.data.path")
    if cfg.source in ("cifar10", "cifar100", "stl10") and not (cfg.path or cfg.download):
        raise D.ImageDataError(f"task.data.source={cfg.source} needs task.data.path (the extracted files) or "
                               "task.data.download=true")
    if cfg.source == "hf" and not cfg.name:
        raise D.ImageDataError("task.data.source=hf needs task.data.name (a datasets name, e.g. uoft-cs/cifar10)")
    if cfg.streaming and cfg.source != "hf":
        raise D.ImageDataError(f"task.data.streaming=true streams a datasets dataset (task.data.source=hf), not "
                               f"source={cfg.source}; local image files and packed shards need no streaming: "
                               "task.data.cache=lazy decodes each image when used, whatever the set's size")
    if cfg.streaming and (cfg.shuffle_buffer <= 0 or cfg.stream_sample <= 0):
        raise D.ImageDataError("task.data.shuffle_buffer and stream_sample must be positive")
    if cfg.cache not in CACHES:
        raise D.ImageDataError(f"task.data.cache must be one of {', '.join(CACHES)}, not '{cfg.cache}'")
    if cfg.max_pixels <= 0 or cfg.memory_gb < 0 or cfg.store_size < 0:
        raise D.ImageDataError("task.data.max_pixels must be positive, memory_gb and store_size >= 0")


def load(cfg: ImageDataConfig, img_size: int) -> tuple:
    """(train, test) image sets (see vision.data for their contract); test is None for unlabelled data."""
    _check(cfg)
    size = cfg.store_size or img_size
    if cfg.source == "scenes":
        return _scenes(cfg, size)
    if cfg.source == "digits":
        return _split(D.digits(size), cfg.seed)
    if cfg.source in ("cifar10", "cifar100", "stl10"):
        from .hub import torchvision_folder
        root = torchvision_folder(cfg.source, cfg.path, cfg.download)
        if cfg.source == "stl10":
            return D.stl10(root, "train", size), D.stl10(root, "test", size)
        hundred = cfg.source == "cifar100"
        return D.cifar(root, "train", size, hundred), D.cifar(root, "test", size, hundred)
    files_size = cfg.store_size or int(img_size / 0.875)
    if cfg.source == "hf":
        return _hf_stream(cfg, files_size) if cfg.streaming else _hf(cfg, files_size)
    if cfg.source == "shards":
        return _shards(cfg, files_size)
    opts = dict(cache=cfg.cache, memory_gb=cfg.memory_gb, strict=cfg.strict, max_pixels=cfg.max_pixels)
    if cfg.source == "folder":
        return open_files(D.tree_files(cfg.path), None, [], files_size, cfg.path, **opts)[0], None
    root = Path(cfg.path)
    val = next((root / n for n in ("val", "validation", "test") if (root / n).is_dir()), None)
    folders = [root / "train", val] if (root / "train").is_dir() and val is not None else [root]
    sets = [open_files(*D.folder_files(f), files_size, str(f), **opts)[0] for f in folders]
    return (sets[0], sets[1]) if len(sets) == 2 else _split(sets[0], cfg.seed)


def _scenes(cfg: ImageDataConfig, size: int):
    if cfg.label not in ATTRIBUTES:
        raise D.ImageDataError(f"unknown task.data.label '{cfg.label}'; choose one of {', '.join(ATTRIBUTES)}")
    if cfg.num_train <= 0 or cfg.num_test <= 0:
        raise D.ImageDataError("task.data.num_train and num_test must be positive")
    sets = []
    for n, seed in ((cfg.num_train, cfg.seed), (cfg.num_test, cfg.seed + 7_919_000)):
        r = render_scenes(n, size, seed)
        sets.append(D.ImageSet(r.images, r.labels(cfg.label), [], 0, {a: r.labels(a) for a in ATTRIBUTES}))
    return sets[0], sets[1]


def _shards(cfg: ImageDataConfig, size: int):
    from .shards import is_packed, shard_set
    root = Path(cfg.path)
    opts = dict(strict=cfg.strict, max_pixels=cfg.max_pixels)
    val = next((root / n for n in ("val", "validation", "test") if is_packed(root / n)), None)
    if is_packed(root / "train") and val is not None:
        return tuple(cached(shard_set(f, size, **opts), cfg.cache, cfg.memory_gb) for f in (root / "train", val))
    if not is_packed(root):
        raise D.ImageDataError(f"{root} holds no packed images (no meta.json there, nor train/ and val/ with one): "
                               "pack an image tree with `selfsup pack-images SRC OUT`")
    full = cached(shard_set(root, size, **opts), cfg.cache, cfg.memory_gb)
    return (full, None) if full.labels is None else _split(full, cfg.seed)


def _hf(cfg: ImageDataConfig, size: int):
    from .hub import class_labels, hf_splits, image_columns
    from .shards import ArrowImageSet
    train_t, test_t, _ = hf_splits(cfg.name, cfg.train_split, cfg.test_split, cfg.download, cfg.data_files)
    image_col, label_col = image_columns(train_t, cfg.name, cfg.image_column, cfg.label_column)
    classes = None
    sets = []
    for table, split in ((train_t, cfg.train_split), (test_t, cfg.test_split or "test")):
        if table is None:
            continue
        if label_col is not None:
            table, classes = class_labels(table, label_col, cfg.name, split, classes)
        sets.append(cached(ArrowImageSet(table, image_col, label_col, classes or [], size, f"{cfg.name}[{split}]",
                                         cfg.strict, cfg.max_pixels), cfg.cache, cfg.memory_gb))
    if len(sets) == 2:
        return sets[0], sets[1]
    return (sets[0], None) if label_col is None else _split(sets[0], cfg.seed)


def _hf_stream(cfg: ImageDataConfig, size: int):
    from .hub import hf_splits, image_columns, label_kind
    from .stream import ImageStream, StreamedImages
    train_t, test_t, test_name = hf_splits(cfg.name, cfg.train_split, cfg.test_split, cfg.download, cfg.data_files,
                                           streaming=True)
    # a builder that infers its columns from the first records (webdataset) gives no features until asked
    train_t, test_t = (t if t is None or t.features is not None else t._resolve_features() for t in (train_t, test_t))
    image_col, label_col = image_columns(train_t, cfg.name, cfg.image_column, cfg.label_column)
    classes: list[str] = []
    if label_col is not None:
        feature = train_t.features[label_col]
        kind = label_kind(feature, cfg.name, label_col)
        if kind == "strings":
            raise D.ImageDataError(f"dataset '{cfg.name}': a streamed label column must hold integers or a ClassLabel"
                                   f", not strings ('{label_col}'); naming string classes needs a pass over the "
                                   "whole split: load it without task.data.streaming")
        if kind == "classes":
            classes = list(feature.names)
    opts = dict(strict=cfg.strict, max_pixels=cfg.max_pixels, buffer=cfg.shuffle_buffer)
    train = StreamedImages(ImageStream(train_t, image_col, label_col, classes, size, f"{cfg.name}[{cfg.train_split}]",
                                       **opts), cfg.stream_sample)
    if test_t is None:
        return train, None
    return train, StreamedImages(ImageStream(test_t, image_col, label_col, classes, size, f"{cfg.name}[{test_name}]",
                                             **opts), cfg.stream_sample)


def _split(full, seed: int):
    """80/20 train/test split of a labelled set (any kind: in memory or lazy)."""
    train_idx, test_idx = D.split_indices(len(full), 0.2, seed)
    train, test = full.subset(train_idx), full.subset(test_idx)
    train.skipped = full.skipped
    return train, test
