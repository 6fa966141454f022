"""The vision tasks end to end on the trainer (tiny sizes): MAE pretraining -> probes, figure, finetuning."""
import json

import pytest
import torch

from selfsup.checkpoint import CheckpointError
from selfsup.probes import knn_accuracy, linear_probe
from vision.encoder import ViTEncoder
from vision.task import FinetuneTask, MAETask

from conftest import run_cli, train

MICRO = ["task.model.img_size=16", "task.model.patch_size=4", "task.model.embed_dim=32", "task.model.depth=2",
         "task.model.num_heads=2", "task.model.decoder_embed_dim=16", "task.model.decoder_depth=1",
         "task.model.decoder_num_heads=2", "task.data.num_train=256", "task.data.num_test=128",
         "task.probe.epochs=5", "trainer.batch_size=32", "trainer.log_every=5"]


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
    datasets = {r["dataset"] for r in json.loads((run / "results.json").read_text())}
    assert {"scenes-shape", "scenes-count", "scenes-colour"} <= datasets and results["knn_top1_cls"]["extra"]["k"] == 20
    fig = run / "figures" / "step_00000010" / "mae_reconstruction.png"
    from PIL import Image
    assert Image.open(fig).size == (8 * 16 * 4, 3 * 16 * 4)      # 8 images wide, 3 rows, x4


def test_encoder_from_mae_run_matches_trained_weights(mae_run):
    run, summary = mae_run
    enc = ViTEncoder.from_checkpoint(run)
    trained = summary["model"].encoder.state_dict()
    for k, v in enc.vit.state_dict().items():
        assert torch.equal(v, trained[k])
    out = enc.eval()(torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8))
    assert out["tokens"].shape == (2, 16, 32) and out["cls"].shape == out["mean"].shape == (2, 32)


def test_encoder_from_wrong_checkpoint_is_clear(tmp_path):
    from selfsup.example import ExampleTask
    train(ExampleTask, tmp_path / "ex", ["trainer.max_steps=2"])
    with pytest.raises(CheckpointError, match="not an MAE run's config"):
        ViTEncoder.from_checkpoint(tmp_path / "ex")


def test_finetune_from_pretrained_uses_its_weights_and_layer_decay(mae_run, tmp_path):
    run, _ = mae_run
    ft = ["task.data.num_train=256", "task.data.num_test=128", "trainer.batch_size=32", "trainer.max_steps=6",
          f"task.init={run}", "task.layer_decay=0.5"]
    summary = train(FinetuneTask, tmp_path / "ft", ft)
    res = json.loads((tmp_path / "ft" / "results.json").read_text())
    assert res[0]["metric"] == "finetune_top1" and res[0]["extra"]["init"] == str(run)
    from selfsup.config import to_object

    from conftest import make_cfg
    task = FinetuneTask(to_object(make_cfg(FinetuneTask, ft)).task)
    groups = task.param_groups(task.build_model(), 0.05)
    assert sorted({g.get("lr_scale", 1.0) for g in groups}) == [0.125, 0.25, 0.5, 1.0]   # depth 2: layers 0..3
    model = summary["model"]
    pre = ViTEncoder.from_checkpoint(run)
    moved = [k for k, v in pre.vit.state_dict().items() if not torch.equal(v, model.encoder.vit.state_dict()[k])]
    assert moved and "pos_embed" not in moved                         # finetuned, pos embed fixed


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
