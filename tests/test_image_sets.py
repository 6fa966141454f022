"""Images that need not fit in memory: lazy image files, packed shards, the memory/lazy choice, exact resume."""
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_trainer import final_weights, losses
from torch import nn

from selfsup.data import step_loader
from selfsup.results import Score
from selfsup.subsets import sample_indices
from vision import data as D
from vision import sources
from vision.lazy import FileImageSet, choose_cache, open_files
from vision.shards import main as pack_main
from vision.shards import pack_split, pack_tree, shard_set
from vision.transforms import pretrain_view

from conftest import run_cli, train


def noise_folder(root, classes=("a", "b", "c"), per_class=6, size=(24, 20), seed=0):
    """An ImageFolder of random-pixel images (so every crop differs), sorted by class as on disk."""
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def test_lazy_and_memory_give_the_same_images_and_labels(tmp_path):
    root = noise_folder(tmp_path / "imgs")
    mem = sources.load(sources.ImageDataConfig(source="folder", path=str(root), cache="memory"), 14)[0]
    lazy = sources.load(sources.ImageDataConfig(source="folder", path=str(root), cache="lazy"), 14)[0]
    assert isinstance(mem, D.ImageSet) and isinstance(lazy, FileImageSet) and len(mem) == len(lazy) == 18
    idx = torch.tensor([17, 0, 5])
    assert torch.equal(lazy.take(idx), mem.take(idx)) and torch.equal(lazy.image(3), mem.image(3))
    assert lazy.image(3).shape == (3, 16, 16) and lazy.image(3).dtype == torch.uint8      # 14 / 0.875
    cfg = sources.ImageDataConfig(source="imagefolder", path=str(root), cache="lazy")
    train_set, test_set = sources.load(cfg, 14)                                  # 80/20 split of a lazy set
    assert len(train_set) + len(test_set) == 18 and train_set.classes == ["a", "b", "c"]
    full = sources.load(sources.ImageDataConfig(source="imagefolder", path=str(root), cache="memory"), 14)[0]
    assert torch.equal(train_set.take(torch.arange(4)), full.take(torch.arange(4)))
    assert torch.equal(train_set.labels, full.labels)


def test_cache_auto_chooses_by_decoded_size():
    assert choose_cache(10_000, 36, "auto", memory_gb=4) == "memory"            # CIFAR-sized: 39 MB
    assert choose_cache(1_281_167, 256, "auto", memory_gb=4) == "lazy"          # ImageNet at 256 px: 252 GB
    assert choose_cache(1_281_167, 256, "memory", memory_gb=4) == "memory"      # the flag wins
    with pytest.raises(D.ImageDataError, match="task.data.cache must be one of auto, memory, lazy, not 'ram'"):
        choose_cache(10, 8, "ram", 4)


