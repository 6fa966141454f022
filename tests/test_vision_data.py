"""Image sources in their real formats, written small by the tests; bad input gives clear errors."""
import pickle

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from vision import data as D
from vision import sources
from vision.scenes import SHAPES, render_scenes
from vision.transforms import eval_view, pretrain_view


def write_image(path, colour, size=(20, 12), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imgs"
    for i in range(3):
        write_image(root / "cat" / f"{i}.png", (200, 10, 10))
        write_image(root / "dog" / f"{i}.jpg", (10, 10, 200))
    return root


def test_image_folder_labels_sizes_and_colours(folder):
    s = D.image_folder(folder, 8)
    assert s.classes == ["cat", "dog"] and s.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert s.images.shape == (6, 3, 8, 8) and s.images.dtype == torch.uint8
    assert s.images[0, 0].float().mean() > 150 and s.images[5, 2].float().mean() > 150   # red cats, blue dogs


def test_corrupt_images_skipped_and_counted_or_strict_error(folder):
    (folder / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = folder / "dog" / "0.jpg"
    (folder / "dog" / "truncated.jpg").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    with pytest.warns(UserWarning, match="skipped 2 of 8 corrupt, unreadable or oversized images"):
        s = D.image_folder(folder, 8)
    assert len(s) == 6 and s.skipped == 2 and s.labels.tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(D.ImageDataError, match="2 of 8 images .* cannot be used.*broken.png"):
        D.image_folder(folder, 8, strict=True)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(D.ImageDataError, match="image folder not found"):
        D.image_folder(tmp_path / "nope", 8)
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(D.ImageDataError, match="holds no images"):
        D.image_folder(tmp_path / "empty", 8)
    (tmp_path / "flat").mkdir()
    with pytest.raises(D.ImageDataError, match="no class sub-folders"):
        D.image_folder(tmp_path / "flat", 8)
    with pytest.raises(D.ImageDataError, match="holds no images"):
        D.unlabelled_folder(tmp_path / "flat", 8)


def test_unlabelled_folder_recursive(folder):
    s = D.unlabelled_folder(folder, 8)
    assert len(s) == 6 and s.labels is None


def write_cifar(root, hundred=False):
    """The authors' format: python-2 pickles of dicts with bytes keys, data as (N, 3072) uint8 rows."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def dump(name, obj):
        with open(root / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    if hundred:
        for split, n in (("train", 6), ("test", 4)):
            dump(split, {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"fine_labels": list(range(n)),
                         b"coarse_labels": [0] * n, b"filenames": [b"x.png"] * n})
        dump("meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)], b"coarse_label_names": []})
    else:
        for i in range(1, 6):
            dump(f"data_batch_{i}", {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [i, i + 1],
                                     b"batch_label": b"training batch", b"filenames": [b"a.png", b"b.png"]})
        first = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
        dump("test_batch", {b"data": first, b"labels": [0, 1, 2], b"batch_label": b"testing batch"})
        dump("batches.meta", {b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog",
                                               b"frog", b"horse", b"ship", b"truck"], b"num_cases_per_batch": 2})
        return first


def test_cifar10_batches(tmp_path):
    first = write_cifar(tmp_path / "cifar-10-batches-py")
    train = D.cifar(tmp_path / "cifar-10-batches-py", "train", 32)
    test = D.cifar(tmp_path / "cifar-10-batches-py", "test", 32)
    assert len(train) == 10 and train.labels.tolist()[:4] == [1, 2, 2, 3] and train.classes[0] == "airplane"
    assert torch.equal(test.images[0], torch.from_numpy(first[0].reshape(3, 32, 32)))   # channel-major rows
    assert D.cifar(tmp_path / "cifar-10-batches-py", "test", 16).images.shape == (3, 3, 16, 16)


def test_cifar100_batches(tmp_path):
    write_cifar(tmp_path / "c100", hundred=True)
    s = D.cifar(tmp_path / "c100", "train", 32, hundred=True)
    assert len(s) == 6 and len(s.classes) == 100


def test_cifar_refuses_code_in_pickles_and_missing_files(tmp_path):
    root = tmp_path / "evil"
    root.mkdir()
    import os

    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    (root / "test_batch").write_bytes(pickle.dumps({b"data": Boom()}, protocol=2))
    with pytest.raises(D.ImageDataError, match="refusing to load"):
        D.cifar(root, "test", 32)
    with pytest.raises(D.ImageDataError, match="CIFAR batch file not found"):
        D.cifar(tmp_path / "none", "train", 32)


def test_digits_and_sources_split():
    train, test = sources.load(sources.ImageDataConfig(source="digits"), 16)
    assert len(train) + len(test) == 1797 and train.images.shape[1:] == (3, 16, 16)
    assert set(test.labels.tolist()) == set(range(10))


def test_sources_errors(tmp_path):
    with pytest.raises(D.ImageDataError, match="unknown task.data.source 'imagenet'.*scenes"):
        sources.load(sources.ImageDataConfig(source="imagenet"), 16)
    with pytest.raises(D.ImageDataError, match="needs task.data.path"):
        sources.load(sources.ImageDataConfig(source="imagefolder"), 16)
    with pytest.raises(D.ImageDataError, match="unknown task.data.label 'mood'"):
        sources.load(sources.ImageDataConfig(label="mood"), 16)


def test_imagefolder_train_val_layout(tmp_path):
    for split in ("train", "val"):
        for c in ("a", "b"):
            write_image(tmp_path / "ds" / split / c / "0.png", (0, 255, 0))
    train, test = sources.load(sources.ImageDataConfig(source="imagefolder", path=str(tmp_path / "ds")), 16)
    assert len(train) == len(test) == 2 and train.images.shape[-1] == int(16 / 0.875)
    assert eval_view(test.images, 16).shape == (2, 3, 16, 16)


def test_scenes_are_seeded_and_labelled():
    a, b = render_scenes(20, 16, seed=3, progress=False), render_scenes(20, 16, seed=3, progress=False)
    assert torch.equal(a.images, b.images) and a.scenes == b.scenes
    assert not torch.equal(a.images, render_scenes(20, 16, seed=4, progress=False).images)
    labels = a.labels("shape")
    assert labels.tolist() == [SHAPES.index(s.objects[0].shape) for s in a.scenes]
    for s in a.scenes:
        assert all(o.size != s.objects[0].size for o in s.objects[1:])    # the main object is the unique largest
    quadrants = a.labels("position").tolist()
    assert quadrants == [2 * (s.objects[0].y >= 0.5) + (s.objects[0].x >= 0.5) for s in a.scenes]
    assert set(quadrants) <= {0, 1, 2, 3} and len(set(quadrants)) > 1
    held = render_scenes(50, 16, seed=1, progress=False, exclude=frozenset({("red", "circle")}))
    assert not any((o.colour, o.shape) == ("red", "circle") for s in held.scenes for o in s.objects)


def test_pretrain_view_is_reproducible_per_generator():
    img = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8)
    a = pretrain_view(img, 16, torch.Generator().manual_seed(1))
    b = pretrain_view(img, 16, torch.Generator().manual_seed(1))
    c = pretrain_view(img, 16, torch.Generator().manual_seed(2))
    assert a.shape == (3, 16, 16) and a.dtype == torch.uint8 and torch.equal(a, b) and not torch.equal(a, c)


def test_cifar_labels_out_of_range_or_miscounted_name_the_file(tmp_path):
    root = tmp_path / "c10"
    write_cifar(root)
    batch = pickle.loads((root / "data_batch_2").read_bytes(), encoding="bytes")
    batch[b"labels"] = [3, 10]                                    # 10 classes: label 10 is out of range
    (root / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(D.ImageDataError, match=r"data_batch_2: label 10 is outside the 10 classes"):
        D.cifar(root, "train", 32)
    batch[b"labels"] = [3]                                        # one label for two images
    (root / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(D.ImageDataError, match=r"data_batch_2: 1 labels for 2 images"):
        D.cifar(root, "train", 32)


def write_stl10(root, n=4):
    """STL-10's binaries: (N, 3, 96, 96) uint8 stored column-major, labels 1..10 as uint8."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)          # (N, C, H, W), the image as seen
    hwc.transpose(0, 1, 3, 2).tofile(root / "train_X.bin")               # stored column-major (W before H)
    np.array([1, 2, 10, 1], dtype=np.uint8)[:n].tofile(root / "train_y.bin")
    (root / "class_names.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    return hwc


def test_stl10_binaries(tmp_path):
    hwc = write_stl10(tmp_path / "stl10_binary")
    s = D.stl10(tmp_path / "stl10_binary", "train", 96)
    assert len(s) == 4 and s.labels.tolist() == [0, 1, 9, 0] and s.classes[9] == "c9"
    assert torch.equal(s.images[2], torch.from_numpy(hwc[2]))
    with pytest.raises(D.ImageDataError, match="STL-10 file not found.*test_X.bin"):
        D.stl10(tmp_path / "stl10_binary", "test", 96)
    np.array([1, 11, 1, 1], dtype=np.uint8).tofile(tmp_path / "stl10_binary" / "train_y.bin")
    with pytest.raises(D.ImageDataError, match="train_y.bin: label 10 is outside the 10 classes"):
        D.stl10(tmp_path / "stl10_binary", "train", 96)


def test_pixel_cap_refuses_large_images_before_decoding(folder, monkeypatch):
    write_image(folder / "cat" / "huge.png", (1, 2, 3), size=(400, 300))
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or real_load(self))
    with pytest.warns(UserWarning, match=r"skipped 1 of 7 .*huge.png \(400x300 pixels exceed task.data.max_pixels"):
        s = D.image_folder(folder, 8, max_pixels=100_000)
    assert len(s) == 6 and s.skipped == 1 and (400, 300) not in decoded      # never decoded
    with pytest.raises(D.ImageDataError, match="huge.png"):
        D.image_folder(folder, 8, strict=True, max_pixels=100_000)
    assert (20, 12) in decoded                                                # the others were
    assert len(D.image_folder(folder, 8)) == 7                               # the default cap (64 Mpx) admits it


def test_jpeg_draft_decodes_large_jpegs_at_reduced_scale(tmp_path):
    path = tmp_path / "big.jpg"
    Image.radial_gradient("L").resize((1024, 768)).convert("RGB").save(path, quality=95)
    fast, full = D.decode_image(path, 64), D.decode_image(path, 64, draft=False)
    assert fast.shape == full.shape == (64, 64, 3)
    assert np.abs(fast.astype(int) - full.astype(int)).mean() < 3        # the same picture, up to resampling
    with Image.open(path) as img:
        img.draft("RGB", (64, 64))
        assert min(img.size) >= 64 and img.size[0] < 1024                 # libjpeg scaled it down, short side kept
