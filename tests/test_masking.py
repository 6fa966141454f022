"""vision.masking: patches, the three methods' masks, visible-token gathering; vision.vit: sizes and config."""
import pytest
import torch

from selfsup.config import ConfigError
from vision.masking import block_mask, gather_visible, inverse_block_mask, patchify, restore, unpatchify
from vision.vit import VIT_SIZES, ViTConfig, build_vit, check, vit_size


def test_patchify_roundtrip_and_layout():
    x = torch.randn(2, 3, 16, 16)
    p = patchify(x, 4)
    assert p.shape == (2, 16, 4 * 4 * 3)
    assert torch.equal(unpatchify(p, 4, 3), x)
    assert torch.equal(p[0, 1].view(4, 4, 3), x[0, :, 0:4, 4:8].permute(1, 2, 0))   # patch 1 = row 0, col 1


def test_simmim_block_mask_hides_whole_blocks_at_the_ratio():
    g = torch.Generator().manual_seed(0)
    m = block_mask(64, grid=8, mask_ratio=0.6, block=2, generator=g)
    assert m.shape == (64, 64) and m.dtype == torch.bool
    assert (m.sum(1) == 10 * 4).all()                          # ceil(0.6 * 16) blocks of 2x2 patches, per sample
    blocks = m.view(64, 4, 2, 4, 2)                            # every 2x2 block all hidden or all visible
    assert (blocks.all(dim=(2, 4)) | ~blocks.any(dim=(2, 4))).all()
    assert len({tuple(r.tolist()) for r in m}) > 50              # masks differ between samples
    again = block_mask(64, 8, 0.6, 2, torch.Generator().manual_seed(0))
    assert torch.equal(m, again)                               # a generator fixes them
    odd = block_mask(4, grid=7, mask_ratio=0.5, block=2)       # grid not a multiple of the block: edge blocks cut
    assert odd.shape == (4, 49)


def test_data2vec_inverse_block_mask_keeps_exact_count_in_clusters():
    g = torch.Generator().manual_seed(0)
    m = inverse_block_mask(256, grid=14, mask_ratio=0.8, block=3, adjust=0.07, generator=g)
    assert m.shape == (256, 196)
    assert (~m).sum(1).eq(int(196 * 0.2)).all()                # exactly int(L * 0.2) visible in every sample
    visible = (~m).view(256, 14, 14).float()
    # visible patches come in blocks: most have a visible 4-neighbour, unlike a uniform random 20%
    nb = torch.nn.functional.conv2d(visible[:, None], torch.tensor([[[[0., 1, 0], [1, 0, 1], [0, 1, 0]]]]), padding=1)
    clustered = ((nb[:, 0] > 0) & (visible > 0)).sum() / visible.sum()
    uniform = torch.rand(256, 196, generator=g).argsort(1) < 39
    u = uniform.view(256, 14, 14).float()
    nb_u = torch.nn.functional.conv2d(u[:, None], torch.tensor([[[[0., 1, 0], [1, 0, 1], [0, 1, 0]]]]), padding=1)
    assert clustered > 0.9 > ((nb_u[:, 0] > 0) & (u > 0)).sum() / u.sum()
    with pytest.raises(ValueError, match="at least 2"):
        inverse_block_mask(2, 8, 0.8, 1)


def test_gather_visible_and_restore_invert_each_other():
    x = torch.randn(3, 16, 5)
    mask = torch.stack([torch.randperm(16) < 12 for _ in range(3)])     # 12 hidden, 4 visible each
    vis, ids_restore = gather_visible(x, mask)
    assert vis.shape == (3, 4, 5)
    assert torch.equal(vis, x[~mask].view(3, 4, 5))                    # visible tokens, in grid order
    full = restore(vis, torch.zeros(3, 12, 5), ids_restore)
    assert torch.equal(full[~mask], x[~mask]) and not full[mask].any()
    uneven = mask.clone()
    uneven[0, (~mask[0]).nonzero()[0]] = True                          # sample 0 hides one more
    with pytest.raises(ValueError, match="same number"):
        gather_visible(x, uneven)


def test_named_sizes_build_and_bad_configs_are_clear():
    assert set(VIT_SIZES) == {"tiny", "minigrid", "s16", "b16", "l16"}
    vit = build_vit(ViTConfig(**vit_size("tiny")))
    assert vit.patch_embed.num_patches == 64 and len(vit.blocks) == 4 and vit.embed_dim == 128
    assert not vit.pos_embed.requires_grad
    with pytest.raises(ConfigError, match="choose one of"):
        vit_size("huge")
    with pytest.raises(ValueError, match="multiple of vit.patch_size"):
        check(ViTConfig(img_size=30, patch_size=4))
