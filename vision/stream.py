"""Image datasets streamed without a local copy: ``task.data.source=hf`` with ``task.data.streaming=true``.

For sets too large to download first -- an ImageNet-size Hub dataset, or parquet / webdataset shards on object
storage read through fsspec (``task.data.name=webdataset task.data.data_files=s3://bucket/train-{0000..1023}.tar``)
-- ``datasets`` streams the training split record by record and nothing is written to disk. Without streaming,
``datasets`` downloads the whole split once and vision.shards reads it memory-mapped (exact global shuffle).

Order. Each pass over the split is ``IterableDataset.shuffle(seed=trainer.seed,
buffer_size=task.data.shuffle_buffer)`` with ``set_epoch(pass)``: the shard order is reshuffled every pass, then
records are drawn at random from a buffer of encoded images (RAM: at least the buffer times the mean encoded size,
>1.1 GB for 10,000 ImageNet JPEGs, and up to a few times that while ``datasets`` refills it). That is an approximate
shuffle, not the global permutation of the map-style path (selfsup.data); sets stored sorted by class need many
shards or a large buffer. With several ranks each streams its own part
(``datasets.distributed.split_dataset_by_node``: whole shards per rank when their number divides by the ranks, else
every rank reads all and keeps every world-th record).

Throughput. One reader thread per rank pulls records; a pool of ``DECODE_THREADS`` threads decodes and augments
each micro-batch (PIL and torch release the GIL), up to three micro-batches ahead of the step; the reader stops
when training stops. An image's augmentation comes from a generator seeded by (trainer seed, its position in the
stream), as on the map-style path. ``datasets`` pauses 5 s at the end of each shuffled pass while its reader
threads shut down (``datasets.config.SLEEP_TIME_ON_THREADS_SHUTDOWN``, a pyarrow workaround): nothing on a real
pass, but a set of a few batches is better not streamed.

Resume is exact: a rank's stream is a function of the data, the seed, the shuffle buffer, the pass, the rank and the
number of ranks, and the task state saved with every checkpoint holds how many records each finished pass held, so a
resumed run skips whole passes unread and re-reads (without decoding) only the current pass's records before the
checkpoint. It needs the same number of ranks (refused otherwise); a pass re-read with another length means the data
changed since the checkpoint (an error: keep what a run streams unchanged until it ends). An unreadable or missing
image is replaced by the nearest readable one of its micro-batch with the same label (else the nearest), counted and
warned about (``task.data.strict=true``: an error). Images stored as paths (imagefolder-style Hub repos) are opened
through fsspec, remote ones included.

Evaluation needs random access, so it runs on an in-memory sample: the readable images among the first
``task.data.stream_sample`` records of a seeded shuffled pass over each split; the probes' caps apply within it.
Labels must be integers or a ``ClassLabel`` (string labels would need a pass over the whole split to name the
classes), checked against the classes on every record.
"""
from __future__ import annotations

import itertools
import queue
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import default_collate

from selfsup.data import sample_generator
from selfsup.errors import ConfigError
from selfsup.progress import progress
from selfsup.task import BatchPlan

from .data import DECODE_THREADS, MAX_PIXELS, BadImage, ImageDataError, ImageSet, decode_image

PREFETCH = 2    # micro-batches decoded ahead of the training step


