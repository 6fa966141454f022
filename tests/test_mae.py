"""MAE model: masking, parity with transformers' ViTMAEForPreTraining, encoder API."""
import pytest
import torch

from vision.encoder import ViTEncoder
from vision.interop import to_hf
from vision.mae import MAE, MAEConfig
from vision.masking import sincos_pos_embed
from vision.vit import ViTConfig

VIT = ViTConfig(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2)
SMALL = MAEConfig(decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)


def test_patchify_roundtrip_and_layout():
    m = MAE(VIT, SMALL)
    x = torch.randn(2, 3, 16, 16)
    p = m.patchify(x)
    assert p.shape == (2, 16, 4 * 4 * 3)
    assert torch.equal(m.unpatchify(p), x)
    assert torch.equal(p[0, 1].view(4, 4, 3), x[0, :, 0:4, 4:8].permute(1, 2, 0))   # patch 1 = row 0, col 1


def test_masking_per_sample_and_deterministic_with_noise():
    m = MAE(VIT, SMALL)
    x = torch.randn(3, 3, 16, 16)
    noise = torch.rand(3, 16)
    loss1, pred1, mask1 = m(x, noise)
    loss2, _, mask2 = m(x, noise)
    assert torch.equal(mask1, mask2) and loss1 == loss2
    assert mask1.sum(1).tolist() == [12.0, 12.0, 12.0]              # 75% of 16 patches hidden, each sample
    assert not torch.equal(mask1[0], mask1[1])                       # masks differ per sample
    assert torch.equal(mask1[0].bool(), noise[0].argsort().argsort() >= 4)   # the 4 smallest noises stay visible
    _, _, mask3 = m(x, torch.rand(3, 16))
    assert not torch.equal(mask1, mask3)


def test_loss_only_on_masked_patches():
    m = MAE(VIT, SMALL)
    x = torch.randn(2, 3, 16, 16)
    noise = torch.rand(2, 16)
    _, pred, mask = m(x, noise)
    target = m.patchify(x)
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    per = ((pred - target) ** 2).mean(-1)
    loss = m(x, noise)[0]
    torch.testing.assert_close(loss, per[mask.bool()].mean())
    assert not torch.isclose(loss, per.mean())                       # visible patches are not in the loss


@pytest.mark.parametrize("norm_pix", [True, False])
def test_parity_with_transformers_vitmae(norm_pix):
    torch.manual_seed(0)
    cfg = MAEConfig(**{**SMALL.__dict__, "norm_pix_loss": norm_pix})
    ours = MAE(VIT, cfg).eval()
    hf = to_hf(ours).eval()
    x, noise = torch.randn(4, 3, 16, 16), torch.rand(4, 16)
    with torch.no_grad():
        loss, pred, mask = ours(x, noise)
        out = hf(pixel_values=x, noise=noise)
    torch.testing.assert_close(out.mask, mask)
    torch.testing.assert_close(out.logits, pred, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.loss, loss, rtol=1e-5, atol=1e-6)


def test_sincos_pos_embed_is_fixed_and_distinct():
    pe = sincos_pos_embed(32, 4)
    assert pe.shape == (17, 32) and torch.equal(pe[0], torch.zeros(32))
    assert torch.cdist(pe[1:], pe[1:]).fill_diagonal_(1).min() > 0.1     # every position distinguishable
    m = MAE(VIT, SMALL)
    assert not m.encoder.pos_embed.requires_grad and not m.decoder_pos_embed.requires_grad


def test_freeze_unfreeze_and_layer_decay_groups():
    enc = ViTEncoder(VIT)
    enc.freeze()
    assert not any(p.requires_grad for p in enc.parameters())
    enc.unfreeze(last_k=1)
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert (any(n.startswith("vit.blocks.1.") for n in trainable)
            and not any(n.startswith("vit.blocks.0.") for n in trainable))
    assert "vit.norm.weight" in trainable and "vit.pos_embed" not in trainable
    enc.unfreeze()
    groups = enc.param_groups(weight_decay=0.05, layer_decay=0.5)
    scale = {}
    for g in groups:
        for p in g["params"]:
            scale[id(p)] = (g["lr_scale"], g["weight_decay"])
    named = dict(enc.named_parameters())
    assert scale[id(named["vit.patch_embed.proj.weight"])] == (0.5 ** 3, 0.05)      # layer 0 of depth 2 + 1
    assert scale[id(named["vit.blocks.1.attn.qkv.weight"])] == (0.5 ** 1, 0.05)
    assert scale[id(named["vit.blocks.1.attn.qkv.bias"])] == (0.5 ** 1, 0.0)         # biases: no decay
    assert scale[id(named["vit.norm.weight"])] == (1.0, 0.0)
    assert scale[id(named["vit.cls_token"])][1] == 0.0
