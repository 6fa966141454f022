"""Streamed image datasets (vision.stream), offline on `datasets` files written here: every image once per pass,
a new order each pass, ranks disjoint, exact resume (with and without the saved pass lengths), an evaluation
sample, clear errors, and MAE trained and resumed from a stream end to end."""
import io
import json
import tarfile

import datasets
import fsspec
import pytest
import torch
from PIL import Image

from selfsup.errors import ConfigError
from selfsup.task import BatchPlan
from vision import data as D
from vision import sources
from vision.mae import MAETask

from conftest import train

N, SHARDS = 24, 4
CLASSES = ["a", "b", "c"]


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    # datasets waits 5 s after each shuffled pass for its reader threads (a pyarrow workaround); these passes are
    # 24 images long, so a short wait keeps the file's tests from spending minutes asleep
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0.2)


def png(i: int) -> bytes:
    """A solid image whose red channel names it (8 * i) and whose green its class."""
    buf = io.BytesIO()
    Image.new("RGB", (10, 12), (8 * i, 80 * (i % 3), 50)).save(buf, format="PNG")
    return buf.getvalue()


def table(indices, labels=None):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)})
    return datasets.Dataset.from_dict({"image": [{"bytes": png(i), "path": None} for i in indices],
                                       "label": [i % 3 for i in indices] if labels is None else labels},
                                      features=features)


def parquet_shards(root):
    root.mkdir()
    for s in range(SHARDS):
        table(range(s, N, SHARDS)).to_parquet(str(root / f"train-{s:05d}.parquet"))
    return str(root / "*.parquet")


def stream_cfg(files, **kw):
    return sources.ImageDataConfig(source="hf", name="parquet", data_files=files, streaming=True,
                                   shuffle_buffer=8, **kw)


def index_of(img: torch.Tensor) -> int:
    return int(img[0, 0, 0]) // 8


def view(img, label, g):
    """The image's index and label, and a draw from its generator (its augmentation)."""
    return torch.tensor([index_of(img), label, int(torch.randint(0, 10**6, (1,), generator=g))])


def plan(start=0, rank=0, world=1, micro=4, accum=1):
    return BatchPlan(micro_batch_size=micro, grad_accum=accum, rank=rank, world_size=world, seed=3, start_step=start)


def take(it, n):
    return [next(it) for _ in range(n)]