class ImageStream:
    """One split of a streamed ``datasets.IterableDataset``: endless training passes and an evaluation sample."""

    def __init__(self, ds, image_column: str, label_column: str | None, classes: list[str], size: int, what: str,
                 strict: bool = False, max_pixels: int = MAX_PIXELS, buffer: int = 10_000):
        import datasets
        columns = [image_column] + ([label_column] if label_column else [])
        # undecoded: rows give {"bytes", "path"}, and the decoding is ours (pixel cap, draft, storage size)
        self.ds = ds.select_columns(columns).cast_column(image_column, datasets.Image(decode=False))
        self.image_column, self.label_column, self.classes = image_column, label_column, classes
        self.size, self.what, self.strict, self.max_pixels, self.buffer = size, what, strict, max_pixels, buffer
        self.pass_lengths: list[int] = []     # records in each finished pass of this rank's stream
        self.world: int | None = None         # ranks of the run whose pass lengths these are
        self.skipped = 0

    # ---------------------------------------------------------------- resume state (the task saves it)

    def state_dict(self) -> dict:
        return {"pass_lengths": list(self.pass_lengths), "world": self.world}

    def load_state_dict(self, state: dict) -> None:
        self.pass_lengths, self.world = list(state.get("pass_lengths", [])), state.get("world")

    # ---------------------------------------------------------------- records and decoding

    def _records(self, seed: int, rank: int, world: int, start: int) -> Iterator[dict]:
        """This rank's records from position ``start`` of its endless stream (pass after pass)."""
        ds = self.ds.shuffle(seed=seed, buffer_size=self.buffer)
        if world > 1:
            from datasets.distributed import split_dataset_by_node
            ds = split_dataset_by_node(ds, rank=rank, world_size=world)
        done = 0                               # whole passes skipped unread, from their saved lengths
        while done < len(self.pass_lengths) and start >= self.pass_lengths[done]:
            start -= self.pass_lengths[done]
            done += 1
        for n_pass in itertools.count(done):
            ds.set_epoch(n_pass)
            n = 0
            for row in ds:
                n += 1
                if n > start:
                    yield row
            if n == 0:
                raise ImageDataError(f"{self.what} streamed no images" + (f" to rank {rank} of {world}" if world > 1
                                                                           else ""))
            if n_pass == len(self.pass_lengths):
                self.pass_lengths.append(n)
            elif n != self.pass_lengths[n_pass]:
                raise ImageDataError(f"{self.what}: pass {n_pass} held {self.pass_lengths[n_pass]} records when the "
                                     f"checkpoint was saved and {n} now: the data changed, so this run cannot "
                                     "resume exactly (start a new run, or restore the data it trained on)")
            start = max(0, start - n)

    def _decode(self, row: dict) -> np.ndarray | str:
        """(S, S, 3) uint8, or why the image cannot be used."""
        cell = row[self.image_column] or {}
        where = cell.get("path") or "embedded bytes"
        try:
            data = cell.get("bytes") or cell.get("path")
            if not data:
                raise BadImage("the record has no image")
            if isinstance(data, str) and "://" in data:          # a remote file (imagefolder-style Hub repos)
                import fsspec
                try:
                    with fsspec.open(data, "rb") as f:
                        data = f.read()
                except OSError as e:
                    raise BadImage(f"cannot read {data}: {e}") from None
            return decode_image(data, self.size, self.max_pixels)
        except BadImage as e:
            if self.strict:
                raise ImageDataError(f"cannot use an image of {self.what} ({where}): {e} (turn off "
                                     "task.data.strict to replace unreadable images)") from None
            return str(e)

    def _label(self, row: dict) -> int | None:
        if self.label_column is None:
            return None
        y = row[self.label_column]
        if y is None or not 0 <= int(y) < (len(self.classes) or float("inf")):
            raise ImageDataError(f"{self.what}: a record's label ('{self.label_column}') is {y}, not one of 0.."
                                 f"{len(self.classes) - 1 if self.classes else 'N'} (-1 or none marks an unlabelled "
                                 "record: choose a labelled split, or another label column)")
        return int(y)

    def _decode_rows(self, rows: list[dict], pool: ThreadPoolExecutor) -> tuple[list, list[int]]:
        """The rows' images, and for each row the row whose image (and label) it takes: itself, or for an
        unreadable one the nearest readable row with the same label (else the nearest)."""
        out = list(pool.map(self._decode, rows))
        good = [i for i, x in enumerate(out) if not isinstance(x, str)]
        bad = [i for i, x in enumerate(out) if isinstance(x, str)]
        source = list(range(len(rows)))
        if bad:
            if not good:
                raise ImageDataError(f"{self.what}: none of {len(rows)} consecutive images can be used ({out[0]})")
            warnings.warn(f"{self.what}: {len(bad)} image(s) cannot be used ({out[bad[0]]}); the nearest readable "
                          "image of the batch with the same label stands in")
            self.skipped += len(bad)
            labels = [row.get(self.label_column) if self.label_column else None for row in rows]
            for i in bad:
                same = [j for j in good if labels[j] == labels[i]] or good
                source[i] = min(same, key=lambda j: abs(j - i))
        return out, source

    # ---------------------------------------------------------------- training

    def batches(self, plan: BatchPlan, view: Callable[[torch.Tensor, int | None, torch.Generator], object]) -> Iterator:
        """This rank's micro-batches from ``plan.start_step`` on, each sample ``view(image (3,S,S) uint8, label,
        generator)``, collated; decoded in threads ahead of the step."""
        if self.world is not None and self.world != plan.world_size:
            raise ConfigError(f"this run streamed its data on {self.world} rank(s); a streamed run resumes only on "
                              f"the same number (now {plan.world_size}): the ranks' streams differ")
        self.world = plan.world_size
        b = plan.micro_batch_size
        start = plan.start_step * b * plan.grad_accum                   # this rank's records before the step

        def produce():
            records = self._records(plan.seed, plan.rank, plan.world_size, start)
            position = start
            with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
                while True:
                    rows = list(itertools.islice(records, b))
                    images, source = self._decode_rows(rows, pool)
                    keys = [(position + i) * plan.world_size + plan.rank for i in range(b)]  # unique across ranks

                    def sample(i: int):
                        img = torch.from_numpy(images[source[i]]).permute(2, 0, 1)
                        return view(img, self._label(rows[source[i]]), sample_generator(plan.seed, keys[i]))
                    yield default_collate(list(pool.map(sample, range(b))))
                    position += b
        return _ahead(produce(), PREFETCH)

    # ---------------------------------------------------------------- evaluation sample

    def sample(self, n: int) -> ImageSet:
        """The readable images among the first ``n`` records of a pass shuffled with seed 0, decoded into memory."""
        rows = list(progress(itertools.islice(self.ds.shuffle(seed=0, buffer_size=self.buffer), n), total=n,
                             desc=f"read {self.what} sample", min_total=1000))
        if not rows:
            raise ImageDataError(f"{self.what} streamed no images")
        with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
            decoded = list(pool.map(self._decode, rows))
        ok = [i for i, x in enumerate(decoded) if not isinstance(x, str)]
        if not ok:
            raise ImageDataError(f"{self.what}: none of the {len(rows)} sampled images can be used ({decoded[0]})")
        images = torch.from_numpy(np.stack([decoded[i] for i in ok])).permute(0, 3, 1, 2).contiguous()
        labels = None if self.label_column is None else torch.tensor([self._label(rows[i]) for i in ok])
        return ImageSet(images, labels, self.classes, skipped=len(rows) - len(ok))


