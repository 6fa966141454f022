"""Datasets by name, offline: torchvision's formats and `datasets` tables written here; downloads only when asked."""
import urllib.error

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from test_vision_data import write_cifar

from selfsup.hub import DatasetUnavailable, hub_dataset
from vision import data as D
from vision import sources
from vision.shards import ArrowImageSet


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    """What `datasets` caches (parquet and tar conversions) goes to this test's folder, not the user's cache."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def cifar_cfg(**kw):
    return sources.ImageDataConfig(source="cifar10", **kw)


def test_torchvision_set_is_fetched_only_when_asked(tmp_path, monkeypatch):
    import torchvision.datasets
    calls = []

    class FakeCIFAR10:       # stands in for torchvision's downloader: writes the files as the real one extracts them
        def __init__(self, root, download, train):
            calls.append((root, download))
            write_cifar(tmp_path / "root" / "cifar-10-batches-py")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    with pytest.raises(D.ImageDataError, match=r"cifar10 is not in .*root.*task.data.download=true.*163 MB"):
        sources.load(cifar_cfg(path=str(tmp_path / "root")), 32)
    assert calls == []                                                          # nothing fetched unasked
    train, test = sources.load(cifar_cfg(path=str(tmp_path / "root"), download=True), 32)
    assert calls == [(str(tmp_path / "root"), True)] and len(train) == 10 and len(test) == 3
    again, _ = sources.load(cifar_cfg(path=str(tmp_path / "root")), 32)         # torchvision's root layout, offline
    assert torch.equal(again.take(torch.arange(10)), train.take(torch.arange(10))) and len(calls) == 1
    direct, _ = sources.load(cifar_cfg(path=str(tmp_path / "root" / "cifar-10-batches-py")), 32)
    assert torch.equal(direct.labels, train.labels)


def test_torchvision_download_failure_says_what_to_do(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(root, download, **kw):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(torchvision.datasets, "STL10", offline)
    with pytest.raises(D.ImageDataError, match=r"could not download stl10 .*URLError.*set task.data.path"):
        sources.load(sources.ImageDataConfig(source="stl10", path=str(tmp_path), download=True), 32)
    with pytest.raises(D.ImageDataError, match="needs task.data.path .* or task.data.download=true"):
        sources.load(sources.ImageDataConfig(source="cifar100"), 32)


def png_bytes(colour, size=(12, 10)):
    import io
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


COLOURS = [(250, 0, 0), (0, 250, 0), (0, 0, 250)]


def write_hf(root, label_feature=None, labels=None):
    """A DatasetDict as `save_to_disk` writes it: an Image column and a label column, train and test splits."""
    label_feature = label_feature or datasets.ClassLabel(names=["red", "green", "blue"])
    features = datasets.Features({"img": datasets.Image(), "fine": label_feature})
    splits = {}
    for split, n in (("train", 9), ("test", 3)):
        ys = labels[split] if labels else [i % 3 for i in range(n)]
        colour = [COLOURS[i % 3] for i in range(n)]
        splits[split] = datasets.Dataset.from_dict({"img": [{"bytes": png_bytes(c), "path": None} for c in colour],
                                                   "fine": ys}, features=features)
    datasets.DatasetDict(splits).save_to_disk(str(root))
    return root


def test_hf_dataset_by_folder_finds_image_and_label_columns(tmp_path):
    root = write_hf(tmp_path / "ds")
    cfg = sources.ImageDataConfig(source="hf", name=str(root), label_column="fine", cache="lazy")
    train, test = sources.load(cfg, 14)
    assert isinstance(train, ArrowImageSet) and len(train) == 9 and len(test) == 3
    cfg.cache = "auto"                                                    # small: decoded into memory, same images
    in_memory = sources.load(cfg, 14)[0]
    everything = torch.arange(9)
    assert isinstance(in_memory, D.ImageSet) and torch.equal(in_memory.take(everything), train.take(everything))
    assert torch.equal(in_memory.labels, train.labels) and in_memory.classes == train.classes
    assert train.classes == ["red", "green", "blue"] and train.labels.tolist() == [0, 1, 2] * 3
    img = train.image(1)
    assert img.shape == (3, 16, 16) and img[1].float().mean() > 200 and img[0].float().mean() < 20   # green
    with pytest.raises(D.ImageDataError, match="has no column 'lbl' .*it has img, fine"):
        sources.load(sources.ImageDataConfig(source="hf", name=str(root), label_column="lbl"), 14)
    with pytest.raises(DatasetUnavailable, match="has no split 'validation' .*it has train, test"):
        sources.load(sources.ImageDataConfig(source="hf", name=str(root), test_split="validation"), 14)


def test_hf_text_labels_share_the_training_classes(tmp_path):
    labels = {"train": ["b", "a", "c"] * 3, "test": ["c", "c", "a"]}
    root = write_hf(tmp_path / "ds", datasets.Value("string"), labels)
    train, test = sources.load(sources.ImageDataConfig(source="hf", name=str(root), label_column="fine"), 14)
    assert train.classes == ["a", "b", "c"] and train.labels.tolist()[:3] == [1, 0, 2]
    assert test.labels.tolist() == [2, 2, 0]


def test_hf_unlabelled_test_split_is_a_clear_error(tmp_path):
    root = write_hf(tmp_path / "ds", labels={"train": [0, 1, 2] * 3, "test": [-1, -1, -1]})
    with pytest.raises(D.ImageDataError, match=r"split 'test': column 'fine' holds labels outside 0..2.*-1 marks"):
        sources.load(sources.ImageDataConfig(source="hf", name=str(root), label_column="fine"), 14)


def test_hf_parquet_files_through_the_builder_split_80_20(tmp_path):
    table = datasets.Dataset.from_dict(
        {"image": [{"bytes": png_bytes(COLOURS[i % 3]), "path": None} for i in range(10)], "label": [i % 3 for i in
                                                                                                    range(10)]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=3)}))
    (tmp_path / "pq").mkdir()
    table.to_parquet(str(tmp_path / "pq" / "part-0.parquet"))
    cfg = sources.ImageDataConfig(source="hf", name="parquet", data_files=str(tmp_path / "pq" / "*.parquet"))
    train, test = sources.load(cfg, 8)
    assert len(train) == 8 and len(test) == 2 and train.classes == ["0", "1", "2"]
    px = train.take(torch.arange(8)).float().mean((2, 3))                   # (8, 3): each image one pure colour
    assert torch.equal(px.argmax(1), train.labels)


def test_hub_dataset_offline_names_what_is_missing_and_touches_no_network(monkeypatch):
    import datasets.config
    import huggingface_hub.constants as hub
    before = datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE
    expected = r"'someone/not-here' is neither a local folder nor in the datasets cache .*task.data.download=true"
    with pytest.raises(DatasetUnavailable, match=expected + r".*load_dataset\('someone/not-here'\)"):
        hub_dataset("someone/not-here", "train")
    assert (datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE) == before       # switched back after the call


def test_hub_dataset_for_text_reads_local_files_and_streams(tmp_path):
    (tmp_path / "a.txt").write_text("one line\nanother\n")
    ds = hub_dataset("text", "train", data_files=str(tmp_path / "a.txt"))
    assert ds["text"] == ["one line", "another"]
    stream = hub_dataset("text", "train", streaming=True, data_files=str(tmp_path / "a.txt"))
    assert [r["text"] for r in stream] == ["one line", "another"]
    saved = tmp_path / "saved"
    ds.save_to_disk(str(saved))
    assert [r["text"] for r in hub_dataset(str(saved), "train", streaming=True)] == ["one line", "another"]
    assert np.array_equal(hub_dataset(str(saved))["text"], ds["text"])


def test_hf_webdataset_tar_shards_through_the_builder(tmp_path):
    import io
    import tarfile
    (tmp_path / "wds").mkdir()
    with tarfile.open(tmp_path / "wds" / "shard-000.tar", "w") as tar:      # WebDataset: KEY.png + KEY.cls
        for i in range(10):
            for ext, data in (("png", png_bytes(COLOURS[i % 2])), ("cls", str(i % 2).encode())):
                info = tarfile.TarInfo(f"{i:05d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    cfg = sources.ImageDataConfig(source="hf", name="webdataset", data_files=str(tmp_path / "wds" / "*.tar"),
                                  label_column="cls")
    train, test = sources.load(cfg, 8)
    assert len(train) == 8 and len(test) == 2 and train.classes == ["0", "1"]
    px = train.take(torch.arange(8)).float().mean((2, 3))
    assert torch.equal(px.argmax(1), train.labels)                           # red for 0, green for 1


@pytest.mark.parametrize("streaming", [False, True])
def test_hf_a_column_that_is_not_a_label_is_a_clear_error(tmp_path, streaming):
    root = write_hf(tmp_path / "ds", datasets.Value("float32"), {"train": [0.5] * 9, "test": [0.5] * 3})
    cfg = sources.ImageDataConfig(source="hf", name=str(root), label_column="fine", streaming=streaming)
    with pytest.raises(D.ImageDataError, match=r"column 'fine' \(Value\('float32'.*is not a label; set "
                                               "task.data.label_column"):
        sources.load(cfg, 14)
