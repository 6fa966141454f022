"""Datasets by name through Hugging Face ``datasets``, under the project's offline rule: nothing is downloaded unless
the caller says ``download=True`` (a user's ``task.data.download=true``).

``hub_dataset`` serves every modality (images, text, captions): a Hub id (``"cifar10"``, ``"user/name"``), a packaged
builder over local or remote files (``"parquet"``, ``"webdataset"``, ``"imagefolder"`` with ``data_files=``), or a
folder written by ``Dataset.save_to_disk``. Without ``download``, the Hub is switched off for the call: a dataset
already in the local ``datasets`` cache or on disk loads; anything else is a ``DatasetUnavailable`` error that says
what is missing and how to fetch it once.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from pathlib import Path

from .errors import UserError


class DatasetUnavailable(UserError, ValueError):
    """A named dataset that is not here (and may not or cannot be fetched), or a split it does not have."""


@contextmanager
def hub_offline():
    """Refuse every request to the Hub for the duration (datasets and huggingface_hub read these flags per call)."""
    import datasets.config
    import huggingface_hub.constants as hub
    saved = datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE = saved


def _saved_folder(path: Path) -> bool:
    return path.is_dir() and any((path / f).is_file() for f in ("dataset_info.json", "dataset_dict.json", "state.json"))


def _pick_split(ds, name: str, split: str | None):
    import datasets
    if not isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)) or split is None:
        return ds
    if split not in ds:
        raise DatasetUnavailable(f"dataset '{name}' has no split '{split}'; it has {', '.join(ds)}")
    return ds[split]


def iterable(table):
    """A map-style ``datasets.Dataset`` as a stream of up to 64 contiguous shards (read in order unless shuffled):
    enough for a shuffled stream to reorder its shards each pass and for ranks to take whole shards."""
    return table.to_iterable_dataset(num_shards=max(1, min(len(table), 64)))


def hub_dataset(name: str, split: str | None = None, streaming: bool = False, download: bool = False,
                download_key: str = "task.data.download", **kwargs):
    """``datasets.load_dataset(name, split=split, streaming=streaming, **kwargs)`` (or ``load_from_disk`` for a saved
    folder), downloading only when ``download`` (the setting ``download_key``, named in the offline error). Returns
    a Dataset / IterableDataset (a *Dict without ``split``)."""
    import datasets
    path = Path(name).expanduser()
    if _saved_folder(path):
        ds = _pick_split(datasets.load_from_disk(str(path)), name, split)
        return iterable(ds) if streaming and isinstance(ds, datasets.Dataset) else ds
    try:
        with nullcontext() if download else hub_offline():
            ds = datasets.load_dataset(name, split=split, streaming=streaming, **kwargs)
    except ValueError as e:
        if "split" not in str(e):
            raise
        raise DatasetUnavailable(f"dataset '{name}': {e}") from None
    except (ConnectionError, FileNotFoundError) as e:
        cache = datasets.config.HF_DATASETS_CACHE
        if download:
            raise DatasetUnavailable(f"could not load dataset '{name}' ({type(e).__name__}: {e}); check the name "
                                     "and that this machine reaches the Hugging Face Hub") from None
        raise DatasetUnavailable(
            f"dataset '{name}' is neither a local folder nor in the datasets cache ({cache}), and downloading is off "
            f"({type(e).__name__}: {e}). Set {download_key}=true to fetch it, or run `python -c \"import datasets; "
            f"datasets.load_dataset('{name}')\"` once on a machine that reaches the Hub and copy {cache} here "
            "(HF_DATASETS_CACHE points elsewhere)") from None
    return ds
