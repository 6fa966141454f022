"""Image decoding throughput: how fast each image path feeds training, side by side in one run.

    selfsup bench --suite decode                    # 512 synthetic 500x375 JPEGs (ImageNet-like), stored at 256
    selfsup bench --suite decode --data ../shared/data/cifar10-subset/train --size 36 --crop 32
    ... --write benchmarks/RESULTS.md

Every path delivers what training consumes -- batches of augmented (random resized crop + flip) uint8 crops through
selfsup.data.step_loader, as the vision tasks call it -- from the same images: decoded into memory once (the
per-sample work is then the crop alone; the one-off decode is timed separately), decoded lazily from the files with
0 and N DataLoader workers, and read from packed shards (`selfsup pack-images`, original bytes or shrunk to the
storage size with --size) with 0 and N workers, and streamed from those shards through ``datasets`` streaming
(``task.data.streaming=true``: a reader thread and decode threads, vision.stream). Repetitions
alternate between the paths (a, b, c, ..., c, b, a) so machine noise hits all; medians are compared. Each timing
uses a fresh loader, after its first batch (worker start-up excluded), and shuts it down after, so no other path's
workers compete for the CPU. A last table times one decode of large JPEGs with and without
libjpeg's reduced-scale decoding (PIL's draft), the shortcut vision.data.decode_image takes.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from selfsup.data import step_loader
from selfsup.task import BatchPlan

from .throughput import interleaved


def synthetic_jpegs(root: Path, n: int, size: tuple[int, int], classes: int = 4, seed: int = 0) -> Path:
    """An ImageFolder of photo-like JPEGs (smooth random fields plus grain; quality 90), ``n`` images in all."""
    rng = np.random.default_rng(seed)
    w, h = size
    for i in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, (h // 32 + 1, w // 32 + 1, 3), dtype=np.uint8))
        field = np.asarray(coarse.resize((w, h), Image.BICUBIC), dtype=np.int16)
        grain = rng.integers(-12, 13, (h, w, 3), dtype=np.int16)
        folder = root / f"c{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(field + grain, 0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def _view(ds, crop: int, index: int, g: torch.Generator) -> torch.Tensor:
    from vision.transforms import pretrain_view
    return pretrain_view(ds.image(index), crop, g)


def _stream_view(crop: int, image: torch.Tensor, label, g: torch.Generator) -> torch.Tensor:
    from vision.transforms import pretrain_view
    return pretrain_view(image, crop, g)


def _batch_seconds(ds, crop: int, batch: int, workers: int | None, batches: int) -> float:
    """Seconds per batch of a fresh loader, timed after its first batch (workers started) and closed after, so no
    other path's workers run (or prefetch) while this one is timed. ``workers`` None: ``ds`` is a stream."""
    plan = BatchPlan(micro_batch_size=batch, grad_accum=1, rank=0, world_size=1, seed=0, start_step=0,
                     num_workers=workers or 0)
    if workers is None:
        it = iter(ds.batches(plan, partial(_stream_view, crop)))
    else:
        it = iter(step_loader(len(ds), partial(_view, ds, crop), plan))
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    elapsed = time.perf_counter() - start
    del it                                          # shuts the workers down
    return elapsed / batches


