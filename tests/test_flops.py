"""FLOP counting and MFU against a hand count for a known model."""
import json

import torch

from selfsup import metrics
from selfsup.example import ExampleTask

from conftest import train


def hand_count(batch, dim=16, hidden=64, classes=4):
    layers = [(dim, hidden), (hidden, hidden), (hidden, classes)]
    fwd = sum(2 * batch * i * o for i, o in layers)
    grad_w = fwd
    grad_x = sum(2 * batch * i * o for i, o in layers[1:])   # the input needs no gradient
    return fwd + grad_w + grad_x


def test_trainer_counts_training_flops_by_hand(tmp_run):
    train(ExampleTask, tmp_run, ["trainer.max_steps=4", "trainer.batch_size=32", "trainer.grad_accum=2",
                                 "trainer.log_every=4"])
    rec = json.loads((tmp_run / "metrics.jsonl").read_text().splitlines()[-1])
    flops_per_sample = rec["tflops"] * 1e12 / rec["samples_per_s"]
    assert abs(flops_per_sample - hand_count(1)) / hand_count(1) < 1e-6
    assert "mfu" not in rec                       # no honest peak for a CPU


def test_count_training_flops_matches_hand_count():
    model = ExampleTask(ExampleTask.Config()).build_model()
    x, y = torch.randn(8, 16), torch.randint(4, (8,))
    n = metrics.count_training_flops(lambda: torch.nn.functional.cross_entropy(model(x), y).backward())
    assert n == hand_count(8)


def test_peak_table_and_mfu(monkeypatch):
    assert metrics.peak_flops(torch.device("cpu"), "fp32") is None
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H200")
    assert metrics.peak_flops(torch.device("cuda", 0), "bf16") == 989e12
    assert metrics.peak_flops(torch.device("cuda", 0), "fp32") == 989e12 / 2
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Some Unknown GPU")
    assert metrics.peak_flops(torch.device("cuda", 0), "bf16") is None


def test_cpu_attention_is_counted_like_cuda_attention():
    """SDPA on a CPU without dropout runs a kernel torch's counter does not know; selfsup.metrics registers it."""
    q = torch.randn(2, 2, 8, 4, requires_grad=True)
    flops = metrics.count_training_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q).sum()
                                         .backward())
    forward = 2 * (2 * 2 * 2 * 8 * 8 * 4)                     # QK^T and AV: 2 FLOPs per multiply-add
    assert flops == forward + 2 * forward + forward // 2       # backward: dQ, dK, dV and the recomputed QK^T
