"""Which images a vision task trains and evaluates on, chosen by ``task.data``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import data as D
from .scenes import ATTRIBUTES, render_scenes

SOURCES = ("scenes", "digits", "imagefolder", "cifar10", "cifar100", "folder")


@dataclass
class ImageDataConfig:
    source: str = "scenes"    # scenes | digits | imagefolder | cifar10 | cifar100 | folder (unlabelled)
    path: str = ""            # imagefolder: root with train/ and val/ (else split 80/20); cifar*: the batches folder;
                              # folder: any tree of images
    num_train: int = 20000    # scenes: images rendered for training (pretraining and probe training)
    num_test: int = 2000      # scenes: held-out images for probe testing
    seed: int = 0             # scenes/digits: which scenes or split (fixed across training seeds)
    label: str = "shape"      # scenes: the attribute probes predict (shape, colour, size, count, background)
    strict: bool = False      # an unreadable image is an error instead of being skipped and counted
    store_size: int = 0       # size images are decoded to; 0: img_size (img_size/0.875 for image files)


def load(cfg: ImageDataConfig, img_size: int) -> tuple[D.ImageSet, D.ImageSet | None]:
    """(train, test) image sets; test is None for unlabelled folders."""
    if cfg.source not in SOURCES:
        raise D.ImageDataError(f"unknown task.data.source '{cfg.source}'; choose one of {', '.join(SOURCES)}")
    if cfg.source in ("imagefolder", "cifar10", "cifar100", "folder") and not cfg.path:
        raise D.ImageDataError(f"task.data.source={cfg.source} needs task.data.path")
    size = cfg.store_size or img_size
    if cfg.source == "scenes":
        if cfg.label not in ATTRIBUTES:
            raise D.ImageDataError(f"unknown task.data.label '{cfg.label}'; choose one of {', '.join(ATTRIBUTES)}")
        if cfg.num_train <= 0 or cfg.num_test <= 0:
            raise D.ImageDataError("task.data.num_train and num_test must be positive")
        sets = []
        for n, seed in ((cfg.num_train, cfg.seed), (cfg.num_test, cfg.seed + 7_919_000)):
            r = render_scenes(n, size, seed)
            sets.append(D.ImageSet(r.images, r.labels(cfg.label), [], 0, {a: r.labels(a) for a in ATTRIBUTES}))
        return sets[0], sets[1]
    if cfg.source == "digits":
        full = D.digits(size)
        return _split(full, cfg.seed)
    if cfg.source in ("cifar10", "cifar100"):
        hundred = cfg.source == "cifar100"
        return D.cifar(cfg.path, "train", size, hundred), D.cifar(cfg.path, "test", size, hundred)
    files_size = cfg.store_size or int(img_size / 0.875)
    if cfg.source == "folder":
        return D.unlabelled_folder(cfg.path, files_size, cfg.strict), None
    root = Path(cfg.path)
    val = next((root / n for n in ("val", "validation", "test") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and val is not None:
        return D.image_folder(root / "train", files_size, cfg.strict), D.image_folder(val, files_size, cfg.strict)
    return _split(D.image_folder(root, files_size, cfg.strict), cfg.seed)


def _split(full: D.ImageSet, seed: int) -> tuple[D.ImageSet, D.ImageSet]:
    train_idx, test_idx = D.split_indices(len(full), 0.2, seed)
    part = lambda idx: D.ImageSet(full.images[idx], full.labels[idx], full.classes, 0)  # noqa: E731
    train = part(train_idx)
    train.skipped = full.skipped
    return train, part(test_idx)
