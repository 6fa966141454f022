"""The vision tasks end to end on the trainer (tiny sizes): each MIM method trains, resumes exactly, exports to
timm and is read back as an encoder; MAE's evaluation (probes, figure) and finetuning."""
import json
import shutil

import pytest
import timm
import torch

from selfsup.checkpoint import CheckpointError, latest_checkpoint, load_weights
from selfsup.config import to_object
from selfsup.probes import knn_accuracy, linear_probe
from vision.data2vec import Data2VecTask
from vision.encoder import ViTEncoder
from vision.finetune import FinetuneTask
from vision.mae import MAETask
from vision.simmim import SimMIMTask

from conftest import make_cfg, run_cli, train

VIT = ["task.vit.img_size=16", "task.vit.patch_size=4", "task.vit.embed_dim=32", "task.vit.depth=2",
       "task.vit.num_heads=2"]
DATA = ["task.data.num_train=256", "task.data.num_test=128", "task.probe.epochs=5", "task.eval_images=64"]
METHODS = {   # each method at a micro size
    "mae": (MAETask, ["task.mae.decoder_embed_dim=16", "task.mae.decoder_depth=1", "task.mae.decoder_num_heads=2"]),
    "simmim": (SimMIMTask, []),
    "data2vec": (Data2VecTask, ["task.data2vec.decoder_dim=32", "task.data2vec.decoder_layers=2",
                                "task.data2vec.decoder_groups=4", "task.data2vec.mask_block=2",
                                "task.data2vec.teacher.top_k=2", "task.data2vec.teacher.clone_batch=2",
                                "task.data2vec.teacher.ema_decay=0.9", "task.data2vec.teacher.ema_end_decay=0.99",
                                "task.data2vec.teacher.ema_anneal_end_step=4"]),
}
MICRO = VIT + DATA + METHODS["mae"][1] + ["trainer.batch_size=32", "trainer.log_every=5"]


def test_probes_separate_separable_features_and_not_noise():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(400) % 4
    centres = torch.randn(4, 16, generator=g) * 4
    x = centres[y] + torch.randn(400, 16, generator=g)
    assert knn_accuracy(x[:300], y[:300], x[300:], y[300:]) > 0.95
    assert linear_probe(x[:300], y[:300], x[300:], y[300:], epochs=30) > 0.95
    noise = torch.randn(400, 16, generator=g)
    assert knn_accuracy(noise[:300], y[:300], noise[300:], y[300:]) < 0.5
    assert linear_probe(noise[:300], y[:300], noise[300:], y[300:], epochs=30) < 0.5


def test_knn_across_groups_tells_look_alikes_from_encoding():
    """Features that only find same-group look-alikes fail when neighbours must come from another group."""
    g = torch.Generator().manual_seed(0)
    y, group = torch.arange(400) % 4, torch.arange(400) // 4 % 5
    lookalike = torch.randn(4, 5, 16, generator=g)[y, group] + 0.1 * torch.randn(400, 16, generator=g)
    encoding = torch.randn(4, 16, generator=g)[y] * 4 + torch.randn(400, 16, generator=g)
    split = lambda x: (x[:300], y[:300], x[300:], y[300:])  # noqa: E731
    groups = (group[:300], group[300:])
    assert knn_accuracy(*split(lookalike)) > 0.95 and knn_accuracy(*split(lookalike), groups=groups) < 0.5
    assert knn_accuracy(*split(encoding), groups=groups) > 0.95


def make_task(task_cls, overrides):
    return task_cls(to_object(make_cfg(task_cls, overrides)).task)


