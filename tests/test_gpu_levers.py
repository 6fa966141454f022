"""The GPU levers keep the function they claim to keep: the matmul patch embedding equals timm's convolution, a
lever that changes the loss is refused before timing, and no-dropout leaves no dropout."""
import pytest
import torch
from torch import nn

from benchmarks import gpu_levers
from benchmarks.gpu_levers import LEVERS, Lever, MatmulPatchEmbed, no_dropout
from vision.vit import ViTConfig, build_vit, vit_size


def test_matmul_patch_embedding_equals_the_convolution():
    vit = build_vit(ViTConfig(**vit_size("tiny")))
    x = torch.randn(3, 3, vit.patch_embed.img_size[0], vit.patch_embed.img_size[1])
    torch.testing.assert_close(MatmulPatchEmbed(vit.patch_embed)(x), vit.patch_embed(x), rtol=1e-5, atol=1e-5)


def test_a_lever_that_changes_the_loss_is_not_timed(monkeypatch):
    monkeypatch.setitem(LEVERS, "off-by-one-percent", Lever("scales the loss", True, wrap=lambda f: (
        lambda m, b: 1.01 * f(m, b))))
    rows, notes = gpu_levers.run("mae", "tiny", 2, torch.device("cpu"), "fp32", False,
                                 ["off-by-one-percent", "patch-matmul"], steps=1, repeats=1)
    assert [r["name"].split(":")[0] for r in rows] == ["selfsup MAE (unchanged)", "patch-matmul"]
    assert notes["off-by-one-percent"].startswith("computes another function (loss differs by 1.0e-02)")
    assert notes["patch-matmul"].startswith("same loss")


def test_no_dropout_leaves_no_dropout():
    from language.model import BertModelConfig, BertPretrainer, hf_config
    model = no_dropout(BertPretrainer(hf_config(BertModelConfig(hidden_size=32, num_layers=1, num_heads=2,
                                                                intermediate_size=64, dropout=0.1), 100)))
    assert all(m.p == 0 for m in model.modules() if isinstance(m, nn.Dropout))
    model.train()
    ids = torch.randint(0, 100, (2, 8))
    a, b = (model.encode(ids, torch.zeros_like(ids), torch.ones_like(ids))["mean"] for _ in range(2))
    torch.testing.assert_close(a, b)                     # train mode, and no noise left


def test_a_lever_for_another_suite_is_a_usage_error(capsys):
    bert_only = next(n for n, lever in LEVERS.items() if "mae" not in lever.suites)
    with pytest.raises(SystemExit) as e:
        gpu_levers.main(["--suite", "mae", "--levers", bert_only])
    assert e.value.code == 2
    assert f"--levers {bert_only} applies to --suite bert, not mae" in capsys.readouterr().err
