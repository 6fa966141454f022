"""Image datasets by name: torchvision's CIFAR-10/100 and STL-10, and any image dataset ``datasets`` can load
(the Hugging Face Hub, or local parquet / webdataset tars / Arrow files through its packaged builders).

Nothing is downloaded unless ``task.data.download=true``. torchvision only fetches the files; we read them with our
own readers (vision.data: CIFAR's pickles without executing code, STL-10's raw binaries). ``datasets`` stores what it
downloads as memory-mapped Arrow files, read on demand by vision.shards.ArrowImageSet like our own packed shards.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from selfsup.hub import DatasetUnavailable, hub_dataset, iterable

from .data import ImageDataError

# source -> (torchvision class, folder inside the root, a file that proves it is there, download size)
TORCHVISION = {"cifar10": ("CIFAR10", "cifar-10-batches-py", "batches.meta", "163 MB"),
               "cifar100": ("CIFAR100", "cifar-100-python", "meta", "161 MB"),
               "stl10": ("STL10", "stl10_binary", "class_names.txt", "2.6 GB")}
DEFAULT_ROOT = "~/.cache/selfsup/datasets"   # where downloads go when task.data.path is "" ($SELFSUP_DATA overrides)


def torchvision_folder(source: str, path: str, download: bool) -> Path:
    """The folder holding ``source``'s files: ``path`` itself or ``path/<its folder>``; fetched by torchvision into
    ``path`` (default $SELFSUP_DATA or ~/.cache/selfsup/datasets) only when ``download``."""
    cls_name, folder, marker, size = TORCHVISION[source]
    root = Path(path or os.environ.get("SELFSUP_DATA", DEFAULT_ROOT)).expanduser()
    for candidate in (root, root / folder):
        if (candidate / marker).is_file():
            return candidate
    if not download:
        raise ImageDataError(
            f"{source} is not in {root} (no {marker} there or in {root / folder}). Set task.data.download=true to "
            f"fetch it with torchvision ({size}) into {root}, or point task.data.path at the extracted {folder} folder")
    import torchvision.datasets
    args = {"split": "train"} if source == "stl10" else {"train": True}
    try:
        getattr(torchvision.datasets, cls_name)(str(root), download=True, **args)
    except (OSError, RuntimeError) as e:      # no network: URLError (an OSError); bad archive: RuntimeError
        raise ImageDataError(f"could not download {source} into {root} ({type(e).__name__}: {e}); on a machine "
                             "without internet, fetch it elsewhere and set task.data.path to it") from None
    if not (root / folder / marker).is_file():
        raise ImageDataError(f"torchvision's {cls_name} download left no {folder}/{marker} in {root}")
    return root / folder


TEST_SPLITS = ("validation", "valid", "val", "test")


def hf_splits(name: str, train_split: str, test_split: str, download: bool, data_files: str = "",
              streaming: bool = False):
    """(train table, test table or None, the test split's name or "") of a ``datasets`` dataset (IterableDatasets
    with ``streaming``); test: ``test_split``, else the first of validation/valid/val/test it has, else None (the
    caller splits train, or evaluates a stream on a sample of its training split)."""
    import datasets
    kwargs = {"data_files": data_files} if data_files else {}
    tables = hub_dataset(name, None, streaming=streaming, download=download, **kwargs)
    if isinstance(tables, (datasets.Dataset, datasets.IterableDataset)):
        if test_split:
            raise ImageDataError(f"task.data.test_split={test_split}: dataset '{name}' has a single split")
        return tables, None, ""          # (streamed: hub_dataset already made a saved Dataset a stream)
    if isinstance(tables, datasets.DatasetDict) and streaming:     # a save_to_disk folder: iterate its tables
        tables = datasets.IterableDatasetDict({k: iterable(v) for k, v in tables.items()})
    if not isinstance(tables, (datasets.IterableDatasetDict if streaming else datasets.DatasetDict)):
        raise ImageDataError(f"dataset '{name}' loaded as a {type(tables).__name__}; expected a "
                             f"{'streamed' if streaming else 'map-style'} dataset")
    if train_split not in tables:
        raise DatasetUnavailable(f"dataset '{name}' has no split '{train_split}' (task.data.train_split); "
                                 f"it has {', '.join(tables)}")
    if test_split and test_split not in tables:
        raise DatasetUnavailable(f"dataset '{name}' has no split '{test_split}' (task.data.test_split); "
                                 f"it has {', '.join(tables)}")
    test = test_split or next((s for s in TEST_SPLITS if s in tables and s != train_split), None)
    return tables[train_split], (tables[test] if test else None), test or ""


def image_columns(table, name: str, image_column: str, label_column: str) -> tuple[str, str | None]:
    """The image column (``image_column``, else the first Image feature) and the label column (``label_column``,
    else label/labels/fine_label/cls (WebDataset's name for the class)/the first ClassLabel; None when there is
    none)."""
    import datasets
    features = table.features
    if image_column:
        if image_column not in features:
            raise ImageDataError(f"dataset '{name}' has no column '{image_column}' (task.data.image_column); "
                                 f"it has {', '.join(features)}")
    else:
        image_column = next((c for c, f in features.items() if isinstance(f, datasets.Image)), "")
        if not image_column:
            raise ImageDataError(f"dataset '{name}' has no image column (columns: {', '.join(features)}); "
                                 "set task.data.image_column")
    if label_column:
        if label_column not in features:
            raise ImageDataError(f"dataset '{name}' has no column '{label_column}' (task.data.label_column); "
                                 f"it has {', '.join(features)}")
        return image_column, label_column
    for c in ("label", "labels", "fine_label", "cls"):
        if c in features:
            return image_column, c
    return image_column, next((c for c, f in features.items() if isinstance(f, datasets.ClassLabel)), None)


def label_kind(feature, name: str, column: str) -> str:
    """What a label column holds: "classes" (a ClassLabel), "strings" or "integers"; anything else is an error
    naming the column."""
    import datasets
    if isinstance(feature, datasets.ClassLabel):
        return "classes"
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        return "strings"
    if isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint")):
        return "integers"
    raise ImageDataError(f"dataset '{name}': column '{column}' ({feature}) is not a label; set "
                         "task.data.label_column")


def class_labels(table, column: str, name: str, split: str, classes: list[str] | None = None):
    """The table with ``column`` as integer labels 0..C-1, and the class names: ``classes`` when given (a test split
    takes its train split's), else the ClassLabel names, the sorted distinct strings of a text column, or '0'..'C-1'."""
    import datasets
    feature = table.features[column]
    kind = label_kind(feature, name, column)
    if kind == "classes":
        classes = classes or list(feature.names)
    elif kind == "strings":
        classes = classes or sorted({str(v) for v in table[column]})
        unknown = sorted({str(v) for v in table[column]} - set(classes))
        if unknown:
            raise ImageDataError(f"dataset '{name}' split '{split}': column '{column}' has classes the training "
                                 f"split lacks: {', '.join(unknown[:5])}")
        table = table.cast_column(column, datasets.ClassLabel(names=classes))
    y = np.asarray(table.with_format("numpy")[column])
    if classes is None:
        classes = [str(i) for i in range(int(y.max()) + 1 if len(y) else 0)]
    if len(y) and (y.min() < 0 or y.max() >= len(classes)):
        raise ImageDataError(f"dataset '{name}' split '{split}': column '{column}' holds labels outside 0.."
                             f"{len(classes) - 1} (e.g. {int(y[(y < 0) | (y >= len(classes))][0])}; -1 marks an "
                             "unlabelled split: choose another with task.data.test_split)")
    return table, classes
