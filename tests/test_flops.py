"""FLOP counting and MFU against a hand count for a known model."""
import itertools
import json

import torch

from selfsup import metrics
from selfsup.distributed import Env
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

    # MFU: the window's achieved FLOP/s (counted FLOPs per step x steps / seconds) over the device's peak
    clock = itertools.chain([100.0, 102.0], itertools.repeat(102.0))   # the window opens at 100 s, closes at 102 s
    monkeypatch.setattr(metrics.time, "perf_counter", lambda: next(clock))
    env = Env(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    window = metrics.MetricsWindow(env, log_every=4, flops_per_step=3e12, peak=989e12)
    for loss in (1.0, None, 3.0):                                 # the middle step was skipped (non-finite)
        window.add(samples=8, tokens=16, metrics={"acc": 0.5},
                   loss_sum=None if loss is None else torch.tensor(4 * loss, dtype=torch.float64),
                   count=torch.tensor(4.0, dtype=torch.float64))
    rec = window.record(step=3, lr=0.1, grad_norm=1.0, skipped_steps=1)
    assert rec["tflops"] == 3 * 3e12 / 2 / 1e12 and rec["mfu"] == 3 * 3e12 / 2 / 989e12
    assert rec["samples_per_s"] == 12.0 and rec["tokens_per_s"] == 24.0
    assert rec["loss"] == 2.0 and rec["acc"] == 0.5               # loss over the applied steps only
    assert not window.due(3, 10) and window.due(4, 10) and window.due(7, 7)

def test_cpu_attention_is_counted_like_cuda_attention():
    """SDPA on a CPU without dropout runs a kernel torch's counter does not know; selfsup.metrics registers it."""
    q = torch.randn(2, 2, 8, 4, requires_grad=True)
    flops = metrics.count_training_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q).sum()
                                         .backward())
    forward = 2 * (2 * 2 * 2 * 8 * 8 * 4)                     # QK^T and AV: 2 FLOPs per multiply-add
    assert flops == forward + 2 * forward + forward // 2       # backward: dQ, dK, dV and the recomputed QK^T


def test_an_evaluation_inside_a_window_does_not_count_against_throughput(monkeypatch):
    clock = itertools.chain([100.0, 101.0, 141.0], itertools.repeat(142.0))   # open; evaluate 101..141 s; close
    monkeypatch.setattr(metrics.time, "perf_counter", lambda: next(clock))
    env = Env(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    window = metrics.MetricsWindow(env, log_every=2, flops_per_step=None, peak=None)
    window.add(samples=10, tokens=0, metrics={}, loss_sum=torch.tensor(1.0, dtype=torch.float64),
               count=torch.tensor(1.0, dtype=torch.float64))
    with window.paused():
        pass
    window.add(samples=10, tokens=0, metrics={}, loss_sum=torch.tensor(1.0, dtype=torch.float64),
               count=torch.tensor(1.0, dtype=torch.float64))
    assert window.record(step=2, lr=0.1, grad_norm=1.0, skipped_steps=0)["samples_per_s"] == 20 / 2.0
