"""selfsup.teacher: EMA schedule and update, layer-averaged instance-normalised targets, clone_batch, loss,
and the teacher's FLOPs inside a counted training step."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from selfsup.errors import ConfigError
from selfsup.metrics import count_training_flops
from selfsup.teacher import (
    EMATeacher,
    TeacherConfig,
    centre_positions,
    clone_batch,
    ema_decay_at,
    make_targets,
    regression_loss,
)


class Blocks(nn.Module):
    """A stand-in encoder: an embedding, a stack of blocks, and a fixed (untrained) parameter."""

    def __init__(self, dim=8, depth=3):
        super().__init__()
        self.embed = nn.Linear(4, dim)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(dim, dim), nn.GELU()) for _ in range(depth))
        self.fixed = nn.Parameter(torch.randn(dim), requires_grad=False)
        self.register_buffer("count", torch.zeros(()))


def block_outputs(model: Blocks, x):
    out, h = [], model.embed(x) + model.fixed
    for blk in model.blocks:
        h = blk(h)
        out.append(h)
    return out


def test_decay_schedule_is_linear_then_flat():
    cfg = TeacherConfig(ema_decay=0.999, ema_end_decay=0.9999, ema_anneal_end_step=100)
    assert ema_decay_at(0, cfg) == pytest.approx(0.999)
    assert ema_decay_at(50, cfg) == pytest.approx(0.99945)
    assert ema_decay_at(100, cfg) == ema_decay_at(10_000, cfg) == 0.9999
    assert ema_decay_at(7, TeacherConfig(ema_decay=0.99, ema_end_decay=0.99)) == 0.99


def test_teacher_starts_as_a_frozen_copy_and_follows_by_ema():
    torch.manual_seed(0)
    student = Blocks()
    teacher = EMATeacher(student, TeacherConfig(ema_decay=0.9, ema_end_decay=0.9))
    assert all(not p.requires_grad for p in teacher.parameters())
    for (n, t), s in zip(teacher.model.named_parameters(), student.parameters()):
        assert torch.equal(t, s) and t.data_ptr() != s.data_ptr()
    before = {n: p.clone() for n, p in teacher.model.named_parameters()}
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
        student.count.fill_(5)
    teacher.update(student, 0.9)
    w = teacher.model.embed.weight
    torch.testing.assert_close(w, 0.9 * before["embed.weight"] + 0.1 * student.embed.weight)
    assert torch.equal(teacher.model.fixed, student.fixed)        # untrained parameters are copied
    assert teacher.model.count.item() == 5                          # buffers are copied


def test_lazy_update_happens_once_per_optimizer_step_with_that_steps_decay():
    student = Blocks()
    cfg = TeacherConfig(ema_decay=0.5, ema_end_decay=0.9, ema_anneal_end_step=4)
    teacher = EMATeacher(student, cfg).train()
    seen = []
    teacher.update = lambda s, d: (seen.append(d), teacher.updates.add_(1))
    for _ in range(3 * 2):                                          # 3 optimizer steps of 2 micro-batches
        teacher.maybe_update(student, accumulate=2)
    assert seen == [ema_decay_at(1, cfg), ema_decay_at(2, cfg)]     # after step 1 and step 2, none before step 1
    teacher.eval()
    teacher.maybe_update(student, accumulate=2)                     # evaluation forwards do not count
    assert teacher.forwards.item() == 6
    state = teacher.state_dict()                                    # the counters resume with the weights
    assert state["forwards"].item() == 6 and state["updates"].item() == 2


def test_targets_average_top_k_instance_normed_layers_like_fairseq():
    torch.manual_seed(0)
    layers = [torch.randn(2, 5, 6) * (i + 1) + i for i in range(4)]
    y = make_targets(layers, top_k=2, instance_norm=True, final_norm="none")
    # fairseq: F.instance_norm on (B, C, T) per layer, then the mean of the layers
    ref = sum(F.instance_norm(t.transpose(1, 2)).transpose(1, 2) for t in layers[-2:]) / 2
    torch.testing.assert_close(y, ref)
    assert not torch.allclose(y, make_targets(layers, top_k=3, instance_norm=True, final_norm="none"))
    y = make_targets(layers, top_k=4, final_norm="layer")
    torch.testing.assert_close(y.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="top_k=5"):
        make_targets(layers, top_k=5)


def test_padding_is_left_out_of_instance_norm_statistics():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 4)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[1, 4:] = True
    y = make_targets([x], top_k=1, final_norm="none", padding_mask=pad)
    torch.testing.assert_close(y[0], make_targets([x[:1]], top_k=1, final_norm="none")[0])   # no padding: fairseq's
    torch.testing.assert_close(y[1, :4], make_targets([x[1:, :4]], top_k=1, final_norm="none")[0])
    assert torch.equal(y[1, 4:], torch.zeros(2, 4))


def test_centred_targets_keep_nothing_a_position_predicts():
    g = torch.Generator().manual_seed(0)
    by_position, content = torch.randn(1, 6, 4, generator=g) * 5, torch.randn(3, 6, 4, generator=g)
    pad = torch.zeros(3, 6, dtype=torch.bool)
    pad[2, 4:] = True
    y = centre_positions(by_position + content, pad)
    torch.testing.assert_close(y[:2, 4:], content[:2, 4:] - content[:2, 4:].mean(0))   # padding not in the means
    torch.testing.assert_close(y[:, :4], content[:, :4] - content[:, :4].mean(0))      # the position code is gone
    assert torch.equal(y[2, 4:], torch.zeros(2, 4))
    teacher = EMATeacher(nn.Identity(), TeacherConfig(top_k=1, final_norm="none", instance_norm_layers=False,
                                                      centre_positions=True))
    torch.testing.assert_close(teacher.targets(lambda m, x: [m(x)], by_position.expand(3, -1, -1)),
                               torch.zeros(3, 6, 4))
    with pytest.raises(ConfigError, match="at least 2 samples per micro-batch"):
        teacher.targets(lambda m, x: [m(x)], by_position)                  # one sample: nothing would be left


def test_clone_batch_keeps_each_samples_copies_together():
    x = torch.arange(3).view(3, 1)
    assert clone_batch(x, 2).flatten().tolist() == [0, 0, 1, 1, 2, 2]
    assert clone_batch(x, 1) is x


def test_regression_loss_is_fairseqs_scaled_squared_error():
    pred, target = torch.zeros(3, 16), torch.ones(3, 16)
    torch.testing.assert_close(regression_loss(pred, target), torch.full((3,), 16 / math.sqrt(16)))
    torch.testing.assert_close(regression_loss(pred, target, scale=1.0), torch.full((3,), 16.0))


def test_teacher_forward_is_in_the_counted_flops_and_gets_no_gradient():
    torch.manual_seed(0)
    student = Blocks(dim=16, depth=3)
    teacher = EMATeacher(student, TeacherConfig(top_k=2))
    x = torch.randn(4, 5, 4)

    def step(with_teacher):
        pred = block_outputs(student, x)[-1]
        target = teacher.targets(block_outputs, x) if with_teacher else torch.zeros_like(pred)
        regression_loss(pred.flatten(0, 1), target.flatten(0, 1)).mean().backward()

    alone, both = count_training_flops(lambda: step(False)), count_training_flops(lambda: step(True))
    per_linear = 2 * 4 * 5                                            # 2 * tokens per (in x out) weight
    teacher_fwd = per_linear * (4 * 16 + 3 * 16 * 16)                # embed + 3 blocks, forward only
    assert both - alone == teacher_fwd
    assert all(p.grad is None for p in teacher.parameters())