def test_lazy_unreadable_image_replaced_by_its_class_neighbour_or_strict_error(tmp_path):
    root = noise_folder(tmp_path / "imgs", per_class=3)
    (root / "b" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")      # index 4: class b
    paths, labels, classes = D.folder_files(root)
    lazy, kept = open_files(paths, labels, classes, 8, "imgs", cache="lazy")
    assert kept == list(range(9)) and lazy.skipped == 0                       # found only when decoded
    with pytest.warns(UserWarning, match=r"b/1.png cannot be used .*; .*b/2.png stands in for it"):
        img = lazy.image(4)
    assert torch.equal(img, lazy.image(5)) and lazy.skipped == 1             # same class, deterministic
    with pytest.warns(UserWarning, match="stands in"):
        assert torch.equal(lazy.take(torch.tensor([4, 0])), torch.stack([lazy.image(5), lazy.image(0)]))
    strict, _ = open_files(paths, labels, classes, 8, "imgs", cache="lazy", strict=True)
    with pytest.raises(D.ImageDataError, match=r"cannot use .*b/1.png"):
        strict.image(4)
    with pytest.warns(UserWarning, match="skipped 1 of 9"):
        memory, kept = open_files(paths, labels, classes, 8, "imgs", cache="memory")   # memory: left out
    assert len(memory) == 8 and 4 not in kept and memory.skipped == 1


# ------------------------------------------------------------------------------- training on image sets


@dataclass
class ImageSetTaskConfig:
    data: sources.ImageDataConfig = field(default_factory=sources.ImageDataConfig)
    size: int = 8


class ImageSetTask:
    """A tiny task on any image set: a linear classifier on augmented crops. Tests the data path only."""
    name = "imageset-test"
    Config = ImageSetTaskConfig
    presets: dict = {}

    def __init__(self, cfg):
        self.cfg = cfg
        self.train, self.test = sources.load(cfg.data, cfg.size)

    def build_model(self):
        return nn.Linear(3 * self.cfg.size ** 2, 3)

    def _view(self, index, g):
        return pretrain_view(self.train.image(index), self.cfg.size, g), self.train.labels[index]

    def train_batches(self, plan):
        return step_loader(len(self.train), self._view, plan)

    def loss(self, model, batch):
        images, labels = batch
        return nn.functional.cross_entropy(model(images.flatten(1).float() / 255), labels), {}

    def evaluate(self, model, out_dir):
        return [Score("imgs", "test", "n", float(len(self.test)), {})]


def image_run(run_dir, data_dir, extra, resume=False, source="imagefolder"):
    setup = [f"task.data.source={source}", f"task.data.path={data_dir}", "task.data.cache=lazy",
             "trainer.max_steps=6", "trainer.batch_size=8", "trainer.log_every=1", "trainer.lr=0.05",
             "trainer.checkpoint_every=3", "trainer.count_flops=false"]
    return train(ImageSetTask, run_dir, setup + list(extra), resume=resume)


def test_lazy_set_resumes_exactly_with_two_workers_and_matches_memory(tmp_path):
    data = noise_folder(tmp_path / "imgs")
    straight, split, memory = tmp_path / "straight", tmp_path / "split", tmp_path / "memory"
    image_run(straight, data, ["trainer.num_workers=2"])
    image_run(split, data, ["trainer.num_workers=2", "trainer.stop_at=3"])
    image_run(split, data, ["trainer.num_workers=2"], resume=True)
    image_run(memory, data, ["trainer.num_workers=0", "task.data.cache=memory"])
    a, b, m = losses(straight), losses(split), losses(memory)
    assert sorted(a) == list(range(1, 7)) and a == b == m          # exact resume; same pixels and crops as memory
    wa, wb = final_weights(straight), final_weights(split)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


# ------------------------------------------------------------------------------------------------ shards


def test_pack_and_read_shards_keeps_images_labels_and_counts_bad_files(tmp_path):
    src = tmp_path / "src"
    for split, n in (("train", 5), ("val", 2)):
        noise_folder(src / split, per_class=n, seed=len(split))
    (src / "train" / "c" / "broken.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match=r"skipped 1 of 16 .*broken.png"):
        metas = pack_tree(src, tmp_path / "packed", per_shard=4)
    meta = json.loads((tmp_path / "packed" / "train" / "meta.json").read_text())
    assert meta == metas["train"] and meta["count"] == 15 and meta["skipped"] == 1 and len(meta["shards"]) == 4
    packed = shard_set(tmp_path / "packed" / "train", 16)
    with pytest.warns(UserWarning, match="skipped 1 of 16"):
        files = sources.load(sources.ImageDataConfig(source="imagefolder", path=str(src), cache="memory"), 14)[0]
    assert len(packed) == 15 and packed.skipped == 1 and packed.classes == ["a", "b", "c"]
    assert sorted(packed.labels.tolist()) == sorted(files.labels.tolist())
    # packed in a seeded shuffled order: each packed image is one of the files, with that file's label
    flat = {files.image(i).numpy().tobytes(): int(files.labels[i]) for i in range(len(files))}
    for i in range(len(packed)):
        assert flat[packed.image(i).numpy().tobytes()] == int(packed.labels[i])
    assert packed.labels.tolist() != sorted(packed.labels.tolist())          # not class-sorted like the tree
    train_set, test_set = sources.load(sources.ImageDataConfig(source="shards", path=str(tmp_path / "packed")), 14)
    assert len(train_set) == 15 and len(test_set) == 6


def test_pack_resumes_after_an_interruption_and_shrinks_with_size(tmp_path):
    src = noise_folder(tmp_path / "src", per_class=4, size=(64, 48))
    first = pack_tree(src, tmp_path / "packed", per_shard=5)["."]
    (tmp_path / "packed" / "meta.json").unlink()                     # as if killed before the index was written
    marker = tmp_path / "packed" / "shard-00000" / "kept"
    marker.write_text("x")
    again = pack_tree(src, tmp_path / "packed", per_shard=5)["."]
    assert again == first and marker.exists()                         # finished shards were not rewritten
    small = pack_tree(src, tmp_path / "small", per_shard=5, size=16)["."]
    table = shard_set(tmp_path / "small", 16).table
    with Image.open(io.BytesIO(table[0]["image"]["bytes"])) as img:
        assert min(img.size) == 16 and small["count"] == 12


def test_shards_resume_exactly_with_per_sample_augmentation(tmp_path):
    src = noise_folder(tmp_path / "src")
    pack_tree(src, tmp_path / "packed", per_shard=7)
    straight, split = tmp_path / "straight", tmp_path / "split"
    image_run(straight, tmp_path / "packed", ["trainer.num_workers=2"], source="shards")
    image_run(split, tmp_path / "packed", ["trainer.num_workers=2", "trainer.stop_at=3"], source="shards")
    image_run(split, tmp_path / "packed", ["trainer.num_workers=2"], resume=True, source="shards")
    assert losses(straight) == losses(split) and sorted(losses(split)) == list(range(1, 7))
    packed = shard_set(tmp_path / "packed", 16)
    a = pretrain_view(packed.image(2), 8, torch.Generator().manual_seed(5))
    b = pretrain_view(packed.image(2), 8, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, pretrain_view(packed.image(2), 8, torch.Generator().manual_seed(6)))


def test_pack_images_command_and_clear_errors(tmp_path, capsys):
    src = noise_folder(tmp_path / "src", per_class=2)
    r = run_cli("pack-images", str(src), str(tmp_path / "out"), "--per-shard", "4")
    assert r.returncode == 0, r.stderr
    assert "6 images in 2 shards, 0 skipped" in r.stdout
    assert pack_main([str(tmp_path / "nope"), str(tmp_path / "out2")]) == 2
    assert "image folder not found" in capsys.readouterr().err
    with pytest.raises(D.ImageDataError, match="no meta.json.*selfsup pack-images"):
        sources.load(sources.ImageDataConfig(source="shards", path=str(src)), 8)


# ------------------------------------------------------------------------------------------ seeded subsets


def test_probe_cap_on_a_class_sorted_folder_covers_every_class(tmp_path):
    """An ImageFolder is sorted by class on disk: a probe cap below its size must still see every class."""
    root = noise_folder(tmp_path / "imgs", classes=[f"k{i}" for i in range(5)], per_class=8, size=(8, 8))
    train_set, _ = sources.load(sources.ImageDataConfig(source="imagefolder", path=str(root)), 8)
    full = sources.load(sources.ImageDataConfig(source="folder", path=str(root)), 8)[0]
    assert len(full) == 40
    cap = 10                                                        # the first 10 files are two classes only
    idx = sample_indices(len(train_set), cap, seed=0, labels=train_set.labels)
    assert len(idx) == cap and set(train_set.labels[idx].tolist()) == set(range(5))
    from vision.mim import ProbeConfig, encoder_probes
    seen = {}

    def probe_scores_spy(ftr, train_y, fte, test_y, name, *a):
        seen["train_y"] = train_y
        return []
    import vision.mim as vt
    orig, vt.probe_scores = vt.probe_scores, probe_scores_spy
    try:
        from vision.encoder import ViTEncoder
        from vision.vit import ViTConfig
        enc = ViTEncoder.random(ViTConfig(img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2))
        encoder_probes(enc, train_set, train_set, ProbeConfig(max_train=cap), 8, "imgs")
    finally:
        vt.probe_scores = orig
    assert len(seen["train_y"]) == cap and set(seen["train_y"].tolist()) == set(range(5))


REAL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cifar10-subset"


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/cifar10-subset is absent (real-data check only)")
def test_real_cifar_jpegs_lazy_memory_and_shards_agree(tmp_path):
    paths, labels, classes = D.folder_files(REAL / "val")
    assert len(classes) == 10 and len(paths) == 2000
    pick = sample_indices(len(paths), 40, seed=0, labels=torch.tensor(labels)).tolist()   # all 10 classes
    sub = [paths[i] for i in pick]
    memory, _ = open_files(sub, [labels[i] for i in pick], classes, 36, "val", cache="memory")
    lazy, _ = open_files(sub, [labels[i] for i in pick], classes, 36, "val", cache="lazy")
    assert torch.equal(memory.take(torch.arange(40)), lazy.take(torch.arange(40)))
    assert set(memory.labels.tolist()) == set(range(10))
    pack_split(sub, [labels[i] for i in pick], classes, tmp_path / "packed", per_shard=16)
    packed = shard_set(tmp_path / "packed", 36)
    order = {lazy.image(i).numpy().tobytes(): int(lazy.labels[i]) for i in range(40)}
    assert all(order[packed.image(i).numpy().tobytes()] == int(packed.labels[i]) for i in range(40))


def test_a_lazy_set_decodes_nothing_until_used_and_says_why_it_is_lazy(tmp_path, monkeypatch, capsys):
    root = noise_folder(tmp_path / "imgs", per_class=2)
    decoded = []
    real = D.decode_image
    monkeypatch.setattr("vision.lazy.decode_image", lambda *a, **k: decoded.append(a[0]) or real(*a, **k))
    train_set, test_set = sources.load(sources.ImageDataConfig(source="imagefolder", path=str(root),
                                                               memory_gb=1e-6), 8)
    assert isinstance(train_set.base, FileImageSet) and decoded == []              # nothing decoded to build it
    assert "would take 0.0 GB decoded (> task.data.memory_gb=1e-06): decoding each when used" in capsys.readouterr().err
    test_set.image(0)
    assert len(decoded) == 1