def test_each_pass_holds_every_image_once_in_a_new_order(tmp_path):
    train, test = sources.load(stream_cfg(parquet_shards(tmp_path / "pq")), 8)
    assert test is None                                     # one split: evaluation samples the training stream
    steps = torch.stack(take(train.stream.batches(plan(), view), 2 * N // 4))   # two passes, 4 images a step
    first, second = steps[:N // 4].reshape(-1, 3), steps[N // 4:].reshape(-1, 3)
    assert sorted(first[:, 0].tolist()) == list(range(N)) == sorted(second[:, 0].tolist())
    assert first[:, 0].tolist() != second[:, 0].tolist()   # reshuffled each pass
    assert first[:, 0].tolist() != list(range(N))          # and shuffled at all
    assert torch.equal(first[:, 1], first[:, 0] % 3)       # labels travel with their images
    assert set(train.stream.pass_lengths) == {N}             # (the reader runs ahead: maybe a pass more)


def test_resume_is_exact_with_and_without_the_saved_pass_lengths(tmp_path):
    files = parquet_shards(tmp_path / "pq")
    straight, _ = sources.load(stream_cfg(files), 8)
    full = take(straight.stream.batches(plan(accum=2), view), 2 * 16)           # 16 steps of 2 micro-batches
    for state in (straight.stream.state_dict(), {}):
        again, _ = sources.load(stream_cfg(files), 8)
        again.stream.load_state_dict(state)
        resumed = take(again.stream.batches(plan(start=7, accum=2), view), 2 * 9)
        assert all(torch.equal(a, b) for a, b in zip(full[14:], resumed))
    state = straight.stream.state_dict()
    assert set(state["pass_lengths"]) == {N} and len(state["pass_lengths"]) >= 2 and state["world"] == 1


def test_ranks_stream_disjoint_parts_and_resume_needs_the_same_number(tmp_path):
    files = parquet_shards(tmp_path / "pq")
    seen = []
    for rank in (0, 1):
        train, _ = sources.load(stream_cfg(files), 8)
        steps = take(train.stream.batches(plan(rank=rank, world=2, micro=3), view), N // 2 // 3)
        seen.append(torch.cat(steps)[:, 0].tolist())
        keys = torch.cat(steps)[:, 2]
        assert len(set(keys.tolist())) == len(keys)
    assert sorted(seen[0] + seen[1]) == list(range(N))       # every image to exactly one rank each pass
    train, _ = sources.load(stream_cfg(files), 8)
    train.stream.load_state_dict({"pass_lengths": [12], "world": 2})
    with pytest.raises(ConfigError, match="resumes only on the same number .*now 1"):
        next(train.stream.batches(plan(start=1), view))


def test_evaluation_sample_is_capped_labelled_and_read_on_first_use(tmp_path):
    splits = datasets.DatasetDict({"train": table(range(N)), "validation": table(range(N, N + 6))})
    splits.save_to_disk(str(tmp_path / "saved"))
    cfg = sources.ImageDataConfig(source="hf", name=str(tmp_path / "saved"), streaming=True, stream_sample=10)
    train, test = sources.load(cfg, 8)
    assert train._sample is None and test._sample is None    # building reads nothing
    assert len(train) == 10 and len(test) == 6 and train.classes == CLASSES
    idx = torch.tensor([index_of(im) for im in train.take(torch.arange(10))])
    assert len(set(idx.tolist())) == 10 and idx.tolist() != list(range(10))     # a shuffled sample, not the head
    assert torch.equal(train.labels, idx % 3)
    assert sorted(index_of(im) for im in test.take(torch.arange(6))) == list(range(N, N + 6))


def test_unreadable_images_are_replaced_in_the_batch_or_refused_with_strict(tmp_path):
    root = tmp_path / "pq"
    root.mkdir()
    rows = table(range(8)).to_dict()
    rows["image"][5] = {"bytes": b"not an image", "path": None}
    rows["image"][6] = None                                  # a missing cell (webdataset fills absent fields so)
    datasets.Dataset.from_dict(rows, features=table([0]).features).to_parquet(str(root / "t.parquet"))
    train, _ = sources.load(stream_cfg(str(root / "*.parquet")), 8)
    with pytest.warns(UserWarning, match="2 image.* cannot be used .*same label stands in"):
        batch = take(train.stream.batches(plan(micro=8), view), 1)[0]
    skipped = train.stream.skipped                           # 2 a pass (the reader may have read a pass ahead)
    assert not {5, 6} & set(batch[:, 0].tolist()) and skipped >= 2 and skipped % 2 == 0
    assert torch.equal(batch[:, 1], batch[:, 0] % 3)         # a stand-in brings its own label, of the same class
    strict, _ = sources.load(stream_cfg(str(root / "*.parquet"), strict=True), 8)
    with pytest.raises(D.ImageDataError, match="cannot use an image .*turn off task.data.strict"):
        take(strict.stream.batches(plan(micro=8), view), 1)


def test_unlabelled_records_and_changed_data_are_errors(tmp_path):
    root = tmp_path / "pq"
    root.mkdir()
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    rows = {"image": [{"bytes": png(i), "path": None} for i in range(8)], "label": [0, 1, 2, -1, 0, 1, 2, 0]}
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(root / "t.parquet"))
    train, _ = sources.load(stream_cfg(str(root / "*.parquet")), 8)
    with pytest.raises(D.ImageDataError, match="label .* is -1, not one of .*unlabelled"):
        take(train.stream.batches(plan(micro=8), view), 1)
    changed, _ = sources.load(stream_cfg(parquet_shards(tmp_path / "shards")), 8)
    changed.stream.load_state_dict({"pass_lengths": [N + 6], "world": 1})      # as if saved from a larger set
    with pytest.raises(D.ImageDataError, match=f"pass 0 held {N + 6} records .* and {N} now: the data changed"):
        take(changed.stream.batches(plan(start=1), view), 2 * N // 4)


def test_stopping_the_stream_ends_its_threads(tmp_path):
    import threading
    import time
    train, _ = sources.load(stream_cfg(parquet_shards(tmp_path / "pq")), 8)
    before = threading.active_count()
    it = train.stream.batches(plan(), view)
    next(it)
    assert threading.active_count() > before                 # the reader and its decode threads
    it.close()                                               # as when training ends
    for _ in range(100):                                     # datasets' own readers end just after
        if threading.active_count() == before:
            break
        time.sleep(0.05)
    assert threading.active_count() == before


@pytest.fixture
def bucket():
    """Object storage as fsspec sees it (s3://, gs://, ...), offline: fsspec's in-memory filesystem."""
    fs = fsspec.filesystem("memory")
    fs.mkdir("/bucket")
    yield fs
    fs.rm("/bucket", recursive=True)


def one_pass(train) -> torch.Tensor:
    return torch.stack(take(train.stream.batches(plan(), view), N // 4)).reshape(-1, 3)


def test_streams_parquet_shards_from_object_storage(bucket):
    for s in range(SHARDS):
        with bucket.open(f"/bucket/pq/train-{s:05d}.parquet", "wb") as f:
            table(range(s, N, SHARDS)).to_parquet(f)
    train, _ = sources.load(stream_cfg("memory://bucket/pq/*.parquet"), 8)
    seen = one_pass(train)
    assert sorted(seen[:, 0].tolist()) == list(range(N)) and train.stream.classes == CLASSES
    assert (seen[:, 1] == seen[:, 0] % 3).all()


def test_streams_webdataset_tars_with_their_cls_labels(bucket):
    """WebDataset's layout (KEY.png + KEY.cls per sample, tar shards): the class comes from `cls` unasked."""
    for s in range(2):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for i in range(s, N, 2):
                for ext, data in (("png", png(i)), ("cls", str(i % 3).encode())):
                    info = tarfile.TarInfo(f"{i:06d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        with bucket.open(f"/bucket/wds/train-{s:05d}.tar", "wb") as f:
            f.write(buf.getvalue())
    cfg = sources.ImageDataConfig(source="hf", name="webdataset", data_files="memory://bucket/wds/*.tar",
                                  streaming=True, shuffle_buffer=8)
    seen = one_pass(sources.load(cfg, 8)[0])
    assert sorted(seen[:, 0].tolist()) == list(range(N)) and (seen[:, 1] == seen[:, 0] % 3).all()


def test_streaming_settings_are_checked(tmp_path):
    with pytest.raises(D.ImageDataError, match="streams a datasets dataset .*task.data.cache=lazy"):
        sources.load(sources.ImageDataConfig(source="imagefolder", path=str(tmp_path), streaming=True), 8)
    root = tmp_path / "pq"
    root.mkdir()
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("string")})
    datasets.Dataset.from_dict({"image": [{"bytes": png(0), "path": None}], "label": ["cat"]},
                               features=features).to_parquet(str(root / "t.parquet"))
    with pytest.raises(D.ImageDataError, match="integers or a ClassLabel.*without task.data.streaming"):
        sources.load(stream_cfg(str(root / "*.parquet")), 8)


def test_mae_trains_from_a_stream_resumes_exactly_and_probes_its_sample(tmp_path):
    splits = datasets.DatasetDict({"train": table(range(N)), "test": table(range(N, N + 9))})
    splits.save_to_disk(str(tmp_path / "saved"))
    setup = ["task.data.source=hf", f"task.data.name={tmp_path / 'saved'}", "task.data.streaming=true",
             "task.data.shuffle_buffer=8", "task.vit.img_size=16", "task.vit.patch_size=4", "task.vit.embed_dim=32",
             "task.vit.depth=2", "task.vit.num_heads=2", "task.mae.decoder_embed_dim=16", "task.mae.decoder_depth=1",
             "task.mae.decoder_num_heads=2", "task.probe.epochs=3", "task.eval_images=8", "trainer.max_steps=6",
             "trainer.batch_size=10", "trainer.log_every=1", "trainer.checkpoint_every=3", "trainer.lr=1e-3",
             "trainer.warmup_steps=1"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    summary = train(MAETask, straight, setup)
    train(MAETask, split, setup + ["trainer.stop_at=4"])          # stops mid-pass (24 images, 10 a step)
    train(MAETask, split, setup, resume=True)
    losses = [{r["step"]: r["loss"] for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())}
              for d in (straight, split)]
    assert sorted(losses[0]) == list(range(1, 7)) and losses[0] == losses[1]
    probes = {r.metric: r.extra for r in summary["results"] if r.metric.startswith("linear_probe")}
    assert probes and all(e["n_train"] == N and e["n_test"] == 9 for e in probes.values())


def test_finetune_trains_from_a_stream_and_needs_a_held_out_split(tmp_path):
    from vision.finetune import FinetuneTask
    datasets.DatasetDict({"train": table(range(N)), "test": table(range(N, N + 9))}).save_to_disk(str(tmp_path / "a"))
    datasets.DatasetDict({"train": table(range(N))}).save_to_disk(str(tmp_path / "b"))
    setup = ["task.data.streaming=true", "task.data.source=hf", "task.vit.img_size=16", "task.vit.patch_size=4",
             "task.vit.embed_dim=32", "task.vit.depth=2", "task.vit.num_heads=2", "trainer.max_steps=2",
             "trainer.batch_size=8"]
    summary = train(FinetuneTask, tmp_path / "run", setup + [f"task.data.name={tmp_path / 'a'}"])
    (top1,) = [r for r in summary["results"] if r.metric == "finetune_top1"]
    assert top1.dataset == "a" and top1.extra["n"] == 9
    assert summary["model"].head.out_features == len(CLASSES)      # the ClassLabel's classes, not the samples' max
    with pytest.raises(ConfigError, match="needs a held-out split: dataset .* has only 'train'"):
        train(FinetuneTask, tmp_path / "run-b", setup + [f"task.data.name={tmp_path / 'b'}"])
