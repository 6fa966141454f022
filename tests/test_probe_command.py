"""`selfsup probe`: any encoder spec, probed on any image source, writing Result records; our own runs and exports
as specs (the vision and language readers of the selfsup.encoders entry points)."""
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from selfsup.encoders import EncoderError, describe, load_image_encoder, load_text_encoder
from selfsup.results import read_results
from vision.encoder import ViTEncoder
from vision.probe_command import main
from vision.vit import ViTConfig

import tiny_encoders as tiny
from conftest import ROOT, train

CIFAR = ROOT / ".." / "shared" / "data" / "cifar10-subset"
TINY_VIT = ViTConfig(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)


def colour_folder(root: Path, n: int = 12) -> Path:
    """An ImageFolder of red and blue images of assorted sizes, train/ and val/."""
    g = torch.Generator().manual_seed(0)
    for split, count in (("train", n), ("val", n // 2)):
        for name, rgb in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
            for i in range(count):
                w, h = (int(v) for v in torch.randint(24, 60, (2,), generator=g))
                noise = torch.randint(-25, 25, (h, w, 3), generator=g)
                arr = (torch.tensor(rgb) + noise).clamp(0, 255).to(torch.uint8).numpy()
                (root / split / name).mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(root / split / name / f"{i}.png")
    return root


def test_probe_a_timm_folder_on_an_image_folder(tmp_path):
    model = tiny.timm_folder(tmp_path / "timm")
    data = colour_folder(tmp_path / "imgs")
    out = tmp_path / "probe"
    assert main(["--encoder", f"timm:{model}", "--data", f"imagefolder:{data}", "--out", str(out),
                 "--set", "probe.epochs=20"]) == 0
    assert main(["--encoder", f"timm:{model}", "--data", f"imagefolder:{data}", "--out", str(tmp_path / "at48"),
                 "--set", "probe.epochs=1", "image_size=48"]) == 0
    at48 = read_results(tmp_path / "at48" / "results.json")[0].extra
    assert at48["preprocess"]["input_size"] == [48, 48] and at48["stored_at"] == 53     # floor(48 / 0.9)
    results = read_results(out / "results.json")
    metrics = {r.metric: r for r in results}
    assert set(metrics) == {f"{p}_top1_{pool}" for p in ("linear_probe", "knn") for pool in ("cls", "mean")}
    r = metrics["knn_top1_mean"]
    assert r.task == "probe" and r.dataset == "imgs" and r.split == "test" and r.extra["n_test"] == 12
    assert r.value > 0.9                                  # red vs blue: any encoder's features separate them
    assert r.extra["encoder"] == f"timm:{model}" and r.extra["encoder_family"] == "timm"
    pre = r.extra["preprocess"]
    assert pre["input_size"] == [32, 32] and pre["resize_size"] == [35, 35] and pre["crop_pct"] == 0.9
    assert r.extra["stored_at"] == 35                     # decoded at the resize size, then centre-cropped
    assert r.extra["stored"].endswith("35 px squares (PIL bicubic), then the encoder's resize and centre crop")
    saved = (out / "config.yaml").read_text()
    assert f"encoder: timm:{model}" in saved and "store_size: 35" in saved


def test_probe_our_export_on_scenes_and_its_random_control(tmp_path):
    export = ViTEncoder.random(TINY_VIT).export_timm(tmp_path / "export")
    enc = load_image_encoder(str(export))
    assert enc.embed_dim == 32 and tuple(enc.preprocess.input_size) == (32, 32)
    assert enc(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))["cls"].shape == (2, 32)
    with pytest.raises(EncoderError, match="run at the size they were trained at"):
        load_image_encoder(str(export), image_size=64)
    common = ["--data", "scenes", "--set", "data.num_train=120", "data.num_test=60", "probe.epochs=5",
              "probe.scene_labels=[colour]"]
    main(["--encoder", str(export), "--out", str(tmp_path / "ours"), *common])
    main(["--encoder", str(export), "--out", str(tmp_path / "random"), "--random", *common])
    ours, rand = read_results(tmp_path / "ours" / "results.json"), read_results(tmp_path / "random" / "results.json")
    assert {r.dataset for r in ours} == {"scenes-colour"} and len(ours) == len(rand) == 4
    assert ours[0].extra["pretrained"] is True and rand[0].extra["pretrained"] is False
    assert ours[0].config_hash != rand[0].config_hash        # different experiments, never merged
    assert ours[0].extra["stored"] == "scenes rendered at 32 px"    # at the input size: nothing cropped


def test_a_vision_run_folder_is_a_spec(tmp_path):
    from vision.mae import MAETask
    run = tmp_path / "mae"
    train(MAETask, run, ["task.vit.img_size=16", "task.vit.patch_size=4", "task.vit.embed_dim=32",
                         "task.vit.depth=2", "task.vit.num_heads=2", "task.mae.decoder_embed_dim=16",
                         "task.mae.decoder_depth=1", "task.mae.decoder_num_heads=2", "task.data.num_train=64",
                         "task.data.num_test=32", "trainer.batch_size=16", "trainer.max_steps=2",
                         "trainer.eval_at_end=false"])
    enc, ref = load_image_encoder(str(run)), ViTEncoder.from_checkpoint(run)
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    torch.testing.assert_close(enc(x)["cls"], ref(x)["cls"])
    assert describe(enc)["encoder"] == str(run) and tuple(enc.preprocess.input_size) == (16, 16)
    random = load_image_encoder(str(run), pretrained=False)
    assert not torch.equal(random(x)["cls"], enc(x)["cls"])


def test_probe_command_errors_are_user_errors(tmp_path, capsys):
    from selfsup.cli import main as selfsup_main
    assert selfsup_main(["probe", "--encoder", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "no such run or export folder" in capsys.readouterr().err
    assert selfsup_main(["probe", "--encoder", "timm:not_a_model", "--out", str(tmp_path / "o")]) == 2
    assert "timm has no model 'not_a_model'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "--encoder" in capsys.readouterr().out


@pytest.mark.skipif(not CIFAR.is_dir(), reason="../shared/data/cifar10-subset is absent (real-data check only)")
def test_probe_on_real_cifar10_subset(tmp_path):
    model = tiny.timm_folder(tmp_path / "timm")
    out = tmp_path / "probe"
    main(["--encoder", f"timm:{model}", "--data", f"imagefolder:{CIFAR}", "--out", str(out),
          "--set", "probe.max_train=1000", "probe.epochs=10"])
    results = {r.metric: r for r in read_results(out / "results.json")}
    r = results["linear_probe_top1_mean"]
    assert r.dataset == "cifar10-subset" and r.extra["n_train"] == 1000 and r.extra["n_test"] == 2000
    assert 0.1 < r.value < 1.0                               # ten classes; a random tiny ViT is above chance or near


def test_our_text_exports_are_specs_and_runs_say_to_export(tmp_path):
    import transformers as T
    export = tmp_path / "bert-export"
    tok = tiny.wordpiece(export)
    config = T.BertConfig(**tiny.HF_TEXT, vocab_size=len(tok))
    T.BertForPreTraining(config).save_pretrained(export)         # what `selfsup export bert` writes
    enc = load_text_encoder(str(export))
    assert enc.family == "selfsup" and enc.spec == str(export) and enc.cls_source == "token"
    assert enc(**enc.tokenize(["the cat sat"]))["cls"].shape == (1, 32)
    run = tmp_path / "bert-run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("task:\n  corpus:\n    format: stdlib\n")
    with pytest.raises(EncoderError, match="export its encoder first: selfsup export bert"):
        load_text_encoder(str(run))
    with pytest.raises(EncoderError, match="not a run or export .* as a image encoder .* use hf:"):
        load_image_encoder(str(export))
    assert json.loads((export / "config.json").read_text())["model_type"] == "bert"


def test_pixels_baseline_is_a_direct_probe_on_flattened_pixels(tmp_path):
    from selfsup.probes import probe_scores
    from selfsup.subsets import sample_indices
    from vision.data import decode_image, folder_files
    from vision.transforms import IMAGENET_MEAN, IMAGENET_STD
    data = colour_folder(tmp_path / "imgs")
    out = tmp_path / "pixels"
    assert main(["--encoder", "pixels", "--data", f"imagefolder:{data}", "--out", str(out),
                 "--set", "image_size=8", "probe.epochs=5", "probe.max_train=16"]) == 0
    got = {r.metric: r for r in read_results(out / "results.json")}
    assert got["linear_probe_top1_cls"].extra["encoder"] == "pixels" and got["knn_top1_cls"].extra["embed_dim"] == 192

    def flat(split):   # each file decoded on its own (short side to 8 px, centre crop), normalised, flattened
        paths, labels, _ = folder_files(data / split)
        x = torch.stack([torch.from_numpy(decode_image(p, 8)).permute(2, 0, 1) for p in paths]).float() / 255
        x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return x.flatten(1), torch.tensor(labels)
    (xtr, ytr), (xte, yte) = flat("train"), flat("val")
    idx = sample_indices(len(ytr), 16, seed=0, labels=ytr)                  # the probe's stratified sample
    direct = {s.metric: s.value for s in probe_scores({"cls": xtr[idx]}, ytr[idx], {"cls": xte}, yte, "imgs", 5)}
    for metric, value in direct.items():
        assert got[metric].value == pytest.approx(value, abs=1e-6), metric
    assert got["knn_top1_cls"].value > 0.9                                   # red vs blue pixels: an easy baseline


def test_probe_decodes_only_the_images_it_probes(tmp_path, monkeypatch):
    import vision.lazy
    data = colour_folder(tmp_path / "imgs", n=20)                              # 40 training, 20 test images
    decoded = []
    original = vision.lazy.decode_image
    monkeypatch.setattr(vision.lazy, "decode_image", lambda source, *a, **k: decoded.append(source) or
                        original(source, *a, **k))
    assert main(["--encoder", "pixels:8", "--data", f"imagefolder:{data}", "--out", str(tmp_path / "o"),
                 "--set", "probe.epochs=1", "probe.max_train=10", "probe.max_test=6"]) == 0
    assert len(decoded) == len(set(decoded)) == 16                            # the two samples, each image once
    r = read_results(tmp_path / "o" / "results.json")[0]
    assert r.extra["n_train"] == 10 and r.extra["n_test"] == 6
    assert sum("/val/" in str(p) for p in decoded) == 6