def losses(run_dir):
    return {r["step"]: r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


@pytest.mark.parametrize("method", list(METHODS))
def test_method_trains_resumes_exactly_and_exports_to_timm(method, tmp_path):
    task_cls, extra = METHODS[method]
    setup = VIT + DATA + extra + ["trainer.max_steps=6", "trainer.batch_size=16", "trainer.grad_accum=2",
                                  "trainer.log_every=1", "trainer.lr=1e-3", "trainer.warmup_steps=2",
                                  "trainer.eval_at_end=false"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    summary = train(task_cls, straight, setup)
    train(task_cls, split, setup + ["trainer.stop_at=3"])
    train(task_cls, split, setup, resume=True)
    a, b = losses(straight), losses(split)
    assert sorted(a) == list(range(1, 7)) and a == b                   # the same run, step by step
    wa = load_weights(latest_checkpoint(straight / "checkpoints") / "model.safetensors")
    wb = load_weights(latest_checkpoint(split / "checkpoints") / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)   # teacher included

    enc = ViTEncoder.from_checkpoint(straight)                        # any method's run is an encoder
    trained = summary["model"].encoder.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in enc.vit.state_dict().items())
    out = make_task(task_cls, setup).export(summary["model"], tmp_path / "export")
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    data_cfg = timm.data.resolve_data_config({}, model=model)
    assert data_cfg["input_size"] == (3, 16, 16)                      # what the encoder was trained with
    assert data_cfg["mean"] == pytest.approx(enc.preprocess.mean)
    assert data_cfg["std"] == pytest.approx(enc.preprocess.std)
    assert (data_cfg["interpolation"], data_cfg["crop_pct"], data_cfg["crop_mode"]) == \
        (enc.preprocess.interpolation, pytest.approx(enc.preprocess.crop_pct), "center")   # timm's names, our eval view
    transform = timm.data.create_transform(**data_cfg)                # timm's own eval pipeline, from the export
    assert any("Normalize" in type(t).__name__ for t in transform.transforms)
    with torch.no_grad():
        ours = enc.eval()(images)
        theirs = model.forward_features((images.float() / 255 - torch.tensor(data_cfg["mean"]).view(1, 3, 1, 1))
                                        / torch.tensor(data_cfg["std"]).view(1, 3, 1, 1))
    torch.testing.assert_close(theirs[:, 0], ours["cls"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(theirs[:, 1:], ours["tokens"], rtol=1e-4, atol=1e-5)
    meta = json.loads((out / "config.json").read_text())
    assert meta["model_args"]["embed_dim"] == 32 and meta["model_args"]["depth"] == 2
    assert meta["pretrained_cfg"]["tag"] == f"selfsup-{method}" and "license" not in meta["pretrained_cfg"]
    assert json.loads((out / "encoder.json").read_text())["method"] == method
    assert all((f.stat().st_mode & 0o777) == 0o644 for f in out.iterdir())   # world-readable, like any checkpoint
    again = ViTEncoder.from_checkpoint(out)
    torch.testing.assert_close(again.eval()(images)["mean"], ours["mean"])


@pytest.fixture(scope="module")
def mae_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("mae") / "run"
    summary = train(MAETask, run, MICRO + ["trainer.max_steps=10", "trainer.checkpoint_every=10", "trainer.lr=1e-3"])
    return run, summary


def test_mae_trains_and_writes_probe_results_and_figure(mae_run):
    run, summary = mae_run
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["loss"] < records[0]["loss"]
    results = {r["metric"]: r for r in json.loads((run / "results.json").read_text())}
    assert {"mae_loss", "linear_probe_top1_cls", "knn_top1_cls", "linear_probe_top1_mean",
            "knn_top1_mean"} <= set(results)
    assert all(0 <= results[m]["value"] <= 1 for m in results if "top1" in m)
    assert results["mae_loss"]["extra"]["n"] == 64
    datasets = {r["dataset"] for r in json.loads((run / "results.json").read_text())}
    assert {"scenes-shape", "scenes-count", "scenes-colour"} <= datasets and results["knn_top1_cls"]["extra"]["k"] == 20
    fig = run / "figures" / "step_00000010" / "mae_reconstruction.png"
    from PIL import Image
    assert Image.open(fig).size == (8 * 16 * 4, 3 * 16 * 4)      # 8 images wide, 3 rows, x4


def test_encoder_from_wrong_checkpoint_is_clear(tmp_path):
    from selfsup.example import ExampleTask
    train(ExampleTask, tmp_path / "ex", ["trainer.max_steps=2"])
    with pytest.raises(CheckpointError, match="not the config of a vision run"):
        ViTEncoder.from_checkpoint(tmp_path / "ex")


def test_old_runs_and_exports_still_load(mae_run, tmp_path):
    """Runs saved with one flat MAEConfig under task.model, and format-1 exports (encoder.json with mae_config)."""
    run, summary = mae_run
    old = tmp_path / "old-run"
    ckpt = latest_checkpoint(run / "checkpoints")
    (old / "checkpoints").mkdir(parents=True)
    shutil.copytree(ckpt, old / "checkpoints" / ckpt.name)
    flat = {"img_size": 16, "patch_size": 4, "in_chans": 3, "embed_dim": 32, "depth": 2, "num_heads": 2,
            "mlp_ratio": 4.0, "decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2,
            "mask_ratio": 0.75, "norm_pix_loss": True}
    (old / "config.yaml").write_text("task:\n  model:\n" + "".join(f"    {k}: {v}\n" for k, v in flat.items()))
    from_old = ViTEncoder.from_checkpoint(old)
    trained = summary["model"].encoder.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in from_old.vit.state_dict().items())

    export = tmp_path / "old-export"
    export.mkdir()
    from selfsup.checkpoint import save_weights
    save_weights(from_old.vit.state_dict(), export / "model.safetensors")
    (export / "encoder.json").write_text(json.dumps({"timm_model": "vit_base_patch16_224", "mae_config": flat}))
    assert all(torch.equal(v, trained[k]) for k, v in ViTEncoder.from_checkpoint(export).vit.state_dict().items())


def test_export_and_eval_decode_no_training_image_unless_asked(tmp_path):
    """Export of a run on image files works after the files are gone: building the task decodes nothing."""
    from PIL import Image

    from selfsup.cli import main
    root = tmp_path / "imgs"
    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(8):
                arr = torch.randint(0, 256, (18, 18, 3), generator=g, dtype=torch.uint8).numpy()
                Image.fromarray(arr).save(root / split / c / f"{i}.png")
    run = tmp_path / "run"
    train(MAETask, run, MICRO + ["task.data.source=imagefolder", f"task.data.path={root}", "trainer.max_steps=2",
                                 "trainer.batch_size=8", "trainer.eval_at_end=false"])
    shutil.rmtree(root)
    assert main(["export", "mae", "--checkpoint", str(run), "--out", str(tmp_path / "x")]) == 0
    assert (tmp_path / "x" / "config.json").is_file()
    task = MAETask(MAETask.Config())                     # building a task reads no data either
    assert task._sets is None


@pytest.mark.parametrize("method", ["mae", "simmim"])
def test_hf_export_loads_in_transformers_with_the_same_loss(method, tmp_path):
    from transformers import ViTForMaskedImageModeling, ViTMAEForPreTraining
    task_cls, extra = METHODS[method]
    task = make_task(task_cls, VIT + extra)
    torch.manual_seed(0)
    model = task.build_model().eval()
    out = task.export(model, tmp_path / "hf", fmt="hf")
    x = torch.randn(2, 3, 16, 16)
    masks = model.sample_masks(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(x, masks)[0]
        if method == "mae":
            theirs = ViTMAEForPreTraining.from_pretrained(out).eval()(pixel_values=x, noise=masks).loss
        else:
            theirs = ViTForMaskedImageModeling.from_pretrained(out).eval()(pixel_values=x, bool_masked_pos=masks).loss
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-6)
    assert all((f.stat().st_mode & 0o777) == 0o644 for f in out.iterdir())


def test_data2vec_has_no_hf_export_and_says_so(tmp_path):
    task = make_task(Data2VecTask, VIT + METHODS["data2vec"][1])
    with pytest.raises(ValueError, match="no transformers counterpart"):
        task.export(task.build_model(), tmp_path / "hf", fmt="hf")
    with pytest.raises(ValueError, match="unknown export format"):
        task.export(task.build_model(), tmp_path / "hf", fmt="onnx")


def test_finetune_from_pretrained_uses_its_weights_and_layer_decay(mae_run, tmp_path):
    run, _ = mae_run
    ft = ["task.data.num_train=256", "task.data.num_test=128", "trainer.batch_size=32", "trainer.max_steps=6",
          f"task.init={run}", "task.layer_decay=0.5"]
    summary = train(FinetuneTask, tmp_path / "ft", ft)
    res = json.loads((tmp_path / "ft" / "results.json").read_text())
    assert res[0]["metric"] == "finetune_top1" and res[0]["extra"]["init"] == str(run)
    task = make_task(FinetuneTask, ft)
    groups = task.param_groups(task.build_model(), 0.05)
    assert sorted({g.get("lr_scale", 1.0) for g in groups}) == [0.125, 0.25, 0.5, 1.0]   # depth 2: layers 0..3
    model = summary["model"]
    pre = ViTEncoder.from_checkpoint(run)
    moved = [k for k, v in pre.vit.state_dict().items() if not torch.equal(v, model.encoder.vit.state_dict()[k])]
    assert moved and "pos_embed" not in moved                         # finetuned, pos embed fixed
    again = ViTEncoder.from_checkpoint(tmp_path / "ft")               # a finetuned encoder is an encoder too
    assert torch.equal(again.vit.blocks[0].mlp.fc1.weight, model.encoder.vit.blocks[0].mlp.fc1.weight)


@pytest.mark.slow
def test_cli_mae_random_baseline_and_eval(tmp_path):
    """max_steps=0 evaluates the untrained architecture: the baseline every MAE result is compared with."""
    out = run_cli("train", "mae", "--run-dir", str(tmp_path / "rand"), "--set", *MICRO, "trainer.max_steps=0",
                  "trainer.progress=false")
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads((tmp_path / "rand" / "results.json").read_text())
    assert {r["step"] for r in res} == {0}
    bad = run_cli("train", "mae", "--run-dir", str(tmp_path / "x"), "--set", "task.data.source=imagefolder")
    assert bad.returncode == 2 and "needs task.data.path" in bad.stderr


@pytest.mark.parametrize("method", ["simmim", "data2vec"])
def test_each_method_evaluates_its_loss_probes_and_figure(method, tmp_path):
    """MAE's evaluation is tested above on its own run; the other methods' held-out losses (data2vec's multi-masks
    evaluated in chunks), probes and (pixel methods) reconstruction figure."""
    cls, extra = METHODS[method]
    run = tmp_path / "run"
    train(cls, run, VIT + DATA + extra + ["trainer.batch_size=32", "trainer.max_steps=4", "task.eval_images=40",
                                          "task.figure_images=4"])
    results = {r["metric"]: r for r in json.loads((run / "results.json").read_text())}
    assert results[f"{method}_loss"]["extra"]["n"] == 40 and results[f"{method}_loss"]["value"] > 0
    assert {"linear_probe_top1_cls", "knn_top1_cls", "linear_probe_top1_mean", "knn_top1_mean"} <= set(results)
    figures = list((run / "figures").rglob("*.png"))
    assert [f.name for f in figures] == (["simmim_reconstruction.png"] if method == "simmim" else [])


def test_held_out_sample_and_figure_cover_every_class_of_a_sorted_folder(tmp_path, monkeypatch):
    """The held-out loss and the figure take a stratified seeded sample, not the first files of the first class."""
    import numpy as np
    from PIL import Image

    import vision.mim as mim
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(5):
            (tmp_path / "imgs" / split / f"k{c}").mkdir(parents=True)
            for i in range(8):
                Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
                    tmp_path / "imgs" / split / f"k{c}" / f"{i}.png")
    taken = []
    shown = []
    monkeypatch.setattr(mim, "reconstruction_grid", lambda model, imgs, masks, path: shown.append(len(imgs)))
    orig = mim.sample_indices

    def spy(n, k, seed=0, labels=None):
        idx = orig(n, k, seed=seed, labels=labels)
        taken.append((n, idx, labels))
        return idx
    monkeypatch.setattr(mim, "sample_indices", spy)
    over = VIT + METHODS["mae"][1] + ["task.data.source=imagefolder", f"task.data.path={tmp_path / 'imgs'}",
                                      "task.eval_images=10", "task.figure_images=5", "task.probe.epochs=1",
                                      "trainer.batch_size=8", "trainer.max_steps=1"]
    train(MAETask, tmp_path / "run", over)
    (n, idx, labels), (n_fig, fig_idx, _) = taken[0], taken[1]
    assert n == 40 and len(idx) == 10 and set(labels[idx].tolist()) == set(range(5))   # the first 10 are 2 classes
    assert n_fig == 10 and len(fig_idx) == 5 and shown == [5]                      # the figure: 5 of that sample


@pytest.mark.parametrize("method", ["simmim", "data2vec"])
def test_each_method_is_an_init_for_finetune_captioning_and_ppo(method, tmp_path, monkeypatch):
    """MAE runs are used as inits throughout the suite's tests; SimMIM's (mask token in the encoder) and data2vec's
    (an EMA teacher beside the student) load the same way, with the student's weights."""
    from multimodal.task import CaptionTask
    from rl.policy import EncoderConfig, build_policy
    monkeypatch.setenv("SELFSUP_CACHE", str(tmp_path / "cache"))
    cls, extra = METHODS[method]
    run = tmp_path / "run"
    train(cls, run, VIT + DATA + extra + ["trainer.batch_size=32", "trainer.max_steps=2", "trainer.eval_at_end=false"])
    want = ViTEncoder.from_checkpoint(run).vit.state_dict()
    ft = make_task(FinetuneTask, ["task.data.num_train=64", "task.data.num_test=32", f"task.init={run}"]).build_model()
    cap = make_task(CaptionTask, [f"task.vision_init={run}", "task.data.num_train=16", "task.data.num_eval=4",
                                  "task.text_model.hidden_size=32", "task.text_model.num_layers=1",
                                  "task.text_model.num_heads=2", "task.text_model.intermediate_size=64",
                                  "task.vocab_size=120"]).build_model()
    policy = build_policy(EncoderConfig(kind="vit", init=str(run)), (1, 16, 16, 3), 3)
    for name, got in (("vit-finetune", ft.encoder.vit), ("caption", cap.encoder.vit),
                      ("ppo", policy.backbone.encoder.vit)):
        state = got.state_dict()
        assert state.keys() == want.keys(), name
        assert all(torch.equal(state[k], v) for k, v in want.items()), name
