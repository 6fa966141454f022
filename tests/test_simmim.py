"""SimMIM: mask tokens in the encoder, L1 on hidden pixels only, parity with transformers'
ViTForMaskedImageModeling."""
import torch
import torch.nn.functional as F

from vision.interop import simmim_to_hf
from vision.masking import patchify
from vision.simmim import SimMIM, SimMIMConfig
from vision.vit import ViTConfig

VIT = ViTConfig(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2)


def test_parity_with_transformers_vit_for_masked_image_modeling():
    torch.manual_seed(0)
    ours = SimMIM(VIT, SimMIMConfig()).eval()
    with torch.no_grad():
        ours.mask_token.normal_()                                    # make sure the mask token is what both use
    hf = simmim_to_hf(ours).eval()
    x = torch.randn(4, 3, 16, 16)
    mask = ours.sample_masks(4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        loss, pred, m = ours(x, mask)
        out = hf(pixel_values=x, bool_masked_pos=mask)
    torch.testing.assert_close(patchify(out.reconstruction, 4), pred, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.loss, loss, rtol=1e-5, atol=1e-6)
    assert torch.equal(m, mask.float())


def test_hidden_patches_enter_as_the_mask_token_and_only_they_count():
    torch.manual_seed(0)
    model = SimMIM(VIT, SimMIMConfig(mask_ratio=0.5, mask_block=2)).eval()
    x = torch.randn(2, 3, 16, 16)
    mask = model.sample_masks(2, torch.Generator().manual_seed(1))
    y = x.clone()
    y.view(2, 3, 4, 4, 4, 4).permute(0, 2, 4, 1, 3, 5).reshape(2, 16, -1)[mask] = 7.0   # change hidden pixels only
    with torch.no_grad():
        _, pred_x, _ = model(x, mask)
        _, pred_y, _ = model(y, mask)
        loss, pred, _ = model(x, mask)
    torch.testing.assert_close(pred_x, pred_y)                       # the encoder never saw the hidden pixels
    per_patch = (pred - patchify(x, 4)).abs().mean(-1)              # L1 per patch, over its pixels and channels
    torch.testing.assert_close(loss, per_patch[mask].mean(), rtol=1e-4, atol=1e-6)
    assert not torch.isclose(loss, per_patch.mean())
    assert F.l1_loss(pred_x, pred_y) == 0
