"""data2vec 2.0 for images: the teacher's targets, the student's view, multi-mask, the EMA step in training."""
import torch
import torch.nn.functional as F

from selfsup.teacher import TeacherConfig, make_targets
from vision.data2vec import Data2Vec, Data2VecConfig, teacher_layers
from vision.vit import ViTConfig

VIT = ViTConfig(img_size=16, patch_size=4, embed_dim=32, depth=3, num_heads=2)


def small(**teacher) -> Data2VecConfig:
    return Data2VecConfig(mask_ratio=0.75, mask_block=2, decoder_dim=32, decoder_layers=2, decoder_groups=4,
                          teacher=TeacherConfig(**{"top_k": 2, "clone_batch": 3, **teacher}))


def test_targets_are_the_mean_of_top_k_ffn_outputs_of_timms_blocks():
    """The opened-up block loop gives timm's own block outputs; targets average the FFN outputs of the top K."""
    torch.manual_seed(0)
    model = Data2Vec(VIT, small()).eval()
    vit, x = model.teacher.model, torch.randn(2, 3, 16, 16)
    ffn = []
    hooks = [b.mlp.register_forward_hook(lambda m, i, o: ffn.append(o[:, 1:])) for b in vit.blocks]
    with torch.no_grad():
        final = vit.forward_features(x)                                  # timm's own forward
        for h in hooks:
            h.remove()
        ours = teacher_layers(vit, x)
        block_out = teacher_layers(vit, x, ffn=False)
        y = model.teacher.targets(teacher_layers, x)
    for a, b in zip(ours, ffn):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(vit.norm(torch.cat([final[:, :1], block_out[-1]], 1))[:, 1:], final[:, 1:])
    torch.testing.assert_close(y, make_targets(ffn, 2, True, "layer"))
    assert y.shape == (2, 16, 32)


def test_student_sees_only_visible_patches_of_each_copy_and_masks_differ():
    torch.manual_seed(0)
    model = Data2Vec(VIT, small()).train()
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    masks = model.sample_masks(2, torch.Generator().manual_seed(0))      # (2, M=3, 16)
    assert masks.shape == (2, 3, 16) and (masks.sum(-1) == 12).all()
    assert not torch.equal(masks[0, 0], masks[0, 1])                      # M different masks per image
    loss, metrics, _ = model(x, masks)
    loss.backward()
    grad = x.grad.view(2, 3, 4, 4, 4, 4).abs().sum(dim=(1, 3, 5)).view(2, 16)   # per patch
    hidden_everywhere = masks.all(1)
    assert (grad[hidden_everywhere] == 0).all()                           # the teacher path carries no gradient
    assert (grad[~hidden_everywhere] > 0).all()
    assert {"loss_regression", "loss_cls", "target_std", "pred_std"} <= set(metrics)
    assert all(p.grad is None for p in model.teacher.parameters())


def test_teacher_follows_the_student_by_ema_once_per_optimizer_step():
    torch.manual_seed(0)
    model = Data2Vec(VIT, small(ema_decay=0.5, ema_end_decay=0.5)).train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x = torch.randn(2, 3, 16, 16)
    before = model.teacher.model.blocks[0].mlp.fc1.weight.clone()
    for _ in range(2):                                                   # step 1: 2 micro-batches, then optimizer
        model(x, accumulate=2)[0].backward()
    opt.step()
    assert torch.equal(model.teacher.model.blocks[0].mlp.fc1.weight, before)   # no update before step 1's end
    student = model.encoder.blocks[0].mlp.fc1.weight.detach().clone()
    model(x, accumulate=2)                                               # first micro-batch of step 2
    torch.testing.assert_close(model.teacher.model.blocks[0].mlp.fc1.weight, 0.5 * before + 0.5 * student)
    assert model.teacher.updates.item() == 1
    assert F.mse_loss(model.teacher.model.pos_embed, model.encoder.pos_embed) == 0