class StreamedImages:
    """The image-set contract (vision.data) over a stream's evaluation sample, plus ``stream`` for training.
    The sample is read on first use, so building a task reads no image."""
    attributes = None

    def __init__(self, stream: ImageStream, sample_size: int):
        self.stream, self.sample_size = stream, sample_size
        self._sample: ImageSet | None = None

    def _get(self) -> ImageSet:
        if self._sample is None:
            self._sample = self.stream.sample(self.sample_size)
        return self._sample

    def __len__(self) -> int:
        return len(self._get())

    @property
    def labels(self):
        return self._get().labels

    @property
    def classes(self) -> list[str]:
        return self.stream.classes

    @property
    def skipped(self) -> int:
        return self.stream.skipped + (self._sample.skipped if self._sample is not None else 0)

    def image(self, index: int) -> torch.Tensor:
        return self._get().image(index)

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        return self._get().take(indices)

    def subset(self, indices: torch.Tensor) -> ImageSet:
        return self._get().subset(indices)


def _ahead(it: Iterator, depth: int) -> Iterator:
    """``it``'s items, produced by a background thread up to ``depth`` ahead; its errors re-raised here. When the
    consumer stops (the generator is closed or collected), the thread closes ``it`` (its pool, its files) and ends."""
    q: queue.Queue = queue.Queue(depth)
    stop, end = threading.Event(), object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run():
        try:
            for item in it:
                if not put((item, None)):
                    break
            else:
                put((end, None))
        except BaseException as e:          # handed to the consumer, which raises it in the training loop
            put((end, e))
        finally:
            it.close()

    thread = threading.Thread(target=run, daemon=True, name="selfsup-image-stream")
    thread.start()
    try:
        while True:
            item, error = q.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=30)