def measure_decode(data: Path, size: int, crop: int, batch: int, workers: int, batches: int,
                   repeats: int, work: Path) -> dict:
    """Rows of images/s per path, plus the one-off costs (decode into memory, packing) and the draft comparison."""
    from vision.data import DECODE_THREADS, ImageSet, decode_files, decode_image, folder_files
    from vision.lazy import FileImageSet
    from vision.shards import pack_split, shard_set
    paths, labels, classes = folder_files(data)
    start = time.perf_counter()
    images, ok = decode_files(paths, size, False, str(data))
    decode_all = len(paths) / (time.perf_counter() - start)
    start = time.perf_counter()
    pack_split(paths, labels, classes, work / "packed", per_shard=1000)
    pack_rate = len(paths) / (time.perf_counter() - start)
    pack_split(paths, labels, classes, work / "shrunk", per_shard=1000, size=size)
    sets = {"in memory (decoded once)": (ImageSet(images, torch.tensor(labels)[ok], classes), [0, workers]),
            "lazy files": (FileImageSet(paths, torch.tensor(labels), classes, size, str(data)), [0, workers]),
            "packed shards": (shard_set(work / "packed", size), [0, workers]),
            f"packed shards shrunk to {size} px (--size)": (shard_set(work / "shrunk", size), [0, workers])}
    runs = [(f"{name}, {w} workers", ds, w) for name, (ds, ws) in sets.items() for w in ws]
    runs.append((f"streamed from the packed shards (datasets streaming; {DECODE_THREADS} decode threads)",
                 _packed_stream(work / "packed", size), None))
    times = {name: [] for name, _, _ in runs}
    for r in range(repeats):                        # alternating order, as throughput.interleaved
        for name, ds, w in (runs if r % 2 == 0 else runs[::-1]):
            times[name].append(_batch_seconds(ds, crop, batch, w, batches))
    rows = [{"name": name, "images_per_s": batch / statistics.median(t), "batch_s": statistics.median(t),
             "spread": statistics.pstdev(t) / statistics.median(t)} for name, t in times.items()]

    big = synthetic_jpegs(work / "big", min(16, len(paths)), (2048, 1536), classes=1, seed=1)
    files = sorted(big.rglob("*.jpg"))
    draft = [(name, lambda d=d: [decode_image(p, size, draft=d) for p in files]) for name, d in
             (("full decode, then resize", False), ("reduced-scale decode (draft), then resize", True))]
    dt = interleaved(draft, torch.device("cpu"), 1, repeats)
    draft_rows = [{"name": name, "images_per_s": len(files) / statistics.median(t)} for name, t in dt.items()]
    return {"rows": rows, "decode_all": decode_all, "pack": pack_rate, "n": len(paths), "draft": draft_rows}


def _packed_stream(root: Path, size: int):
    """The packed shards read as a stream (``task.data.source=hf name=arrow ... streaming=true``)."""
    from vision import sources
    cfg = sources.ImageDataConfig(source="hf", name="arrow", data_files=str(root / "shard-*" / "*.arrow"),
                                  streaming=True, store_size=size, shuffle_buffer=1000)
    return sources.load(cfg, size)[0].stream


def render(m: dict, header: list[str], size: int, workers: int) -> list[str]:
    base = m["rows"][0]["images_per_s"]
    lines = header + ["| path | images/s | batch (ms) | ÷ in memory |", "|---|---|---|---|"]
    for r in m["rows"]:
        lines.append(f"| {r['name']} | {r['images_per_s']:,.0f} | {1000 * r['batch_s']:.0f} ± "
                     f"{100 * r['spread']:.0f}% | {r['images_per_s'] / base:.2f}× |")
    lines += ["", f"One-off costs for the {m['n']} images: decoding all into memory (threads) "
              f"{m['decode_all']:,.0f} images/s; packing into shards (`selfsup pack-images`, verified by a full "
              f"decode) {m['pack']:,.0f} images/s. DataLoader workers: 0 (the training process) or {workers}; "
              "the stream decodes in threads of the training process.", "",
              f"| 2048x1536 JPEG -> stored at {size} px | images/s | ÷ full decode |", "|---|---|---|"]
    full = m["draft"][0]["images_per_s"]
    lines += [f"| {r['name']} | {r['images_per_s']:,.1f} | {r['images_per_s'] / full:.2f}× |" for r in m["draft"]]
    return lines


def run(args, header: list[str]) -> list[str]:
    """`selfsup bench --suite decode`: measure on ``--data`` (an ImageFolder) or on synthetic JPEGs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # the 0-worker rows augment in this process single-threaded, as a worker does
    try:
        with tempfile.TemporaryDirectory(prefix="selfsup-decode-") as tmp:
            work = Path(tmp)
            data = Path(args.data) if args.data else synthetic_jpegs(work / "jpegs", args.images, (500, 375))
            m = measure_decode(data, args.store_size, args.crop, args.batch, args.workers, args.steps, args.repeats,
                               work)
    finally:
        torch.set_num_threads(threads)
    return render(m, header, args.store_size, args.workers)
